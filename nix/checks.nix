# The flake's checks for one system:
# - package: the package builds (and its install check runs `--version` and `--help`);
# - module-checks: nix/tests/module-checks.nix with the real nixpkgs; on Linux the NixOS cases
#   are evaluated as real NixOS systems, and every generated TOML file is built and compared;
# - vm-server, vm-workstation (Linux only): the NixOS VM tests in nix/tests/vm/.
{
  pkgs,
  self,
  nixosSystem,
}:

let
  inherit (pkgs) lib;
  inherit (pkgs.stdenv.hostPlatform) isLinux system;

  evalNixos =
    modules:
    (nixosSystem {
      modules = modules ++ [
        {
          nixpkgs.pkgs = pkgs;
          boot.isContainer = true;
          system.stateVersion = lib.trivial.release;
        }
      ];
    }).config;

  moduleChecks = import ./tests/module-checks.nix {
    inherit lib pkgs;
    evalNixos = if isLinux then evalNixos else null;
  };

  compareToml =
    { name, file, want }:
    ''
      echo "toml ${name}"
      python3 ${./tests/toml-equals.py} ${file} ${pkgs.writeText "want.json" (builtins.toJSON want)}
    '';
in
{
  package = self.packages.${system}.default;

  module-checks =
    if moduleChecks.ok then
      pkgs.runCommand "nix-cache-login-module-checks"
        {
          nativeBuildInputs = [ pkgs.python3 ];
          report = moduleChecks.report;
          passAsFile = [ "report" ];
        }
        ''
          cat "$reportPath"
          ${lib.concatMapStrings compareToml moduleChecks.tomlFiles}
          cp "$reportPath" $out
        ''
    else
      throw "nix-cache-login module checks failed:\n${moduleChecks.report}";
}
// lib.optionalAttrs isLinux {
  vm-server = pkgs.testers.runNixOSTest ./tests/vm/server.nix;
  vm-workstation = pkgs.testers.runNixOSTest ./tests/vm/workstation.nix;
}
