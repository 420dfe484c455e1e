// The realm of the Keycloak tests, set up through the admin REST API the way docs/provider-setup.md's "Register
// the client in Keycloak" tells an administrator to do it in the console (each call names the step
// it replays), so that the tests prove that page. Fixtures the page does not cover (users, the
// roles and groups that make a large token, the fast device polling) are marked as such.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { KeycloakAdmin, TEMPLATE_REALM, type Keycloak } from "./keycloak.ts";

export const REALM = TEMPLATE_REALM;
export const AUDIENCE = "urn:nix-cache";
export const PUBLIC_CLIENT = "nix-cache";
export const SERVICE_CLIENT = "nix-cache-server";
/** Confidential clients with the "Signed JWT" authenticator: an RSA key, and an EC P-256 key. */
export const JWT_CLIENT = "nix-cache-server-jwt";
export const JWT_EC_CLIENT = "nix-cache-server-jwt-ec";
/** A public client set up like nix-cache, but with "Always use lightweight access token" on. */
export const LIGHT_CLIENT = "nix-cache-light";

export interface TestUser {
  username: string;
  password: string;
  id: string;
}

export interface Registered {
  admin: KeycloakAdmin;
  issuer: string;
  httpsIssuer: string;
  serviceSecret: string;
  alice: TestUser;
  /** Holds many realm roles and groups: a full access token of several KB. */
  bob: TestUser;
  roleCount: number;
  groupCount: number;
  clientIds: Record<string, string>;
  /** client_key_file of each Signed JWT client, made with openssl as docs/provider-setup.md says. */
  clientKeyFiles: Record<string, string>;
}

const execFileP = promisify(execFile);

/**
 * docs/provider-setup.md's "A server with a key instead of a secret", step 1 on the server: the private key with
 * `openssl genpkey`, and a self-signed certificate holding its public half with `openssl req -x509`.
 */
async function makeClientKey(dir: string, clientId: string, genpkeyArgs: string[]) {
  const keyFile = join(dir, `${clientId}.key.pem`);
  const certFile = join(dir, `${clientId}.cert.pem`);
  await execFileP("openssl", ["genpkey", ...genpkeyArgs, "-out", keyFile]);
  await execFileP("openssl", [
    "req",
    "-new",
    "-x509",
    "-key",
    keyFile,
    "-subj",
    `/CN=${clientId}`,
    "-days",
    "3650",
    "-out",
    certFile,
  ]);
  return { keyFile, certPem: await readFile(certFile, "utf8") };
}

/**
 * A confidential client whose service account authenticates with a client assertion (docs/provider-setup.md: "A
 * server with a key instead of a secret", steps 2 to 5).
 */
async function signedJwtClient(
  admin: KeycloakAdmin,
  create: (rep: { clientId: string; [k: string]: unknown }) => Promise<string>,
  clientId: string,
  certPem: string,
): Promise<void> {
  const id = await create({
    clientId,
    protocol: "openid-connect",
    publicClient: false, // step 2: Client authentication on
    clientAuthenticatorType: "client-jwt", // step 3: Credentials -> Client Authenticator: Signed JWT
    serviceAccountsEnabled: true, // step 2: Service accounts roles on, everything else off
    standardFlowEnabled: false,
    directAccessGrantsEnabled: false,
    implicitFlowEnabled: false,
    attributes: {
      "use.jwks.url": "false", // step 4: Keys -> Use JWKS URL off
      "access.token.lifespan": "3600",
    },
  });
  // Step 4: Keys -> Import key, Archive format "Certificate PEM", the certificate made in step 1
  // (the console posts it here, as multipart). A certificate rather than a "Public Key PEM": Keycloak
  // matches an assertion without `kid` to an imported EC public key by `alg` and takes it for RS256
  // (it reads the key's curve as "EC"), so an ES256 assertion finds no key ("Unable to load public
  // key"); an imported certificate is the client's default key whatever the algorithm.
  const form = new FormData();
  form.set("keystoreFormat", "Certificate PEM");
  form.set("file", new Blob([certPem]), `${clientId}.cert.pem`);
  await admin.call("POST", `/${REALM}/clients/${id}/certificates/jwt.credential/upload-certificate`, form);
  // Step 5: the audience mapper.
  await admin.call("POST", `/${REALM}/clients/${id}/protocol-mappers/models`, audienceMapper(false));
}

