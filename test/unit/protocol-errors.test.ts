/**
 * The one translation of protocol errors (src/oidc/protocol-errors.ts), on errors shaped as
 * openid-client throws them: what an OAuth error means depends on the request, and the library's
 * error is left as it was.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ExitCode } from "../../src/errors.ts";
import { SessionEndedError, translateError, type FailedRequest } from "../../src/oidc/protocol-errors.ts";

const request = (over: Partial<FailedRequest> = {}): FailedRequest => ({
  what: "refresh",
  host: "sso.example.org",
  settings: {
    issuer: "https://sso.example.org/realms/nix",
    clientId: "nix-cache",
    scopes: undefined,
    timeoutSeconds: 30,
    defaultTokenLifetime: 300,
    tokenEndpointAuthMethod: undefined,
    configPath: "/home/u/.config/nix-cache-login/config.toml",
    clientSecretFile: undefined,
    clientKeyFile: undefined,
  },
  serviceAccount: false,
  authMethod: "none",
  signIn: false,
  ...over,
});

/** The code and the message of what `e` becomes in the request. */
const said = (e: unknown, over?: Partial<FailedRequest>): [string, string] => {
  const t = translateError(e, request(over));
  return [t.code, t.message];
};

/** As openid-client's ResponseBodyError: the OAuth error in its fields. */
const answered = (error: string, description?: string) => ({
  name: "ResponseBodyError",
  code: "OAUTH_RESPONSE_BODY_ERROR",
  message: "server responded with an error in the response body",
  error,
  error_description: description,
});

test("invalid_grant ends the session on a refresh, is a bad code in a sign-in, and the client's setup for a service account", () => {
  const ended = translateError(answered("invalid_grant", "Session not active"), request());
  assert.ok(ended instanceof SessionEndedError);
  assert.deepEqual(
    [ended.code, ended.exitCode, ended.message],
    [
      "session_expired",
      ExitCode.loginRequired,
      "your session at sso.example.org expired or was revoked (Session not active)",
    ],
  );
  assert.equal((ended as SessionEndedError).description, "Session not active");

  assert.deepEqual(said(answered("invalid_grant"), { what: "code exchange", signIn: true }), [
    "sign_in_rejected",
    "sso.example.org rejected the code exchange: invalid_grant",
  ]);

  const client = translateError(
    answered("invalid_grant"),
    request({ what: "client credentials grant", serviceAccount: true }),
  );
  assert.equal(client.code, "client_credentials_refused");
  assert.match(client.hint ?? "", /client_secret_file holds its current secret/);
});

test("access_denied and expired_token mean an ended sign-in only in a sign-in", () => {
  const device = { what: "device sign-in", signIn: true };
  assert.deepEqual(said(answered("access_denied"), device), [
    "sign_in_denied",
    "the sign-in was denied at sso.example.org",
  ]);
  assert.equal(said(answered("expired_token"), device)[0], "device_code_expired");
  assert.deepEqual(said(answered("access_denied", "no")), [
    "provider_refused",
    "sso.example.org refused the refresh: access_denied (no)",
  ]);
});

test("the error of a WWW-Authenticate challenge is read from it, made printable, and the library's error stays as it was", () => {
  const e = {
    name: "WWWAuthenticateChallengeError",
    code: "OAUTH_WWW_AUTHENTICATE_CHALLENGE",
    message: "server responded with a challenge in the WWW-Authenticate HTTP Header",
    cause: [
      { scheme: "basic", parameters: { error: "invalid_client", error_description: "bad\u001b[2Jsecret" } },
    ],
  };
  const before = structuredClone(e);
  const t = translateError(e, request({ serviceAccount: true, authMethod: "client_secret_basic" }));
  assert.deepEqual([t.code, t.exitCode], ["client_rejected", ExitCode.usage]);
  assert.equal(t.message, "sso.example.org rejected client nix-cache: invalid_client (bad [2Jsecret)");
  assert.match(t.hint ?? "", /token_endpoint_auth_method \(now client_secret_basic\)/);
  assert.deepEqual(e, before);
});

test("validation failures are named as such in a sign-in, and left to the general line elsewhere", () => {
  const e = {
    name: "OperationProcessingError",
    code: "OAUTH_JWT_TIMESTAMP_CHECK_FAILED",
    message: 'unexpected JWT "iat" (issued at) claim value, it is in the future',
  };
  assert.equal(said(e, { what: "code exchange", signIn: true })[0], "provider_answer_invalid");
  assert.deepEqual(said(e), ["provider_request_failed", `refresh with sso.example.org failed: ${e.message}`]);
});
