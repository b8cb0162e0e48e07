import { env } from "cloudflare:test"
import { beforeAll, describe, expect, it } from "vitest"
import * as AuditLog from "@icr-apps/core/issuer/AuditLog"
import { issuerContract } from "@icr-apps/testkit/Contract"
import worker from "../src/index.js"

/** The worker's audit lines (one JSON line per event on console.log, as Workers Logs sees them). */
const logLines: Array<string> = []
const log = console.log.bind(console)
console.log = (...args: Array<unknown>) => {
  if (args.length === 1 && typeof args[0] === "string" && args[0].startsWith('{"audit":true')) logLines.push(args[0])
  else log(...args)
}

const withoutAdmin = { ...env, ADMIN_TOKEN: undefined }
/** The worker's own request type (test requests carry no `cf` properties). */
type IncomingRequest = Parameters<typeof worker.fetch>[0]

/** Every D1 row, as text (the issuer keeps nothing anywhere else). */
const dumpStorage = async (): Promise<ReadonlyArray<string>> => {
  const out: Array<string> = []
  for (const table of ["apps", "app_keys", "installations", "tokens"]) {
    const { results } = await env.DB.prepare(`SELECT * FROM ${table}`).all()
    out.push(...results.map((row) => JSON.stringify(row)))
  }
  return out
}

// The conformance suite against the real worker: workerd and D1 (migrated from migrations/).
issuerContract(
  "worker (workerd, D1)",
  () => ({
    fetch: (request) => worker.fetch(request as IncomingRequest, env),
    fetchWithoutAdmin: (request) => worker.fetch(request as IncomingRequest, withoutAdmin),
    adminToken: env.ADMIN_TOKEN!,
    dumpStorage,
    auditEvents: async () => AuditLog.fromLogLines(logLines)
  }),
  { describe, it, expect, beforeAll }
)
