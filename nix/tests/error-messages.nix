# Configurations the modules must refuse, with the text the error must contain: the message a
# user sees has to name the option and the rule. Each case's `value` fails to evaluate;
# nix/ci-check.sh evaluates it and compares the error text with `want`.
#
#   nix-instantiate --eval --strict nix/tests/error-messages.nix --arg lib 'import .../lib' \
#     -A cases.interval-7m.value     # must fail, printing `want`
{ lib }:

let
  stubs = import ./stubs.nix { inherit lib; };

  workstation =
    cfg:
    (lib.evalModules {
      modules = [
        stubs.nixos
        ../modules/nixos-workstation.nix
        { services.nix-cache-login = { enable = true; } // cfg; }
      ];
      specialArgs.pkgs = stubs.pkgs.linux;
    }).config.services.nix-cache-login;

  server =
    cfg:
    (lib.evalModules {
      modules = [
        stubs.nixos
        ../modules/nixos-server.nix
        {
          services.nix-cache-login-server = {
            enable = true;
            clientSecretFile = "/run/secrets/s";
            settings = {
              issuer = "https://sso.example.com/realms/eng";
              client_id = "nix-cache-server";
              cache_host = "cache.example.com";
            };
          }
          // cfg;
        }
      ];
      specialArgs.pkgs = stubs.pkgs.linux;
    }).config.services.nix-cache-login-server;
in
{
  cases = {
    # "7m" matches the duration pattern; the error must say why it is refused.
    interval-7m = {
      value = (workstation { interval = "7m"; }).interval;
      want = "services.nix-cache-login.interval' is not of type `interval: a whole number of seconds (s), minutes (m) or hours (h) that divides a minute, an hour or a day evenly and is at least 30s";
    };
    # "10s" divides a minute evenly: the error must name the lower bound.
    interval-10s = {
      value = (server { interval = "10s"; }).interval;
      want = "services.nix-cache-login-server.interval' is not of type `interval: a whole number of seconds (s), minutes (m) or hours (h) that divides a minute, an hour or a day evenly and is at least 30s";
    };
    min-valid-words = {
      value = (workstation { minValid = "ten minutes"; }).minValid;
      want = "services.nix-cache-login.minValid' is not of type `duration: a whole number followed by s, m or h";
    };
    cache-host-list = {
      value =
        (workstation {
          settings.cache_host = [
            "a.example.com"
            "https://b.example.com"
          ];
        }).settings.cache_host;
      want = "services.nix-cache-login.settings.cache_host.\"[definition 1-entry 2]\"' is not of type `host name without scheme or path (like cache.example.com), port 1-65535'";
    };
    cache-host-url = {
      value = (workstation { settings.cache_host = "https://cache.example.com"; }).settings.cache_host;
      want = "services.nix-cache-login.settings.cache_host' is not of type `null or host name without scheme or path (like cache.example.com), or a non-empty list of them";
    };
    # The pattern allows five digits: the range is the CLI's (src/config/rules.ts).
    cache-host-port-0 = {
      value = (workstation { settings.cache_host = "cache.example.com:0"; }).settings.cache_host;
      want = "services.nix-cache-login.settings.cache_host' is not of type `null or host name without scheme or path (like cache.example.com), or a non-empty list of them";
    };
    cache-host-port-70000 = {
      value = (server { settings.cache_host = [ "cache.example.com:70000" ]; }).settings.cache_host;
      want = "services.nix-cache-login-server.settings.cache_host.\"[definition 1-entry 1]\"' is not of type `host name without scheme or path (like cache.example.com), port 1-65535'";
    };
    issuer-octet-999 = {
      value = (workstation { settings.issuer = "http://127.0.0.999:8080/realms/eng"; }).settings.issuer;
      want = "services.nix-cache-login.settings.issuer' is not of type `null or https URL";
    };
    issuer-port-70000 = {
      value = (workstation { settings.issuer = "https://sso.example.com:70000/realms/eng"; }).settings.issuer;
      want = "services.nix-cache-login.settings.issuer' is not of type `null or https URL";
    };
    issuer-http = {
      value = (workstation { settings.issuer = "http://sso.example.com/realms/eng"; }).settings.issuer;
      want = "services.nix-cache-login.settings.issuer' is not of type `null or https URL";
    };
    token-storage-typo = {
      value = (workstation { settings.token_storage = "keyring"; }).settings.token_storage;
      want = "services.nix-cache-login.settings.token_storage' is not of type `null or one of \"auto\", \"keychain\", \"file\"'";
    };
    server-netrc-file-read-only = {
      value = (server { netrcFile = "/etc/nix/netrc"; }).netrcFile;
      want = "services.nix-cache-login-server.netrcFile' is read-only";
    };
  };
}
