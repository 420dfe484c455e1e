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

  # A CA and a certificate for https://keycloak. mod_auth_openidc fetches keys only over https,
  # and the CLI accepts http only for loopback issuers.
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
  '';

  audienceMapper = {
    name = "nix-cache-audience";
    protocol = "openid-connect";
    protocolMapper = "oidc-audience-mapper";
    config = {
      "included.custom.audience" = audience;
      "access.token.claim" = "true";
      "id.token.claim" = "false";
    };
  };

  realm = pkgs.writeText "realm-${realmName}.json" (
    builtins.toJSON {
      realm = realmName;
      enabled = true;
      sslRequired = "external";
      inherit accessTokenLifespan;
      clients = [
        {
          # The workstation client: public, browser sign-in with PKCE on a loopback redirect.
          clientId = "nix-cache";
          enabled = true;
          publicClient = true;
          standardFlowEnabled = true;
          directAccessGrantsEnabled = false;
          redirectUris = [ "http://127.0.0.1/*" ];
          attributes = {
            "pkce.code.challenge.method" = "S256";
            "oauth2.device.authorization.grant.enabled" = "true";
          };
          protocolMappers = [ audienceMapper ];
        }
        {
          # The server client: confidential, client credentials only.
          clientId = "nix-cache-server";
          enabled = true;
          publicClient = false;
          clientAuthenticatorType = "client-secret";
          secret = serverClientSecret;
          serviceAccountsEnabled = true;
          standardFlowEnabled = false;
          directAccessGrantsEnabled = false;
          protocolMappers = [ audienceMapper ];
        }
      ];
      users = [
        {
          username = user.name;
          enabled = true;
          email = "${user.name}@example.com";
          emailVerified = true;
          firstName = "Alice";
          lastName = "Example";
          credentials = [
            {
              type = "password";
              value = user.password;
              temporary = false;
            }
          ];
        }
        {
          username = "service-account-nix-cache-server";
          enabled = true;
          serviceAccountClientId = "nix-cache-server";
        }
      ];
    }
  );

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
  # to Keycloak's login form, posts the password and follows the redirect back to the CLI.
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
