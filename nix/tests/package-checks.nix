# Evaluation checks for nix/package.nix that need only nixpkgs' `lib`: buildNpmPackage and
# friends are replaced by functions that return their arguments, so the checks can look at what
# the package asks for. lib.fileset needs Nix >= 2.14 (builtins.readFileType), so it is replaced
# too, by a stand-in that keeps the list of paths. The real build runs in checks.<system>.package.
#
#   nix-instantiate --eval --strict nix/tests/package-checks.nix \
#     --arg lib 'import /path/to/nixpkgs/lib' -A report
{ lib }:

let
  root = ../..;
  packageJson = lib.importJSON (root + "/package.json");

  fakeDrv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = "node";
  };

  nodejs = fakeDrv "nodejs-22";

  filesetStandIn = {
    unions = paths: paths;
    toSource =
      { root, fileset }:
      {
        inherit root fileset;
        outPath = "/nix/store/00000000000000000000000000000000-source";
      };
  };

  libsecret = fakeDrv "libsecret";

  # The package's arguments as buildNpmPackage would get them, for a Linux or a macOS host.
  argsFor =
    isLinux:
    import ../package.nix {
      lib = lib // {
        fileset = filesetStandIn;
      };
      stdenv.hostPlatform = {
        inherit isLinux;
        isDarwin = !isLinux;
      };
      buildNpmPackage = drvArgs: drvArgs;
      importNpmLock = {
        __functor = _: importArgs: { importNpmLockArgs = importArgs; };
        npmConfigHook = "importNpmLock.npmConfigHook";
      };
      nodejs_22 = nodejs;
      makeWrapper = fakeDrv "make-wrapper";
      installShellFiles = fakeDrv "install-shell-files";
      inherit libsecret;
    };
  args = argsFor true;
  darwinArgs = argsFor false;

  # The keychain tools as the CLI runs them (src/os/keychain.ts): secret-tool looked up on PATH,
  # the macOS one by its absolute path.
  keychainSource = builtins.readFile (root + "/src/os/keychain.ts");
  libsecretBin = "${libsecret}/bin";

  relative = p: lib.removePrefix (toString root + "/") (toString p);
  sourcePaths = map relative args.src.fileset;
  under = dir: p: p == dir || lib.hasPrefix "${dir}/" p;

  inherit (import ./results.nix { inherit lib; }) eq check report passed failures;

  results = [
    (eq "package: pname from package.json" args.pname packageJson.name)
    (eq "package: version from package.json" args.version packageJson.version)
    (eq "package: built with `npm run build`" (packageJson.scripts ? build) true)
    (eq "package: dependencies from the lock file (importNpmLock)" args.npmDeps.importNpmLockArgs.npmRoot args.src)
    (eq "package: importNpmLock's npmConfigHook" args.npmConfigHook "importNpmLock.npmConfigHook")
    (eq "package: Node.js for build and run time" args.nodejs nodejs)
    (check "package: installs the directory of package.json's bin" (
      lib.hasInfix "cp -r ${dirOf packageJson.bin.nix-cache-login}/. " args.installPhase
    ))
    (check "package: wraps package.json's bin with node as bin/nix-cache-login" (
      lib.hasInfix "makeWrapper ${nodejs}/bin/node \"$out/bin/nix-cache-login\"" args.installPhase
      && lib.hasInfix "/${baseNameOf packageJson.bin.nix-cache-login}\"" args.installPhase
    ))
    (check "package: the CLI runs secret-tool from PATH and macOS's /usr/bin/security (src/os/keychain.ts)" (
      lib.hasInfix ''const tool = "secret-tool";'' keychainSource
      && lib.hasInfix ''MACOS_SECURITY = "/usr/bin/security";'' keychainSource
    ))
    (check "package (Linux): the wrapper adds libsecret's bin (secret-tool) at the end of PATH" (
      lib.hasInfix "--suffix PATH : ${libsecretBin}\n" args.installPhase
      && !(lib.hasInfix "--prefix PATH" args.installPhase)
    ))
    (check "package (Linux): the install check runs the wrapper and finds libsecret's bin after the caller's PATH" (
      lib.hasInfix "test -x ${libsecretBin}/secret-tool" args.installCheckPhase
      && lib.hasInfix ''[ "$seen" = "/users/own/bin:${libsecretBin}" ]'' args.installCheckPhase
    ))
    (check "package (macOS): the wrapper leaves PATH alone, no libsecret (the CLI runs /usr/bin/security)" (
      !(lib.hasInfix "PATH" darwinArgs.installPhase)
      && !(lib.hasInfix "libsecret" (darwinArgs.installPhase + darwinArgs.installCheckPhase))
      && lib.hasInfix "makeWrapper ${nodejs}/bin/node \"$out/bin/nix-cache-login\"" darwinArgs.installPhase
    ))
    (eq "package: no npm install of node_modules" args.dontNpmInstall true)
    (check "package: installs the man page and the shell completions the build makes" (
      lib.hasInfix "installManPage ${dirOf packageJson.bin.nix-cache-login}/man/nix-cache-login.1" args.installPhase
      && lib.all (f: lib.hasInfix "${dirOf packageJson.bin.nix-cache-login}/completions/${f}" args.installPhase) [
        "nix-cache-login.bash"
        "_nix-cache-login"
        "nix-cache-login.fish"
      ]
      && lib.elem (fakeDrv "install-shell-files") args.nativeBuildInputs
    ))
    (eq "package: license" args.meta.license lib.licenses.gpl3Plus)
    (eq "package: mainProgram" args.meta.mainProgram "nix-cache-login")
    (eq "package: mainProgram is package.json's bin" (builtins.attrNames packageJson.bin) [
      args.meta.mainProgram
    ])
    (check "package: platforms cover the flake's systems" (
      lib.all (s: lib.elem s args.meta.platforms) [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ]
    ))
    (eq "package: source files that do not exist" (lib.filter (p: !builtins.pathExists (root + "/${p}")) sourcePaths) [ ])
    (eq "package: source leaves out tests, docs, Nix files and build output" (lib.filter (
      p: lib.any (d: under d p) [
        "test"
        "docs"
        "nix"
        "node_modules"
        "dist"
        "flake.nix"
      ]
    ) sourcePaths) [ ])
  ];

in
{
  inherit results;
  ok = failures results == [ ];
  report = report results [ (passed results) ];
}
