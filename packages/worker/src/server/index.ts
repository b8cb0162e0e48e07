/**
 * `@icr-apps/worker` imported as a package: the issuer and the broker as servers on Node, Deno or Bun
 * (SPEC §9), for a program that starts them itself rather than through the `icr-apps-issuer` bin.
 * The Cloudflare Workers entries (src/index.ts, src/broker/index.ts) are deployed with wrangler from
 * the repository and are not part of the package.
 *
 * ```ts
 * import { currentRuntime, listenerFor, startIssuer } from "@icr-apps/worker"
 * const server = await startIssuer(process.env, await listenerFor(), currentRuntime())
 * ```
 */

/** Starts the broker (SPEC §8) from `BROKER_*` variables; its token cache in SQLite or Postgres. */
export { startBroker } from "./Broker.js"
/** Thrown by startIssuer and startBroker when the environment is not valid; `problems` says each reason. */
export { ConfigError, type Environment } from "./Config.js"
/** Starts the issuer from the environment (`DATABASE_URL`, `PORT`, `ADMIN_TOKEN`, …), migrated and listening. */
export { type RunningServer, type ServerLog, startIssuer } from "./Issuer.js"
/** The runtime this is, and its HTTP adapter (Node's http, Deno.serve, Bun.serve). */
export { currentRuntime, type Listen, type Listener, listenerFor, type Runtime } from "./Listen.js"
