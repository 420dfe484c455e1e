# Evaluation checks: what the four modules generate for a given configuration.
#
#   nix-instantiate --eval --strict nix/tests/module-checks.nix \
#     --arg lib 'import /path/to/nixpkgs/lib' -A report
#
# With only `lib`, the modules are evaluated with lib.evalModules against the stand-ins in
# ./stubs.nix (this is what nix/ci-check.sh runs). The flake's `checks.<system>.module-checks`
# passes the real `pkgs` and, on Linux, `evalNixos` (real NixOS): then the NixOS cases run against
# real NixOS, and TOML files are compared after being built (see `tomlFiles`).
#
# Returns { ok; report; results; tomlFiles; cliConfigs; }. `results` holds { name; ok; got; want; };
# `tomlFiles` holds TOML files that could only be checked by building them: { name; file; want;
# mode; }; `cliConfigs` the config values the stand-ins kept, { name; mode; value; }, for the
# CLI's own validation (nix/ci-check.sh).
{
  lib,
  pkgs ? null,
  evalNixos ? null,
}:

let
  stubs = import ./stubs.nix { inherit lib; };
  common = import ../modules/lib.nix { inherit lib; };

  withPlatform =
    base: flags:
    base
    // {
      stdenv = base.stdenv // {
        hostPlatform = base.stdenv.hostPlatform // flags;
      };
    };

  pkgsFor = {
    linux =
      if pkgs == null then
        stubs.pkgs.linux
      else
        withPlatform pkgs {
          isLinux = true;
          isDarwin = false;
        };
    darwin =
      if pkgs == null then
        stubs.pkgs.darwin
      else
        withPlatform pkgs {
          isLinux = false;
          isDarwin = true;
        };
  };

  evalStub =
    stub: platformPkgs: modules:
    (lib.evalModules {
      modules = lib.toList stub ++ modules;
      specialArgs.pkgs = platformPkgs;
    }).config;

  nixosIsReal = evalNixos != null;

  eval = {
    nixos =
      modules:
      if nixosIsReal then evalNixos modules else evalStub stubs.nixos pkgsFor.linux modules;
    homeLinux = evalStub [ stubs.homeManagerBase stubs.homeManagerUnits ] pkgsFor.linux;
    homeDarwin = evalStub [ stubs.homeManagerBase stubs.homeManagerUnits ] pkgsFor.darwin;
    darwin = evalStub [ stubs.darwinBase stubs.darwinLaunchd ] pkgsFor.darwin;
  };

  modules = {
    workstation = ../modules/nixos-workstation.nix;
    server = ../modules/nixos-server.nix;
    home = ../modules/home-manager.nix;
    darwin = ../modules/darwin.nix;
  };

  settings = {
    issuer = "https://sso.example.com/realms/eng";
    client_id = "nix-cache";
    cache_host = "cache.example.com";
    scopes = [
      "openid"
      "nix-cache"
    ];
  };

  serverSettings = {
    issuer = "https://sso.example.com/realms/eng";
    client_id = "nix-cache-server";
    cache_host = "cache.example.com";
    timeout = "20s";
  };

  secret = "/run/secrets/nix-cache-client-secret";

  exeOf = cfg: "${cfg.package}/bin/nix-cache-login";

  inherit (import ./results.nix { inherit lib; }) eq check report passed failures;

  # TOML content: compared directly when the stub generator kept the value, else deferred to a
  # build-time comparison. Either way the CLI must accept the file as a configuration of the
  # right mode (see `cliConfigs`, and `tomlFiles` in ../checks.nix).
  toml =
    name: file: want:
    let
      mode = if want ? client_secret_file || want ? client_key_file then "service-account" else "user";
    in
    if file ? stubToml then
      [ ((eq name file.value want) // { cliConfig = { inherit name mode; inherit (file) value; }; }) ]
    else
      [
        {
          inherit name file want mode;
          deferred = true;
        }
      ];

  ours = lib.filter (w: lib.hasInfix "nix-cache-login" w);
  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  noFailedAssertions = name: config: eq name (ours (failedAssertions config)) [ ];
  assertionFails =
    name: config: needle:
    check name (lib.any (lib.hasInfix needle) (failedAssertions config));
  rejected = name: value: check name (!(builtins.tryEval value).success);

  # The refresh unit keeps the user's D-Bus session bus, which the keychain needs
  # (token_storage; see sessionBusBlockers in ../modules/lib.nix): none of the directives that
  # would take it away, and neither bus variable set or overridden. `directives` is the unit's
  # service section, `environment` what the module sets in the unit's environment.
  keepsSessionBus =
    name: directives: environment:
    eq name {
      blockers = lib.filter (d: directives ? ${d}) common.sessionBusBlockers;
      variables = lib.filter (
        v:
        environment ? ${v}
        || lib.any (e: lib.hasInfix v (toString e)) (lib.toList (directives.Environment or [ ]))
      ) common.sessionBusVariables;
    } {
      blockers = [ ];
      variables = [ ];
    };

  # A launchd agent that runs in the user's GUI login (Aqua) session with its security context,
  # where the login Keychain is unlocked: no session of its own (SessionCreate), no other session
  # type (LimitLoadToSessionType; without it launchd assumes Aqua).
  inGuiLogin =
    name: jobConfig:
    eq name (lib.filter (k: jobConfig ? ${k}) [
      "SessionCreate"
      "LimitLoadToSessionType"
    ]) [ ];

  # token_storage values: those the CLI takes (src/config/rules.ts).
  rulesSource = builtins.readFile ../../src/config/rules.ts;
  tokenStorageSettings = storage: settings // { token_storage = storage; };

  # Helpers ------------------------------------------------------------------------------------

  helperChecks = [
    (eq "lib: 30s -> calendar" (common.onCalendar "30s") "*-*-* *:*:00/30")
    (eq "lib: 2m -> calendar" (common.onCalendar "2m") "*-*-* *:00/2:00")
    (eq "lib: 1m -> calendar" (common.onCalendar "1m") "*-*-* *:00/1:00")
    (eq "lib: 15m -> calendar" (common.onCalendar "15m") "*-*-* *:00/15:00")
    (eq "lib: 1h -> calendar" (common.onCalendar "1h") "*-*-* 00/1:00:00")
    (eq "lib: 6h -> calendar" (common.onCalendar "6h") "*-*-* 00/6:00:00")
    (eq "lib: 7m has no even calendar form" (common.onCalendar "7m") null)
    (eq "lib: 90s has no even calendar form" (common.onCalendar "90s") null)
    (eq "lib: toSeconds 4m" (common.toSeconds "4m") 240)
    (eq "lib: toSeconds 1h" (common.toSeconds "1h") 3600)
    (check "lib: interval type accepts 2m" (common.intervalType.check "2m"))
    (check "lib: interval type rejects 7m" (!common.intervalType.check "7m"))
    (check "lib: interval type accepts 30s, the lower bound" (common.intervalType.check "30s"))
    (check "lib: interval type rejects 10s and 20s (below 30s)" (
      !common.intervalType.check "10s" && !common.intervalType.check "20s"
    ))
    (check "lib: interval error names the lower bound" (
      lib.hasInfix "at least 30s" common.intervalType.description
    ))
    (eq "lib: commands are quoted word by word (lib.escapeShellArgs)" (common.serviceAccountCommand {
      package = stubs.package // { outPath = "/nix/store/x-odd path"; };
      minValid = "4m";
    }) "'/nix/store/x-odd path/bin/nix-cache-login' service-account --min-valid 4m")
    (check "lib: interval type rejects 2 minutes" (!common.intervalType.check "2 minutes"))
    (check "lib: duration type rejects 010m" (!common.durationType.check "010m"))
    # The module system's error for a bad definition is "... is not of type `<description>'":
    # the description must state the rule that rejected the value.
    (check "lib: interval error names the real rule (divides a minute, an hour or a day)" (
      lib.hasInfix "divides a minute, an hour or a day evenly" common.intervalType.description
      && !(lib.hasInfix "pattern" common.intervalType.description)
    ))
    (check "lib: duration error names the rule" (
      lib.hasInfix "whole number followed by s, m or h" common.durationType.description
    ))
    (check "lib: issuer accepts https" (common.issuerType.check "https://sso.example.com/realms/eng"))
    (check "lib: issuer accepts http on loopback" (common.issuerType.check "http://127.0.0.1:8080/realms/test"))
    (check "lib: issuer rejects http elsewhere" (!common.issuerType.check "http://sso.example.com/realms/eng"))
    (check "lib: issuer rejects a query" (!common.issuerType.check "https://sso.example.com/realms/eng?x=1"))
    (check "lib: cache_host accepts a host" (common.cacheHostType.check "cache.example.com"))
    (check "lib: cache_host accepts host:port and [::1]" (
      common.cacheHostType.check "cache.example.com:8443" && common.cacheHostType.check "[::1]:80"
    ))
    (check "lib: cache_host rejects a URL" (!common.cacheHostType.check "https://cache.example.com"))
    (check "lib: cache_host rejects a path" (!common.cacheHostType.check "cache.example.com/nix"))
    (check "lib: cache_host accepts a list of hosts" (
      common.cacheHostType.check [
        "cache.example.com"
        "cache-eu.example.com:8443"
      ]
    ))
    (check "lib: cache_host rejects an empty list" (!common.cacheHostType.check [ ]))
    # The ranges the CLI checks (src/config/rules.ts, and the URL parser for the issuer).
    (check "lib: cache_host takes ports 1-65535 only" (
      common.cacheHostType.check "cache.example.com:65535"
      && common.cacheHostType.check "cache.example.com:1"
      && !common.cacheHostType.check "cache.example.com:0"
      && !common.cacheHostType.check "cache.example.com:70000"
      && common.cacheHostType.check "cache.example.com:08443"
    ))
    (check "lib: issuer takes ports 0-65535 and IPv4 parts 0-255 only" (
      common.issuerType.check "http://127.255.0.1:65535/realms/test"
      && common.issuerType.check "https://sso.example.com:/realms/eng"
      && common.issuerType.check "http://[::1]:8080/realms/test"
      && !common.issuerType.check "http://127.0.0.999/realms/test"
      && !common.issuerType.check "http://127.0.0.1:70000/realms/test"
      && !common.issuerType.check "https://sso.example.com:99999/realms/eng"
      && !common.issuerType.check "https://10.0.0.256/realms/eng"
      && !common.issuerType.check "https://sso.example.com:123456789012345678901234/realms/eng"
      && !common.issuerType.check "http://127.0.0.09/realms/test"
      && common.issuerType.check "http://127.0.0.1:08080/realms/test"
    ))
  ];

  # NixOS workstation ------------------------------------------------------------------------

  # The workstation module, enabled, with `cfg` as more of its options.
  workstation =
    cfg:
    eval.nixos [
      modules.workstation
      { services.nix-cache-login = { enable = true; } // cfg; }
    ];

  ws = workstation {
    inherit settings;
  };
  wsCfg = ws.services.nix-cache-login;
  wsSvc = ws.systemd.user.services.nix-cache-login;
  wsTimer = ws.systemd.user.timers.nix-cache-login;

  wsCustom = workstation {
    interval = "30s";
    randomizedDelay = "5s";
    minValid = "2m";
  };

  # Settings without the required keys: the CLI would refuse the file it makes.
  wsScopes = workstation {
    settings = {
      scopes = [ "openid" ];
      timeout = "10s";
    };
  };

  multiHostSettings = settings // {
    cache_host = [
      "cache.example.com"
      "cache-eu.example.com:8443"
    ];
    cache_url = [ "https://cache-eu.example.com:8443/nix" ];
  };

  wsMultiHost = workstation {
    settings = multiHostSettings;
  };

  wsKeychain = workstation {
    settings = tokenStorageSettings "keychain";
  };

  workstationChecks = [
    (noFailedAssertions "workstation: no failed assertions" ws)
    (assertionFails "workstation: settings without issuer are refused (the CLI would refuse the file)" wsScopes "services.nix-cache-login.settings.issuer must be set: the CLI reads only the first config file it finds")
    (assertionFails "workstation: settings without client_id are refused" wsScopes "services.nix-cache-login.settings.client_id must be set")
    (noFailedAssertions "workstation: empty settings need nothing (no file made)" wsCustom)
    (eq "workstation: no warnings with the defaults" (ours ws.warnings) [ ])
    (check "workstation: package on the system PATH" (lib.elem wsCfg.package ws.environment.systemPackages))
    (eq "workstation: user service ExecStart" wsSvc.serviceConfig.ExecStart "${exeOf wsCfg} refresh --min-valid 4m --if-signed-in")
    (eq "workstation: user service is oneshot" wsSvc.serviceConfig.Type "oneshot")
    (eq "workstation: exit 3 (login required) is not a failure" wsSvc.serviceConfig.SuccessExitStatus "3")
    (eq "workstation: no core dumps (they would hold tokens)" wsSvc.serviceConfig.LimitCORE 0)
    (eq "workstation: start timeout" wsSvc.serviceConfig.TimeoutStartSec "2min")
    (eq "workstation: system CA bundle" wsSvc.environment.NODE_EXTRA_CA_CERTS "/etc/ssl/certs/ca-certificates.crt")
    (eq "workstation: runs only for users who signed in and have a config" wsSvc.unitConfig.ConditionPathExists [
      "%S/nix-cache-login"
      "|%E/nix-cache-login/config.toml"
      "|/etc/nix-cache-login/config.toml"
    ])
    (eq "workstation: timer enabled for every user" wsTimer.wantedBy [ "timers.target" ])
    (eq "workstation: timer every 2 minutes" wsTimer.timerConfig.OnCalendar "*-*-* *:00/2:00")
    (eq "workstation: timer catches up after sleep/shutdown" wsTimer.timerConfig.Persistent true)
    (eq "workstation: timer randomized delay" wsTimer.timerConfig.RandomizedDelaySec "30s")
    (check "workstation: no system service" (!(ws.systemd.services ? nix-cache-login)))
    (check "workstation: the refresh unit is a user unit (the user manager's environment, with the session bus)" (
      ws.systemd.user.services ? nix-cache-login && ws.systemd.user.timers ? nix-cache-login
    ))
    (keepsSessionBus "workstation: the user unit keeps the session bus (no sandboxing that hides /run/user/UID/bus, bus variables left alone)" wsSvc.serviceConfig wsSvc.environment)
    (check "workstation: the session-bus check sees ProtectHome=, PrivateUsers= and an overridden XDG_RUNTIME_DIR" (
      let
        svc =
          (eval.nixos [
            modules.workstation
            {
              services.nix-cache-login.enable = true;
              systemd.user.services.nix-cache-login = {
                serviceConfig.ProtectHome = true;
                environment.XDG_RUNTIME_DIR = "/tmp";
              };
            }
          ]).systemd.user.services.nix-cache-login;
        privateUsers =
          (eval.nixos [
            modules.workstation
            {
              services.nix-cache-login.enable = true;
              systemd.user.services.nix-cache-login.serviceConfig.PrivateUsers = true;
            }
          ]).systemd.user.services.nix-cache-login;
      in
      (keepsSessionBus "" svc.serviceConfig svc.environment).got == {
        blockers = [ "ProtectHome" ];
        variables = [ "XDG_RUNTIME_DIR" ];
      }
      && !(keepsSessionBus "" privateUsers.serviceConfig privateUsers.environment).ok
    ))
    (noFailedAssertions "workstation: settings.token_storage = \"keychain\" is taken" wsKeychain)
    (rejected "workstation: settings.token_storage must be auto, keychain or file" (
      workstation {
        settings = tokenStorageSettings "keyring";
      }
    ).services.nix-cache-login.settings.token_storage)
    (check "lib: token_storage values are the CLI's (src/config/rules.ts)" (
      lib.hasInfix "TOKEN_STORAGES = [${lib.concatMapStringsSep ", " builtins.toJSON common.tokenStorages}] as const;" rulesSource
    ))
    (check "workstation: does not export NIX_CACHE_LOGIN_CONFIG" (
      !(ws.environment.sessionVariables ? NIX_CACHE_LOGIN_CONFIG)
    ))
    (eq "workstation: custom interval" wsCustom.systemd.user.timers.nix-cache-login.timerConfig.OnCalendar "*-*-* *:*:00/30")
    (eq "workstation: custom minValid" wsCustom.systemd.user.services.nix-cache-login.serviceConfig.ExecStart "${exeOf wsCustom.services.nix-cache-login} refresh --min-valid 2m --if-signed-in")
    (check "workstation: no /etc config without settings" (
      !(wsCustom.environment.etc ? "nix-cache-login/config.toml")
    ))
    (check "workstation: warns when minValid <= interval + delay" (
      ours
        (workstation {
          interval = "5m";
        }).warnings != [ ]
    ))
    (rejected "workstation: interval 7m is rejected" (
      workstation {
        interval = "7m";
      }
    ).services.nix-cache-login.interval)
    (check "workstation: settings.cache_host takes a list of hosts, written as a TOML array" (
      let
        cfg =
          (workstation {
            settings = settings // {
              cache_host = [
                "cache.example.com"
                "cache-eu.example.com:8443"
              ];
            };
          }).services.nix-cache-login.settings;
      in
      cfg.cache_host == [
        "cache.example.com"
        "cache-eu.example.com:8443"
      ]
    ))
    # A list's elements are checked when they are used: deepSeq uses them.
    (rejected "workstation: settings.cache_host must not hold a URL in its list" (
      let
        hosts =
          (workstation {
            settings = settings // {
              cache_host = [
                "cache.example.com"
                "https://cache-eu.example.com"
              ];
            };
          }).services.nix-cache-login.settings.cache_host;
      in
      builtins.deepSeq hosts hosts
    ))
    (rejected "workstation: settings.cache_host must not be an empty list" (
      workstation {
        settings = settings // {
          cache_host = [ ];
        };
      }
    ).services.nix-cache-login.settings.cache_host)
    (rejected "workstation: settings.cache_host must not be a URL" (
      workstation {
        settings = settings // {
          cache_host = "https://cache.example.com";
        };
      }
    ).services.nix-cache-login.settings.cache_host)
    (rejected "workstation: settings.issuer must be https" (
      workstation {
        settings = settings // {
          issuer = "http://sso.example.com/realms/eng";
        };
      }
    ).services.nix-cache-login.settings.issuer)
    (rejected "workstation: minValid must be a duration" (
      workstation {
        minValid = "ten minutes";
      }
    ).services.nix-cache-login.minValid)
  ]
  ++ lib.optionals nixosIsReal [
    (check "workstation: leaves the Nix daemon's netrc-file alone" (!(ws.nix.settings ? netrc-file)))
  ]
  ++ toml "workstation: /etc/nix-cache-login/config.toml" ws.environment.etc."nix-cache-login/config.toml".source settings
  # Several cache hosts: cache_host (and cache_url) as TOML arrays.
  ++ toml "workstation: cache_host as a list" wsMultiHost.environment.etc."nix-cache-login/config.toml".source multiHostSettings
  ++ toml "workstation: token_storage = \"keychain\"" wsKeychain.environment.etc."nix-cache-login/config.toml".source (tokenStorageSettings "keychain");

  # NixOS server -----------------------------------------------------------------------------

  # A server module evaluated by `evaluate`, enabled with serverSettings, with `extra` as more of
  # its options, and `other` (a module) beside it.
  serverIn =
    evaluate: module: extra: other:
    evaluate [
      module
      {
        services.nix-cache-login-server = {
          enable = true;
          settings = serverSettings;
        }
        // extra;
      }
      other
    ];
  serverAlong = serverIn eval.nixos modules.server;
  serverWith = extra: serverAlong extra { };

  srv = serverWith { clientSecretFile = secret; };
  srvCfg = srv.services.nix-cache-login-server;
  srvSvc = srv.systemd.services.nix-cache-login-server;
  srvTimer = srv.systemd.timers.nix-cache-login-server;

  srvHourly = serverWith {
    clientSecretFile = secret;
    interval = "1h";
    randomizedDelay = "5m";
    minValid = "2h";
  };

  netrc = "/var/lib/nix-cache-login/netrc";

  key = "/run/secrets/nix-cache-client-key.pem";

  # A server with a private key (private_key_jwt, Keycloak's "Signed JWT") instead of a secret,
  # the method written out as sites do.
  keySettings = serverSettings // {
    token_endpoint_auth_method = "private_key_jwt";
  };
  srvKey = serverAlong { clientKeyFile = key; } { services.nix-cache-login-server.settings = keySettings; };
  srvKeySvc = srvKey.systemd.services.nix-cache-login-server;

  # A ready-made config file, with `credential` (clientSecretFile or clientKeyFile).
  srvConfigFileWith =
    credential:
    eval.nixos [
      modules.server
      {
        services.nix-cache-login-server = {
          enable = true;
          configFile = "/srv/nix-cache-login.toml";
        }
        // credential;
      }
    ];
  srvConfigFile = srvConfigFileWith { clientSecretFile = secret; };

  srvKeyConfigFile = srvConfigFileWith { clientKeyFile = key; };

  bothCredentials = "Set exactly one of services.nix-cache-login-server.clientSecretFile and services.nix-cache-login-server.clientKeyFile";

  serverChecks = [
    (noFailedAssertions "server: no failed assertions" srv)
    (eq "server: no warnings with the defaults" (ours srv.warnings) [ ])
    (check "server: package on the system PATH" (lib.elem srvCfg.package srv.environment.systemPackages))
    (eq "server: ExecStart" srvSvc.serviceConfig.ExecStart "${exeOf srvCfg} service-account --min-valid 4m")
    (eq "server: oneshot" srvSvc.serviceConfig.Type "oneshot")
    (eq "server: runs at boot" srvSvc.wantedBy [ "multi-user.target" ])
    (eq "server: after network-online" srvSvc.after [ "network-online.target" ])
    (eq "server: wants network-online" srvSvc.wants [ "network-online.target" ])
    (eq "server: NIX_CACHE_LOGIN_CONFIG in the unit" srvSvc.environment.NIX_CACHE_LOGIN_CONFIG "/etc/nix-cache-login/config.toml")
    (eq "server: NIX_CACHE_LOGIN_CONFIG system-wide" srv.environment.sessionVariables.NIX_CACHE_LOGIN_CONFIG "/etc/nix-cache-login/config.toml")
    (eq "server: state in /var/lib/nix-cache-login (XDG_STATE_HOME)" srvSvc.environment.XDG_STATE_HOME "/var/lib")
    (eq "server: StateDirectory" srvSvc.serviceConfig.StateDirectory "nix-cache-login")
    (eq "server: StateDirectoryMode" srvSvc.serviceConfig.StateDirectoryMode "0700")
    # Nothing of ours is cached (no compile cache since issue 11): no cache directory to write.
    (check "server: no XDG_CACHE_HOME, no CacheDirectory" (
      !(srvSvc.environment ? XDG_CACHE_HOME) && !(srvSvc.serviceConfig ? CacheDirectory)
    ))
    (eq "server: secret passed with LoadCredential" srvSvc.serviceConfig.LoadCredential [ "client-secret:${secret}" ])
    (eq "server: runs as a dynamic user, not root" srvSvc.serviceConfig.DynamicUser true)
    (check "server: no User= (the dynamic user)" (!(srvSvc.serviceConfig ? User)))
    (check "server: nothing writable outside its own directories (no ReadWritePaths)" (
      !(srvSvc.serviceConfig ? ReadWritePaths)
    ))
    (eq "server: netrc in the state directory" srvCfg.netrcFile netrc)
    (eq "server: the Nix daemon reads that netrc (nix.settings.netrc-file)" srv.nix.settings.netrc-file netrc)
    (eq "server: the netrc exists (empty, 0600, in a 0700 directory) before Nix starts" (lib.filter (
      lib.hasInfix "nix-cache-login"
    ) srv.systemd.tmpfiles.rules) [
      "d /var/lib/private/nix-cache-login 0700 - - -"
      "f /var/lib/private/nix-cache-login/netrc 0600 - - -"
      "L /var/lib/nix-cache-login - - - - private/nix-cache-login"
    ])
    (check "server: /var/lib/private stays 0700 root" (
      lib.elem "d /var/lib/private 0700 root root -" srv.systemd.tmpfiles.rules
    ))
    (rejected "server: netrcFile is read-only" (serverWith {
      clientSecretFile = secret;
      netrcFile = "/etc/nix/netrc";
    }).services.nix-cache-login-server.netrcFile)
    (assertionFails "server: a different nix.settings.netrc-file is refused" (serverAlong {
      clientSecretFile = secret;
    } { nix.settings.netrc-file = "/etc/nix/netrc"; }) "the Nix daemon would not send it")
    (noFailedAssertions "server: nix.enable = false leaves netrc-file to whoever runs Nix" (serverAlong {
      clientSecretFile = secret;
    } {
      nix.enable = false;
      nix.settings.netrc-file = "/nix/var/determinate/netrc";
    }))
    (eq "server: ProtectSystem=strict" srvSvc.serviceConfig.ProtectSystem "strict")
    (eq "server: PrivateTmp" srvSvc.serviceConfig.PrivateTmp true)
    (eq "server: NoNewPrivileges" srvSvc.serviceConfig.NoNewPrivileges true)
    (eq "server: ProtectHome" srvSvc.serviceConfig.ProtectHome true)
    (eq "server: no capabilities" srvSvc.serviceConfig.CapabilityBoundingSet "")
    (eq "server: files it makes are private (UMask)" srvSvc.serviceConfig.UMask "0077")
    (eq "server: no core dumps (they would hold tokens)" srvSvc.serviceConfig.LimitCORE 0)
    (eq "server: start timeout" srvSvc.serviceConfig.TimeoutStartSec "2min")
    (eq "server: exit 3 is not a failure" srvSvc.serviceConfig.SuccessExitStatus "3")
    (eq "server: system CA bundle" srvSvc.environment.NODE_EXTRA_CA_CERTS "/etc/ssl/certs/ca-certificates.crt")
    (check "server: JIT-compatible (no MemoryDenyWriteExecute)" (
      !(srvSvc.serviceConfig.MemoryDenyWriteExecute or false)
    ))
    (eq "server: timer enabled" srvTimer.wantedBy [ "timers.target" ])
    (eq "server: timer every 2 minutes" srvTimer.timerConfig.OnCalendar "*-*-* *:00/2:00")
    (eq "server: timer Persistent" srvTimer.timerConfig.Persistent true)
    (eq "server: timer randomized delay" srvTimer.timerConfig.RandomizedDelaySec "15s")
    (eq "server: hourly timer" srvHourly.systemd.timers.nix-cache-login-server.timerConfig.OnCalendar "*-*-* 00/1:00:00")
    (eq "server: custom minValid" srvHourly.systemd.services.nix-cache-login-server.serviceConfig.ExecStart "${exeOf srvHourly.services.nix-cache-login-server} service-account --min-valid 2h")
    (eq "server: configFile installed as is" srvConfigFile.environment.etc."nix-cache-login/config.toml".source "/srv/nix-cache-login.toml")
    (noFailedAssertions "server: configFile needs no settings" srvConfigFile)
    (assertionFails "server: a secret or a key file is required, both named" (serverWith { }) "${bothCredentials} (the client secret, or the private key for private_key_jwt); neither is set.")
    (assertionFails "server: not both a secret and a key file, both named" (serverWith {
      clientSecretFile = secret;
      clientKeyFile = key;
    }) "${bothCredentials} (the client secret, or the private key for private_key_jwt); both are set.")
    (assertionFails "server: clientSecretFile must be absolute" (serverWith { clientSecretFile = "secret"; }) "services.nix-cache-login-server.clientSecretFile must be an absolute path")
    (assertionFails "server: clientKeyFile must be absolute" (serverWith { clientKeyFile = "key.pem"; }) "services.nix-cache-login-server.clientKeyFile must be an absolute path")
    (noFailedAssertions "server with clientKeyFile and private_key_jwt: no failed assertions" srvKey)
    (eq "server with clientKeyFile: the key passed with LoadCredential" srvKeySvc.serviceConfig.LoadCredential [ "client-key:${key}" ])
    (eq "server with clientKeyFile: same ExecStart" srvKeySvc.serviceConfig.ExecStart "${exeOf srvKey.services.nix-cache-login-server} service-account --min-valid 4m")
    (eq "server with clientKeyFile: still a dynamic user" srvKeySvc.serviceConfig.DynamicUser true)
    (eq "server: configFile with clientKeyFile passes the key" srvKeyConfigFile.systemd.services.nix-cache-login-server.serviceConfig.LoadCredential [ "client-key:${key}" ])
    (assertionFails "server: private_key_jwt with a secret is refused, naming clientKeyFile" (serverAlong {
      clientSecretFile = secret;
    } { services.nix-cache-login-server.settings = keySettings; }) "private_key_jwt, which signs with a private key: set services.nix-cache-login-server.clientKeyFile")
    (assertionFails "server: a secret method with a key file is refused" (serverAlong {
      clientKeyFile = key;
    } { services.nix-cache-login-server.settings.token_endpoint_auth_method = "client_secret_post"; }) "which sends a client secret, but services.nix-cache-login-server.clientKeyFile is set")
    (assertionFails "server: settings.client_id is required, named in full" (serverWith {
      settings.issuer = "https://sso.example.com/realms/eng";
      clientSecretFile = secret;
    }) "services.nix-cache-login-server.settings.client_id must be set")
    (assertionFails "server: settings.token_storage is refused (a service account keeps no refresh token)" (serverWith {
      clientSecretFile = secret;
      settings = serverSettings // { token_storage = "keychain"; };
    }) "services.nix-cache-login-server.settings.token_storage must not be set: a service account keeps no refresh token")
    (assertionFails "server and workstation together are refused" (serverAlong {
      clientSecretFile = secret;
    } {
      imports = [ modules.workstation ];
      services.nix-cache-login.enable = true;
    }) "enable only one")
  ]
  # The managed keys, each set by hand: the assertion names the option to use instead.
  ++ lib.mapAttrsToList
    (
      key: option:
      assertionFails "server: settings.${key} by hand names ${option}" (serverWith {
        clientSecretFile = secret;
        settings = serverSettings // { ${key} = "/tmp/x"; };
      }) "services.nix-cache-login-server.settings.${key} must not be set: the module writes it from services.nix-cache-login-server.${option}; set that instead."
    )
    {
      netrc_path = "netrcFile";
      client_secret_file = "clientSecretFile";
      client_key_file = "clientKeyFile";
    }
  ++ toml "server: /etc/nix-cache-login/config.toml" srv.environment.etc."nix-cache-login/config.toml".source (
    serverSettings
    // {
      netrc_path = netrc;
      client_secret_file = "\${CREDENTIALS_DIRECTORY}/client-secret";
    }
  )
  ++ toml "server with clientKeyFile: /etc/nix-cache-login/config.toml" srvKey.environment.etc."nix-cache-login/config.toml".source (
    keySettings
    // {
      netrc_path = netrc;
      client_key_file = "\${CREDENTIALS_DIRECTORY}/client-key";
    }
  );

  # Home Manager ----------------------------------------------------------------------------

  hmModule = {
    services.nix-cache-login = {
      enable = true;
      inherit settings;
    };
  };
  hmLinux = eval.homeLinux [
    modules.home
    hmModule
  ];
  hmDarwin = eval.homeDarwin [
    modules.home
    hmModule
  ];
  hmWith =
    extra:
    eval.homeLinux [
      modules.home
      {
        services.nix-cache-login = {
          enable = true;
          settings = settings // extra;
        };
      }
    ];
  hmSvc = hmLinux.systemd.user.services.nix-cache-login;
  hmFile = hmWith { token_storage = "file"; };
  hmTimer = hmLinux.systemd.user.timers.nix-cache-login;
  hmAgent = hmDarwin.launchd.agents.nix-cache-login;

  homeChecks = [
    (noFailedAssertions "home-manager: no failed assertions" hmLinux)
    (assertionFails "home-manager: settings without cache_host are refused" (eval.homeLinux [
      modules.home
      {
        services.nix-cache-login = {
          enable = true;
          settings = builtins.removeAttrs settings [ "cache_host" ];
        };
      }
    ]) "services.nix-cache-login.settings.cache_host must be set")
    (check "home-manager: package in home.packages" (
      lib.elem hmLinux.services.nix-cache-login.package hmLinux.home.packages
    ))
    (eq "home-manager (Linux): ExecStart" hmSvc.Service.ExecStart "${exeOf hmLinux.services.nix-cache-login} refresh --min-valid 4m")
    (eq "home-manager (Linux): oneshot" hmSvc.Service.Type "oneshot")
    (eq "home-manager (Linux): exit 3 is not a failure" hmSvc.Service.SuccessExitStatus "3")
    (eq "home-manager (Linux): no core dumps" hmSvc.Service.LimitCORE 0)
    (eq "home-manager (Linux): start timeout" hmSvc.Service.TimeoutStartSec "2min")
    (eq "home-manager (Linux): system CA bundle, as on NixOS" hmSvc.Service.Environment [ "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt" ])
    (eq "home-manager: creates the default netrc when missing, after writeBoundary" hmLinux.home.activation.nix-cache-login-netrc.after [ "writeBoundary" ])
    (check "home-manager: the netrc it creates is the CLI's default, 0600" (
      lib.hasInfix "nixCacheLoginNetrc=${lib.escapeShellArg "/home/alice/.config/nix/netrc"}" hmLinux.home.activation.nix-cache-login-netrc.data
      && lib.hasInfix "run install -m 0600 /dev/null" hmLinux.home.activation.nix-cache-login-netrc.data
      && lib.hasInfix "run mkdir -p -m 0700" hmLinux.home.activation.nix-cache-login-netrc.data
    ))
    (check "home-manager: netrc_path with ~ is expanded" (
      lib.hasInfix "nixCacheLoginNetrc=${lib.escapeShellArg "/home/alice/secrets/netrc"}" (hmWith { netrc_path = "~/secrets/netrc"; }).home.activation.nix-cache-login-netrc.data
    ))
    (check "home-manager: netrc_path with other variables: nothing created" (
      !((hmWith { netrc_path = "$NETRC_DIR/netrc"; }).home.activation ? nix-cache-login-netrc)
    ))
    (eq "home-manager (Linux): conditions" hmSvc.Unit.ConditionPathExists [
      "%S/nix-cache-login"
      "|/home/alice/.config/nix-cache-login/config.toml"
      "|/etc/nix-cache-login/config.toml"
    ])
    (eq "home-manager (Linux): timer calendar" hmTimer.Timer.OnCalendar "*-*-* *:00/2:00")
    (eq "home-manager (Linux): timer Persistent" hmTimer.Timer.Persistent true)
    (eq "home-manager (Linux): timer randomized delay" hmTimer.Timer.RandomizedDelaySec "30s")
    (eq "home-manager (Linux): timer installed" hmTimer.Install.WantedBy [ "timers.target" ])
    (eq "home-manager (Linux): no launchd agent" (hmLinux.launchd.agents ? nix-cache-login) false)
    (eq "home-manager (macOS): agent enabled" hmAgent.enable true)
    (eq "home-manager (macOS): agent command" hmAgent.config.ProgramArguments [
      (exeOf hmDarwin.services.nix-cache-login)
      "refresh"
      "--min-valid"
      "4m"
    ])
    (eq "home-manager (macOS): every 120 s" hmAgent.config.StartInterval 120)
    (eq "home-manager (macOS): at login" hmAgent.config.RunAtLoad true)
    (eq "home-manager (macOS): log file" [
      hmAgent.config.StandardOutPath
      hmAgent.config.StandardErrorPath
    ] [ "/home/alice/Library/Logs/nix-cache-login.log" "/home/alice/Library/Logs/nix-cache-login.log" ])
    (eq "home-manager (macOS): no core dumps" hmAgent.config.SoftResourceLimits.Core 0)
    (eq "home-manager (macOS): agent trusts the system CA bundle, as nix-darwin's" hmAgent.config.EnvironmentVariables.NODE_EXTRA_CA_CERTS "/etc/ssl/certs/ca-certificates.crt")
    (eq "home-manager (macOS): no systemd units" (hmDarwin.systemd.user.services ? nix-cache-login) false)
    (keepsSessionBus "home-manager (Linux): the user unit keeps the session bus (no sandboxing that hides /run/user/UID/bus, bus variables left alone)" hmSvc.Service { })
    (inGuiLogin "home-manager (macOS): the agent runs in the GUI login session (no SessionCreate, no LimitLoadToSessionType)" hmAgent.config)
    (noFailedAssertions "home-manager: settings.token_storage = \"file\" is taken" hmFile)
  ]
  ++ toml "home-manager: ~/.config/nix-cache-login/config.toml" hmLinux.xdg.configFile."nix-cache-login/config.toml".source settings
  ++ toml "home-manager: token_storage = \"file\"" hmFile.xdg.configFile."nix-cache-login/config.toml".source (tokenStorageSettings "file");

  # nix-darwin ------------------------------------------------------------------------------

  dw = eval.darwin [
    modules.darwin
    {
      services.nix-cache-login = {
        enable = true;
        inherit settings;
        interval = "5m";
        minValid = "10m";
      };
    }
  ];
  dwAgent = dw.launchd.agents.nix-cache-login;

  dwAuto = eval.darwin [
    modules.darwin
    {
      services.nix-cache-login = {
        enable = true;
        settings = tokenStorageSettings "auto";
      };
    }
  ];

  darwinServerAlong = serverIn eval.darwin modules.darwin;

  dwServer = darwinServerAlong { clientSecretFile = secret; } { };
  dwDaemon = dwServer.launchd.daemons.nix-cache-login-server;

  dwServerKey = darwinServerAlong { clientKeyFile = key; } {
    services.nix-cache-login-server.settings = keySettings;
  };

  dwServerNetrc = darwinServerAlong {
    clientSecretFile = secret;
    netrcFile = "/var/db/nix-cache-login/netrc";
  } { };

  darwinChecks = [
    (noFailedAssertions "darwin: no failed assertions" dw)
    (assertionFails "darwin: agent settings without issuer are refused" (eval.darwin [
      modules.darwin
      {
        services.nix-cache-login = {
          enable = true;
          settings.cache_host = "cache.example.com";
        };
      }
    ]) "services.nix-cache-login.settings.issuer must be set")
    (eq "darwin: no warnings" (ours dw.warnings) [ ])
    (check "darwin: package on the system PATH" (
      lib.elem dw.services.nix-cache-login.package dw.environment.systemPackages
    ))
    (eq "darwin: agent command, logging to ~/Library/Logs as Home Manager's agent" dwAgent.command "${exeOf dw.services.nix-cache-login} refresh --min-valid 10m --if-signed-in >> \"$HOME/Library/Logs/nix-cache-login.log\" 2>&1")
    (eq "darwin: agent trusts the system CA bundle, as on NixOS" dwAgent.environment.NODE_EXTRA_CA_CERTS "/etc/ssl/certs/ca-certificates.crt")
    (eq "darwin: agent dumps no core" [
      dwAgent.serviceConfig.SoftResourceLimits.Core
      dwAgent.serviceConfig.HardResourceLimits.Core
    ] [ 0 0 ])
    (eq "darwin: agent every 300 s" dwAgent.serviceConfig.StartInterval 300)
    (eq "darwin: agent at login" dwAgent.serviceConfig.RunAtLoad true)
    (check "darwin: no daemon without the server" (!(dw.launchd.daemons ? nix-cache-login-server)))
    (check "darwin: the refresh job is a per-user agent, not a daemon" (
      dw.launchd.agents ? nix-cache-login && !(dw.launchd.daemons ? nix-cache-login)
    ))
    (inGuiLogin "darwin: the agent runs in the GUI login session (no SessionCreate, no LimitLoadToSessionType)" dwAgent.serviceConfig)
    (noFailedAssertions "darwin: settings.token_storage = \"auto\" is taken" dwAuto)
    (assertionFails "darwin server: settings.token_storage is refused (a service account keeps no refresh token)" (darwinServerAlong {
      clientSecretFile = secret;
    } { services.nix-cache-login-server.settings.token_storage = "file"; }) "services.nix-cache-login-server.settings.token_storage must not be set")
    (noFailedAssertions "darwin server: no failed assertions" dwServer)
    (eq "darwin server: daemon command" dwDaemon.command "${exeOf dwServer.services.nix-cache-login-server} service-account --min-valid 4m")
    (eq "darwin server: NIX_CACHE_LOGIN_CONFIG in the daemon" dwDaemon.environment.NIX_CACHE_LOGIN_CONFIG "/etc/nix-cache-login/config.toml")
    (eq "darwin server: NIX_CACHE_LOGIN_CONFIG system-wide" dwServer.environment.variables.NIX_CACHE_LOGIN_CONFIG "/etc/nix-cache-login/config.toml")
    (eq "darwin server: state under /var/db" dwDaemon.environment.XDG_STATE_HOME "/var/db")
    (eq "darwin server: every 120 s" dwDaemon.serviceConfig.StartInterval 120)
    (eq "darwin server: at boot" dwDaemon.serviceConfig.RunAtLoad true)
    (eq "darwin server: trusts the system CA bundle, as on NixOS" dwDaemon.environment.NODE_EXTRA_CA_CERTS "/etc/ssl/certs/ca-certificates.crt")
    (eq "darwin server: dumps no core" [
      dwDaemon.serviceConfig.SoftResourceLimits.Core
      dwDaemon.serviceConfig.HardResourceLimits.Core
    ] [ 0 0 ])
    (eq "darwin server: log file" [
      dwDaemon.serviceConfig.StandardOutPath
      dwDaemon.serviceConfig.StandardErrorPath
    ] [ "/var/log/nix-cache-login-server.log" "/var/log/nix-cache-login-server.log" ])
    (eq "darwin server: log rotated by newsyslog" dwServer.environment.etc."newsyslog.d/nix-cache-login-server.conf".text "/var/log/nix-cache-login-server.log\troot:wheel\t600\t5\t1024\t*\tNJ\n")
    (check "darwin server: creates the netrc (0600) at activation when missing" (
      lib.hasInfix "if [ ! -e ${lib.escapeShellArg "/etc/nix/netrc"} ] && [ ! -L ${lib.escapeShellArg "/etc/nix/netrc"} ]; then" dwServer.system.activationScripts.postActivation.text
      && lib.hasInfix "(umask 077 && : > ${lib.escapeShellArg "/etc/nix/netrc"})" dwServer.system.activationScripts.postActivation.text
    ))
    (check "darwin server: leaves nix.settings.netrc-file alone for /etc/nix/netrc" (
      !(dwServer.nix.settings ? netrc-file)
    ))
    (eq "darwin server: another netrcFile is set as nix.settings.netrc-file" dwServerNetrc.nix.settings.netrc-file "/var/db/nix-cache-login/netrc")
    (noFailedAssertions "darwin server: another netrcFile needs nothing else" dwServerNetrc)
    (assertionFails "darwin server: a netrc-file the daemon would not read is refused" (darwinServerAlong {
      clientSecretFile = secret;
    } { nix.settings.netrc-file = "/etc/nix/other-netrc"; }) "the Nix daemon would not send it")
    (noFailedAssertions "darwin server: nix.enable = false (e.g. Determinate Nix) does not touch nix.settings" (darwinServerAlong {
      clientSecretFile = secret;
      netrcFile = "/var/db/nix-cache-login/netrc";
    } { nix.enable = false; }))
    (assertionFails "darwin: agent and daemon together are refused" (darwinServerAlong {
      clientSecretFile = secret;
    } { services.nix-cache-login.enable = true; }) "enable only one")
    (assertionFails "darwin server: a secret or a key file is required, both named" (darwinServerAlong { } { }) "Set exactly one of services.nix-cache-login-server.clientSecretFile and services.nix-cache-login-server.clientKeyFile")
    (assertionFails "darwin server: not both a secret and a key file" (darwinServerAlong {
      clientSecretFile = secret;
      clientKeyFile = key;
    } { }) "both are set")
    (assertionFails "darwin server: settings.client_key_file by hand names clientKeyFile" (darwinServerAlong {
      clientKeyFile = key;
    } { services.nix-cache-login-server.settings.client_key_file = key; }) "the module writes it from services.nix-cache-login-server.clientKeyFile")
    (noFailedAssertions "darwin server with clientKeyFile and private_key_jwt: no failed assertions" dwServerKey)
    (eq "darwin server with clientKeyFile: same daemon command (it reads the key as root)" dwServerKey.launchd.daemons.nix-cache-login-server.command "${exeOf dwServerKey.services.nix-cache-login-server} service-account --min-valid 4m")
  ]
  ++ toml "darwin: /etc/nix-cache-login/config.toml" dw.environment.etc."nix-cache-login/config.toml".source settings
  ++ toml "darwin: token_storage = \"auto\"" dwAuto.environment.etc."nix-cache-login/config.toml".source (tokenStorageSettings "auto")
  ++ toml "darwin server: /etc/nix-cache-login/config.toml" dwServer.environment.etc."nix-cache-login/config.toml".source (
    serverSettings
    // {
      netrc_path = "/etc/nix/netrc";
      client_secret_file = secret;
    }
  )
  ++ toml "darwin server with clientKeyFile: /etc/nix-cache-login/config.toml" dwServerKey.environment.etc."nix-cache-login/config.toml".source (
    keySettings
    // {
      netrc_path = "/etc/nix/netrc";
      client_key_file = key;
    }
  )
  ++ toml "darwin server with another netrcFile: /etc/nix-cache-login/config.toml" dwServerNetrc.environment.etc."nix-cache-login/config.toml".source (
    serverSettings
    // {
      netrc_path = "/var/db/nix-cache-login/netrc";
      client_secret_file = secret;
    }
  );

  # Each module file states its maintainers (none yet). Read from the module itself: NixOS merges
  # meta.maintainers of all modules into one set by file, where an empty list leaves no trace.
  maintainerChecks = lib.mapAttrsToList (
    name: file:
    eq "${name}: meta.maintainers is declared (empty until there is a maintainer)" (
      (import file {
        config = { };
        inherit lib;
        pkgs = { };
      }).meta.maintainers or null
    ) [ ]
  ) modules;

  all =
    helperChecks ++ workstationChecks ++ serverChecks ++ homeChecks ++ darwinChecks ++ maintainerChecks;
  deferred = lib.filter (r: r.deferred or false) all;
  results = lib.filter (r: !(r.deferred or false)) all;
in
{
  inherit results;
  ok = failures results == [ ];
  tomlFiles = map (r: { inherit (r) name file want mode; }) deferred;
  # Every TOML value the checks made with the stand-in generator, with the mode the CLI must read
  # it as: nix/ci-check.sh writes each as TOML and runs the built CLI's validation on it.
  cliConfigs = map (r: r.cliConfig) (lib.filter (r: r ? cliConfig) results);
  report = report results [
    (
      if nixosIsReal then
        "NixOS cases evaluated against real NixOS"
      else
        "NixOS, Home Manager and nix-darwin cases evaluated against the stand-ins in nix/tests/stubs.nix"
    )
    (
      passed results
      + lib.optionalString (deferred != [ ]) (
        ", ${toString (lib.length deferred)} TOML files left to compare after building"
      )
    )
  ];
}
