// Fetches, verifies and prepares the pinned Keycloak for the end-to-end tests (see
// test/support/keycloak.ts), so that `npm test` downloads it before the tests start rather than
// inside one. `node --import tsx scripts/keycloak.ts prepare` (what scripts/test.sh runs), or
// `... start` to run one by hand (prints its URLs, stops on Ctrl-C).
import { prepareKeycloak, startKeycloak, testCacheRoot } from "../test/support/keycloak.ts";

const command = process.argv[2] ?? "prepare";
if (command === "prepare") {
  const p = await prepareKeycloak();
  process.stdout.write(`Keycloak ${p.version} is ready in ${p.dist} (cache: ${testCacheRoot()})\n`);
} else if (command === "start") {
  const kc = await startKeycloak();
  process.stdout.write(
    `Keycloak ${kc.version} (pid ${kc.pid}) started in ${Math.round(kc.startMs)} ms at ${kc.httpBase} and ${kc.httpsBase}\n` +
      `admin console: ${kc.httpBase}/admin/ (user ${kc.admin.username}; password in ${testCacheRoot()}/keycloak-${kc.version}/ready.json)\n`,
  );
  await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
  await kc.stop();
} else {
  process.stderr.write("usage: node --import tsx scripts/keycloak.ts [prepare|start]\n");
  process.exitCode = 2;
}
