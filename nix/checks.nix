# The flake's checks for one system:
# - package: the package builds (and its install check runs `--version` and `--help`);
# - module-checks: nix/tests/module-checks.nix with the real nixpkgs; on Linux the NixOS cases
#   are evaluated as real NixOS systems, and every generated TOML file is built, compared, and
#   run through the package's own config validation (`status --config FILE --json`);
# - vm-server, vm-server-key, vm-workstation (Linux only): the NixOS VM tests in nix/tests/vm/.
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

  cli = lib.getExe self.packages.${system}.default;

  compareToml =
    {
      name,
      file,
      want,
      mode,
    }:
    ''
      echo "toml ${name}"
      python3 ${./tests/toml-equals.py} ${file} ${pkgs.writeText "want.json" (builtins.toJSON want)}
      cliAccepts ${lib.escapeShellArg name} ${file} ${mode}
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
          # status reads only local files: with empty HOME and XDG directories a config the CLI
          # accepts finds no token (exit 3) and reports its mode; a refused one exits 2.
          cliAccepts() {
            local code=0
            HOME="$TMPDIR/home" XDG_CONFIG_HOME="$TMPDIR/home/.config" XDG_STATE_HOME="$TMPDIR/home/.state" \
              ${cli} status --config "$2" --json >status.json || code=$?
            if [ "$code" != 3 ] || ! python3 -c 'import json, sys; d = json.load(open("status.json")); sys.exit(d["mode"] != sys.argv[1] or d["config_path"] != sys.argv[2])' "$3" "$2"; then
              echo "the CLI refuses $1 (exit $code, want 3 and mode $3)"
              exit 1
            fi
          }
          ${lib.concatMapStrings compareToml moduleChecks.tomlFiles}
          cp "$reportPath" $out
        ''
    else
      throw "nix-cache-login module checks failed:\n${moduleChecks.report}";
}
// lib.optionalAttrs isLinux {
  vm-server = pkgs.testers.runNixOSTest ./tests/vm/server.nix;
  vm-server-key = pkgs.testers.runNixOSTest ./tests/vm/server-key.nix;
  vm-workstation = pkgs.testers.runNixOSTest ./tests/vm/workstation.nix;
}