/** docs/provider-setup.md's audience mapper (step 5), as the console's "By configuration -> Audience" makes it. */
function audienceMapper(lightweight: boolean) {
  return {
    name: "audience nix-cache",
    protocol: "openid-connect",
    protocolMapper: "oidc-audience-mapper",
    config: {
      "included.custom.audience": AUDIENCE,
      "access.token.claim": "true",
      "id.token.claim": "false",
      "introspection.token.claim": "true",
      // "Add to lightweight access token": needed once the client uses lightweight tokens.
      "lightweight.claim": String(lightweight),
    },
  };
}

/** Clients -> Create client, steps 1 to 4 of docs/provider-setup.md, and the 1-hour access token. */
function publicClient(clientId: string, extraAttributes: Record<string, string> = {}) {
  return {
    clientId, // step 1: client type OpenID Connect, client ID
    protocol: "openid-connect",
    publicClient: true, // step 2: Client authentication off
    standardFlowEnabled: true, // step 2: Standard flow on
    directAccessGrantsEnabled: false, // step 2: Direct access grants off
    implicitFlowEnabled: false, // step 2: Implicit flow off
    redirectUris: ["http://127.0.0.1/*"], // step 3: Valid redirect URIs
    webOrigins: [], // step 3: Web origins empty
    attributes: {
      "oauth2.device.authorization.grant.enabled": "true", // step 2: OAuth 2.0 Device Authorization Grant on
      "pkce.code.challenge.method": "S256", // step 4: PKCE method S256
      "access.token.lifespan": "3600", // Token lifetimes: Access Token Lifespan 1 hour
      ...extraAttributes,
    },
  };
}

/** Fixture: a user with the profile attributes Keycloak 26 requires, so sign-in asks for nothing else. */
function userFields(username: string) {
  return {
    username,
    enabled: true,
    email: `${username}@example.test`,
    emailVerified: true,
    firstName: username,
    lastName: "Test",
    credentials: [{ type: "password", value: `${username}-password`, temporary: false }],
  };
}

async function createUser(admin: KeycloakAdmin, username: string): Promise<TestUser> {
  const id = (await admin.call("POST", `/${REALM}/users`, userFields(username))) as string;
  return { username, password: `${username}-password`, id };
}

