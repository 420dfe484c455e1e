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

  # How a server module's service account proves itself: with a client secret or with a private
  # key (private_key_jwt, Keycloak's "Signed JWT"), named by `option`, written to the config as
  # `key`. `credential` is the name under which the NixOS unit receives the file (LoadCredential=).
  serverCredentials = [
    {
      option = "clientSecretFile";
      key = "client_secret_file";
      credential = "client-secret";
    }
    {
      option = "clientKeyFile";
      key = "client_key_file";
      credential = "client-key";
    }
  ];

  # The one of serverCredentials that is set, with its `path`; null when none or both are set
  # (serverAssertions then fails).
  serverCredential =
    cfg:
    let
      set = lib.filter (c: cfg.${c.option} != null) serverCredentials;
    in
    if lib.length set == 1 then (lib.head set) // { path = cfg.${(lib.head set).option}; } else null;

  # What the config file says about the credential; `path` is where the CLI finds the file.
  serverCredentialSettings =
    cfg: path:
    let
      c = serverCredential cfg;
    in
    lib.optionalAttrs (c != null) { ${c.key} = path c; };

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

  # Every run starts Node.js (tens of milliseconds of CPU and some 40 MB of memory) even when the
  # token is still good, and a shorter interval buys no fresher token: `minValid` decides when a
  # run asks the provider. The options' descriptions say so.
  minIntervalSeconds = 30;

  # addCheck runs the pattern check first, so onCalendar only sees well-formed durations.
  intervalType =
    describedAs
      "interval: a whole number of seconds (s), minutes (m) or hours (h) that divides a minute, an hour or a day evenly and is at least ${toString minIntervalSeconds}s (like 30s, 2m, 15m or 1h; not 10s, 7m or 90s)"
      (
        types.addCheck (types.strMatching durationPattern) (
          s: onCalendar s != null && toSeconds s >= minIntervalSeconds
        )
      );

  # What the CLI accepts (src/config/load.ts), so a typo fails at evaluation, naming the option,
  # instead of in the unit at run time.
  # Ports and the parts of an IPv4 address as the CLI's URL parser (WHATWG) reads them: a port is
  # 0-65535 (an empty one is the default; leading zeros count for nothing), a dotted-decimal part
  # 0-255. A part with a leading zero is octal to that parser (010 is 8, 09 an error): refused
  # here, as a typo. Digits are counted before toIntBase10, which fails outright on long ones.
  inRange =
    lo: hi: digits:
    let
      m = builtins.match "0*([0-9]{1,5})" digits;
      n = lib.toIntBase10 (builtins.head m);
    in
    m != null && n >= lo && n <= hi;
  ipv4Ok =
    host:
    let
      parts = builtins.match "([0-9]+)[.]([0-9]+)[.]([0-9]+)[.]([0-9]+)" host;
    in
    parts == null
    || lib.all (p: builtins.match "0|[1-9][0-9]{0,2}" p != null && inRange 0 255 p) parts;
  urlAuthorityOk =
    url:
    let
      m = builtins.match "[a-z]+://([[][^]]*[]]|[^:/?#]*)(:([0-9]*))?([/?#].*)?" url;
      port = builtins.elemAt m 2;
    in
    m != null && ipv4Ok (builtins.head m) && (port == null || port == "" || inRange 0 65535 port);

  issuerType = describedAs "https URL (http only for localhost, 127.x.x.x or [::1])" (
    types.addCheck (types.strMatching "(https://[^[:space:]/?#@]+(/[^[:space:]?#]*)?|http://(localhost|127\\.[0-9]+\\.[0-9]+\\.[0-9]+|[[]::1[]])(:[0-9]+)?(/[^[:space:]?#]*)?)") urlAuthorityOk
  );

  clientIdType = describedAs "non-empty string without white space" (
    types.strMatching "[^[:space:]]+"
  );

  # One host name (optionally with a port), as the netrc's `machine` and the cache URL use it, or
  # a non-empty list of them (one sign-in, one netrc entry per host), as the CLI accepts.
  cacheHostType =
    let
      # One pattern for the shape and for the port's digits; the port is 1-65535, as the CLI has
      # it (src/config/rules.ts).
      pattern = "([[][0-9a-fA-F:.]+[]]|[A-Za-z0-9.-]+)(:([0-9]{1,5}))?";
      portOk =
        s:
        let
          port = builtins.elemAt (builtins.match pattern s) 2;
        in
        port == null || inRange 1 65535 port;
      host = describedAs "host name without scheme or path (like cache.example.com), port 1-65535" (
        types.addCheck (types.strMatching pattern) portOk
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

  # The values of the config key `token_storage` (src/config/rules.ts, TOKEN_STORAGES).
  tokenStorages = [
    "auto"
    "keychain"
    "file"
  ];

  # With token_storage "auto" or "keychain", the refresh unit keeps the refresh token in the
  # Secret Service, over the user's D-Bus session bus. The CLI finds that bus through
  # DBUS_SESSION_BUS_ADDRESS or, without it, at $XDG_RUNTIME_DIR/bus (src/os/keychain.ts), as
  # libsecret does. A systemd user unit inherits both from its user manager (pam_systemd gives
  # the manager XDG_RUNTIME_DIR=/run/user/UID; the bus's socket unit listens at
  # /run/user/UID/bus and is in sockets.target, which a service's default dependencies order it
  # after). What would take the bus away from the unit, and must not be set on it (the module
  # checks look for each, in the unit as defined and as Home Manager renders it): clearing or
  # overriding those variables, and sandboxing that hides /run/user/UID or unix sockets
  # (ProtectHome= makes /run/user inaccessible; PrivateUsers= gives the unit a user namespace
  # of its own; the others replace or hide parts of the file system, or forbid AF_UNIX).
  sessionBusVariables = [
    "DBUS_SESSION_BUS_ADDRESS"
    "XDG_RUNTIME_DIR"
  ];
  sessionBusBlockers = [
    "UnsetEnvironment"
    "PrivateUsers"
    "ProtectHome"
    "InaccessiblePaths"
    "TemporaryFileSystem"
    "RootDirectory"
    "RootImage"
    "RestrictAddressFamilies"
  ];

  refreshArgs = cfg: [
    "refresh"
    "--min-valid"
    cfg.minValid
  ];

  # For systemd's ExecStart= and nix-darwin's `command` (run by /bin/sh): each word quoted as the
  # shell would need it. systemd's own rules take single quotes the same way; the words here hold
  # no `%` or `$` (a store path, a command name, a duration), which systemd would expand.
  refreshCommand = cfg: lib.escapeShellArgs ([ (exe cfg) ] ++ refreshArgs cfg);

  # The NixOS workstation's user unit and nix-darwin's agent run for every user who logs in, most
  # of whom may never sign in: with no token state at all, `--if-signed-in` exits 3 without a
  # word, instead of logging the same error every interval (nix-darwin's log is not rotated).
  # Home Manager's timer is one user's own choice, and says so when they are not signed in.
  everyUserRefreshCommand =
    cfg: lib.escapeShellArgs ([ (exe cfg) ] ++ refreshArgs cfg ++ [ "--if-signed-in" ]);

  serviceAccountArgs = cfg: [
    "service-account"
    "--min-valid"
    cfg.minValid
  ];

  serviceAccountCommand = cfg: lib.escapeShellArgs ([ (exe cfg) ] ++ serviceAccountArgs cfg);

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

  # The user modules write a config only when `settings` has something in it. The CLI reads the
  # first config file it finds and nothing else (src/config/find.ts), so a file without the
  # required keys would be refused (exit 2) by every run.
  settingsAssertions =
    { optionPrefix, cfg }:
    lib.optionals (cfg.configFile == null && settingsValue cfg.settings != { }) (
      map (k: {
        assertion = cfg.settings.${k} != null;
        message =
          "${optionPrefix}.settings.${k} must be set: the CLI reads only the first config file it"
          + " finds, and the one made from ${optionPrefix}.settings would have no ${k}. (Leave"
          + " settings empty to write the file yourself, or use ${optionPrefix}.configFile.)";
      }) requiredKeys
    );

  # Keys the server modules write themselves into the config, and the option each comes from.
  managedServerKeys = {
    netrc_path = "netrcFile";
  }
  // lib.listToAttrs (map (c: lib.nameValuePair c.key c.option) serverCredentials);

  serverAssertions =
    { optionPrefix, cfg }:
    let
      credentialOptions = map (c: "${optionPrefix}.${c.option}") serverCredentials;
      setCredentials = lib.filter (c: cfg.${c.option} != null) serverCredentials;
      method = cfg.settings.token_endpoint_auth_method or null;
      credential = serverCredential cfg;
    in
    [
      {
        assertion = lib.length setCredentials == 1;
        message =
          "Set exactly one of ${lib.concatStringsSep " and " credentialOptions}"
          + " (the client secret, or the private key for private_key_jwt);"
          + (if setCredentials == [ ] then " neither is set." else " both are set.");
      }
      {
        assertion = lib.hasPrefix "/" cfg.netrcFile;
        message = "${optionPrefix}.netrcFile must be an absolute path.";
      }
    ]
    ++ map (c: {
      assertion = cfg.${c.option} == null || lib.hasPrefix "/" cfg.${c.option};
      message = "${optionPrefix}.${c.option} must be an absolute path (a string, not a Nix path).";
    }) serverCredentials
    ++ map (k: {
      assertion = cfg.configFile != null || cfg.settings.${k} != null;
      message = "${optionPrefix}.settings.${k} must be set (or use ${optionPrefix}.configFile).";
    }) requiredKeys
    # A service account (client credentials) gets no refresh token, so `token_storage` would
    # choose where nothing is kept; the CLI accepts and ignores it. Refused, so that nobody
    # believes a server's secret went into a keychain: the server's only secret is the credential
    # file, which stays where clientSecretFile or clientKeyFile says.
    ++ [
      {
        assertion = !(cfg.settings ? token_storage);
        message =
          "${optionPrefix}.settings.token_storage must not be set: a service account keeps no"
          + " refresh token (the client credentials grant issues none), so there is nothing to store"
          + " in a keychain or a file. Its one secret is the file in"
          + " ${lib.concatMapStringsSep " or " (c: "${optionPrefix}.${c.option}") serverCredentials}.";
      }
    ]
    ++ lib.mapAttrsToList (key: option: {
      assertion = !(cfg.settings ? ${key});
      message = "${optionPrefix}.settings.${key} must not be set: the module writes it from ${optionPrefix}.${option}; set that instead.";
    }) managedServerKeys
    # The CLI refuses a method that does not fit the credential (src/config/rules.ts): say it here,
    # naming the options.
    ++ lib.optionals (credential != null && method != null) [
      {
        assertion = (method == "private_key_jwt") == (credential.option == "clientKeyFile");
        message =
          if method == "private_key_jwt" then
            "${optionPrefix}.settings.token_endpoint_auth_method is private_key_jwt, which signs with a private key: set ${optionPrefix}.clientKeyFile instead of ${optionPrefix}.clientSecretFile."
          else
            "${optionPrefix}.settings.token_endpoint_auth_method is ${builtins.toJSON method}, which sends a client secret, but ${optionPrefix}.clientKeyFile is set: use private_key_jwt (or leave the setting out).";
      }
    ];
}
