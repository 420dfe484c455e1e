/**
 * The doctor's Nix verdicts for setups this test machine does not have (Determinate Nix, a
 * multi-user daemon), fed with the facts those setups report. The single-user path runs against
 * the real Nix 2.8 in test/e2e/doctor.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parseChallenge } from "../../src/doctor/cache.ts";
import { daemonCheck, daemonNetrcFile, isTrusted } from "../../src/doctor/daemon.ts";
import { determinateCheck, readDeterminateConfig } from "../../src/doctor/determinate.ts";
import { nixConfTarget, nixNetrcFileCheck } from "../../src/doctor/nix.ts";
import { type NixFacts } from "../../src/doctor/nix-facts.ts";

const NETRC = "/home/alice/.config/nix/netrc";

function facts(over: Partial<NixFacts>): NixFacts {
  return {
    path: "/usr/bin/nix",
    version: "nix (Nix) 2.24.0",
    determinate: false,
    settingsCommand: "nix config show",
    settingsError: undefined,
    netrcFile: "/etc/nix/netrc",
    store: "auto",
    trustedUsers: ["root"],
    multiUser: false,
    platform: "linux",
    ...over,
  };
}

test("single-user, wrong netrc-file: the line for the user's nix.conf and the NixOS form", async () => {
  const c = await nixNetrcFileCheck(facts({}), NETRC, { HOME: "/home/alice" });
  assert.equal(c.status, "problem");
  assert.deepEqual(c.fix, [
    `add this line to /home/alice/.config/nix/nix.conf:  netrc-file = ${NETRC}`,
    `on NixOS:  nix.settings.netrc-file = "${NETRC}";`,
  ]);
  assert.equal(nixConfTarget({ multiUser: false }, { HOME: "/h", NIX_CONF_DIR: "/c" }), "/c/nix.conf");
  const fromEnv = await nixNetrcFileCheck(facts({}), NETRC, { HOME: "/h", NIX_CONFIG: "netrc-file = /x" });
  assert.ok(fromEnv.details.some((d) => d.includes("$NIX_CONFIG")));
  assert.equal((await nixNetrcFileCheck(facts({ netrcFile: `${NETRC}/../netrc` }), NETRC, {})).status, "ok");
});

test("multi-user: the fix goes to /etc/nix/nix.conf, with a daemon restart", async () => {
  const c = await nixNetrcFileCheck(facts({ multiUser: true }), NETRC, { HOME: "/home/alice" });
  assert.equal(c.fix[0], `add this line to /etc/nix/nix.conf:  netrc-file = ${NETRC}`);
  assert.ok(c.details.some((d) => d.includes("systemctl restart nix-daemon")));
});

test("daemon: its own netrc-file from the system nix.conf, else the default /etc/nix/netrc", () => {
  assert.deepEqual(daemonNetrcFile(undefined), { value: "/etc/nix/netrc", fromFile: false });
  assert.deepEqual(daemonNetrcFile("# netrc-file = /nope\nnetrc-file = /a\nnetrc-file=/b # later wins\n"), {
    value: "/b",
    fromFile: true,
  });
  assert.equal(isTrusted(["root", "@wheel"], "alice", ["users", "wheel"]), true);
  assert.equal(isTrusted(["root"], "alice", ["users"]), false);
  assert.equal(isTrusted(["*"], "alice", []), true);
});

test("daemon verdicts: daemon file, trusted user's own file, or a problem naming both", async () => {
  const multi = facts({ multiUser: true, netrcFile: NETRC });
  const viaSystem = await daemonCheck(
    multi,
    { systemConf: `netrc-file = ${NETRC}\n`, user: "alice", groups: [] },
    NETRC,
  );
  assert.equal(viaSystem.status, "ok");

  const trusted = await daemonCheck(
    { ...multi, trustedUsers: ["root", "@wheel"] },
    { systemConf: "", user: "alice", groups: ["wheel"] },
    NETRC,
  );
  assert.equal(trusted.status, "ok");
  assert.match(trusted.summary, /alice is a trusted user/);

  const untrusted = await daemonCheck(multi, { systemConf: "", user: "alice", groups: [] }, NETRC);
  assert.equal(untrusted.status, "problem");
  assert.equal(
    untrusted.summary,
    `the daemon reads /etc/nix/netrc (its default), not ${NETRC}, and alice is not in trusted-users`,
  );
  assert.match(
    untrusted.fix[0] ?? "",
    /^add `netrc-file = .*` to \/etc\/nix\/nix\.conf and run `sudo systemctl restart nix-daemon`$/,
  );
  assert.ok(untrusted.details[0]?.includes("honours a user's netrc-file only for trusted users"));
  // macOS: the daemon is a launchd job, and systemctl does not exist there.
  const mac = await daemonCheck(
    { ...multi, platform: "darwin" },
    { systemConf: "", user: "alice", groups: [] },
    NETRC,
  );
  assert.match(mac.fix[0] ?? "", /and run `sudo launchctl kickstart -k system\/org\.nixos\.nix-daemon`$/);
  const macConf = await nixNetrcFileCheck(facts({ multiUser: true, platform: "darwin" }), NETRC, {
    HOME: "/Users/alice",
  });
  assert.ok(
    macConf.details.some((d) => d.includes("sudo launchctl kickstart -k system/org.nixos.nix-daemon")),
  );
  assert.ok(!macConf.details.some((d) => d.includes("systemctl")));
});

test("Determinate: additionalNetrcSources, the JSON to add, and the restart fact", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ncl-determinate-"));
  try {
    const file = join(dir, "config.json");
    assert.deepEqual(await readDeterminateConfig(file), { kind: "missing" });

    const missing = await determinateCheck({ kind: "missing" }, NETRC);
    assert.equal(missing.status, "problem");
    assert.equal(
      missing.fix[0],
      `add it there: {"authentication": {"additionalNetrcSources": ["${NETRC}"]}}`,
    );
    assert.match(missing.fix[1] ?? "", /restart Determinate Nixd/);

    await writeFile(file, JSON.stringify({ authentication: { additionalNetrcSources: ["/other", NETRC] } }));
    const listed = await determinateCheck(await readDeterminateConfig(file), NETRC);
    assert.equal(listed.status, "ok");
    assert.match(
      listed.details[0] ?? "",
      /only when it starts: it has to be restarted after every token refresh, .*a root unit that watches the netrc/,
    );

    await writeFile(file, "{not json");
    const broken = await determinateCheck(await readDeterminateConfig(file), NETRC);
    assert.equal(broken.status, "problem");
    assert.match(broken.summary, /not valid JSON/);

    const inStore = await determinateCheck({ kind: "parsed", sources: [] }, "/nix/store/abc-netrc");
    assert.match(inStore.summary, /is in \/nix\/store/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  // With Determinate, a netrc-file other than netrc_path is expected (it owns that file).
  const c = await nixNetrcFileCheck(
    facts({ determinate: true, multiUser: true, netrcFile: "/nix/var/determinate/netrc" }),
    NETRC,
    {},
  );
  assert.equal(c.status, "note");
});

test("WWW-Authenticate parameters (quoted, escaped, bare)", () => {
  assert.deepEqual(
    parseChallenge('Bearer realm="x", error="invalid_token", error_description="JWT \\"exp\\" in the past"'),
    { realm: "x", error: "invalid_token", error_description: 'JWT "exp" in the past' },
  );
  assert.deepEqual(parseChallenge("Basic realm=cache"), { realm: "cache" });
  assert.deepEqual(parseChallenge(null), {});
});
