# The options of all four modules, declared once: each module imports this with the option path
# and the few things that differ (defaults, where the config goes, whether it is a server).
{
  # The option path, e.g. [ "services" "nix-cache-login" ].
  path,
  # What `enable` turns on (mkEnableOption text).
  what,
  # Where the generated config file goes (for the descriptions), e.g. "`/etc/...`".
  configWhere,
  # Extra text for `settings` and `configFile`.
  settingsText ? "",
  configFileText ? "",
  # Default of `randomizedDelay`; null where the scheduler has none (launchd).
  randomizedDelay ? null,
  # Server modules: { netrcFile = { default; readOnly; description; }; credentialText; }, where
  # credentialText says how the unit or daemon gets to the secret or key file.
  server ? null,
  # User modules: what `settings.token_storage` means for this module's timer or agent.
  tokenStorageText ? "",
}:
{ lib, pkgs, ... }:

let
  inherit (lib) mkOption types literalExpression;
  common = import ./lib.nix { inherit lib; };
  isServer = server != null;

  typedSetting =
    type: example: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit example description;
    };

  settingsType = types.submodule {
    # Any other key of the config file (scopes, cache_url, timeout, ...) as TOML.
    freeformType = (pkgs.formats.toml { }).type;
    options = {
      issuer =
        typedSetting common.issuerType "https://sso.example.com/realms/engineering"
          "The OpenID provider's issuer URL (for Keycloak, the realm's URL).${lib.optionalString isServer " Required."}";
      client_id =
        typedSetting common.clientIdType (if isServer then "nix-cache-server" else "nix-cache")
          (
            if isServer then
              "The confidential client (with service accounts enabled) to authenticate as. Required."
            else
              "The public client to sign in with."
          );
      cache_host =
        typedSetting common.cacheHostType "cache.example.com"
          "The binary cache's host name (the `machine` of the netrc entry), or a list of host names: one sign-in writes the same token into an entry for each.${lib.optionalString isServer " Required."}";
    }
    # A service account keeps no refresh token: the server modules refuse the key
    # (common.serverAssertions) instead of declaring it.
    // lib.optionalAttrs (!isServer) {
      token_storage = typedSetting (types.enum common.tokenStorages) "keychain" ''
        Where a sign-in keeps its refresh token, the long-lived secret of the session. `"auto"`
        (what the CLI does when this is unset): in the OS keychain (the Secret Service on Linux,
        through libsecret's `secret-tool`, which the package brings; the login Keychain on macOS)
        when one answers, otherwise in the token state file, saying where it went and why (on
        stderr, and in `nix-cache-login status`). `"keychain"`: the keychain; without a session
        bus a run fails (exit 1) before it asks the provider, and a token the keychain does not
        take is kept in the state file with a warning. `"file"`: the token state file (0600, in a
        0700 directory under `$XDG_STATE_HOME`).
        ${tokenStorageText}
      '';
    };
  };
in
{
  _file = ./options.nix;

  options = lib.setAttrByPath path (
    {
      enable = lib.mkEnableOption what;

      package = lib.mkPackageOption { nix-cache-login = pkgs.nix-cache-login or (pkgs.callPackage ../package.nix { }); } "nix-cache-login" {
        extraDescription = "Without the flake's overlay, `pkgs` has no nix-cache-login and the default is the package built from this repository with your `pkgs`.";
      };

      settings = mkOption {
        type = settingsType;
        default = { };
        example = if isServer then common.serverSettingsExample else common.settingsExample;
        description = ''
          nix-cache-login settings, written as TOML to ${configWhere}. `issuer`, `client_id` and
          `cache_host` are checked here; other keys (`scopes`, `cache_url`, `timeout`, ...) are
          passed on as they are. ${settingsText}
        '';
      };

      configFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = literalExpression "./nix-cache-login.toml";
        description = ''
          A ready-made nix-cache-login config file, installed as ${configWhere} instead of one
          generated from `settings` (which is then ignored). ${configFileText}
        '';
      };

      interval = mkOption {
        type = common.intervalType;
        default = "2m";
        example = "5m";
        description = ''
          How often the token is renewed: a whole number of seconds (`s`), minutes (`m`) or hours
          (`h`) that divides a minute, an hour or a day evenly (for example `30s`, `2m`, `15m`,
          `1h`). Keep it well inside the access token's lifetime (Keycloak's default is 5 minutes).
          At least `${toString common.minIntervalSeconds}s`: every run starts Node.js (tens of
          milliseconds of CPU and some 40 MB of memory) even when the token is still good, and
          running more often makes the token no fresher, since `minValid` decides when a run asks
          the identity provider.
        '';
      };

      minValid = mkOption {
        type = common.durationType;
        default = "4m";
        example = "10m";
        description = ''
          Passed as `--min-valid` (to `refresh`, or to `service-account` on servers): a run makes
          no network request while the current access token stays valid at least this long. Keep
          it shorter than the access token's lifetime, and longer than `interval` plus the
          randomized delay so the token never runs out between two runs.
        '';
      };
    }
    // lib.optionalAttrs (randomizedDelay != null) {
      randomizedDelay = mkOption {
        type = common.durationType;
        default = randomizedDelay;
        example = "1m";
        description = ''
          Random delay added to every run (systemd's `RandomizedDelaySec`), so that many machines
          do not ask the identity provider at the same second. Used by systemd timers only;
          launchd has no equivalent.
        '';
      };
    }
    // lib.optionalAttrs isServer {
      clientSecretFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/nix-cache-login-client-secret";
        description = ''
          Path of a file holding the service account's client secret (trailing whitespace is
          ignored), written to the config as `client_secret_file`. Set this or `clientKeyFile`,
          not both. Give it as a string so the secret never enters the world-readable Nix store.
          ${server.credentialText}
        '';
      };

      clientKeyFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/etc/nix-cache-login/client-key.pem";
        description = ''
          Instead of a client secret: path of a file holding the service account's private key
          (PEM, or a JWK whose `kid` is sent), for `private_key_jwt` (Keycloak's "Signed JWT"
          client authenticator; the provider keeps only the public half). Written to the config
          as `client_key_file`, which implies `token_endpoint_auth_method = "private_key_jwt"`.
          Set this or `clientSecretFile`, not both. Give it as a string so the key never enters
          the world-readable Nix store. ${server.credentialText}
        '';
      };

      netrcFile = mkOption (
        {
          type = types.str;
        }
        // server.netrcFile
      );
    }
  );
}
