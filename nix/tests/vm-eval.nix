# The NixOS VM tests (./vm/*.nix), evaluated without nixpkgs: they cannot run here (no VMs, no
# nixpkgs), but everything short of running them is checked. With stand-ins for the few packages
# they name, each test's script is rendered in full (nix/ci-check.sh then parses it and runs
# pyflakes on it, with the machine names and the driver's functions as builtins, as the NixOS test
# driver does), and each machine that uses our modules is evaluated with the module system
# against the NixOS stand-ins of ./stubs.nix: no failed assertions, and the config file it would
# install goes through the CLI's own validation (`cliConfigs`, as in ./module-checks.nix).
#
#   nix-instantiate --eval --strict nix/tests/vm-eval.nix --arg lib 'import .../lib' -A report
#
# Returns { ok; report; results; testScripts; cliConfigs; }; testScripts: { name; nodes; script; }.
{ lib }:

let
  inherit (lib) mkOption types;
  stubs = import ./stubs.nix { inherit lib; };
  inherit (import ./results.nix { inherit lib; }) eq check report passed failures;

  fake = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };

  pkgs = stubs.pkgs.linux // {
    runCommand = name: _: _: fake name;
    writeText = name: _: fake name;
    writeShellApplication = { name, ... }: fake name;
    openssl = fake "openssl";
    curl = fake "curl";
    htmlq = fake "htmlq";
    coreutils = fake "coreutils";
    apacheHttpdPackages.mod_auth_openidc = fake "mod_auth_openidc";
  };

  opt =
    type: default:
    mkOption {
      inherit type default;
    };

  # What the test machines set beyond the options of the modules' stand-ins (NixOS's own).
  nodeOptions = {
    options = {
      security.pki.certificateFiles = opt (types.listOf types.str) [ ];
      users.users = opt (types.attrsOf (
        types.submodule {
          options = {
            isNormalUser = opt types.bool false;
            linger = opt types.bool false;
          };
        }
      )) { };
      environment.variables = opt (types.attrsOf types.str) { };
    };
  };

  # The machines that are not Keycloak or the cache: the ones under test.
  underTest = test: lib.filterAttrs (n: _: n != "keycloak" && n != "cache") test.nodes;

  evalNode =
    node:
    (lib.evalModules {
      modules = [
        stubs.nixos
        nodeOptions
        node
      ];
      specialArgs.pkgs = pkgs;
    }).config;

  files = {
    vm-server = ./vm/server.nix;
    vm-server-key = ./vm/server-key.nix;
    vm-workstation = ./vm/workstation.nix;
  };

  tests = lib.mapAttrs (_: file: import file { inherit pkgs lib; }) files;

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  nodeResults = lib.concatLists (
    lib.mapAttrsToList (
      testName: test:
      lib.mapAttrsToList (
        nodeName: node:
        let
          config = evalNode node;
          etc = config.environment.etc."nix-cache-login/config.toml".source;
        in
        {
          result = eq "${testName}: machine ${nodeName} evaluates, no failed assertions" (failedAssertions config) [ ];
          cliConfig = {
            name = "${testName}: machine ${nodeName}'s /etc/nix-cache-login/config.toml";
            mode =
              if config.services ? nix-cache-login-server && config.services.nix-cache-login-server.enable then
                "service-account"
              else
                "user";
            inherit (etc) value;
          };
        }
      ) (underTest test)
    ) tests
  );

  # The other machines are plain attribute sets: all their values must evaluate.
  otherNodes = lib.mapAttrsToList (
    testName: test:
    check "${testName}: Keycloak and cache machines evaluate" (
      builtins.deepSeq (builtins.removeAttrs test.nodes (lib.attrNames (underTest test))) true
    )
  ) tests;

  results =
    map (r: r.result) nodeResults
    ++ otherNodes
    ++ [
      # A new test file in ./vm is evaluated here too (common.nix and realm.nix are its parts).
      (eq "every test in nix/tests/vm is evaluated here" (lib.sort lib.lessThan (
        map (n: "vm-${lib.removeSuffix ".nix" n}") (
          lib.filter (n: n != "common.nix" && n != "realm.nix") (lib.attrNames (builtins.readDir ./vm))
        )
      )) (lib.attrNames files))
    ];
in
{
  inherit results;
  ok = failures results == [ ];
  cliConfigs = map (r: r.cliConfig) nodeResults;
  testScripts = lib.mapAttrsToList (name: test: {
    inherit name;
    inherit (test) testScript;
    nodes = lib.attrNames test.nodes;
  }) tests;
  report = report results [
    "evaluated with the stand-ins in nix/tests/stubs.nix and stand-in packages"
    (passed results)
  ];
}
