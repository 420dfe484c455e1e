# NixOS server: a hardened system service that runs `nix-cache-login service-account` (client
# credentials) at boot and on a timer, and writes the token into the Nix daemon's netrc. With
# `--min-valid`, a run asks the identity provider only when the token is about to expire.
#
# Where things live:
# - config: /etc/nix-cache-login/config.toml, also exported as NIX_CACHE_LOGIN_CONFIG;
# - client secret: handed to the unit with LoadCredential, so the file can stay readable by root
#   only and the config names it as ${CREDENTIALS_DIRECTORY}/client-secret;
# - token state: /var/lib/nix-cache-login (StateDirectory, with XDG_STATE_HOME=/var/lib), so
#   it survives reboots and the unit may write nothing else but the netrc's directory (and its
#   cache directory, /var/cache/nix-cache-login).
{
  config,
  lib,
  pkgs,
  ...
}:

let
  common = import ./lib.nix { inherit lib; };
  cfg = config.services.nix-cache-login-server;
  opt = "services.nix-cache-login-server";

  managedSettings = {
    netrc_path = cfg.netrcFile;
    client_secret_file = "\${CREDENTIALS_DIRECTORY}/${common.credentialName}";
  };

  configSource = common.configSource pkgs (cfg // { settings = cfg.settings // managedSettings; });
in
{
  options.services.nix-cache-login-server = {
    enable = common.mkEnable "a service that keeps a service-account token for the Nix binary cache in the Nix daemon's netrc";

    package = common.mkPackage pkgs;

    settings = common.mkSettings {
      inherit pkgs;
      example = common.serverSettingsExample;
      description = ''
        nix-cache-login settings, written as TOML to `${common.etcConfigPath}`. Set `issuer`,
        `client_id` (a confidential client with service accounts enabled) and `cache_host`;
        optionally `scopes`, `cache_url`, `timeout`. The module adds `netrc_path` (from
        `netrcFile`) and `client_secret_file` (the credential passed in from `clientSecretFile`).
      '';
    };

    configFile = common.mkConfigFile {
      where = "`${common.etcConfigPath}`";
      extra = ''
        It must contain `client_secret_file = "''${CREDENTIALS_DIRECTORY}/${common.credentialName}"`
        and a `netrc_path` equal to `netrcFile`.
      '';
    };

    clientSecretFile = common.mkClientSecretFile {
      how = ''
        The unit receives it through systemd's `LoadCredential`, so the file can stay readable by
        root only (and can live where the unit's sandbox cannot otherwise see).
      '';
    };

    netrcFile = common.mkNetrcFile;

    interval = common.mkInterval "2m";

    randomizedDelay = common.mkRandomizedDelay "15s";

    minValid = common.mkMinValid;
  };

  config = lib.mkIf cfg.enable {
    assertions = common.serverAssertions {
      optionPrefix = opt;
      inherit cfg;
    };

    warnings = common.freshnessWarnings {
      optionPrefix = opt;
      inherit (cfg) interval randomizedDelay minValid;
    };

    environment.systemPackages = [ cfg.package ];

    environment.etc."nix-cache-login/config.toml".source = configSource;

    # Lets an administrator's `nix-cache-login status` find the same config.
    environment.sessionVariables.NIX_CACHE_LOGIN_CONFIG = common.etcConfigPath;

    systemd.services.nix-cache-login-server = {
      description = "Fetch a service-account token for the Nix binary cache (nix-cache-login)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ configSource ];

      environment = {
        NIX_CACHE_LOGIN_CONFIG = common.etcConfigPath;
        XDG_STATE_HOME = "/var/lib";
        # Node.js's compile cache (faster starts) goes to /var/cache/nix-cache-login.
        XDG_CACHE_HOME = "/var/cache";
        NODE_EXTRA_CA_CERTS = lib.mkDefault "/etc/ssl/certs/ca-certificates.crt";
      };

      serviceConfig = {
        Type = "oneshot";
        ExecStart = common.serviceAccountCommand cfg;
        LoadCredential = [ "${common.credentialName}:${cfg.clientSecretFile}" ];
        TimeoutStartSec = "2min";
        # A core dump would hold the client secret and tokens.
        LimitCORE = 0;

        StateDirectory = "nix-cache-login";
        StateDirectoryMode = "0700";
        CacheDirectory = "nix-cache-login";
        CacheDirectoryMode = "0700";
        UMask = "0077";

        # Hardening. Runs as root because it writes the daemon's netrc, but with no capabilities
        # and a read-only system apart from the state directory and the netrc's directory.
        ProtectSystem = "strict";
        ReadWritePaths = [ (dirOf cfg.netrcFile) ];
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        NoNewPrivileges = true;
        CapabilityBoundingSet = "";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
          # glibc's getaddrinfo asks the kernel for the configured addresses (AI_ADDRCONFIG).
          "AF_NETLINK"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        SystemCallErrorNumber = "EPERM";
        # No MemoryDenyWriteExecute: V8's JIT needs writable+executable memory.
      };
    };

    systemd.timers.nix-cache-login-server = {
      description = "Renew the service-account token for the Nix binary cache (nix-cache-login)";
      wantedBy = [ "timers.target" ];
      timerConfig = common.timerConfig cfg;
    };
  };
}
