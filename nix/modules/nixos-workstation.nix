# NixOS workstation: nix-cache-login on the PATH, and a systemd user timer that keeps the token of
# every user who signed in (`nix-cache-login login`) fresh. It leaves the Nix daemon's
# configuration alone: see the README ("Configure Nix") for the `netrc-file` setting to add.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  common = import ./lib.nix { inherit lib; };
  cfg = config.services.nix-cache-login;
  opt = "services.nix-cache-login";
  configSource = common.configSource pkgs cfg;
in
{
  options.services.nix-cache-login = {
    enable = common.mkEnable "nix-cache-login and a per-user timer that keeps each signed-in user's cache token fresh";

    package = common.mkPackage pkgs;

    settings = common.mkSettings {
      inherit pkgs;
      example = common.settingsExample;
      description = ''
        System-wide defaults written to `${common.etcConfigPath}`, the last place the CLI looks
        (after `--config`, `$NIX_CACHE_LOGIN_CONFIG` and `~/.config/nix-cache-login/config.toml`).
        Keys: `issuer`, `client_id`, `cache_host`, and optionally `netrc_path` (default
        `$XDG_CONFIG_HOME/nix/netrc`, expanded per user), `scopes`, `callback_port`,
        `cache_url`, `timeout`. Leave empty to let every user bring their own config.
      '';
    };

    configFile = common.mkConfigFile { where = "`${common.etcConfigPath}`"; };

    interval = common.mkInterval "2m";

    randomizedDelay = common.mkRandomizedDelay "30s";

    minValid = common.mkMinValid;
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !(config.services.nix-cache-login-server.enable or false);
        message = "${opt} and services.nix-cache-login-server both install ${common.etcConfigPath}; enable only one of them.";
      }
    ];

    warnings = common.freshnessWarnings {
      optionPrefix = opt;
      inherit (cfg) interval randomizedDelay minValid;
    };

    environment.systemPackages = [ cfg.package ];

    environment.etc."nix-cache-login/config.toml" = lib.mkIf (configSource != null) {
      source = configSource;
    };

    # A user unit runs in every user's own systemd instance, with that user's files and token.
    systemd.user.services.nix-cache-login = {
      description = "Refresh the token for the Nix binary cache (nix-cache-login)";
      unitConfig = {
        # Skip (not fail) for users who never signed in (no state directory) or have no config
        # anywhere. "|" marks triggering conditions: at least one of them must hold.
        ConditionPathExists = [
          "%S/nix-cache-login"
          "|%E/nix-cache-login/config.toml"
          "|${common.etcConfigPath}"
        ];
      };
      environment = {
        # Node.js ships its own CA list; this adds the system's, so a private CA added with
        # security.pki.certificateFiles is trusted too.
        NODE_EXTRA_CA_CERTS = lib.mkDefault "/etc/ssl/certs/ca-certificates.crt";
      };
      serviceConfig = {
        Type = "oneshot";
        ExecStart = common.refreshCommand cfg;
        # Exit 3 means "sign in again" (session expired or logged out): nothing the unit can fix,
        # so it must not show up as a failed unit. `nix-cache-login status` tells the user.
        SuccessExitStatus = "3";
        # A run that hangs (a stuck provider, a file system that never answers) is ended.
        TimeoutStartSec = "2min";
        Nice = 10;
      };
    };

    systemd.user.timers.nix-cache-login = {
      description = "Keep the Nix binary cache token fresh (nix-cache-login)";
      wantedBy = [ "timers.target" ];
      timerConfig = common.timerConfig cfg;
    };
  };
}
