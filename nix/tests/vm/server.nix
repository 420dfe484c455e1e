# NixOS VM test for the server module: at boot and then on its timer, `service-account` (as a
# dynamic user) writes the token into the netrc in its state directory, and the Nix daemon, whose
# netrc-file the module points there, substitutes from the protected cache with it.
# Run: nix build .#checks.x86_64-linux.vm-server
{ pkgs, lib, ... }:

let
  t = import ./common.nix { inherit pkgs lib; };
  secretFile = "/etc/nix-cache-login/client-secret";
  netrc = "/var/lib/nix-cache-login/netrc";
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
      nix.settings = {
        experimental-features = [ "nix-command" ];
        # The daemon substitutes from the protected cache. The test cache is unsigned; the
        # point here is the netrc, not signatures.
        substituters = lib.mkForce [ "http://cache" ];
        require-sigs = false;
        # A 401 is not remembered as "not in this cache", but be sure of it.
        narinfo-cache-negative-ttl = 0;
      };

      # An unprivileged user: its `nix-store -r` goes through the daemon, and it cannot read
      # the token itself.
      users.users.bob.isNormalUser = true;

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

    with subtest("the boot-time run wrote the daemon's netrc, as its dynamic user"):
        client.succeed("systemctl show -p Result --value nix-cache-login-server.service | grep -qx success")
        client.succeed("grep -qE '^machine cache( |$)' ${netrc}")
        client.succeed("test $(stat -L -c %a ${netrc}) = 600")
        client.succeed("test $(stat -L -c %a /var/lib/private/nix-cache-login) = 700")
        client.succeed("test $(stat -c %a /var/lib/private) = 700")
        # Not root: the file belongs to the unit's dynamic user.
        client.succeed("test $(stat -L -c %u ${netrc}) != 0")
        client.succeed("systemctl show -p DynamicUser --value nix-cache-login-server.service | grep -qx yes")
        client.succeed("test $(stat -c %a ${secretFile}) = 400")
        client.succeed("grep -qF 'CREDENTIALS_DIRECTORY' /etc/nix-cache-login/config.toml")
        client.fail("grep -qF '${t.serverClientSecret}' /etc/nix-cache-login/config.toml ${netrc}")
        client.succeed("grep -qx 'netrc-file = ${netrc}' /etc/nix/nix.conf")
        client.succeed("systemctl is-active nix-cache-login-server.timer")
        client.log(client.succeed("systemd-analyze security nix-cache-login-server.service | tail -n 1"))

    with subtest("the cache accepts the token and nothing else"):
        client.succeed("test $(curl -s -o /dev/null -w '%{http_code}' http://cache/nix-cache-info) = 401")
        client.succeed("curl -sSf --netrc-file ${netrc} http://cache/nix-cache-info")
        client.fail("su - bob -c 'cat ${netrc}'")

    with subtest("without the token, the daemon cannot substitute"):
        client.succeed("systemctl stop nix-cache-login-server.timer")
        # A run the timer started just before must not write a token in the middle of this.
        client.wait_until_succeeds(
            "systemctl show -p ActiveState --value nix-cache-login-server.service | grep -qx inactive"
        )
        client.succeed("cp ${netrc} /root/netrc.saved && truncate -s 0 ${netrc}")
        client.fail(f"test -e {store_path}")
        client.fail(f"su - bob -c 'nix-store -r {store_path}'")
        client.fail(f"test -e {store_path}")

    with subtest("with the token, the daemon substitutes from the protected cache"):
        client.succeed("cp /root/netrc.saved ${netrc}")
        client.succeed(f"su - bob -c 'nix-store -r {store_path}'")
        client.succeed(f"grep -q '^payload-' {store_path}")
        client.succeed("systemctl start nix-cache-login-server.timer")

    with subtest("the timer renews the token"):
        before = client.succeed("sha256sum ${netrc}").strip()
        client.wait_until_succeeds(f"test \"$(sha256sum ${netrc})\" != '{before}'", timeout=120)
        client.succeed("systemctl show -p Result --value nix-cache-login-server.service | grep -qx success")
        client.succeed("curl -sSf --netrc-file ${netrc} http://cache/nix-cache-info")
  '';
}
