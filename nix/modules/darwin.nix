# nix-darwin: nix-cache-login on the system PATH, plus either
# - services.nix-cache-login: a launchd agent (loaded for every user who logs in) that keeps the
#   user's token fresh with `refresh --min-valid`, or
# - services.nix-cache-login-server: a launchd daemon that runs `service-account` as root and
#   writes the token into the Nix daemon's netrc (/etc/nix/netrc by default).
# Option names match the NixOS modules; launchd has no randomized delay and no credentials
# mechanism, so there is no `randomizedDelay`, and the daemon reads `clientSecretFile` directly.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  common = import ./lib.nix { inherit lib; };
  cfg = config.services.nix-cache-login;
  scfg = config.services.nix-cache-login-server;

  userConfig = common.configSource pkgs cfg;
  serverConfig = common.configSource pkgs (
    scfg
    // {
      settings = scfg.settings // {
        netrc_path = scfg.netrcFile;
        client_secret_file = scfg.clientSecretFile;
      };
    }
  );

  # Root's launchd jobs get no XDG directories; keep the daemon's token state where macOS keeps
  # system daemons' data.
  serverStateHome = "/var/db";
in
{
  options.services.nix-cache-login = {
    enable = common.mkEnable "nix-cache-login and a launchd agent that keeps each signed-in user's cache token fresh";

    package = common.mkPackage pkgs;

    settings = common.mkSettings {
      inherit pkgs;
      example = common.settingsExample;
      description = ''
        System-wide defaults written to `${common.etcConfigPath}` (the last place the CLI looks,
        after `~/.config/nix-cache-login/config.toml`). Keys: `issuer`, `client_id`,
        `cache_host`, and optionally `netrc_path` (default `$XDG_CONFIG_HOME/nix/netrc`, per
        user), `scopes`, `callback_port`, `cache_url`, `timeout`.
      '';
    };

    configFile = common.mkConfigFile { where = "`${common.etcConfigPath}`"; };

    interval = common.mkInterval "2m";

    minValid = common.mkMinValid;
  };

  options.services.nix-cache-login-server = {
    enable = common.mkEnable "a launchd daemon that keeps a service-account token for the Nix binary cache in the Nix daemon's netrc";

    package = common.mkPackage pkgs;

    settings = common.mkSettings {
      inherit pkgs;
      example = common.serverSettingsExample;
      description = ''
        nix-cache-login settings, written as TOML to `${common.etcConfigPath}`. Set `issuer`,
        `client_id` and `cache_host`; the module adds `netrc_path` (from `netrcFile`) and
        `client_secret_file` (from `clientSecretFile`).
      '';
    };

    configFile = common.mkConfigFile {
      where = "`${common.etcConfigPath}`";
      extra = "It must name `clientSecretFile` as `client_secret_file` and `netrcFile` as `netrc_path`.";
    };

    clientSecretFile = common.mkClientSecretFile {
      how = "The daemon runs as root and reads it directly, so it can be readable by root only.";
    };

    netrcFile = common.mkNetrcFile;

    interval = common.mkInterval "2m";

    minValid = common.mkMinValid;
  };

  config = lib.mkMerge [
    {
      assertions = [
        {
          assertion = !(cfg.enable && scfg.enable);
          message = "services.nix-cache-login and services.nix-cache-login-server both install ${common.etcConfigPath}; enable only one of them.";
        }
      ];
    }

    (lib.mkIf cfg.enable {
      warnings = common.freshnessWarnings {
        optionPrefix = "services.nix-cache-login";
        inherit (cfg) interval minValid;
      };

      environment.systemPackages = [ cfg.package ];

      environment.etc."nix-cache-login/config.toml" = lib.mkIf (userConfig != null) {
        source = userConfig;
      };

      # launchd.agents land in /Library/LaunchAgents and so run for every user who logs in.
      launchd.agents.nix-cache-login = {
        command = common.refreshCommand cfg;
        serviceConfig = {
          # A job whose interval passed during sleep runs as soon as the Mac wakes.
          StartInterval = common.toSeconds cfg.interval;
          RunAtLoad = true;
          ProcessType = "Background";
          # A core dump would hold the refresh token.
          SoftResourceLimits.Core = 0;
          HardResourceLimits.Core = 0;
        };
      };
    })

    (lib.mkIf scfg.enable {
      assertions = common.serverAssertions {
        optionPrefix = "services.nix-cache-login-server";
        cfg = scfg;
      };

      warnings = common.freshnessWarnings {
        optionPrefix = "services.nix-cache-login-server";
        inherit (scfg) interval minValid;
      };

      environment.systemPackages = [ scfg.package ];

      environment.etc."nix-cache-login/config.toml".source = serverConfig;

      environment.variables.NIX_CACHE_LOGIN_CONFIG = common.etcConfigPath;

      launchd.daemons.nix-cache-login-server = {
        command = common.serviceAccountCommand scfg;
        environment = {
          NIX_CACHE_LOGIN_CONFIG = common.etcConfigPath;
          XDG_STATE_HOME = serverStateHome;
        };
        serviceConfig = {
          StartInterval = common.toSeconds scfg.interval;
          RunAtLoad = true;
          ProcessType = "Background";
          # A core dump would hold the client secret and the token.
          SoftResourceLimits.Core = 0;
          HardResourceLimits.Core = 0;
          Umask = 63; # 0077
          StandardErrorPath = "/var/log/nix-cache-login-server.log";
        };
      };
    })
  ];
}
