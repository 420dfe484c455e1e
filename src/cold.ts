/**
 * The commands that talk to the provider, the cache or a browser. The build makes this a bundle
 * of its own (dist/commands.cjs), loaded only when one of them runs: `status`, `--help` and a
 * timer's `refresh --min-valid` never parse openid-client and its peers.
 *
 * Errors are rendered here, by this bundle's own copy of the error types.
 */
import type { Context } from "./context.ts";
import type { LoginOptions } from "./commands/login.ts";
import type { RefreshOptions } from "./commands/refresh.ts";
import type { CommandTable } from "./commands/table.ts";
import type { InitOptions } from "./commands/init.ts";
import type { TimerOptions } from "./commands/timer.ts";
import { onSlowRequest } from "./oidc/http.ts";
import { renderError } from "./render.ts";

export type ColdCommand =
  | { name: "login"; opts: LoginOptions }
  | { name: "refresh"; opts: RefreshOptions }
  | { name: "service-account"; opts: RefreshOptions }
  | { name: "logout" }
  | { name: "doctor"; opts: { json?: boolean | undefined } }
  | { name: "init"; opts: InitOptions }
  | { name: "timer"; opts: TimerOptions }
  | { name: "completion"; shell: "bash" | "zsh" | "fish"; table: CommandTable };

export async function runCommand(ctx: Context, cmd: ColdCommand): Promise<number> {
  if (ctx.stderr.isTTY === true && ctx.quiet !== true) {
    onSlowRequest((host) => ctx.stderr.write(`waiting for ${host} ...\n`));
  }
  try {
    switch (cmd.name) {
      case "login":
        return await (await import("./commands/login.ts")).login(ctx, cmd.opts);
      case "refresh":
        return await (await import("./commands/refresh.ts")).refresh(ctx, cmd.opts);
      case "service-account":
        return await (await import("./commands/service-account.ts")).serviceAccount(ctx, cmd.opts);
      case "logout":
        return await (await import("./commands/logout.ts")).logout(ctx);
      case "doctor":
        return await (await import("./commands/doctor.ts")).doctor(ctx, cmd.opts);
      case "init":
        return await (await import("./commands/init.ts")).init(ctx, cmd.opts);
      case "timer":
        return await (await import("./commands/timer.ts")).timer(ctx, cmd.opts);
      case "completion":
        ctx.stdout.write((await import("./commands/completion.ts")).completionScript(cmd.shell, cmd.table));
        return 0;
    }
  } catch (e) {
    return renderError(e, ctx, ctx.verbose, ctx.json === true);
  }
}
