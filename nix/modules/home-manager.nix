# Home Manager: nix-cache-login in the user's profile, its config in
# $XDG_CONFIG_HOME/nix-cache-login/config.toml, and a refresh timer: a systemd user service and
# timer on Linux, a launchd agent on macOS.
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
  inherit (pkgs.stdenv.hostPlatform) isLinux isDarwin;
in
{
  options.services.nix-cache-login = {
    enable = common.mkEnable "nix-cache-login and a timer that keeps your Nix binary cache token fresh";

    package = common.mkPackage pkgs;

    settings = common.mkSettings {
      inherit pkgs;
      example = common.settingsExample;
      description = ''
        Your nix-cache-login settings, written as TOML to
        `$XDG_CONFIG_HOME/nix-cache-login/config.toml`. Keys: `issuer`, `client_id`,
        `cache_host`, and optionally `netrc_path` (default `$XDG_CONFIG_HOME/nix/netrc`),
        `scopes`, `callback_port`, `cache_url`, `timeout`. Leave empty to manage the file
        yourself.
      '';
    };

    configFile = common.mkConfigFile { where = "`$XDG_CONFIG_HOME/nix-cache-login/config.toml`"; };

    interval = common.mkInterval "2m";

    randomizedDelay = common.mkRandomizedDelay "30s";

    minValid = common.mkMinValid;
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        warnings = common.freshnessWarnings {
          optionPrefix = opt;
          inherit (cfg) interval minValid;
          randomizedDelay = if isLinux then cfg.randomizedDelay else null;
        };

        home.packages = [ cfg.package ];

        xdg.configFile."nix-cache-login/config.toml" = lib.mkIf (configSource != null) {
          source = configSource;
        };
      }

      (lib.mkIf isLinux {
        systemd.user.services.nix-cache-login = {
          Unit = {
            Description = "Refresh the token for the Nix binary cache (nix-cache-login)";
            # Skip, not fail, until you signed in once; see the NixOS workstation module.
            ConditionPathExists = [
              "%S/nix-cache-login"
              "|${config.xdg.configHome}/nix-cache-login/config.toml"
              "|${common.etcConfigPath}"
            ];
          };
          Service = {
            Type = "oneshot";
            ExecStart = common.refreshCommand cfg;
            # Exit 3: sign in again. Not a unit failure; `nix-cache-login status` explains.
            SuccessExitStatus = "3";
            # A run that hangs (a stuck provider, a file system that never answers) is ended.
            TimeoutStartSec = "2min";
            Nice = 10;
          };
        };

        systemd.user.timers.nix-cache-login = {
          Unit.Description = "Keep the Nix binary cache token fresh (nix-cache-login)";
          Timer = common.timerConfig cfg;
          Install.WantedBy = [ "timers.target" ];
        };
      })

      (lib.mkIf isDarwin {
        launchd.agents.nix-cache-login = {
          enable = true;
          config = {
            ProgramArguments = [ (common.exe cfg) ] ++ common.refreshArgs cfg;
            # launchd runs a job whose interval passed during sleep as soon as the Mac wakes.
            StartInterval = common.toSeconds cfg.interval;
            RunAtLoad = true;
            ProcessType = "Background";
            StandardErrorPath = "${config.home.homeDirectory}/Library/Logs/nix-cache-login.log";
          };
        };
      })
    ]
  );
}
