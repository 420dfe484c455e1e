# NixOS VM test for the server module: at boot and then on its timer, `service-account` writes
# the token into /etc/nix/netrc, and `nix copy --from` the protected cache succeeds with it.
# Run: nix build .#checks.x86_64-linux.vm-server
{ pkgs, lib, ... }:

let
  t = import ./common.nix { inherit pkgs lib; };
  secretFile = "/etc/nix-cache-login/client-secret";
in
{
  name = "nix-cache-login-server";

  nodes = {
    keycloak = t.keycloakNode;
    cache = t.cacheNode;

    client = {
      imports = [
        ../../modules/nixos-server.nix
        t.trustTestCa
      ];
      nix.settings.experimental-features = [ "nix-command" ];

      # Readable by root only; the unit gets it through LoadCredential.
      environment.etc."nix-cache-login/client-secret" = {
        text = t.serverClientSecret;
        mode = "0400";
      };

      services.nix-cache-login-server = {
        enable = true;
        settings = {
          inherit (t) issuer;
          client_id = "nix-cache-server";
          cache_host = "cache";
          cache_url = "http://cache";
        };
        clientSecretFile = secretFile;
        # The realm's access tokens live 60 s: renew when less than 40 s are left.
        interval = "20s";
        randomizedDelay = "0s";
        minValid = "40s";
      };
    };
  };

  testScript = ''
    ${t.startKeycloakAndCache}

    # The client boots once Keycloak is up, so the boot-time run can succeed.
    client.start()
    client.wait_for_unit("multi-user.target")

    with subtest("the boot-time run wrote the daemon's netrc"):
        client.succeed("systemctl show -p Result --value nix-cache-login-server.service | grep -qx success")
        client.succeed("grep -q '^machine cache ' /etc/nix/netrc")
        client.succeed("test $(stat -c %a /etc/nix/netrc) = 600")
        client.succeed("test $(stat -c %a /var/lib/nix-cache-login) = 700")
        client.succeed("test $(stat -c %a ${secretFile}) = 400")
        client.succeed("grep -qF 'CREDENTIALS_DIRECTORY' /etc/nix-cache-login/config.toml")
        client.fail("grep -qF '${t.serverClientSecret}' /etc/nix-cache-login/config.toml /etc/nix/netrc")
        client.succeed("systemctl is-active nix-cache-login-server.timer")
        client.log(client.succeed("systemd-analyze security nix-cache-login-server.service | tail -n 1"))

    with subtest("the cache accepts the token and nothing else"):
        client.succeed("test $(curl -s -o /dev/null -w '%{http_code}' http://cache/nix-cache-info) = 401")
        client.succeed("curl -sSf --netrc-file /etc/nix/netrc http://cache/nix-cache-info")

    with subtest("nix copy --from the protected cache"):
        client.fail(f"test -e {store_path}")
        client.succeed(f"nix copy --from http://cache --no-check-sigs {store_path}")
        client.succeed(f"grep -q '^payload-' {store_path}")

    with subtest("the timer renews the token"):
        before = client.succeed("sha256sum /etc/nix/netrc").strip()
        client.wait_until_succeeds(f"test \"$(sha256sum /etc/nix/netrc)\" != '{before}'", timeout=120)
        client.succeed("systemctl show -p Result --value nix-cache-login-server.service | grep -qx success")
        client.succeed("curl -sSf --netrc-file /etc/nix/netrc http://cache/nix-cache-info")
  '';
}
