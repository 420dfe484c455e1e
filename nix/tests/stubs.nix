# Small stand-ins for the parts of NixOS, Home Manager, nix-darwin and nixpkgs that the modules
# use, so the modules can be evaluated with nothing but nixpkgs' `lib` (nix/ci-check.sh). They
# declare only the options the modules set, with the same names and similar merge rules as the
# real ones: setting anything else fails the evaluation, like a typo would on a real system. The
# flake's checks evaluate the NixOS modules against real NixOS as well.
{ lib }:

let
  inherit (lib) mkOption types;

  opt =
    type: default:
    mkOption {
      inherit type default;
    };

  strList = opt (types.listOf types.str) [ ];

  # A systemd directive: lists from several definitions are joined, single values must agree.
  directive = types.mkOptionType {
    name = "systemdDirective";
    description = "systemd directive value (stub)";
    merge =
      loc: defs:
      if lib.any (d: builtins.isList d.value) defs then
        lib.concatMap (d: lib.toList d.value) defs
      else
        lib.mergeEqualOption loc defs;
  };
  directives = opt (types.attrsOf directive) { };

  commonUnitOptions = {
    description = opt types.str "";
    wantedBy = strList;
    wants = strList;
    after = strList;
    unitConfig = directives;
  };

  nixosService = types.submodule {
    options = commonUnitOptions // {
      environment = opt (types.attrsOf types.str) { };
      serviceConfig = directives;
      restartTriggers = opt (types.listOf types.raw) [ ];
    };
  };

  nixosTimer = types.submodule {
    options = commonUnitOptions // {
      timerConfig = directives;
    };
  };

  etcFile = types.submodule {
    options = {
      source = opt (types.nullOr types.path) null;
      text = opt (types.nullOr types.lines) null;
      # NixOS's environment.etc.<name>.mode (the VM tests' root-only secret and key files).
      mode = opt types.str "symlink";
    };
  };

  # nix.settings: free-form, as in NixOS and nix-darwin.
  nixSettings = opt (types.submodule { freeformType = types.attrsOf types.anything; }) { };

  # What NixOS, Home Manager and nix-darwin all declare: assertions, warnings and each module's
  # maintainers (nixpkgs' misc/meta.nix; here without the check against lib.maintainers).
  checks = {
    assertions = opt (types.listOf (types.attrsOf types.raw)) [ ];
    warnings = strList;
    meta.maintainers = opt (types.listOf types.raw) [ ];
  };

  # Home Manager's unit files: section -> directive -> value.
  hmUnit = types.attrsOf (types.attrsOf directive);

  darwinJob = types.submodule {
    options = {
      command = opt types.str "";
      environment = opt (types.attrsOf types.str) { };
      serviceConfig = opt (types.attrsOf types.anything) { };
    };
  };

  # A stand-in for the nix-cache-login package: enough for lib.getExe and string interpolation.
  package = {
    type = "derivation";
    name = "nix-cache-login-0.1.0";
    pname = "nix-cache-login";
    version = "0.1.0";
    outPath = "/nix/store/00000000000000000000000000000000-nix-cache-login-0.1.0";
    meta.mainProgram = "nix-cache-login";
  };

  mkPkgs =
    hostPlatform:
    {
      nix-cache-login = package;
      stdenv = { inherit hostPlatform; };
      # pkgs.formats.toml stand-in: keeps the value, so checks can compare the TOML content.
      formats.toml = _: {
        type = types.attrsOf types.anything;
        generate = name: value: {
          stubToml = true;
          inherit name value;
          outPath = "/nix/store/00000000000000000000000000000000-${name}";
        };
      };
    };
in
{
  inherit package;

  pkgs = {
    linux = mkPkgs {
      isLinux = true;
      isDarwin = false;
      system = "x86_64-linux";
    };
    darwin = mkPkgs {
      isLinux = false;
      isDarwin = true;
      system = "aarch64-darwin";
    };
  };

  nixos = {
    options = checks // {
      environment = {
        systemPackages = opt (types.listOf types.package) [ ];
        etc = opt (types.attrsOf etcFile) { };
        sessionVariables = opt (types.attrsOf types.str) { };
      };
      nix = {
        enable = opt types.bool true;
        settings = nixSettings;
      };
      systemd = {
        tmpfiles.rules = strList;
        services = opt (types.attrsOf nixosService) { };
        timers = opt (types.attrsOf nixosTimer) { };
        user = {
          services = opt (types.attrsOf nixosService) { };
          timers = opt (types.attrsOf nixosTimer) { };
        };
      };
    };
  };

  # Home Manager and nix-darwin, each in two parts: the unit/job options (which
  # ./real-modules.nix takes from the real projects instead) and everything else.
  homeManagerBase = {
    options = checks // {
      home = {
        packages = opt (types.listOf types.package) [ ];
        homeDirectory = opt types.str "/home/alice";
        # Home Manager's DAG entries: { data; after; before; }.
        activation = opt (types.attrsOf (
          types.submodule {
            options = {
              data = opt types.lines "";
              after = strList;
              before = strList;
            };
          }
        )) { };
      };
      xdg = {
        configHome = opt types.str "/home/alice/.config";
        configFile = opt (types.attrsOf etcFile) { };
      };
    };
  };

  homeManagerUnits = {
    options = {
      systemd.user = {
        services = opt (types.attrsOf hmUnit) { };
        timers = opt (types.attrsOf hmUnit) { };
      };
      launchd.agents = opt (types.attrsOf (
        types.submodule {
          options = {
            enable = opt types.bool false;
            config = opt (types.attrsOf types.anything) { };
          };
        }
      )) { };
    };
  };

  darwinBase = {
    options = checks // {
      environment = {
        systemPackages = opt (types.listOf types.package) [ ];
        etc = opt (types.attrsOf etcFile) { };
        variables = opt (types.attrsOf types.str) { };
      };
      nix = {
        enable = opt types.bool true;
        settings = nixSettings;
      };
      system.activationScripts.postActivation.text = opt types.lines "";
    };
  };

  darwinLaunchd = {
    options.launchd = {
      agents = opt (types.attrsOf darwinJob) { };
      daemons = opt (types.attrsOf darwinJob) { };
    };
  };
}
