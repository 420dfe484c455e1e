# The VM tests' Keycloak realm, as Keycloak's realm representation (what `--import-realm` and the
# admin REST API take). Builtins only, so that test/e2e/keycloak.test.ts can evaluate it with
# Debian's nix-instantiate and create these very clients in the suite's real Keycloak: the
# assumptions the VM tests make about Keycloak (see ./common.nix) are checked by a test that runs.
{
  realmName,
  audience,
  accessTokenLifespan,
  # { name; password; }
  user,
  serverClientSecret,
  # The Signed JWT client's certificate: base64 DER (a PEM file's body, without its lines), as
  # Keycloak keeps a certificate imported under Keys -> Import key -> Certificate PEM.
  jwtCertificate,
}:

let
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

  serviceAccountClient = clientId: authenticator: {
    inherit clientId;
    enabled = true;
    publicClient = false;
    clientAuthenticatorType = authenticator;
    serviceAccountsEnabled = true;
    standardFlowEnabled = false;
    directAccessGrantsEnabled = false;
    protocolMappers = [ audienceMapper ];
  };
in
{
  realm = realmName;
  enabled = true;
  sslRequired = "external";
  inherit accessTokenLifespan;
  clients = [
    {
      # The workstation client: public, browser sign-in with PKCE on a loopback redirect. Keycloak
      # retries a loopback redirect URI without its port, so this one pattern takes the CLI's
      # random port (checked against Keycloak 26.7.3 in test/e2e/keycloak.test.ts).
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
    # The server client: confidential, client credentials with a secret.
    ((serviceAccountClient "nix-cache-server" "client-secret") // { secret = serverClientSecret; })
    # The server client with a key: "Signed JWT" (private_key_jwt); Keycloak holds only the
    # certificate (checked against Keycloak 26.7.3 in test/e2e/keycloak.test.ts).
    (
      (serviceAccountClient "nix-cache-server-jwt" "client-jwt")
      // {
        attributes = {
          "use.jwks.url" = "false";
          "jwt.credential.certificate" = jwtCertificate;
        };
      }
    )
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
  ]
  # Each service account's user, as a realm export lists them.
  ++
    map
      (clientId: {
        username = "service-account-${clientId}";
        enabled = true;
        serviceAccountClientId = clientId;
      })
      [
        "nix-cache-server"
        "nix-cache-server-jwt"
      ];
}