export async function registerAsReadmeSays(
  kc: Keycloak,
  opts: { roleCount: number; groupCount: number; keyDir: string },
): Promise<Registered> {
  const admin = new KeycloakAdmin(kc);
  // The realm (docs/provider-setup.md assumes one exists: the template database has an empty
  // one), with that page's "Token lifetimes":
  // Realm settings -> Sessions: SSO Session Idle and Max 24 hours; Realm settings -> Tokens:
  // Revoke Refresh Token on (refresh tokens rotate, a reused one is refused).
  await admin.call("PUT", `/${REALM}`, {
    ssoSessionIdleTimeout: 86400,
    ssoSessionMaxLifespan: 86400,
    revokeRefreshToken: true,
    refreshTokenMaxReuse: 0,
    // Fixture: the device grant's polling interval (Keycloak's default is 5 s), so tests wait less.
    oauth2DevicePollingInterval: 1,
  });

  const clientIds: Record<string, string> = {};
  const create = async (rep: { clientId: string; [k: string]: unknown }) => {
    const id = (await admin.call("POST", `/${REALM}/clients`, rep)) as string;
    clientIds[rep.clientId] = id;
    return id;
  };
  // Steps 1-4, then step 5: Client scopes -> nix-cache-dedicated -> Add mapper -> Audience.
  const pub = await create(publicClient(PUBLIC_CLIENT));
  await admin.call("POST", `/${REALM}/clients/${pub}/protocol-mappers/models`, audienceMapper(false));

  // The confidential client for servers ("A client for servers" in docs/provider-setup.md).
  const svc = await create({
    clientId: SERVICE_CLIENT,
    protocol: "openid-connect",
    publicClient: false, // Client authentication on
    clientAuthenticatorType: "client-secret", // Credentials: Client Id and Secret
    serviceAccountsEnabled: true, // Service accounts roles on
    standardFlowEnabled: false,
    directAccessGrantsEnabled: false,
    implicitFlowEnabled: false,
    attributes: { "access.token.lifespan": "3600" },
  });
  await admin.call("POST", `/${REALM}/clients/${svc}/protocol-mappers/models`, audienceMapper(false));
  const secret = (await admin.call("GET", `/${REALM}/clients/${svc}/client-secret`)) as { value: string };

  // Servers with a key instead of a secret ("A server with a key instead of a secret"): RSA, and EC.
  const rsa = await makeClientKey(opts.keyDir, JWT_CLIENT, [
    "-algorithm",
    "RSA",
    "-pkeyopt",
    "rsa_keygen_bits:2048",
  ]);
  await signedJwtClient(admin, create, JWT_CLIENT, rsa.certPem);
  const ec = await makeClientKey(opts.keyDir, JWT_EC_CLIENT, [
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
  ]);
  await signedJwtClient(admin, create, JWT_EC_CLIENT, ec.certPem);

  // The same public client with lightweight access tokens (Advanced -> "Always use lightweight
  // access token"); its audience mapper must then have "Add to lightweight access token" on.
  const light = await create(
    publicClient(LIGHT_CLIENT, { "client.use.lightweight.access.token.enabled": "true" }),
  );
  await admin.call("POST", `/${REALM}/clients/${light}/protocol-mappers/models`, audienceMapper(true));
  // A lightweight access token has no `sub` either, and mod_auth_openidc refuses a token without the
  // claim it takes the user from ("Could not set remote user"): Add mapper -> By configuration ->
  // Subject (sub), with "Add to lightweight access token" on.
  await admin.call("POST", `/${REALM}/clients/${light}/protocol-mappers/models`, {
    name: "sub",
    protocol: "openid-connect",
    protocolMapper: "oidc-sub-mapper",
    config: {
      "access.token.claim": "true",
      "introspection.token.claim": "true",
      "lightweight.claim": "true",
    },
  });

  // Fixtures: users. Groups reach the token through a Group Membership mapper on both public clients.
  for (const id of [pub, light]) {
    await admin.call("POST", `/${REALM}/clients/${id}/protocol-mappers/models`, {
      name: "groups",
      protocol: "openid-connect",
      protocolMapper: "oidc-group-membership-mapper",
      config: {
        "claim.name": "groups",
        "full.path": "false",
        "access.token.claim": "true",
        "id.token.claim": "false",
        "userinfo.token.claim": "false",
        "lightweight.claim": "false",
      },
    });
  }
  const alice = await createUser(admin, "alice");
  // Fixture: bob holds many realm roles and groups, all made in one partial import (one request
  // instead of a few hundred).
  const roleNames = Array.from(
    { length: opts.roleCount },
    (_, i) => `nix-cache-builder-role-${String(i).padStart(3, "0")}`,
  );
  const groupNames = Array.from({ length: opts.groupCount }, (_, i) => `team-${String(i).padStart(3, "0")}`);
  await admin.call("POST", `/${REALM}/partialImport`, {
    ifResourceExists: "FAIL",
    roles: { realm: roleNames.map((name) => ({ name })) },
    groups: groupNames.map((name) => ({ name, path: `/${name}` })),
  });
  await admin.call("POST", `/${REALM}/partialImport`, {
    ifResourceExists: "FAIL",
    users: [
      {
        ...userFields("bob"),
        realmRoles: ["default-roles-test", ...roleNames],
        groups: groupNames.map((g) => `/${g}`),
      },
    ],
  });
  const found = (await admin.call("GET", `/${REALM}/users?username=bob&exact=true`)) as { id: string }[];
  const bob = { username: "bob", password: "bob-password", id: found[0]!.id };
  return {
    admin,
    issuer: `${kc.httpBase}/realms/${REALM}`,
    httpsIssuer: `${kc.httpsBase}/realms/${REALM}`,
    serviceSecret: secret.value,
    alice,
    bob,
    roleCount: opts.roleCount,
    groupCount: opts.groupCount,
    clientIds,
    clientKeyFiles: { [JWT_CLIENT]: rsa.keyFile, [JWT_EC_CLIENT]: ec.keyFile },
  };
}

