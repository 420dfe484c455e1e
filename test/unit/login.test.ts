import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { commandArgv, splitCommand, splitList } from "../../src/os/browser.ts";
import { noLocalBrowser } from "../../src/commands/login.ts";
import { renderPage } from "../../src/oidc/loopback.ts";

const URL = "http://127.0.0.1:4711/";

describe("browser command", () => {
  test("splits like a shell, without expansion", () => {
    assert.deepEqual(splitCommand("firefox --new-window"), ["firefox", "--new-window"]);
    assert.deepEqual(splitCommand("  'my browser'  --flag=\"a b\" c\\ d "), [
      "my browser",
      "--flag=a b",
      "c d",
    ]);
    assert.deepEqual(splitCommand(`"say \\"hi\\" \\$HOME" '$HOME' ''`), ['say "hi" $HOME', "$HOME", ""]);
    assert.throws(() => splitCommand("'open"), /unbalanced single quote/);
    assert.throws(() => splitCommand('"open'), /unbalanced double quote/);
  });

  test("the URL replaces %s, else it is appended", () => {
    assert.deepEqual(commandArgv("firefox", URL), ["firefox", URL]);
    assert.deepEqual(commandArgv("chromium --app=%s --x", URL), ["chromium", `--app=${URL}`, "--x"]);
    assert.deepEqual(commandArgv("echo 100%% %s", URL), ["echo", "100%", URL]);
    assert.throws(() => commandArgv("   ", URL), /empty/);
  });

  test("$BROWSER lists are split on ':' outside quotes", () => {
    assert.deepEqual(splitList("firefox:chromium"), ["firefox", "chromium"]);
    assert.deepEqual(splitList("'/opt/a:b/browser' --x::w3m"), ["'/opt/a:b/browser' --x", "w3m"]);
  });
});

describe("choosing the device sign-in", () => {
  test("SSH or no display on Linux means no local browser", () => {
    assert.match(noLocalBrowser({ SSH_CONNECTION: "1 2 3 4", DISPLAY: ":0" }, "linux") ?? "", /SSH/);
    assert.match(noLocalBrowser({}, "linux") ?? "", /no display/);
    assert.match(noLocalBrowser({ SSH_CLIENT: "x" }, "darwin") ?? "", /SSH/);
  });

  test("a display, macOS, Windows or WSL can open a browser", () => {
    assert.equal(noLocalBrowser({ DISPLAY: ":0" }, "linux"), undefined);
    assert.equal(noLocalBrowser({ WAYLAND_DISPLAY: "wayland-0" }, "freebsd"), undefined);
    assert.equal(noLocalBrowser({}, "darwin"), undefined);
    assert.equal(noLocalBrowser({}, "win32"), undefined);
    assert.equal(noLocalBrowser({ WSL_DISTRO_NAME: "Debian" }, "linux"), undefined);
  });
});

test("loopback pages escape what the provider sent and load nothing from outside", () => {
  const html = renderPage({
    status: 400,
    title: "Sign-in <failed>",
    lines: ['<script>alert("x")</script> & more'],
  });
  assert.ok(!html.includes("<script>"));
  assert.match(html, /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt; &amp; more/);
  assert.match(html, /Sign-in &lt;failed&gt;/);
  assert.doesNotMatch(html, /(src|href)=|@import|url\(/);
});
