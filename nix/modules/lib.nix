# Shared helpers of the NixOS, Home Manager and nix-darwin modules: option types, duration
# handling, the generated config and the commands and unit settings they all use. The option
# declarations themselves are in ./options.nix. A plain function of `lib`, so the modules stay
# plain module functions that need no flake inputs.
{ lib }:

let
  inherit (lib) types;

  # Durations are written the way the CLI takes them (`--min-valid 4m`): a whole number followed
  # by s, m or h. systemd reads the same spelling as a time span.
  durationPattern = "(0|[1-9][0-9]*)(s|m|h)";
  unitSeconds = {
    s = 1;
    m = 60;
    h = 3600;
  };

  mod = a: b: a - (a / b) * b;

  # A type with a description that says what is accepted: the module system's error for a bad
  # definition is "... is not of type `<description>'".
  describedAs =
    description: type:
    type
    // {
      inherit description;
      descriptionClass = "noun";
    };
in
rec {
  etcConfigPath = "/etc/nix-cache-login/config.toml";

  # The name under which the NixOS server unit receives the client secret (LoadCredential).
  credentialName = "client-secret";

  # The NixOS server unit's state directory (StateDirectory=, owned by its dynamic user). The
  # token's netrc lives in it too, since the unit can write nowhere else.
  serverStateDirectory = "/var/lib/nix-cache-login";

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

  durationType = describedAs "duration: a whole number followed by s, m or h (like 30s, 4m or 1h)" (
    types.strMatching durationPattern
  );

  # addCheck runs the pattern check first, so onCalendar only sees well-formed durations.
  intervalType =
    describedAs
      "interval: a whole number of seconds (s), minutes (m) or hours (h) that divides a minute, an hour or a day evenly (like 30s, 2m, 15m or 1h; not 7m or 90s)"
      (types.addCheck (types.strMatching durationPattern) (s: onCalendar s != null));

  # What the CLI accepts (src/config/load.ts), so a typo fails at evaluation, naming the option,
  # instead of in the unit at run time.
  issuerType = describedAs "https URL (http only for localhost, 127.x.x.x or [::1])" (
    types.strMatching "(https://[^[:space:]/?#@]+(/[^[:space:]?#]*)?|http://(localhost|127\\.[0-9]+\\.[0-9]+\\.[0-9]+|[[]::1[]])(:[0-9]+)?(/[^[:space:]?#]*)?)"
  );

  clientIdType = describedAs "non-empty string without white space" (
    types.strMatching "[^[:space:]]+"
  );

  # One host name (optionally with a port), as the netrc's `machine` and the cache URL use it, or
  # a non-empty list of them (one sign-in, one netrc entry per host), as the CLI accepts.
  cacheHostType =
    let
      host = describedAs "host name without scheme or path (like cache.example.com)" (
        types.strMatching "([[][0-9a-fA-F:.]+[]]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?"
      );
    in
    describedAs
      "host name without scheme or path (like cache.example.com), or a non-empty list of them"
      (types.either host (types.nonEmptyListOf host));

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

  serviceAccountArgs = cfg: [
    "service-account"
    "--min-valid"
    cfg.minValid
  ];

  serviceAccountCommand = cfg: lib.concatStringsSep " " ([ (exe cfg) ] ++ serviceAccountArgs cfg);

  # settings without the typed keys left unset (TOML has no null).
  settingsValue = settings: lib.filterAttrs (_: v: v != null) settings;

  # The config file a module installs: configFile as given, else settings rendered to TOML,
  # else nothing (the CLI then finds the user's own file).
  configSource =
    pkgs: cfg: extra:
    let
      value = settingsValue cfg.settings;
    in
    if cfg.configFile != null then
      cfg.configFile
    else if value == { } then
      null
    else
      (pkgs.formats.toml { }).generate "nix-cache-login-config.toml" (value // extra);

  timerConfig = cfg: {
    OnCalendar = onCalendar cfg.interval;
    Persistent = true;
    RandomizedDelaySec = cfg.randomizedDelay;
    AccuracySec = "1s";
  };

  # What every systemd service of the modules has (NixOS system and user units, Home Manager).
  systemdServiceConfig = {
    Type = "oneshot";
    # Exit 3 means "sign in again" (session expired or logged out): nothing the unit can fix, so
    # it must not show up as a failed unit. `nix-cache-login status` says what to do.
    SuccessExitStatus = "3";
    # A core dump would hold the tokens.
    LimitCORE = 0;
    # The CLI gives up on a slow provider after its `timeout` (30 s by default); this stops a run
    # that hangs anyway, so the next timer run can start.
    TimeoutStartSec = "2min";
  };

  # The same for launchd jobs (launchd has no start timeout; the CLI's `timeout` applies).
  launchdResourceLimits = {
    SoftResourceLimits.Core = 0;
    HardResourceLimits.Core = 0;
  };

  # Node.js ships its own CA list; this adds the system's, so a private CA added to the system
  # bundle (security.pki on NixOS and nix-darwin) is trusted too.
  caBundle = "/etc/ssl/certs/ca-certificates.crt";

  # newsyslog(8) rotation for a launchd job's log (macOS has no journal): keep 5 files of at
  # most 1 MiB, bzip2-compressed, and do not signal any process (N).
  newsyslogLine =
    {
      path,
      owner ? null,
      mode ? "600",
      flags ? "NJ",
    }:
    "${path}\t${lib.optionalString (owner != null) "${owner}\t"}${mode}\t5\t1024\t*\t${flags}";

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

  requiredKeys = [
    "issuer"
    "client_id"
    "cache_host"
  ];

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
    ]
    ++ map (k: {
      assertion = cfg.configFile != null || cfg.settings.${k} != null;
      message = "${optionPrefix}.settings.${k} must be set (or use ${optionPrefix}.configFile).";
    }) requiredKeys
    ++ [
      {
        assertion = !(lib.any (k: cfg.settings ? ${k}) managedServerKeys);
        message =
          "${optionPrefix}.settings must not set "
          + lib.concatStringsSep " or " managedServerKeys
          + ": the module writes them from ${optionPrefix}.netrcFile and ${optionPrefix}.clientSecretFile.";
      }
    ];
}
