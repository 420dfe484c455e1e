# nix-darwin: nix-cache-login on the system PATH, plus either
# - services.nix-cache-login: a launchd agent (loaded for every user who logs in) that keeps the
#   user's token fresh with `refresh --min-valid`, or
# - services.nix-cache-login-server: a launchd daemon that runs `service-account` as root and
#   writes the token into the Nix daemon's netrc (/etc/nix/netrc by default).
# Option names match the NixOS modules; launchd has no randomized delay and no credentials
# mechanism, so there is no `randomizedDelay`, and the daemon, which runs as root, reads
# `clientSecretFile` or `clientKeyFile` (the private key for private_key_jwt) directly.
# As on NixOS, the jobs trust the system CA bundle and dump no core; the daemon's log (macOS has
# no journal) is rotated by newsyslog.
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

  daemonNetrc = "/etc/nix/netrc";

  userConfig = common.configSource pkgs cfg { };
  serverConfig = common.configSource pkgs scfg (
    {
      netrc_path = scfg.netrcFile;
    }
    // common.serverCredentialSettings scfg (c: c.path)
  );

  # Root's launchd jobs get no XDG directories; keep the daemon's token state where macOS keeps
  # system daemons' data.
  serverStateHome = "/var/db";
  serverLog = "/var/log/nix-cache-login-server.log";
  # launchd expands nothing in StandardErrorPath, so the agent (one plist for every user)
  # redirects in the shell that nix-darwin runs `command` with, where $HOME is the user's. The
  # same file as Home Manager's agent. Not rotated by newsyslog: a rotated log would be
  # recreated owned by root, and the agent could no longer open it.
  agentLog = "Library/Logs/nix-cache-login.log";

  jobEnvironment = {
    NODE_EXTRA_CA_CERTS = lib.mkDefault common.caBundle;
  };

  nixEnabled = config.nix.enable or true;
