// Issue 12's pure parts: provider text on its way to the terminal, timer delays beyond setTimeout's
// range, expiry arithmetic with absurd lifetimes, the device poll interval, the https rule for
// endpoints we call ourselves, and the notice when another account signs in.
import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { accountChange } from "../../src/commands/login.ts";
import { verbose, warn, type Context } from "../../src/context.ts";
import { CliError } from "../../src/errors.ts";
import { checkedEndpoint } from "../../src/net/http.ts";
import { checkEndpoints } from "../../src/oidc/discovery.ts";
import { clampPollInterval } from "../../src/oidc/device-poll.ts";
import {
  expiryAfter,
  jwtExpiry,
  LATEST_EXPIRY_MS,
  tokenSet,
  type TokenResponse,
} from "../../src/oidc/token-set.ts";
import { printable, printableLines, quoted } from "../../src/text.ts";
import { MAX_TIMER_MS, setLongTimeout } from "../../src/net/timers.ts";
import { check, renderText } from "../../src/doctor/report.ts";

test("printable: C0, DEL, C1 and line separators become blanks; long text is cut", () => {
  assert.equal(printable("a\u001b[2Jb\u0007c\u009bd\u2028e\r\nf"), "a [2Jb c d e  f");
  assert.equal(printable("x".repeat(400)).length, 303);
  assert.equal(printableLines("line 1\n\u001b[31mline 2\u0000"), "line 1\n [31mline 2 ");
});

test("printable: bidi overrides, isolates and invisible format characters (Unicode Cf) become blanks too", () => {
  // "evil\u202Egnp.exe" would show as "evilexe.png"; a zero-width space hides inside a word.
  for (const c of [
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
  ]) {
    assert.equal(printable(`a${c}b`), "a b", JSON.stringify(c));
  }
  for (const c of [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u200e",
    "\u200f",
    "\u061c",
    "\ufeff",
    "\u00ad",
    "\u2060",
    "\u{e0041}",
  ]) {
    assert.equal(printable(`a${c}b`), "a b", JSON.stringify(c));
  }
  assert.equal(printable("signed in as \u202egnp.exe"), "signed in as  gnp.exe");
  assert.equal(printableLines("line 1\n\u202eline 2\u2067"), "line 1\n line 2 ");
  // Letters of any script stay.
  assert.equal(printable("Zoë Ωmega ñ 日本"), "Zoë Ωmega ñ 日本");
});

test("--verbose and warning lines lose control and format characters; error lines already did", () => {
  let out = "";
  const ctx = { verbose: true, stderr: { write: (t: string) => (out += t) } } as unknown as Context;
  verbose(ctx)("provider said \u001b]0;title\u0007 \u202eevil");
  warn(ctx, "could not revoke: \u001b[2J\u009b");
  assert.equal(out, "verbose: provider said  ]0;title   evil\nwarning: could not revoke:  [2J \n");
});

test("quoted: printable ASCII in double quotes, anything else a question mark; long text is cut", () => {
  assert.equal(quoted("https://sso.example.org/\u001b]0;x\u0007\u00e9"), '"https://sso.example.org/?]0;x??"');
  assert.equal(quoted("x".repeat(250)), JSON.stringify(`${"x".repeat(200)}...`));
});

test("setLongTimeout: a delay beyond 2^31-1 ms waits in steps instead of firing at once", () => {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const origNow = performance.now;
  let now = 0;
  performance.now = () => now;
  try {
    let fired = false;
    const day = 86_400_000;
    setLongTimeout(() => (fired = true), 25 * day);
    // A plain setTimeout(fn, 25 days) would fire after 1 ms.
    now += 1;
    mock.timers.tick(1);
    assert.equal(fired, false);
    now += MAX_TIMER_MS;
    mock.timers.tick(MAX_TIMER_MS);
    assert.equal(fired, false, "still 0.2 days to go");
    now += 25 * day - MAX_TIMER_MS;
    mock.timers.tick(25 * day - MAX_TIMER_MS);
    assert.equal(fired, true);

    let cancelled = true;
    const cancel = setLongTimeout(() => (cancelled = false), 30 * day);
    cancel();
    now += 31 * day;
    mock.timers.tick(31 * day);
    assert.equal(cancelled, true);
  } finally {
    performance.now = origNow;
    mock.timers.reset();
  }
});

