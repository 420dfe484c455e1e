# NixOS VM test for the server module with a private key instead of a secret (clientKeyFile:
# private_key_jwt, Keycloak's "Signed JWT" client authenticator): the key stays readable by root
# only, systemd hands it to the dynamic user through LoadCredential, and the token it gets from
# the VM's Keycloak lets the Nix daemon substitute from the protected cache.
# Run: nix build .#checks.x86_64-linux.vm-server-key
{ pkgs, lib, ... }:

let
  t = import ./common.nix { inherit pkgs lib; };
  keyFile = "/etc/nix-cache-login/client-key.pem";
  netrc = t.serverNetrc;
  clientId = "nix-cache-server-jwt";
in
{
  name = "nix-cache-login-server-key";

  nodes = {
    keycloak = t.keycloakNode;
    cache = t.cacheNode;

    client = {
      imports = [ t.serverNode ];

      services.nix-cache-login-server = {
        settings = {
          client_id = clientId;
          # Implied by the key; written out as sites do, and passed through as it is.
          token_endpoint_auth_method = "private_key_jwt";
        };
        clientKeyFile = keyFile;
      };

      # Keycloak holds only the certificate (./realm.nix). With a mode, NixOS copies the file
      # into /etc, owned by root.
      environment.etc."nix-cache-login/client-key.pem" = {
        source = "${t.certs}/client-jwt.key";
        mode = "0400";
      };
    };
  };

  testScript = ''
    ${t.startKeycloakAndCache}
    ${t.serverHelpers}

    client.start()

    with subtest("the boot-time run signed in with the key, which only root can read"):
        wait_for_first_run(client)
        assert_daemon_netrc(client, "${clientId}")
        client.succeed("test $(stat -c %a:%u ${keyFile}) = 400:0")
        config = server_config(client)
        assert config["client_key_file"] == "''${CREDENTIALS_DIRECTORY}/client-key", config
        assert "client_secret_file" not in config, config
        # The unit's user (the netrc's owner) cannot read the key file itself, only the copy
        # systemd hands it.
        client.fail("setpriv --reuid=$(stat -L -c %u ${netrc}) --clear-groups cat ${keyFile}")
        client.fail("grep -qF 'PRIVATE KEY' ${netrc}")

    with subtest("the daemon substitutes from the protected cache with that token"):
        client.succeed("curl -sSf --netrc-file ${netrc} http://cache/nix-cache-info")
        client.fail(f"test -e {store_path}")
        substitute_as_bob(client, store_path)

    with subtest("the timer renews the token with the key"):
        wait_for_renewal(client)
  '';
}
