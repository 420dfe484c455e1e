# The Home Manager and nix-darwin modules evaluated inside those projects' own unit and job code,
# from checkouts of them, instead of the stand-ins: Home Manager's systemd.nix (its unit types,
# and the unit files it renders) and launchd (its launchd.plist option types), and nix-darwin's
# launchd module (its option types and the plists it renders). Everything else those modules
# touch (files, activation, nix.settings) stays a stand-in from ./stubs.nix, and pkgs is the
# stand-in too: nixpkgs itself is not needed.
#
#   nix-instantiate --eval --strict nix/tests/real-modules.nix -A report \
#     --arg lib 'import /path/to/nixpkgs.lib/lib' \
#     --arg homeManager /path/to/home-manager --arg nixDarwin /path/to/nix-darwin
#
# Returns { ok; report; results; cliConfigs; } (cliConfigs as in ./module-checks.nix: the config
# values these modules generated, for the CLI's own validation).
{
  lib,
  homeManager,
  nixDarwin,
}:

let
  stubs = import ./stubs.nix { inherit lib; };

  # Home Manager's modules use lib.hm (dag, assertions, ...).
  hmLib = import (homeManager + "/modules/lib/stdlib-extended.nix") lib;

  # A stand-in for the pkgs functions the real modules call. writeTextFile's path carries the
  # text after a `#`, so a check can read the unit file Home Manager rendered.
  textMarker = "#nix-cache-login-text#";
  fakeFile = name: text: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}${textMarker}${text}${textMarker}";
  };
  textOf =
    path:
    let
      parts = lib.splitString textMarker (toString path);
    in
    if lib.length parts == 3 then lib.elemAt parts 1 else throw "no stand-in text in ${toString path}";

  pkgsFor =
    platform:
    stubs.pkgs.${platform}
    // {
      formats = stubs.pkgs.${platform}.formats // {
        ini = _: { type = lib.types.attrsOf lib.types.anything; };
      };
      writeTextFile = { name, text, ... }: fakeFile name text;
      writeText = fakeFile;
      writeScriptBin = fakeFile;
      writeScript = fakeFile;
      runCommand = name: _: _: fakeFile name "";
      symlinkJoin = { name, ... }: fakeFile name "";
      emptyDirectory = fakeFile "empty" "";
      systemd = fakeFile "systemd" "";
      sd-switch = fakeFile "sd-switch" "" // {
        meta.mainProgram = "sd-switch";
      };
    };

  inherit (lib) mkOption types;
  opt =
    type: default:
    mkOption {
      inherit type default;
    };

  # Options the real Home Manager and nix-darwin modules set that are outside what they declare.
  hmExtras = {
    options = {
      xdg.dataFile = opt (types.attrsOf types.raw) { };
      home.extraBuilderCommands = opt types.lines "";
      home.sessionVariables = opt (types.attrsOf types.raw) { };
    };
  };

  darwinExtras = {
    options = {
      system.requiresPrimaryUser = opt (types.listOf types.str) [ ];
      environment.launchAgents = opt (types.attrsOf (types.submodule { options.text = opt types.str ""; })) { };
      environment.launchDaemons = opt (types.attrsOf (types.submodule { options.text = opt types.str ""; })) { };
      environment.userLaunchAgents = opt (types.attrsOf (types.submodule { options.text = opt types.str ""; })) { };
    };
  };

  evalHome =
    platform: modules:
    (hmLib.evalModules {
      modules = [
        stubs.homeManagerBase
        hmExtras
        (homeManager + "/modules/systemd.nix")
        (homeManager + "/modules/launchd/default.nix")
      ]
      ++ modules;
      specialArgs.pkgs = pkgsFor platform;
    }).config;

  evalDarwin =
    modules:
    (lib.evalModules {
      modules = [
        stubs.darwinBase
        darwinExtras
        (nixDarwin + "/modules/launchd/default.nix")
      ]
      ++ modules;
      specialArgs.pkgs = pkgsFor "darwin";
    }).config;

  settings = {
    issuer = "https://sso.example.com/realms/eng";
    client_id = "nix-cache";
    cache_host = "cache.example.com";
  };
  serverSettings = settings // {
    client_id = "nix-cache-server";
  };
  # The user modules with the keychain asked for (a server refuses token_storage).
  userSettings = settings // {
    token_storage = "keychain";
  };

  hmModule = {
    services.nix-cache-login = {
      enable = true;
      settings = userSettings;
    };
  };

  hmLinux = evalHome "linux" [
    ../modules/home-manager.nix
    hmModule
  ];
  hmDarwin = evalHome "darwin" [
    ../modules/home-manager.nix
    hmModule
  ];

  serviceText = textOf hmLinux.xdg.configFile."systemd/user/nix-cache-login.service".source;
  timerText = textOf hmLinux.xdg.configFile."systemd/user/nix-cache-login.timer".source;
  hasLine = text: line: lib.elem line (lib.splitString "\n" text);
  common = import ../modules/lib.nix { inherit lib; };
  # Lines of the rendered unit that would take the session bus away (../modules/lib.nix,
  # sessionBusBlockers and sessionBusVariables).
  busTakers =
    text:
    lib.filter (
      line:
      lib.any (d: lib.hasPrefix "${d}=" line) common.sessionBusBlockers
      || (lib.hasPrefix "Environment=" line && lib.any (v: lib.hasInfix v line) common.sessionBusVariables)
    ) (lib.splitString "\n" text);
  # Keys that would move a launchd agent out of the GUI login's security session.
  sessionKeys = plist: lib.filter (k: lib.hasInfix "<key>${k}</key>" plist) [
    "SessionCreate"
    "LimitLoadToSessionType"
  ];

  # What Home Manager's launchd module writes: its toPlist of the agent's config, nulls left out
  # as launchd.nix's own types do.
  hmAgent = hmDarwin.launchd.agents.nix-cache-login;
  hmPlist = lib.generators.toPlist { escape = true; } (
    lib.filterAttrsRecursive (_: v: v != null) hmAgent.config
  );

  dw = evalDarwin [
    ../modules/darwin.nix
    {
      services.nix-cache-login = {
        enable = true;
        settings = userSettings;
      };
    }
  ];
  dwServer = evalDarwin [
    ../modules/darwin.nix
    {
      services.nix-cache-login-server = {
        enable = true;
        settings = serverSettings;
        clientSecretFile = "/var/root/nix-cache-client-secret";
      };
    }
  ];
  agentPlist = dw.environment.launchAgents."org.nixos.nix-cache-login.plist".text;
  daemonPlist = dwServer.environment.launchDaemons."org.nixos.nix-cache-login-server.plist".text;
  # toPlist writes `<key>K</key>` and the value on the next line.
  plistHas =
    plist: key: value:
    lib.hasInfix "<key>${key}</key>\n${value}" (
      builtins.replaceStrings [ "\t" ] [ "" ] (lib.concatMapStringsSep "\n" lib.trim (lib.splitString "\n" plist))
    );

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  ours = lib.filter (lib.hasInfix "nix-cache-login");
  inherit (import ./results.nix { inherit lib; }) eq check report passed failures;

  coreLimits =
    plist:
    plistHas plist "HardResourceLimits" "<dict>\n<key>Core</key>\n<integer>0</integer>"
    && plistHas plist "SoftResourceLimits" "<dict>\n<key>Core</key>\n<integer>0</integer>";

  results = [
    (eq "real home-manager (Linux): no failed assertions" (ours (failedAssertions hmLinux)) [ ])
    (check "real home-manager (Linux): unit file renders ExecStart" (
      hasLine serviceText "ExecStart=${stubs.package}/bin/nix-cache-login refresh --min-valid 4m"
    ))
    (check "real home-manager (Linux): LimitCORE=0, TimeoutStartSec, SuccessExitStatus=3" (
      hasLine serviceText "LimitCORE=0"
      && hasLine serviceText "TimeoutStartSec=2min"
      && hasLine serviceText "SuccessExitStatus=3"
    ))
    (check "real home-manager (Linux): one ConditionPathExists line per condition" (
      hasLine serviceText "ConditionPathExists=%S/nix-cache-login"
      && hasLine serviceText "ConditionPathExists=|/home/alice/.config/nix-cache-login/config.toml"
      && hasLine serviceText "ConditionPathExists=|/etc/nix-cache-login/config.toml"
    ))
    (check "real home-manager (Linux): unit file trusts the system CA bundle" (
      hasLine serviceText "Environment=NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt"
    ))
    (check "real home-manager (Linux): timer file" (
      hasLine timerText "OnCalendar=*-*-* *:00/2:00" && hasLine timerText "Persistent=true"
    ))
    (check "real home-manager (Linux): timer enabled (timers.target.wants)" (
      hmLinux.xdg.configFile ? "systemd/user/timers.target.wants/nix-cache-login.timer"
    ))
    (eq "real home-manager (Linux): the user unit file keeps the session bus (no sandboxing that hides it, no bus variable set)" (busTakers serviceText) [ ])
    (check "real home-manager (Linux): the session-bus check reads the unit file's lines" (
      busTakers "[Service]\nProtectHome=true\nEnvironment=\"DBUS_SESSION_BUS_ADDRESS=\"\nExecStart=x" == [
        "ProtectHome=true"
        "Environment=\"DBUS_SESSION_BUS_ADDRESS=\""
      ]
    ))
    (eq "real home-manager (macOS): no failed assertions" (ours (failedAssertions hmDarwin)) [ ])
    (check "real home-manager (macOS): agent passes launchd.nix's types, core limit 0" (
      coreLimits hmPlist
    ))
    (check "real home-manager (macOS): agent log file" (
      plistHas hmPlist "StandardErrorPath" "<string>/home/alice/Library/Logs/nix-cache-login.log</string>"
    ))
    (check "real home-manager (macOS): agent plist has NODE_EXTRA_CA_CERTS" (
      plistHas hmPlist "NODE_EXTRA_CA_CERTS" "<string>/etc/ssl/certs/ca-certificates.crt</string>"
    ))
    (check "real home-manager (macOS): agent interval" (
      plistHas hmPlist "StartInterval" "<integer>120</integer>"
    ))
    (eq "real home-manager (macOS): the agent plist keeps the GUI login session (no SessionCreate, no LimitLoadToSessionType)" (sessionKeys hmPlist) [ ])
    (eq "real nix-darwin: no failed assertions" (ours (failedAssertions dw)) [ ])
    (check "real nix-darwin: agent plist runs refresh through /bin/sh, logging to ~/Library/Logs" (
      lib.hasInfix "exec ${stubs.package}/bin/nix-cache-login refresh --min-valid 4m --if-signed-in &gt;&gt; &quot;$HOME/Library/Logs/nix-cache-login.log&quot; 2&gt;&amp;1" agentPlist
    ))
    (check "real nix-darwin: agent plist has NODE_EXTRA_CA_CERTS" (
      plistHas agentPlist "NODE_EXTRA_CA_CERTS" "<string>/etc/ssl/certs/ca-certificates.crt</string>"
    ))
    (check "real nix-darwin: agent plist core limit 0" (coreLimits agentPlist))
    (eq "real nix-darwin: the agent plist keeps the GUI login session (no SessionCreate, no LimitLoadToSessionType)" (sessionKeys agentPlist) [ ])
    (check "real nix-darwin: the refresh job is a LaunchAgent (per user), not a LaunchDaemon" (
      dw.environment.launchAgents ? "org.nixos.nix-cache-login.plist"
      && !(dw.environment.launchDaemons ? "org.nixos.nix-cache-login.plist")
    ))
    (eq "real nix-darwin server: no failed assertions" (ours (failedAssertions dwServer)) [ ])
    (check "real nix-darwin server: daemon plist log paths" (
      plistHas daemonPlist "StandardErrorPath" "<string>/var/log/nix-cache-login-server.log</string>"
      && plistHas daemonPlist "StandardOutPath" "<string>/var/log/nix-cache-login-server.log</string>"
    ))
    (check "real nix-darwin server: daemon plist environment" (
      plistHas daemonPlist "NODE_EXTRA_CA_CERTS" "<string>/etc/ssl/certs/ca-certificates.crt</string>"
      && plistHas daemonPlist "XDG_STATE_HOME" "<string>/var/db</string>"
    ))
    (check "real nix-darwin server: daemon plist umask and core limit" (
      plistHas daemonPlist "Umask" "<integer>63</integer>" && coreLimits daemonPlist
    ))
  ];

in
{
  inherit results;
  cliConfigs = [
    {
      name = "real home-manager: ~/.config/nix-cache-login/config.toml";
      mode = "user";
      inherit (hmLinux.xdg.configFile."nix-cache-login/config.toml".source) value;
    }
    {
      name = "real nix-darwin: /etc/nix-cache-login/config.toml";
      mode = "user";
      inherit (dw.environment.etc."nix-cache-login/config.toml".source) value;
    }
    {
      name = "real nix-darwin server: /etc/nix-cache-login/config.toml";
      mode = "service-account";
      inherit (dwServer.environment.etc."nix-cache-login/config.toml".source) value;
    }
  ];
  ok = failures results == [ ];
  report = report results [
    "evaluated with Home Manager's systemd and launchd modules (${toString homeManager}) and nix-darwin's launchd module (${toString nixDarwin})"
    (passed results)
  ];
}
