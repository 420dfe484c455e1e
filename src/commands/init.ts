/**
 * `init`: writes a configuration file from three flags, after checking what can be checked: the
 * values (as `login` would load them) and the issuer's discovery document. Nobody has to copy TOML.
 */
import { existsSync } from "node:fs";
import { writeFileAtomic } from "../fs/atomic-file.ts";
import { configCandidates } from "../config/find.ts";
import { checkHomeIsOurs } from "../config/home.ts";
import { parseConfig } from "../config/load.ts";
import { record, say, verbose, type Context } from "../context.ts";
import { CliError, ExitCode } from "../errors.ts";
import { CALLBACK_PATH, redirectUriToRegister } from "../oidc/loopback.ts";
import { providerSettings } from "../core/setup.ts";
import { Provider } from "../oidc/provider.ts";

export interface InitOptions {
  issuer?: string | undefined;
  clientId?: string | undefined;
  cacheHost?: string | undefined;
  cacheUrl?: string | undefined;
  clientSecretFile?: string | undefined;
  netrcPath?: string | undefined;
  force?: boolean | undefined;
}

/**
 * A TOML basic string (TOML 1.0, "String"): a quotation mark, a backslash and the control
 * characters other than tab (U+0000-U+0008, U+000A-U+001F, U+007F) must be escaped. JSON.stringify,
 * used before, leaves U+007F raw, so `--client-id $'a\x7fb'` made a file that does not load.
 */
const tomlString = (s: string) =>
  // eslint-disable-next-line no-control-regex
  `"${s.replace(/["\\\u0000-\u0008\u000a-\u001f\u007f]/g, (c) =>
    c === '"' ? '\\"' : c === "\\" ? "\\\\" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  )}"`;

/** `--cache-host a,b`: several hosts (or URLs: neither has a comma) become a TOML array. */
function listValue(flag: string): string {
  const hosts = flag
    .split(",")
    .map((h) => h.trim())
    .filter((h) => h !== "");
  return hosts.length === 1 ? tomlString(hosts[0] as string) : `[${hosts.map(tomlString).join(", ")}]`;
}

export async function init(ctx: Context, opts: InitOptions): Promise<number> {
  const missing = [
    ["--issuer", opts.issuer],
    ["--client-id", opts.clientId],
    ["--cache-host", opts.cacheHost],
  ].filter(([, v]) => v === undefined || v.trim() === "");
  if (missing.length > 0) {
    throw new CliError("init_missing_options", `init needs ${missing.map(([k]) => k).join(", ")}`, {
      exitCode: ExitCode.usage,
      hint: "e.g. nix-cache-login init --issuer https://sso.example.org/realms/nix --client-id nix-cache --cache-host cache.example.org",
    });
  }
  // The first candidate is where `login` looks first: --config, $NIX_CACHE_LOGIN_CONFIG, else
  // $XDG_CONFIG_HOME/nix-cache-login/config.toml.
  const target = configCandidates(ctx.configFlag, ctx.env)[0]?.path as string;
  checkHomeIsOurs(ctx.env, [target]);
  if (existsSync(target) && opts.force !== true) {
    throw new CliError("config_exists", `${target} exists already`, {
      exitCode: ExitCode.usage,
      hint: "edit it, or replace it with `nix-cache-login init ... --force`",
    });
  }
  const lines = [
    "# Written by `nix-cache-login init`; see `nix-cache-login --help` for the other keys.",
    `issuer = ${tomlString((opts.issuer as string).trim())}`,
    `client_id = ${tomlString((opts.clientId as string).trim())}`,
    `cache_host = ${listValue(opts.cacheHost as string)}`,
    ...(opts.cacheUrl === undefined ? [] : [`cache_url = ${listValue(opts.cacheUrl)}`]),
    ...(opts.netrcPath === undefined ? [] : [`netrc_path = ${tomlString(opts.netrcPath)}`]),
    ...(opts.clientSecretFile === undefined
      ? []
      : [`client_secret_file = ${tomlString(opts.clientSecretFile)}`]),
  ];
  const text = `${lines.join("\n")}\n`;
  // Checked exactly as `login` will load it: every bad value is named before anything is written.
  const config = parseConfig(text, target, "init", ctx.env);
  const p = new Provider({
    // Only discovery is asked for: no client secret is read.
    settings: providerSettings({ ...config, clientSecretFile: undefined }),
    env: ctx.env,
    log: verbose(ctx),
    now: ctx.now,
    onSlowRequest: ctx.onSlowRequest,
  });
  try {
    await p.metadata();
  } catch (e) {
    const why = e instanceof CliError ? e.message : String((e as Error).message);
    throw new CliError(
      "issuer_no_discovery",
      `--issuer ${config.issuer}: no OpenID Connect discovery document there (${why})`,
      {
        exitCode: e instanceof CliError ? e.exitCode : ExitCode.failure,
        hint: "check the URL (Keycloak: https://HOST/realms/REALM) and that this machine reaches it",
        cause: e,
      },
    );
  }
  if (config.mode === "user") {
    // As `login` does before it opens a browser: does the provider know the client and the
    // loopback redirect URI? (A free port is not needed: the answer is not followed.)
    const port = config.callbackPort ?? 49152 + Math.floor(Math.random() * 16384);
    await p.checkClient(
      `http://127.0.0.1:${port}${CALLBACK_PATH}`,
      redirectUriToRegister(config.callbackPort),
      "--client-id",
    );
  }
  await writeFileAtomic(target, text, "utf8");
  record(ctx, { action: "written", config_path: target });
  say(
    ctx,
    `Wrote ${target} (${p.host} answers with its discovery document${config.mode === "user" ? ` and knows client_id ${config.clientId}` : ""}).`,
  );
  say(
    ctx,
    config.mode === "service-account"
      ? "Next: `nix-cache-login service-account`, then `nix-cache-login timer install --system`."
      : "Next: `nix-cache-login login`, then `nix-cache-login timer install`.",
  );
  return ExitCode.ok;
}