test("expiryAfter: huge lifetimes are capped (no RangeError), nonsense means not stated", () => {
  const now = Date.UTC(2026, 0, 1);
  assert.equal(expiryAfter(now, 300)?.getTime(), now + 300_000);
  assert.equal(expiryAfter(now, 1e300)?.toISOString(), new Date(LATEST_EXPIRY_MS).toISOString());
  assert.equal(expiryAfter(now, Number.MAX_VALUE)?.toISOString(), "9999-12-31T23:59:59.000Z");
  assert.equal(expiryAfter(now, 0), null);
  assert.equal(expiryAfter(now, -5), null);
  assert.equal(expiryAfter(now, Number.NaN), null);
  const jwt = (payload: unknown) => `e30.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.c2ln`;
  assert.equal(jwtExpiry(jwt({ exp: 1e300 }))?.toISOString(), "9999-12-31T23:59:59.000Z");
  assert.equal(jwtExpiry(jwt({ exp: -1e300 }))?.getTime(), 0);
  assert.equal(jwtExpiry(jwt({ exp: 1_800_000_000 }))?.getTime(), 1_800_000_000_000);
});

test("tokenSet: expires_in 0 is a token expired at issue time, not one of default_token_lifetime", () => {
  const now = Date.UTC(2026, 0, 1);
  const jwt = (payload: unknown) => `e30.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.c2ln`;
  // As openid-client hands it over (its helpers; expires_in already checked to be a number >= 0).
  const answer = (access_token: string, expires_in?: number): TokenResponse =>
    ({
      access_token,
      token_type: "bearer",
      ...(expires_in === undefined ? {} : { expires_in }),
      expiresIn: () => expires_in,
      claims: () => undefined,
    }) as unknown as TokenResponse;
  const opaque = tokenSet(answer("opaque-1", 0), now, 300);
  assert.equal(opaque.accessExpiresAt?.getTime(), now);
  assert.equal(opaque.accessExpiryAssumed, false);
  // expires_in comes before the JWT's `exp`, whatever its value (the rule of TokenSet).
  const withExp = tokenSet(answer(jwt({ exp: now / 1000 + 3600 }), 0), now, 300);
  assert.equal(withExp.accessExpiresAt?.getTime(), now);
  assert.equal(withExp.accessExpiryAssumed, false);
  assert.equal(
    tokenSet(answer(jwt({ exp: now / 1000 + 3600 })), now, 300).accessExpiresAt?.getTime(),
    now + 3600_000,
  );
  assert.equal(tokenSet(answer("opaque-2"), now, 300).accessExpiryAssumed, true);
  assert.equal(tokenSet(answer("opaque-3", 1.5), now, 300).accessExpiresAt?.getTime(), now + 1500);
  // 1e308 s is Infinity ms: capped like any huge lifetime, not taken as "not stated".
  assert.equal(tokenSet(answer("opaque-4", 1e308), now, 300).accessExpiresAt?.getTime(), LATEST_EXPIRY_MS);
  // openid-client refuses these answers; should one get here, it states nothing.
  for (const nonsense of [-5, Number.NaN, Number.POSITIVE_INFINITY, "300", null]) {
    const set = tokenSet(answer("opaque-5", nonsense as number), now, 300);
    assert.equal(set.accessExpiresAt?.getTime(), now + 300_000, String(nonsense));
    assert.equal(set.accessExpiryAssumed, true, String(nonsense));
  }
});

