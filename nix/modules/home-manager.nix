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
  configSource = common.configSource pkgs cfg { };
  inherit (pkgs.stdenv.hostPlatform) isLinux isDarwin;

  logFile = "${config.home.homeDirectory}/Library/Logs/nix-cache-login.log";

  # The netrc the CLI will write, when it can be known here: the default, or a `netrc_path` that
  # uses only ~, $HOME and $XDG_CONFIG_HOME. null otherwise (configFile, other variables).
  netrcPath =
    let
      raw = cfg.settings.netrc_path or "$XDG_CONFIG_HOME/nix/netrc";
      home = config.home.homeDirectory;
      xdg = config.xdg.configHome;
      expanded =
        builtins.replaceStrings
          [ "\${XDG_CONFIG_HOME}" "$XDG_CONFIG_HOME" "\${HOME}" "$HOME" ]
          [ xdg xdg home home ]
          (if lib.hasPrefix "~/" raw then home + lib.removePrefix "~" raw else raw);
    in
    if cfg.configFile == null && lib.hasPrefix "/" expanded && !(lib.hasInfix "$" expanded) then
      expanded
    else
      null;
in
{
  imports = [
    (import ./options.nix {
      path = [
        "services"
        "nix-cache-login"
      ];
      what = "nix-cache-login and a timer that keeps your Nix binary cache token fresh";
      configWhere = "`$XDG_CONFIG_HOME/nix-cache-login/config.toml`";
      settingsText = ''
        `netrc_path` defaults to `$XDG_CONFIG_HOME/nix/netrc`. Leave `settings` empty to manage
        the file yourself.
      '';
      randomizedDelay = "30s";
      tokenStorageText = ''
        On Linux the timer runs a systemd user unit, which has your D-Bus session bus: it reaches
        the keyring your desktop session unlocked; where none answers the timer (no desktop
        session, no Secret Service), `"auto"` keeps the token in the state file, and a token
        already in a locked keyring makes a run fail (exit 1) until the keyring is unlocked. On
        macOS the launchd agent runs in your GUI login, where the login Keychain is unlocked.
      '';
    })
  ];

  meta.maintainers = [ ];

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = common.settingsAssertions {
          optionPrefix = opt;
          inherit cfg;
        };

        warnings = common.freshnessWarnings {
          optionPrefix = opt;
          inherit (cfg) interval minValid;
          randomizedDelay = if isLinux then cfg.randomizedDelay else null;
        };

        home.packages = [ cfg.package ];

        xdg.configFile."nix-cache-login/config.toml" = lib.mkIf (configSource != null) {
          source = configSource;
        };

        # An empty netrc (0600, in a 0700 directory if the directory is new) until the first
        # `login`: Lix fails every download when `netrc-file` names a missing file, and
        # Determinate Nix refuses to start when a file in additionalNetrcSources is missing.
        # A DAG entry after writeBoundary (the shape lib.hm.dag.entryAfter makes).
        home.activation.nix-cache-login-netrc = lib.mkIf (netrcPath != null) {
          after = [ "writeBoundary" ];
          before = [ ];
          data = ''
            nixCacheLoginNetrc=${lib.escapeShellArg netrcPath}
            if [ ! -e "$nixCacheLoginNetrc" ] && [ ! -L "$nixCacheLoginNetrc" ]; then
              run mkdir -p -m 0700 "$(dirname "$nixCacheLoginNetrc")"
              run install -m 0600 /dev/null "$nixCacheLoginNetrc"
            fi
          '';
        };
      }

      (lib.mkIf isLinux {
        # A user unit, with the user manager's environment and so the D-Bus session bus the
        # keychain needs (token_storage): nothing in common.sessionBusBlockers may be set here;
        # nix/tests/module-checks.nix and real-modules.nix (the unit file Home Manager renders)
        # look for each.
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
          Service = common.systemdServiceConfig // {
            ExecStart = common.refreshCommand cfg;
            # As the NixOS and nix-darwin units: Node.js ships its own CA list, and this adds the
            # system's (a private CA added to it is trusted too). A list, so you can add
            # variables of your own; a missing file costs a warning line in the journal, no more.
            Environment = [ "NODE_EXTRA_CA_CERTS=${common.caBundle}" ];
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
        # An agent without SessionCreate or LimitLoadToSessionType: launchd runs it in your GUI
        # login (Aqua) session, whose login Keychain is unlocked (token_storage). The module
        # checks look for both keys.
        launchd.agents.nix-cache-login = {
          enable = true;
          config = common.launchdResourceLimits // {
            ProgramArguments = [ (common.exe cfg) ] ++ common.refreshArgs cfg;
            # The system CA bundle, as in the nix-darwin agent (see the systemd unit above).
            EnvironmentVariables.NODE_EXTRA_CA_CERTS = lib.mkDefault common.caBundle;
            # launchd runs a job whose interval passed during sleep as soon as the Mac wakes.
            StartInterval = common.toSeconds cfg.interval;
            RunAtLoad = true;
            ProcessType = "Background";
            StandardOutPath = logFile;
            StandardErrorPath = logFile;
          };
        };
      })
    ]
  );
}
