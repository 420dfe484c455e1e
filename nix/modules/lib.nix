# Shared pieces of the NixOS, Home Manager and nix-darwin modules: option declarations (so the
# four modules spell and document their options the same way), duration handling and the
# commands the units run. A plain function of `lib`, not a module, so the modules stay plain
# module functions that need no flake inputs.
{ lib }:

let
  inherit (lib) mkOption types literalExpression;

  # Durations are written the way the CLI takes them (`--min-valid 4m`): a whole number followed
  # by s, m or h. systemd reads the same spelling as a time span.
  durationPattern = "(0|[1-9][0-9]*)(s|m|h)";
  unitSeconds = {
    s = 1;
    m = 60;
    h = 3600;
  };

  mod = a: b: a - (a / b) * b;
in
rec {
  etcConfigPath = "/etc/nix-cache-login/config.toml";

  # The name under which the server unit receives the client secret (LoadCredential).
  credentialName = "client-secret";

  toSeconds =
    duration:
    let
      m = builtins.match durationPattern duration;
    in
    if m == null then
      throw "nix-cache-login: `${duration}` is not a duration like 30s, 4m or 1h"
    else
      lib.toInt (builtins.elemAt m 0) * unitSeconds.${builtins.elemAt m 1};

  # A systemd calendar expression that fires every `interval`. Calendar timers (unlike monotonic
  # ones) can be Persistent=true, so a run missed while the machine was off or asleep happens
  # right after it wakes up. Only intervals that divide a minute, an hour or a day evenly have
  # an exact calendar form; null for the others (the option type rejects them).
  onCalendar =
    interval:
    let
      n = toSeconds interval;
    in
    if n > 0 && n < 60 && mod 60 n == 0 then
      "*-*-* *:*:00/${toString n}"
    else if n >= 60 && n < 3600 && mod n 60 == 0 && mod 60 (n / 60) == 0 then
      "*-*-* *:00/${toString (n / 60)}:00"
    else if n >= 3600 && n <= 86400 && mod n 3600 == 0 && mod 24 (n / 3600) == 0 then
      "*-*-* 00/${toString (n / 3600)}:00:00"
    else
      null;

  durationType = types.strMatching durationPattern;

  # addCheck runs the pattern check first, so onCalendar only sees well-formed durations.
  intervalType = types.addCheck durationType (s: onCalendar s != null);

  # Two runs are at most interval + randomizedDelay (+ the 1 s timer accuracy) apart. When that
  # reaches minValid, the access token can expire between two runs. randomizedDelay is null where
  # the module has no such option (launchd).
  freshnessWarnings =
    {
      optionPrefix,
      interval,
      randomizedDelay ? null,
      minValid,
    }:
    let
      delay = if randomizedDelay == null then 0 else toSeconds randomizedDelay;
      gap =
        "${optionPrefix}.interval (${interval})"
        + lib.optionalString (
          randomizedDelay != null
        ) " plus ${optionPrefix}.randomizedDelay (${randomizedDelay})";
    in
    lib.optional (toSeconds interval + delay + 1 >= toSeconds minValid) (
      "${optionPrefix}.minValid (${minValid}) is not longer than ${gap}: the access token can"
      + " expire between two runs. Raise minValid or shorten the interval."
    );

  exe = cfg: lib.getExe cfg.package;

  refreshArgs = cfg: [
    "refresh"
    "--min-valid"
    cfg.minValid
  ];

  refreshCommand = cfg: lib.concatStringsSep " " ([ (exe cfg) ] ++ refreshArgs cfg);

  serviceAccountCommand = cfg: "${exe cfg} service-account --min-valid ${cfg.minValid}";

  # The config file a module installs: configFile as given, else settings rendered to TOML,
  # else nothing (the CLI then finds the user's own file).
  configSource =
    pkgs: cfg:
    if cfg.configFile != null then
      cfg.configFile
    else if cfg.settings == { } then
      null
    else
      (pkgs.formats.toml { }).generate "nix-cache-login-config.toml" cfg.settings;

  timerConfig = cfg: {
    OnCalendar = onCalendar cfg.interval;
    Persistent = true;
    RandomizedDelaySec = cfg.randomizedDelay;
    AccuracySec = "1s";
  };

  # Options, in the order the modules declare them.

  mkEnable = what: lib.mkEnableOption what;

  mkPackage =
    pkgs:
    mkOption {
      type = types.package;
      default = pkgs.nix-cache-login or (pkgs.callPackage ../package.nix { });
      defaultText = lib.literalMD "`pkgs.nix-cache-login` when the overlay is applied, else the package built from this repository";
      description = "The nix-cache-login package to install and run.";
    };

  mkSettings =
    {
      pkgs,
      description,
      example,
    }:
    mkOption {
      type = (pkgs.formats.toml { }).type;
      default = { };
      inherit description example;
    };

  mkConfigFile =
    {
      where,
      extra ? "",
    }:
    mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "./nix-cache-login.toml";
      description = ''
        A ready-made nix-cache-login config file, installed as ${where} instead of one generated
        from `settings` (which is then ignored). ${extra}
      '';
    };

  mkInterval =
    default:
    mkOption {
      type = intervalType;
      inherit default;
      example = "5m";
      description = ''
        How often the token is renewed: a whole number of seconds (`s`), minutes (`m`) or hours
        (`h`) that divides a minute, an hour or a day evenly (for example `30s`, `2m`, `15m`,
        `1h`). Keep it well inside the access token's lifetime (Keycloak's default is 5 minutes).
      '';
    };

  mkRandomizedDelay =
    default:
    mkOption {
      type = durationType;
      inherit default;
      example = "1m";
      description = ''
        Random delay added to every run (systemd's `RandomizedDelaySec`), so that many machines
        do not ask the identity provider at the same second. Used by systemd timers only;
        launchd has no equivalent.
      '';
    };

  mkMinValid = mkOption {
    type = durationType;
    default = "4m";
    example = "10m";
    description = ''
      Passed as `--min-valid` (to `refresh`, or to `service-account` on servers): a run makes no
      network request while the current access token stays valid at least this long. Keep it
      shorter than the access token's lifetime, and longer than `interval` plus the randomized
      delay so the token never runs out between two runs.
    '';
  };

  mkClientSecretFile =
    { how }:
    mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/nix-cache-login-client-secret";
      description = ''
        Path of a file holding the service account's client secret (trailing whitespace is
        ignored). Give it as a string so the secret never enters the world-readable Nix store.
        ${how}
      '';
    };

  mkNetrcFile = mkOption {
    type = types.str;
    default = "/etc/nix/netrc";
    example = "/var/lib/nix-netrc/netrc";
    description = ''
      The netrc file the service writes the token into (`netrc_path` in the generated config).
      The default is the Nix daemon's default `netrc-file`, so the daemon uses the token without
      further configuration. When you change it, point the daemon's `netrc-file` setting at the
      same file.
    '';
  };

  settingsExample = {
    issuer = "https://sso.example.com/realms/engineering";
    client_id = "nix-cache";
    cache_host = "cache.example.com";
  };

  serverSettingsExample = {
    issuer = "https://sso.example.com/realms/engineering";
    client_id = "nix-cache-server";
    cache_host = "cache.example.com";
    timeout = "30s";
  };

  # Keys the server modules write themselves into the config.
  managedServerKeys = [
    "netrc_path"
    "client_secret_file"
  ];

  serverAssertions =
    { optionPrefix, cfg }:
    [
      {
        assertion = cfg.clientSecretFile != null && lib.hasPrefix "/" cfg.clientSecretFile;
        message = "${optionPrefix}.clientSecretFile must be set to an absolute path (a string, not a Nix path).";
      }
      {
        assertion = lib.hasPrefix "/" cfg.netrcFile;
        message = "${optionPrefix}.netrcFile must be an absolute path.";
      }
      {
        assertion = cfg.configFile != null || lib.all (k: cfg.settings ? ${k}) requiredKeys;
        message =
          "${optionPrefix}.settings must set "
          + lib.concatStringsSep ", " requiredKeys
          + " (or use ${optionPrefix}.configFile).";
      }
      {
        assertion = !(lib.any (k: cfg.settings ? ${k}) managedServerKeys);
        message =
          "${optionPrefix}.settings must not set "
          + lib.concatStringsSep " or " managedServerKeys
          + ": the module writes them from ${optionPrefix}.netrcFile and ${optionPrefix}.clientSecretFile.";
      }
    ];

  requiredKeys = [
    "issuer"
    "client_id"
    "cache_host"
  ];
}
