# nix-cache-login, built from this repository with the project's own `npm run build` (an esbuild
# bundle in dist/). Dependencies come from package-lock.json through importNpmLock: every lock
# entry has `resolved` and `integrity` (test/unit/lockfile.test.ts checks this), so there is no
# dependency hash to keep up to date. At run time the bundle needs nothing but Node.js, so the
# output is dist/ plus a wrapper that runs package.json's `bin` with this Node.js, without
# node_modules.
#
# On Linux the wrapper also puts libsecret's bin (secret-tool) at the end of PATH: with
# `token_storage` "auto" or "keychain" the CLI keeps the refresh token in the Secret Service
# through `secret-tool` (src/os/keychain.ts), which it looks up on PATH, and a systemd unit's PATH
# need not hold the user's profile. At the end, so a secret-tool the user put on PATH comes
# first. macOS needs nothing: the CLI runs /usr/bin/security, the system's own.
#
# The wrapper names itself in NIX_CACHE_LOGIN_LAUNCHER, so that `nix-cache-login timer install`
# writes a unit that runs the wrapper (with secret-tool on its PATH) rather than this Node.js and
# the bundle, and names it by a link on PATH outside /nix/store when there is one (a profile's
# bin/, which follows upgrades; src/commands/timer.ts).
{
  lib,
  stdenv,
  buildNpmPackage,
  importNpmLock,
  nodejs_22,
  makeWrapper,
  installShellFiles,
  libsecret,
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

  # What the wrapper adds to the end of PATH: secret-tool on Linux, nothing on macOS.
  runtimePath = lib.optionals stdenv.hostPlatform.isLinux [ libsecret ];
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
      --add-flags "${libDir}/${baseNameOf bin}" \
      --set NIX_CACHE_LOGIN_LAUNCHER "$out/bin/nix-cache-login" \
      ${lib.optionalString (runtimePath != [ ]) "--suffix PATH : ${lib.makeBinPath runtimePath}"}

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
    # The wrapper names itself for `timer install` (node runs print-launcher.cjs first and stops).
    echo 'process.stdout.write(process.env.NIX_CACHE_LOGIN_LAUNCHER); process.exit(0);' > "$TMPDIR/print-launcher.cjs"
    launcher=$(NODE_OPTIONS="--require $TMPDIR/print-launcher.cjs" "$out/bin/nix-cache-login")
    [ "$launcher" = "$out/bin/nix-cache-login" ] || {
      echo "the wrapper sets NIX_CACHE_LOGIN_LAUNCHER=$launcher, want $out/bin/nix-cache-login"
      exit 1
    }
    ls "$out"/share/man/man1/nix-cache-login.1* \
      "$out"/share/bash-completion/completions/nix-cache-login* \
      "$out"/share/zsh/site-functions/_nix-cache-login \
      "$out"/share/fish/vendor_completions.d/nix-cache-login.fish > /dev/null
  ''
  + lib.optionalString (runtimePath != [ ]) ''
    # secret-tool is there, and the program sees it after the PATH it was started with (node
    # runs print-path.cjs first, through NODE_OPTIONS, and stops).
    test -x ${lib.makeBinPath runtimePath}/secret-tool
    echo 'process.stdout.write(process.env.PATH); process.exit(0);' > "$TMPDIR/print-path.cjs"
    seen=$(PATH=/users/own/bin NODE_OPTIONS="--require $TMPDIR/print-path.cjs" "$out/bin/nix-cache-login")
    [ "$seen" = "/users/own/bin:${lib.makeBinPath runtimePath}" ] || {
      echo "the wrapper's PATH is $seen, want /users/own/bin:${lib.makeBinPath runtimePath}"
      exit 1
    }
  ''
  + ''
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
