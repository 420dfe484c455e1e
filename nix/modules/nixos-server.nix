# NixOS server: a hardened system service that runs `nix-cache-login service-account` (client
# credentials) at boot and on a timer, and keeps the token in a netrc that the Nix daemon reads.
# With `--min-valid`, a run asks the identity provider only when the token is about to expire.
#
# Where things live:
# - config: /etc/nix-cache-login/config.toml, also exported as NIX_CACHE_LOGIN_CONFIG;
# - the client secret (clientSecretFile) or the private key for private_key_jwt (clientKeyFile):
#   handed to the unit with LoadCredential=: systemd reads it as root when the unit starts, so the
#   file can stay readable by root only; the config names it as
#   ${CREDENTIALS_DIRECTORY}/client-secret or ${CREDENTIALS_DIRECTORY}/client-key;
# - the unit runs as a dynamic user (DynamicUser=) under ProtectSystem=strict, so it can write
#   only its state directory, /var/lib/nix-cache-login (XDG_STATE_HOME=/var/lib; token state, the
#   lock and the token's netrc, which nix.settings.netrc-file names), and its own private /tmp
#   and /var/tmp (PrivateTmp=, emptied when it stops). It has no cache directory (no
#   CacheDirectory=): nothing of the CLI's is cached;
# - a tmpfiles rule creates that netrc (empty, 0600, in its 0700 directory) at boot, before the
#   Nix daemon starts: Lix fails every download when `netrc-file` names a missing file, and
#   Determinate Nix refuses to start when a file in additionalNetrcSources is missing.
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

  stateName = baseNameOf common.serverStateDirectory;
  # systemd keeps a dynamic user's state directory in /var/lib/private and links it from
  # /var/lib; the tmpfiles rules below make the same layout before the unit first runs.
  privateStateDirectory = "/var/lib/private/${stateName}";

  credential = common.serverCredential cfg;

  configSource = common.configSource pkgs cfg (
    {
      netrc_path = cfg.netrcFile;
    }
    // common.serverCredentialSettings cfg (c: "\${CREDENTIALS_DIRECTORY}/${c.credential}")
  );
in
{
  imports = [
    (import ./options.nix {
      path = [
        "services"
        "nix-cache-login-server"
      ];
      what = "a service that keeps a service-account token for the Nix binary cache in a netrc the Nix daemon reads";
      configWhere = "`${common.etcConfigPath}`";
      settingsText = ''
        The module adds `netrc_path` (`netrcFile`), and `client_secret_file` or `client_key_file`
        (the credential passed in from `clientSecretFile` or `clientKeyFile`); setting those
        keys here is an error. `token_endpoint_auth_method` passes through as written.
        `token_storage` is refused too: a service account keeps no refresh token, so there is
        nothing for it to place.
      '';
      configFileText = ''
        It must contain `client_secret_file = "''${CREDENTIALS_DIRECTORY}/client-secret"` (with
        `clientSecretFile`) or `client_key_file = "''${CREDENTIALS_DIRECTORY}/client-key"` (with
        `clientKeyFile`), and `netrc_path = "${common.serverStateDirectory}/netrc"`.
      '';
      randomizedDelay = "15s";
      server = {
        credentialText = ''
          The unit receives it through systemd's `LoadCredential` (systemd reads it as root when
          the unit starts), so the file can stay readable by root only (and can live where the
          unit's sandbox cannot otherwise see).
        '';
        netrcFile = {
          default = "${common.serverStateDirectory}/netrc";
          readOnly = true;
          description = ''
            The netrc the service writes the token into, in the unit's state directory (the only
            place its dynamic user can write). The module sets `nix.settings.netrc-file` to it,
            and creates it empty at boot. With Determinate Nix, list it in
            `additionalNetrcSources` instead.
          '';
        };
      };
    })
  ];

  meta.maintainers = [ ];

  config = lib.mkIf cfg.enable {
    assertions = common.serverAssertions {
      optionPrefix = opt;
      inherit cfg;
    }
    ++ [
      {
        # With nix.enable = false, NixOS does not manage nix.conf and nix.settings means nothing.
        assertion = !config.nix.enable || (config.nix.settings.netrc-file or null) == cfg.netrcFile;
        message =
          "nix.settings.netrc-file is ${builtins.toJSON (config.nix.settings.netrc-file or null)}, but"
          + " ${opt} writes the token to ${cfg.netrcFile}: the Nix daemon would not send it."
          + " Remove the other nix.settings.netrc-file definition. (With Determinate Nix, which"
          + " owns netrc-file, list ${cfg.netrcFile} in additionalNetrcSources instead.)";
      }
    ];

    warnings = common.freshnessWarnings {
      optionPrefix = opt;
      inherit (cfg) interval randomizedDelay minValid;
    };

    environment.systemPackages = [ cfg.package ];

    environment.etc."nix-cache-login/config.toml".source = configSource;

    # Lets an administrator's `nix-cache-login` (doctor, a dry run) find the same config; the
    # token's files belong to the unit's dynamic user, so `status` tells to read the unit's log.
    environment.sessionVariables.NIX_CACHE_LOGIN_CONFIG = common.etcConfigPath;

    # The Nix daemon reads the netrc again for every download, so a renewed token is used at once.
    nix.settings.netrc-file = lib.mkDefault cfg.netrcFile;

    # The netrc must exist before Nix starts. Existing entries are left as they are (`-` keeps the
    # owner: systemd hands the directory to the dynamic user when the unit starts).
    systemd.tmpfiles.rules = [
      "d /var/lib/private 0700 root root -"
      "d ${privateStateDirectory} 0700 - - -"
      "f ${privateStateDirectory}/netrc 0600 - - -"
      "L ${common.serverStateDirectory} - - - - private/${stateName}"
    ];

    systemd.services.nix-cache-login-server = {
      description = "Fetch a service-account token for the Nix binary cache (nix-cache-login)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ configSource ];

      environment = {
        NIX_CACHE_LOGIN_CONFIG = common.etcConfigPath;
        XDG_STATE_HOME = "/var/lib";
        NODE_EXTRA_CA_CERTS = lib.mkDefault common.caBundle;
      };

      serviceConfig = common.systemdServiceConfig // {
        ExecStart = common.serviceAccountCommand cfg;
        LoadCredential = lib.optional (credential != null) "${credential.credential}:${credential.path}";

        # Least privilege: a user that exists only while the unit runs, and may write nothing but
        # its state directory (with the netrc). DynamicUser= implies ProtectSystem=strict,
        # ProtectHome=read-only, PrivateTmp=, RemoveIPC= and NoNewPrivileges=; the stricter ones are
        # set explicitly below.
        DynamicUser = true;
        StateDirectory = stateName;
        StateDirectoryMode = "0700";
        UMask = "0077";

        ProtectSystem = "strict";
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