function decodeEntities(s: string): string {
  return s
    .replace(/&amp;/g, "&")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">");
}

/**
 * A sign-in over plain HTTP at Keycloak's login form (authorization code + PKCE S256), for tests
 * that need a session but are not about the browser: the tokens, as the token endpoint sent them.
 */
export async function signInOverHttp(
  issuer: string,
  clientId: string,
  user: { username: string; password: string },
  // Nothing listens there: the code is read from the redirect's Location.
  redirectUri = "http://127.0.0.1:9/callback",
): Promise<Record<string, unknown>> {
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const state = randomBytes(16).toString("base64url");
  const cookies = new Map<string, string>();
  const keep = (res: Response) => {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const eq = pair!.indexOf("=");
      cookies.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
  };
  const cookieHeader = () => [...cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  const auth = new URL(`${issuer}/protocol/openid-connect/auth`);
  auth.search = new URLSearchParams({
    client_id: clientId,
    redirect_uri: redirectUri,
    response_type: "code",
    scope: "openid",
    state,
    nonce: randomBytes(16).toString("base64url"),
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  const page = await fetch(auth, { redirect: "manual" });
  keep(page);
  const html = await page.text();
  const action = /<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"/.exec(html)?.[1];
  if (action === undefined)
    throw new Error(`no login form at ${auth.origin}${auth.pathname}: ${page.status}`);
  const posted = await fetch(decodeEntities(action), {
    method: "POST",
    redirect: "manual",
    headers: { cookie: cookieHeader() },
    body: new URLSearchParams({ username: user.username, password: user.password, credentialId: "" }),
  });
  await posted.arrayBuffer();
  const location = posted.headers.get("location") ?? "";
  if (posted.status !== 302 || !location.startsWith(redirectUri)) {
    throw new Error(`sign-in as ${user.username} did not redirect back: ${posted.status}`);
  }
  const back = new URL(location);
  if (back.searchParams.get("state") !== state) throw new Error("sign-in redirect with the wrong state");
  const res = await fetch(`${issuer}/protocol/openid-connect/token`, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "authorization_code",
      client_id: clientId,
      code: back.searchParams.get("code") ?? "",
      redirect_uri: redirectUri,
      code_verifier: verifier,
    }),
  });
  const tokens = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`code exchange failed: ${res.status} ${JSON.stringify(tokens)}`);
  return tokens;
}

/** A refresh_token grant sent directly (not through the CLI): the provider's verdict on a token. */
export async function refreshDirectly(
  issuer: string,
  clientId: string,
  refreshToken: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${issuer}/protocol/openid-connect/token`, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "refresh_token",
      client_id: clientId,
      refresh_token: refreshToken,
    }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The payload of a JWT, unverified (the tests read claims; the cache verifies signatures). */
export function jwtClaims(token: string): Record<string, unknown> {
  const part = token.split(".")[1];
  if (part === undefined) throw new Error("not a JWT");
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;
}