in
{
  imports = [
    (import ./options.nix {
      path = [
        "services"
        "nix-cache-login"
      ];
      what = "nix-cache-login and a launchd agent that keeps each signed-in user's cache token fresh";
      configWhere = "`${common.etcConfigPath}` (the last place the CLI looks, after `~/.config/nix-cache-login/config.toml`)";
      settingsText = "`netrc_path` defaults to `$XDG_CONFIG_HOME/nix/netrc`, per user.";
      tokenStorageText = ''
        The launchd agent runs in each user's GUI login session (launchd's Aqua session, not a
        security session of its own), where the login Keychain is unlocked. A token already in a
        locked Keychain makes a run fail (exit 1), leaving the netrc as it is; a new token that
        cannot be saved there is kept in the state file.
      '';
    })
    (import ./options.nix {
      path = [
        "services"
        "nix-cache-login-server"
      ];
      what = "a launchd daemon that keeps a service-account token for the Nix binary cache in the Nix daemon's netrc";
      configWhere = "`${common.etcConfigPath}`";
      settingsText = "The module adds `netrc_path` (from `netrcFile`), and `client_secret_file` (from `clientSecretFile`) or `client_key_file` (from `clientKeyFile`); setting those keys here is an error. `token_endpoint_auth_method` passes through as written. `token_storage` is refused too: a service account keeps no refresh token, so there is nothing for it to place.";
      configFileText = "It must name `clientSecretFile` as `client_secret_file` (or `clientKeyFile` as `client_key_file`) and `netrcFile` as `netrc_path`.";
      server = {
        credentialText = "The daemon runs as root and reads the file itself (launchd has no credentials mechanism), so it can be readable by root only (mode 0400 or 0600, owner root).";
        netrcFile = {
          default = daemonNetrc;
          example = "/var/db/nix-cache-login/netrc";
          description = ''
            The netrc file the daemon writes the token into (`netrc_path` in the generated
            config). The default is the Nix daemon's default `netrc-file`; another path is set as
            `nix.settings.netrc-file`. It is created empty at activation when missing, since Lix
            and Determinate Nix need it to exist.
          '';
        };
      };
    })
  ];

  meta.maintainers = [ ];

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
      assertions = common.settingsAssertions {
        optionPrefix = "services.nix-cache-login";
        inherit cfg;
      };

      warnings = common.freshnessWarnings {
        optionPrefix = "services.nix-cache-login";
        inherit (cfg) interval minValid;
      };

      environment.systemPackages = [ cfg.package ];

      environment.etc."nix-cache-login/config.toml" = lib.mkIf (userConfig != null) {
        source = userConfig;
      };

      # launchd.agents land in /Library/LaunchAgents and so run for every user who logs in, in
      # that user's GUI login (Aqua) session: without LimitLoadToSessionType, launchd assumes
      # Aqua (Apple TN2083), and without SessionCreate the job keeps that session's security
      # context, whose login Keychain is unlocked (token_storage). The module checks look for
      # both keys, in the job and in the plist nix-darwin renders.
      launchd.agents.nix-cache-login = {
        command = "${common.everyUserRefreshCommand cfg} >> \"$HOME/${agentLog}\" 2>&1";
        environment = jobEnvironment;
        serviceConfig = common.launchdResourceLimits // {
          # A job whose interval passed during sleep runs as soon as the Mac wakes.
          StartInterval = common.toSeconds cfg.interval;
          RunAtLoad = true;
          ProcessType = "Background";
        };
      };
    })

    (lib.mkIf scfg.enable {
      assertions = common.serverAssertions {
        optionPrefix = "services.nix-cache-login-server";
        cfg = scfg;
      }
      ++ [
        {
          assertion =
            !nixEnabled || (config.nix.settings.netrc-file or daemonNetrc) == scfg.netrcFile;
          message =
            "nix.settings.netrc-file is ${builtins.toJSON (config.nix.settings.netrc-file or daemonNetrc)}, but"
            + " services.nix-cache-login-server writes the token to ${scfg.netrcFile}: the Nix daemon"
            + " would not send it. Set services.nix-cache-login-server.netrcFile to the same path.";
        }
      ];

      warnings = common.freshnessWarnings {
        optionPrefix = "services.nix-cache-login-server";
        inherit (scfg) interval minValid;
      };

      environment.systemPackages = [ scfg.package ];

      environment.etc."nix-cache-login/config.toml".source = serverConfig;

      environment.variables.NIX_CACHE_LOGIN_CONFIG = common.etcConfigPath;

      environment.etc."newsyslog.d/nix-cache-login-server.conf".text =
        common.newsyslogLine {
          path = serverLog;
          owner = "root:wheel";
        }
        + "\n";

      nix.settings = lib.mkIf (nixEnabled && scfg.netrcFile != daemonNetrc) {
        netrc-file = lib.mkDefault scfg.netrcFile;
      };

      # The netrc must exist before Nix uses it (Lix fails every download without it, and
      # Determinate Nix does not start when a file in additionalNetrcSources is missing).
      system.activationScripts.postActivation.text = ''
        if [ ! -e ${lib.escapeShellArg scfg.netrcFile} ] && [ ! -L ${lib.escapeShellArg scfg.netrcFile} ]; then
          mkdir -p -m 0700 ${lib.escapeShellArg (dirOf scfg.netrcFile)}
          (umask 077 && : > ${lib.escapeShellArg scfg.netrcFile})
        fi
      '';

      launchd.daemons.nix-cache-login-server = {
        command = common.serviceAccountCommand scfg;
        environment = jobEnvironment // {
          NIX_CACHE_LOGIN_CONFIG = common.etcConfigPath;
          XDG_STATE_HOME = serverStateHome;
        };
        serviceConfig = common.launchdResourceLimits // {
          StartInterval = common.toSeconds scfg.interval;
          RunAtLoad = true;
          ProcessType = "Background";
          Umask = 63; # 0077
          StandardOutPath = serverLog;
          StandardErrorPath = serverLog;
        };
      };
    })
  ];
}
