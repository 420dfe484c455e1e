import assert from "node:assert/strict";
import { test } from "node:test";
import { LoopbackServer } from "../../src/oidc/loopback.ts";

const STATE = "s".repeat(43);

async function armed(): Promise<LoopbackServer> {
  const server = await LoopbackServer.listen(undefined, "test", () => {});
  server.expect(() => Promise.resolve(new URL("https://id.example.org/auth")), STATE);
  return server;
}

test("a pasted address is checked like a callback: redirect URI first, then state", async () => {
  const server = await armed();
  try {
    const port = server.port;
    assert.equal(server.acceptPasted("no address at all"), "not-this-address");
    assert.equal(
      server.acceptPasted(`http://127.0.0.1:${port}/elsewhere?code=c&state=${STATE}`),
      "not-this-address",
    );
    assert.equal(
      server.acceptPasted(`http://127.0.0.1:${port + 1}/callback?code=c&state=${STATE}`),
      "not-this-address",
    );
    assert.equal(
      server.acceptPasted(`https://127.0.0.1:${port}/callback?code=c&state=${STATE}`),
      "not-this-address",
    );
    assert.equal(server.acceptPasted(`http://127.0.0.1:${port}/callback?code=c&state=other`), "wrong-state");
    assert.equal(server.acceptPasted(`http://127.0.0.1:${port}/callback?code=c`), "wrong-state");
    // Copied without the scheme (some address bars hide it), with blanks around it.
    assert.equal(
      server.acceptPasted(`  127.0.0.1:${port}/callback?code=the-code&state=${STATE}  `),
      "accepted",
    );
    const outcome = await server.callback;
    assert.equal(outcome.kind, "code");
    assert.equal(outcome.kind === "code" ? outcome.url.searchParams.get("code") : undefined, "the-code");
    // The sign-in has its answer: later pastes change nothing.
    assert.equal(server.acceptPasted(`http://127.0.0.1:${port}/callback?code=x&state=${STATE}`), "finished");
  } finally {
    await server.close();
  }
});

test("a pasted error response ends the sign-in with the provider's error, made printable", async () => {
  const server = await armed();
  try {
    const url = `${server.redirectUri}?error=access_denied&error_description=no%1b[31m&state=${STATE}`;
    assert.equal(server.acceptPasted(url), "accepted");
    const outcome = await server.callback;
    assert.deepEqual(outcome.kind === "error" ? [outcome.error, outcome.description] : [], [
      "access_denied",
      "no [31m",
    ]);
  } finally {
    await server.close();
  }
});
