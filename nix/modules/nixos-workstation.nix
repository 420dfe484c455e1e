# NixOS workstation: nix-cache-login on the PATH, and a systemd user timer that keeps the token of
# every user who signed in (`nix-cache-login login`) fresh. It leaves the Nix daemon's
# configuration alone: see docs/configure-nix.md for the `netrc-file` setting to add.
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
  configSource = common.configSource pkgs cfg { };
in
{
  imports = [
    (import ./options.nix {
      path = [
        "services"
        "nix-cache-login"
      ];
      what = "nix-cache-login and a per-user timer that keeps each signed-in user's cache token fresh";
      configWhere = "`${common.etcConfigPath}`, the last place the CLI looks (after `--config`, `$NIX_CACHE_LOGIN_CONFIG` and `~/.config/nix-cache-login/config.toml`)";
      settingsText = ''
        `netrc_path` defaults to `$XDG_CONFIG_HOME/nix/netrc`, expanded per user. Leave
        `settings` empty to let every user bring their own config.
      '';
      randomizedDelay = "30s";
      tokenStorageText = ''
        The timer runs a systemd user unit, which has the user's D-Bus session bus: it reaches
        the keyring that the user's desktop session unlocked. Where no keyring answers the timer
        (no desktop session, a lingering user after logout, no Secret Service installed),
        `"auto"` keeps the token in the state file and renewals go on; a token already in a
        keyring that is locked makes a run fail (exit 1), leaving the netrc as it is, until the
        keyring is unlocked. Use `"file"` where no desktop session ever runs.
      '';
    })
  ];

  meta.maintainers = [ ];

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !(config.services.nix-cache-login-server.enable or false);
        message = "${opt} and services.nix-cache-login-server both install ${common.etcConfigPath}; enable only one of them.";
      }
    ]
    ++ common.settingsAssertions {
      optionPrefix = opt;
      inherit cfg;
    };

    warnings = common.freshnessWarnings {
      optionPrefix = opt;
      inherit (cfg) interval randomizedDelay minValid;
    };

    environment.systemPackages = [ cfg.package ];

    environment.etc."nix-cache-login/config.toml" = lib.mkIf (configSource != null) {
      source = configSource;
    };

    # A user unit runs in every user's own systemd instance, with that user's files and token,
    # and with its user manager's environment, which holds the D-Bus session bus the keychain
    # needs (token_storage): nothing in common.sessionBusBlockers may be set here, and the
    # module checks (nix/tests/module-checks.nix) look for each.
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
        NODE_EXTRA_CA_CERTS = lib.mkDefault common.caBundle;
      };
      serviceConfig = common.systemdServiceConfig // {
        ExecStart = common.everyUserRefreshCommand cfg;
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
