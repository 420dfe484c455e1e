/**
 * The pieces behind issue 21, on their own: the peer-uid lookup against real loopback sockets, the
 * path walk against real files of another user (needs root, as CI has), and the ExecStart escapes.
 */
import assert from "node:assert/strict";
import { chmod, chown, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { systemdCommand } from "../../src/timer/units.ts";
import { CliError } from "../../src/errors.ts";
import { UntrustedPath, walkTrusted } from "../../src/fs/file-trust.ts";
import { makeDirs } from "../../src/fs/make-dirs.ts";
import { peerOwner, type PeerOwner } from "../../src/os/peer-uid.ts";
import { firstAccount } from "../../src/commands/login.ts";
import { ensureUser, runAs, USER_B, type TestUser } from "../support/users.ts";

let dir: string;
let other: TestUser;
before(async () => {
  other = await ensureUser(USER_B);
  dir = await mkdtemp(join(tmpdir(), "ncl-trust-"));
  await chmod(dir, 0o755);
});
after(() => rm(dir, { recursive: true, force: true }));

/** Who peerOwner says made the TCP connection `connect` makes to a server on 127.0.0.1. */
async function connection(connect: (port: number) => Promise<unknown>): Promise<{ owner: PeerOwner }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
    const client = connect(port);
    const socket = await accepted;
    const owner = peerOwner(
      { address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 },
      { address: socket.localAddress ?? "", port: socket.localPort ?? 0 },
    );
    socket.destroy();
    await client;
    return { owner };
  } finally {
    server.close();
  }
}

test("peerOwner: a connection of our own is ours; another user's (a real process of theirs) is theirs", async () => {
  let client: net.Socket | undefined;
  const own = await connection(async (port) => {
    client = net.connect(port, "127.0.0.1");
    await new Promise((r) => client?.once("connect", r));
  });
  client?.destroy();
  assert.deepEqual(own.owner, { uid: process.getuid?.() });

  // The other user's client keeps its connection open until we have looked and closed it.
  let theirsDone: Promise<unknown> | undefined;
  const theirs = await connection((port) => {
    theirsDone = runAs(other, process.execPath, [
      "-e",
      `const s = require("node:net").connect(${port}, "127.0.0.1"); s.on("error", () => {}); s.on("close", () => process.exit(0));`,
    ]);
    return Promise.resolve();
  });
  await theirsDone;
  assert.deepEqual(theirs.owner, { uid: other.uid });
});

test("peerOwner: a port nobody connects from is not found", () => {
  assert.equal(peerOwner({ address: "127.0.0.1", port: 1 }, { address: "127.0.0.1", port: 2 }), "not-found");
});

test("walkTrusted: every directory and link on the way is checked; sticky directories pass", async () => {
  const sticky = join(dir, "sticky");
  await mkdir(sticky);
  await chmod(sticky, 0o1777);
  const mine = join(sticky, "mine");
  await mkdir(mine, { mode: 0o700 });
  await writeFile(join(mine, "file"), "x");
  assert.equal(walkTrusted(join(mine, "file")).real, join(mine, "file"));
  assert.equal(walkTrusted(join(mine, "missing", "file")).st, undefined);

  // Another user's symlink in the sticky directory, to a directory of ours: refused at the link.
  const link = join(sticky, "link");
  const made = await runAs(other, "ln", ["-s", mine, link]);
  assert.equal(made.code, 0, made.stderr);
  assert.throws(
    () => walkTrusted(join(link, "file")),
    (e: unknown) =>
      e instanceof UntrustedPath && e.at === link && /^a symbolic link owned by uid /.test(e.why),
  );

  // Our link to a directory of theirs: refused at their directory.
  const theirs = join(dir, "theirs");
  await mkdir(theirs);
  await chown(theirs, other.uid, other.gid);
  const ours = join(dir, "ours");
  await symlink(theirs, ours);
  assert.throws(
    () => walkTrusted(join(ours, "file")),
    (e: unknown) => e instanceof UntrustedPath && e.at === theirs,
  );

  // A directory others can write, not sticky: refused, whatever is below.
  const open = join(dir, "open");
  await mkdir(open);
  await chmod(open, 0o777);
  assert.throws(
    () => walkTrusted(join(open, "x", "file")),
    (e: unknown) =>
      e instanceof UntrustedPath &&
      e.at === open &&
      /writable by (group and )?others .* not sticky/.test(e.why),
  );
  // ... relative symlinks are followed from where they are.
  await symlink("../sticky/mine", join(mine, "..", "rel"));
  assert.equal(walkTrusted(join(sticky, "rel", "file")).real, join(mine, "file"));
});

test("timer status reads ExecStart with systemd's escapes reverted: quotes, backslashes, %% and $$", () => {
  assert.deepEqual(
    systemdCommand('ExecStart=/usr/bin/node "/opt/100%% sure/a \\"b\\" \\\\ $$HOME" refresh\n').argv,
    ["/usr/bin/node", '/opt/100% sure/a "b" \\ $HOME', "refresh"],
  );
});

test("firstAccount: only when there is no earlier account, naming the new one", () => {
  assert.match(firstAccount(undefined, { username: "alice" }) ?? "", /"alice"/);
  assert.equal(firstAccount({ username: "alice" }, { username: "alice" }), undefined);
  assert.equal(firstAccount({ subject: "s" }, { username: "bob" }), undefined);
  assert.equal(firstAccount(undefined, {}), undefined);
});

test("makeDirs never creates a directory inside another user's directory", async () => {
  const theirs = join(dir, "their-home");
  await mkdir(theirs, { mode: 0o755 });
  await chown(theirs, other.uid, other.gid);
  await assert.rejects(makeDirs(join(theirs, ".local", "state"), "the state directory"), (e: unknown) => {
    assert.ok(e instanceof CliError);
    assert.equal(e.code, "dir_not_ours");
    assert.match(
      e.message,
      /^the state directory: cannot create .*\/their-home\/\.local: .*their-home is owned by uid /,
    );
    return true;
  });
  assert.deepEqual(await readdir(theirs), [], "nothing made there");
});
