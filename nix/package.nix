# nix-cache-login, built from this repository with the project's own `npm run build` (an esbuild
# bundle in dist/). Dependencies come from package-lock.json through importNpmLock: every lock
# entry has `resolved` and `integrity` (test/unit/lockfile.test.ts checks this), so there is no
# dependency hash to keep up to date. At run time the bundle needs nothing but Node.js, so the
# output is dist/ plus a wrapper that runs package.json's `bin` with this Node.js, without
# node_modules.
{
  lib,
  buildNpmPackage,
  importNpmLock,
  nodejs_22,
  makeWrapper,
  installShellFiles,
}:

let
  root = ../.;
  packageJson = lib.importJSON (root + "/package.json");
  # The built entry point, e.g. dist/nix-cache-login.cjs; files next to it are loaded on demand.
  bin = packageJson.bin.nix-cache-login;
  libDir = "$out/lib/nix-cache-login";

  # Only what the build reads: changes to tests, docs or the Nix files do not rebuild the package.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/package.json")
      (root + "/package-lock.json")
      (root + "/tsconfig.json")
      (root + "/scripts")
      (root + "/src")
    ];
  };

  nodejs = nodejs_22;
in
buildNpmPackage {
  pname = packageJson.name;
  inherit (packageJson) version;
  inherit src nodejs;

  npmDeps = importNpmLock { npmRoot = src; };
  npmConfigHook = importNpmLock.npmConfigHook;

  nativeBuildInputs = [
    makeWrapper
    installShellFiles
  ];

  # `npm run build` (the default npmBuildScript) fills ${dirOf bin}/ (bundles and their
  # third-party license notices, and the man page and shell completions made from the CLI's
  # command table).
  dontNpmInstall = true;
  installPhase = ''
    runHook preInstall

    mkdir -p "${libDir}"
    cp -r ${dirOf bin}/. "${libDir}/"
    makeWrapper ${lib.getExe nodejs} "$out/bin/nix-cache-login" \
      --add-flags "${libDir}/${baseNameOf bin}"

    installManPage ${dirOf bin}/man/nix-cache-login.1
    installShellCompletion --cmd nix-cache-login \
      --bash ${dirOf bin}/completions/nix-cache-login.bash \
      --zsh ${dirOf bin}/completions/_nix-cache-login \
      --fish ${dirOf bin}/completions/nix-cache-login.fish

    runHook postInstall
  '';

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    "$out/bin/nix-cache-login" --version | grep -F ${lib.escapeShellArg packageJson.version}
    "$out/bin/nix-cache-login" --help > /dev/null
    ls "$out"/share/man/man1/nix-cache-login.1* \
      "$out"/share/bash-completion/completions/nix-cache-login* \
      "$out"/share/zsh/site-functions/_nix-cache-login \
      "$out"/share/fish/vendor_completions.d/nix-cache-login.fish > /dev/null
    runHook postInstallCheck
  '';

  passthru = { inherit nodejs; };

  meta = {
    description = packageJson.description;
    license = lib.licenses.gpl3Plus;
    mainProgram = "nix-cache-login";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
