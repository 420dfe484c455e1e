// A "browser command" for `nix-cache-login login --browser-command ...`: it opens the URL it is given
// (the last argument) in headless Chromium and plays the user on the test realm's pages.
//
// DRIVER_MODE:
//   login        (default) sign in on the realm's login form and wait for the CLI's answer page
//   deny         press "[ Cancel ]" on the login page (the realm answers access_denied)
//   forge        first send the loopback server forged callbacks (wrong state), then sign in
//   hold         stop at the login page (write DRIVER_READY), wait until the loopback server is gone
//   device       the URL is the device verification URI: confirm the code, sign in
//   device-deny  the URL is the device verification URI: press "No"
//   capture      sign in, but the final redirect back to the loopback server never reaches it (as
//                when the browser runs on another machine): the address it would have loaded is
//                written to DRIVER_CAPTURE, for the test to paste into the CLI
//   stuck        sign in on the login form and report the page the provider shows then, for a
//                sign-in that never comes back (a disabled account)
//   show         only load the URL and report the page (what a user would see there)
//   keycloak-device  the URL is Keycloak's device verification URI (complete, with the code):
//                sign in, grant access if asked, wait for Keycloak's "Device Login Successful"
// The login form is the test realm's (input[name=login]) or Keycloak's (input[name=username]).
// DRIVER_RESULT: file that receives a JSON summary; written last, after Chromium is gone. Its
//                `launcher` is the $NIX_CACHE_LOGIN_LAUNCHER the driver inherited, or null.
// DRIVER_READY:  file written in hold mode once the login page is shown.
// DRIVER_USER / DRIVER_PASSWORD: credentials (alice / alice-password).
// DRIVER_TIMEOUT_MS: hard limit for the whole run (default 60 s).
// DRIVER_WAIT_FOR: a file to wait for (once Chromium runs) before the URL is opened: a test's
//                attacker writes it once it has raced for the URL, so it always goes first.

import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { portIsFree } from "./cli.ts";
import type { Page } from "playwright-core";
import { launchChromium, type RunningChromium } from "./chromium.ts";

type Result = Record<string, unknown>;

const url = process.argv.at(-1) ?? "";
const mode = process.env.DRIVER_MODE ?? "login";
const user = process.env.DRIVER_USER ?? "alice";
const password = process.env.DRIVER_PASSWORD ?? "alice-password";
const started = performance.now();

function log(line: string): void {
  process.stderr.write(`[driver] ${line}\n`);
}

async function pageSummary(page: Page): Promise<{ title: string; text: string }> {
  const title = (
    (await page
      .locator("h1")
      .first()
      .textContent({ timeout: 5000 })
      .catch(() => "")) ?? ""
  ).trim();
  const text = (
    (await page
      .locator("body")
      .textContent({ timeout: 5000 })
      .catch(() => "")) ?? ""
  )
    .replace(/\s+/g, " ")
    .trim();
  return { title, text };
}

async function fillLogin(page: Page): Promise<void> {
  const field = page.locator("input[name=login], input[name=username]").first();
  await field.waitFor({ timeout: 20_000 });
  await field.fill(user);
  await page.fill("input[name=password]", password);
}

/** The login form's submit button: Keycloak's #kc-login, or the test realm's only submit button. */
function submitButton(page: Page) {
  return page.locator("#kc-login").or(page.locator("button[type=submit]")).first();
}

/** Submits the login form and waits for the redirect back to the loopback server to be answered. */
async function signInAndReturn(page: Page, origin: string): Promise<Result> {
  await fillLogin(page);
  const answered = page.waitForResponse((r) => r.url().startsWith(`${origin}/callback`), { timeout: 20_000 });
  await submitButton(page).click();
  const response = await answered;
  await page.waitForLoadState("load");
  const callback = new URL(response.url());
  return {
    status: response.status(),
    ...(await pageSummary(page)),
    // Handed to the test only so it can check that the CLI never prints the code.
    code: callback.searchParams.get("code"),
  };
}

async function visit(page: Page, target: string): Promise<Result> {
  const response = await page.goto(target, { waitUntil: "load" });
  return { url: target.replace(/\?.*/, "?..."), status: response?.status(), ...(await pageSummary(page)) };
}