test("device poll interval: 5 s to 60 s whatever the provider says", () => {
  assert.equal(clampPollInterval(0.001), 5);
  assert.equal(clampPollInterval(undefined), 5);
  assert.equal(clampPollInterval(7), 7);
  assert.equal(clampPollInterval(1e9), 60);
  assert.equal(clampPollInterval(Number.POSITIVE_INFINITY), 5);
});

test("endpoints we call ourselves: https, or http on loopback for a loopback issuer only", () => {
  const https = "https://sso.example.org/realms/x";
  const loop = "http://127.0.0.1:8080/realms/x";
  assert.equal(
    checkedEndpoint("https://sso.example.org/logout", https, "logout endpoint").host,
    "sso.example.org",
  );
  assert.equal(checkedEndpoint("http://127.0.0.1:8080/logout", loop, "logout endpoint").port, "8080");
  for (const [url, issuer] of [
    ["http://sso.example.org/logout", https],
    ["http://127.0.0.1:8080/logout", https],
    ["http://logout.example/logout", loop],
    ["file:///etc/passwd", loop],
    ["not a url", https],
  ] as const) {
    assert.throws(() => checkedEndpoint(url, issuer, "logout endpoint"), CliError, url);
  }
});

test("checkEndpoints: every endpoint field of a discovery document, by the same rule; other fields are not addresses", () => {
  const loop = "http://127.0.0.1:8080/realms/x";
  const doc = {
    issuer: loop,
    authorization_endpoint: "http://127.0.0.1:8080/realms/x/auth",
    token_endpoint: "http://localhost:8080/realms/x/token",
    jwks_uri: "https://keys.example.org/certs",
    revocation_endpoint: "http://[::1]:8080/realms/x/revoke",
    grant_types_supported: ["refresh_token"],
  };
  assert.doesNotThrow(() => checkEndpoints(doc, loop));
  assert.throws(
    () => checkEndpoints(doc, "https://sso.example.org/realms/x"),
    (e: unknown) =>
      e instanceof CliError &&
      e.code === "provider_endpoint_not_https" &&
      /sign-in endpoint \(authorization_endpoint\) at http:\/\/127\.0\.0\.1:8080/.test(e.message),
  );
  for (const field of [
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "revocation_endpoint",
    "end_session_endpoint",
    "device_authorization_endpoint",
    "pushed_authorization_request_endpoint",
  ]) {
    assert.throws(
      () => checkEndpoints({ ...doc, [field]: "http://idp.corp.example/x" }, loop),
      (e: unknown) => e instanceof CliError && e.message.includes(`(${field}) at http://idp.corp.example`),
      field,
    );
  }
});

test("accountChange: by subject when both have one, else by name; nothing for the same account", () => {
  assert.equal(accountChange(undefined, { subject: "1", username: "alice" }), undefined);
  assert.equal(
    accountChange({ subject: "1", username: "alice" }, { subject: "1", username: "Alice" }),
    undefined,
  );
  assert.equal(
    accountChange({ subject: "1", username: "alice" }, { subject: "2", username: "mallory" }),
    "signed in as mallory, a different account than before (alice); the netrc now holds the token of mallory",
  );
  assert.match(
    accountChange({ username: "alice" }, { subject: "2", username: "bob" }) ?? "",
    /as bob, .*\(alice\)/,
  );
});

test("doctor's report: text from a cache or a program reaches the terminal without control characters", () => {
  const text = renderText({
    configPath: null,
    checks: [
      check("cache", "cache", "problem", "the cache rejected the token (\u001b]0;owned\u0007invalid_token)", {
        details: ["GET https://cache.example.org/nix-cache-info -> 401\u009b2J"],
      }),
    ],
  });
  // eslint-disable-next-line no-control-regex
  assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  assert.match(text, /the cache rejected the token \( \]0;owned invalid_token\)/);
  assert.match(
    text,
    /\n1 problem found: cache\.\nWhat each check means and the usual causes: docs\/troubleshooting\.md\n$/,
  );
});
