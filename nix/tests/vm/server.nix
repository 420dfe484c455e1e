# NixOS VM test for the server module: at boot and then on its timer, `service-account` (as a
# dynamic user) writes the token into the netrc in its state directory, and the Nix daemon, whose
# netrc-file the module points there, substitutes from the protected cache with it.
# Run: nix build .#checks.x86_64-linux.vm-server
{ pkgs, lib, ... }:

let
  t = import ./common.nix { inherit pkgs lib; };
  secretFile = "/etc/nix-cache-login/client-secret";
  netrc = t.serverNetrc;
in
{
  name = "nix-cache-login-server";

  nodes = {
    keycloak = t.keycloakNode;
    cache = t.cacheNode;

    client = {
      imports = [ t.serverNode ];

      services.nix-cache-login-server = {
        settings.client_id = "nix-cache-server";
        clientSecretFile = secretFile;
      };

      # Readable by root only; the unit gets it through LoadCredential.
      environment.etc."nix-cache-login/client-secret" = {
        text = t.serverClientSecret;
        mode = "0400";
      };
    };
  };

  testScript = ''
    ${t.startKeycloakAndCache}
    ${t.serverHelpers}

    # The client boots once Keycloak is up, so the boot-time run can succeed.
    client.start()

    with subtest("the boot-time run wrote the daemon's netrc, as its dynamic user"):
        wait_for_first_run(client)
        assert_daemon_netrc(client, "nix-cache-server")
        client.succeed("test $(stat -c %a ${secretFile}) = 400")
        config = server_config(client)
        assert config["client_secret_file"] == "''${CREDENTIALS_DIRECTORY}/client-secret", config
        client.fail("grep -qF '${t.serverClientSecret}' /etc/nix-cache-login/config.toml ${netrc}")
        client.log(client.succeed("systemd-analyze security nix-cache-login-server.service | tail -n 1"))

    with subtest("the cache accepts the token and nothing else"):
        client.succeed("test $(curl -s -o /dev/null -w '%{http_code}' http://cache/nix-cache-info) = 401")
        client.succeed("curl -sSf --netrc-file ${netrc} http://cache/nix-cache-info")
        client.fail("su - bob -c 'cat ${netrc}'")

    with subtest("without the token, the daemon cannot substitute"):
        client.succeed("systemctl stop nix-cache-login-server.timer")
        # A run the timer started just before must not write a token in the middle of this.
        client.wait_until_succeeds(
            "systemctl show -P ActiveState nix-cache-login-server.service | grep -qx inactive"
        )
        client.succeed("truncate -s 0 ${netrc}")
        client.fail(f"test -e {store_path}")
        client.fail(f"su - bob -c 'nix-store -r {store_path}'")
        client.fail(f"test -e {store_path}")

    with subtest("with the token, the daemon substitutes from the protected cache"):
        # A run writes the entry again (the netrc has none, so --min-valid does not skip it), and
        # the timer keeps the token fresh from here on.
        client.succeed("systemctl start nix-cache-login-server.service nix-cache-login-server.timer")
        client.succeed("grep -qE '^machine cache( |$)' ${netrc}")
        # The 401 above makes Nix skip the cache for a while (http-binary-cache-store.cc), but
        # only in the process that saw it: the daemon serves each connection (each nix-store
        # here) in a process of its own, forked for it. Should a Nix keep that across
        # connections, waiting for the positive case only makes the test slower, not wrong.
        client.wait_until_succeeds(f"su - bob -c 'nix-store -r {store_path}'", timeout=180)
        client.succeed(f"grep -q '^payload-' {store_path}")

    with subtest("the timer renews the token"):
        wait_for_renewal(client)
  '';
}
