# Shared pieces of the NixOS VM tests: a Keycloak realm, a protected binary cache and a test CA.
#
# The cache is Apache httpd with mod_auth_openidc as an OAuth 2.0 resource server: the same
# validator the project's end-to-end tests run (see TESTBED.md), and one that sites use in
# production. It takes the access token as the password of HTTP Basic auth, which is what Nix
# sends from a netrc entry, and checks the signature against the realm's keys, the expiry, the
# issuer and the audience, so a test passes only if the token really is a valid, fresh one.
{ pkgs, lib }:

rec {
  realmName = "test";
  issuer = "https://keycloak/realms/${realmName}";
  audience = "nix-cache";

  user = {
    name = "alice";
    password = "correct horse battery staple";
  };

  # Not a secret: the VM tests run offline.
  serverClientSecret = "vm-test-client-secret";

  # Short lifetimes, so a few minutes of test show several refreshes.
  accessTokenLifespan = 60;

  # A CA and a certificate for https://keycloak (mod_auth_openidc fetches keys only over https,
  # and the CLI accepts http only for loopback issuers), and the Signed JWT client's key pair.
  certs = pkgs.runCommand "nix-cache-login-vm-test-certs" { nativeBuildInputs = [ pkgs.openssl ]; } ''
    mkdir -p $out
    cat > req.cnf <<'EOF'
    [req]
    distinguished_name = dn
    prompt = no
    [dn]
    CN = nix-cache-login VM test
    EOF
    openssl req -x509 -config req.cnf -newkey rsa:2048 -nodes -days 3650 \
      -keyout ca.key -out $out/ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -new -config req.cnf -newkey rsa:2048 -nodes -subj /CN=keycloak \
      -keyout $out/keycloak.key -out keycloak.csr
    printf '%s\n' 'subjectAltName=DNS:keycloak' 'basicConstraints=CA:FALSE' \
      'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' > leaf.ext
    openssl x509 -req -in keycloak.csr -CA $out/ca.crt -CAkey ca.key -CAcreateserial \
      -days 3650 -extfile leaf.ext -out $out/keycloak.crt
    # The Signed JWT client's key (the server keeps it) and the self-signed certificate Keycloak
    # holds instead, made as docs/provider-setup.md tells an administrator to.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $out/client-jwt.key
    openssl req -new -x509 -key $out/client-jwt.key -subj /CN=nix-cache-server-jwt -days 3650 \
      -out $out/client-jwt.crt
  '';

  # The realm (./realm.nix) with the Signed JWT client's certificate, which exists only once
  # `certs` is built: the JSON is written with a placeholder that the build replaces.
  realm =
    let
      template = pkgs.writeText "realm-${realmName}-template.json" (
        builtins.toJSON (
          import ./realm.nix {
            inherit
              realmName
              audience
              accessTokenLifespan
              user
              serverClientSecret
              ;
            jwtCertificate = "@JWT_CERTIFICATE@";
          }
        )
      );
    in
    pkgs.runCommand "realm-${realmName}.json" { } ''
      # base64 has no `|`: safe as sed's delimiter.
      sed "s|@JWT_CERTIFICATE@|$(sed '1d;$d' ${certs}/client-jwt.crt | tr -d '\n')|" ${template} > $out
    '';

  trustTestCa = {
    security.pki.certificateFiles = [ "${certs}/ca.crt" ];
  };

  keycloakNode = {
    imports = [ trustTestCa ];
    virtualisation.memorySize = 2048;
    networking.firewall.allowedTCPPorts = [ 443 ];
    services.keycloak = {
      enable = true;
      settings.hostname = "keycloak";
      sslCertificate = "${certs}/keycloak.crt";
      sslCertificateKey = "${certs}/keycloak.key";
      database.passwordFile = "${pkgs.writeText "keycloak-db-password" "vm-test-db-password"}";
      realmFiles = [ realm ];
    };
  };

  # A machine with the server module whose Nix daemon substitutes from the protected cache; the
  # test sets the client (settings.client_id) and its credential.
  serverNode = {
    imports = [
      ../../modules/nixos-server.nix
      trustTestCa
    ];
    nix.settings = {
      experimental-features = [ "nix-command" ];
      # The daemon substitutes from the protected cache. The test cache is unsigned; the point
      # here is the netrc, not signatures.
      substituters = lib.mkForce [ "http://cache" ];
      require-sigs = false;
      # A 401 is not remembered as "not in this cache", but be sure of it.
      narinfo-cache-negative-ttl = 0;
    };

    # An unprivileged user: its `nix-store -r` goes through the daemon, and it cannot read the
    # token itself.
    users.users.bob.isNormalUser = true;

    services.nix-cache-login-server = {
      enable = true;
      settings = {
        inherit issuer;
        cache_host = "cache";
        # No cache_url: the test cache speaks plain http, which the CLI refuses for a cache URL
        # that is not on loopback (only `doctor` would use it).
      };
      # The realm's access tokens live 60 s: renew when less than 40 s are left, checking every
      # 30 s (the shortest interval the module takes).
      interval = "30s";
      randomizedDelay = "0s";
      minValid = "40s";
    };
  };

  serverNetrc = "/var/lib/nix-cache-login/netrc";

  # Python for the server tests. The oneshot is only wanted by multi-user.target, so that target
  # can be reached before the boot-time run ends: wait for the run's end (an exit timestamp), then
  # require that it succeeded. The client boots after Keycloak and the cache answer, so the
  # boot-time run itself must succeed.
  serverHelpers = ''
    import base64
    import json
    import tomllib

    def server_config(machine):
        return tomllib.loads(machine.succeed("cat /etc/nix-cache-login/config.toml"))

    def unit_property(machine, prop):
        return machine.succeed(f"systemctl show -P {prop} nix-cache-login-server.service").strip()

    def wait_for_first_run(machine):
        machine.wait_until_succeeds(
            "test \"$(systemctl show -P ExecMainExitTimestampMonotonic nix-cache-login-server.service)\" -gt 0",
            timeout=180,
        )
        assert unit_property(machine, "Result") == "success", unit_property(machine, "Result")
        assert unit_property(machine, "ExecMainStatus") == "0", unit_property(machine, "ExecMainStatus")

    def netrc_token(machine):
        fields = machine.succeed("cat ${serverNetrc}").split()
        return fields[fields.index("password") + 1]

    def token_claims(token):
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    def netrc_file_setting(machine):
        # As Nix itself reads its configuration, not as NixOS happens to render nix.conf.
        # `nix config show` is the name since Nix 2.20; older Nix and Lix have `nix show-config`.
        out = machine.succeed("nix config show --json 2>/dev/null || nix show-config --json")
        return json.loads(out)["netrc-file"]["value"]

    def assert_daemon_netrc(machine, client_id):
        # What a run leaves: the daemon's netrc with a token for client_id, written by the unit's
        # dynamic user (not root) into its private state directory.
        machine.succeed("grep -qE '^machine cache( |$)' ${serverNetrc}")
        machine.succeed("test $(stat -L -c %a ${serverNetrc}) = 600")
        machine.succeed("test $(stat -L -c %a /var/lib/private/nix-cache-login) = 700")
        machine.succeed("test $(stat -c %a /var/lib/private) = 700")
        machine.succeed("test $(stat -L -c %u ${serverNetrc}) != 0")
        assert unit_property(machine, "DynamicUser") == "yes"
        assert netrc_file_setting(machine) == "${serverNetrc}", netrc_file_setting(machine)
        claims = token_claims(netrc_token(machine))
        assert claims["azp"] == client_id, claims
        machine.succeed("systemctl is-active nix-cache-login-server.timer")

    def substitute_as_bob(machine, path):
        machine.succeed(f"su - bob -c 'nix-store -r {path}'")
        machine.succeed(f"grep -q '^payload-' {path}")

    def wait_for_renewal(machine):
        before = machine.succeed("sha256sum ${serverNetrc}").strip()
        machine.wait_until_succeeds(f"test \"$(sha256sum ${serverNetrc})\" != '{before}'", timeout=120)
        # The run that wrote it has ended, and succeeded.
        machine.wait_until_succeeds("test \"$(systemctl show -P ActiveState nix-cache-login-server.service)\" = inactive")
        assert unit_property(machine, "Result") == "success"
        machine.succeed("curl -sSf --netrc-file ${serverNetrc} http://cache/nix-cache-info")
  '';

  cacheRoot = "/var/www/nix-cache";

  cacheNode = {
    imports = [ trustTestCa ];
    networking.firewall.allowedTCPPorts = [ 80 ];
    nix.settings.experimental-features = [ "nix-command" ];
    systemd.tmpfiles.rules = [ "d ${cacheRoot} 0755 root root -" ];
    services.httpd = {
      enable = true;
      adminAddr = "root@cache";
      extraModules = [
        {
          name = "auth_openidc";
          path = "${pkgs.apacheHttpdPackages.mod_auth_openidc}/modules/mod_auth_openidc.so";
        }
      ];
      virtualHosts.cache = {
        documentRoot = cacheRoot;
        extraConfig = ''
          OIDCOAuthVerifyJwksUri ${issuer}/protocol/openid-connect/certs
          OIDCCABundlePath ${certs}/ca.crt
          OIDCCryptoPassphrase vm-test-passphrase
          OIDCOAuthAcceptTokenAs header basic
          # Every Keycloak access token names its client in azp (client-credentials tokens
          # need not carry preferred_username).
          OIDCOAuthRemoteUserClaim azp
          <Location />
            AuthType oauth20
            <RequireAll>
              Require valid-user
              # mod_auth_openidc checks neither issuer nor audience unless told to.
              Require claim iss:${issuer}
              Require claim aud:${audience}
            </RequireAll>
          </Location>
        '';
      };
    };
  };

  # Python for the test scripts: wait for Keycloak, then put a fresh store path into the cache.
  # The path's contents are random, so no other VM can have it already.
  startKeycloakAndCache = ''
    keycloak.start()
    cache.start()
    keycloak.wait_for_unit("keycloak.service")
    keycloak.wait_for_open_port(443)
    keycloak.wait_until_succeeds("curl -sSf ${issuer}/.well-known/openid-configuration")
    cache.wait_for_unit("httpd.service")
    cache.succeed("echo payload-$(cat /proc/sys/kernel/random/uuid) > /tmp/payload")
    store_path = cache.succeed("nix-store --add /tmp/payload").strip()
    cache.succeed(f"nix copy --to file://${cacheRoot} {store_path}")
    cache.succeed("chmod -R a+rX ${cacheRoot}")
    cache.succeed("test $(curl -s -o /dev/null -w '%{http_code}' http://localhost/nix-cache-info) = 401")
  '';

  # A scripted browser for `nix-cache-login login --browser-command`: follows the CLI's short URL
  # to Keycloak's login form, posts the password and follows the redirect back to the CLI. What it
  # assumes of Keycloak, each checked against Keycloak 26.7.3 by test/e2e/keycloak.test.ts ("what
  # the NixOS VM tests assume of Keycloak"), with this realm's own clients (./realm.nix):
  # - the login page's form has the id `kc-form-login`, its action is where the password goes,
  #   and it takes the fields `username` and `password` (`credentialId` empty);
  # - the registered `http://127.0.0.1/*` matches the CLI's `http://127.0.0.1:PORT/callback` on
  #   any port (Keycloak retries a loopback redirect URI without its port), and the redirect back
  #   keeps the port, so curl -L lands on the CLI's loopback server.
  # The VM runs nixpkgs' keycloak package, whatever its version is then: when these lines fail
  # there, run the e2e tests with that version (test/support/keycloak-dist.json).
  browser = pkgs.writeShellApplication {
    name = "keycloak-login-driver";
    runtimeInputs = [
      pkgs.curl
      pkgs.htmlq
      pkgs.coreutils
    ];
    text = ''
      url="$1"
      work=$(mktemp -d)
      trap 'rm -rf "$work"' EXIT
      curl -sSfL -c "$work/jar" -b "$work/jar" -o "$work/form.html" "$url"
      action=$(htmlq '#kc-form-login' --attribute action --filename "$work/form.html")
      curl -sSfL -c "$work/jar" -b "$work/jar" -o /dev/null \
        --data-urlencode ${lib.escapeShellArg "username=${user.name}"} \
        --data-urlencode ${lib.escapeShellArg "password=${user.password}"} \
        --data-urlencode credentialId= \
        "$action"
    '';
  };
}