async function drive(page: Page): Promise<Result> {
  const target = new URL(url);
  const origin = target.origin;
  switch (mode) {
    case "login": {
      await page.goto(url);
      return { mode, ...(await signInAndReturn(page, origin)) };
    }
    case "stuck": {
      await page.goto(url);
      await fillLogin(page);
      const loaded = page.waitForEvent("load", { timeout: 20_000 });
      await submitButton(page).click();
      await loaded;
      return { mode, at: new URL(page.url()).pathname, ...(await pageSummary(page)) };
    }
    case "show":
      return { mode, ...(await visit(page, url)) };
    case "deny": {
      await page.goto(url);
      await page.locator("input[name=login]").waitFor({ timeout: 20_000 });
      const answered = page.waitForResponse((r) => r.url().startsWith(`${origin}/callback`), {
        timeout: 20_000,
      });
      await page.click("text=[ Cancel ]");
      const response = await answered;
      await page.waitForLoadState("load");
      return { mode, status: response.status(), ...(await pageSummary(page)) };
    }
    case "forge": {
      // Someone who does not know the state tries to plant a code, then to end the sign-in.
      const forged = [
        await visit(page, `${origin}/callback?code=forged-code&state=forged-state`),
        await visit(
          page,
          `${origin}/callback?error=access_denied&error_description=forged&state=forged-state`,
        ),
        await visit(page, `${origin}/callback?code=no-state-at-all`),
        await visit(page, `${origin}/elsewhere`),
      ];
      await page.goto(url);
      return { mode, forged, ...(await signInAndReturn(page, origin)) };
    }
    case "hold": {
      await page.goto(url);
      await page.locator("input[name=login]").waitFor({ timeout: 20_000 });
      if (process.env.DRIVER_READY !== undefined)
        await writeFile(process.env.DRIVER_READY, "login page shown\n");
      log("at the login page; waiting for the loopback server to go away");
      const port = Number(target.port);
      while (!(await portIsFree(port))) await new Promise((r) => setTimeout(r, 100));
      return { mode, portClosedAfterMs: Math.round(performance.now() - started) };
    }
    case "capture": {
      // Every request to the loopback server after the first (GET / -> authorization endpoint) is
      // the redirect back: it is recorded and failed, so the listener never sees it. Through CDP's
      // Fetch domain, which pauses redirect hops too (playwright's page.route does not).
      const cdp = await page.context().newCDPSession(page);
      let first = true;
      const captured = new Promise<string>((resolve) => {
        cdp.on("Fetch.requestPaused", (event: { requestId: string; request: { url: string } }) => {
          if (first) {
            first = false;
            void cdp.send("Fetch.continueRequest", { requestId: event.requestId });
            return;
          }
          void cdp.send("Fetch.failRequest", {
            requestId: event.requestId,
            errorReason: "AddressUnreachable",
          });
          resolve(event.request.url);
        });
      });
      await cdp.send("Fetch.enable", { patterns: [{ urlPattern: `${origin}/*`, requestStage: "Request" }] });
      await page.goto(url);
      await fillLogin(page);
      await page.click("button[type=submit]");
      const address = await captured;
      if (process.env.DRIVER_CAPTURE !== undefined) await writeFile(process.env.DRIVER_CAPTURE, address);
      return { mode, code: new URL(address).searchParams.get("code") };
    }
    case "device":
    case "device-deny": {
      await page.goto(url);
      // The realm's confirmation page (the user code comes in the URL): "Yes" or "No".
      await page.locator("button", { hasText: mode === "device" ? "Yes" : "No" }).click({ timeout: 20_000 });
      if (mode === "device-deny") {
        await page.waitForLoadState("load");
        return { mode, ...(await pageSummary(page)) };
      }
      await fillLogin(page);
      await page.click("button[type=submit]");
      await page.getByText("Device Login Successful").waitFor({ timeout: 20_000 });
      return { mode, ...(await pageSummary(page)) };
    }
    case "keycloak-device": {
      await page.goto(url);
      const success = page.getByText("Device Login Successful");
      const login = page.locator("input[name=username]");
      const grant = page.locator("input[name=accept], button[name=accept]");
      for (let step = 0; step < 5; step++) {
        await success.or(login).or(grant).first().waitFor({ timeout: 20_000 });
        if (await success.isVisible()) return { mode, ...(await pageSummary(page)) };
        const loaded = page.waitForEvent("load", { timeout: 20_000 });
        if (await login.isVisible()) {
          await fillLogin(page);
          await submitButton(page).click();
        } else {
          await grant.first().click();
        }
        await loaded;
      }
      throw new Error(`no "Device Login Successful" page: ${(await pageSummary(page)).text.slice(0, 300)}`);
    }
    default:
      throw new Error(`unknown DRIVER_MODE ${mode}`);
  }
}

async function main(): Promise<number> {
  let chromium: RunningChromium | undefined;
  let result: Result;
  let code = 0;
  const limit = Number(process.env.DRIVER_TIMEOUT_MS ?? 60_000);
  const hardStop = setTimeout(() => {
    log(`gave up after ${limit} ms`);
    void chromium?.close().finally(() => process.exit(3));
  }, limit);
  try {
    if (!/^https?:\/\//.test(url))
      throw new Error(`expected a URL as the last argument, got ${JSON.stringify(url)}`);
    chromium = await launchChromium(log);
    const waitFor = process.env.DRIVER_WAIT_FOR;
    if (waitFor !== undefined) {
      log(`waiting for ${waitFor}`);
      while (!existsSync(waitFor)) await new Promise((r) => setTimeout(r, 20));
    }
    const context = await chromium.browser.newContext();
    const page = await context.newPage();
    result = { ok: true, ...(await drive(page)) };
  } catch (e) {
    log(`failed: ${(e as Error).stack ?? String(e)}`);
    result = { ok: false, mode, error: (e as Error).message };
    code = 1;
  } finally {
    await chromium?.close();
    clearTimeout(hardStop);
  }
  result.wallMs = Math.round(performance.now() - started);
  // What the CLI keeps to itself must not reach the programs it starts (src/os/env.ts OWN_ONLY).
  result.launcher = process.env.NIX_CACHE_LOGIN_LAUNCHER ?? null;
  if (process.env.DRIVER_RESULT !== undefined)
    await writeFile(process.env.DRIVER_RESULT, `${JSON.stringify(result)}\n`);
  log(`done (${mode}) in ${result.wallMs} ms`);
  return code;
}

process.exitCode = await main();
