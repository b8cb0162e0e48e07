/**
 * The served issuer's request budgets (SPEC §1, §9) per client address: the TCP peer counts unless
 * TRUST_PROXY names a header (then that header's nearest address does), a client-sent
 * cf-connecting-ip counts for nothing by default, and a budget of 0 is off — in memory, and shared
 * through the database with RATE_LIMIT_STORE=database.
 */
import { afterEach, describe, expect, it } from "vitest"
import { type RunningServer, startIssuer } from "../../src/server/Issuer.js"
import { listen } from "../../src/server/node.js"

const quiet = { info: () => {}, warn: () => {} }
let server: RunningServer | undefined
afterEach(async () => {
  await server?.stop()
  server = undefined
})

/** The statuses of GET /openapi.json (unauthenticated: counted per address) with each set of headers. */
const statuses = async (env: Record<string, string>, headers: ReadonlyArray<Record<string, string>>) => {
  server = await startIssuer({ DATABASE_URL: "sqlite::memory:", PORT: "0", ...env }, listen, "node", quiet)
  const out: Array<number> = []
  for (const h of headers) {
    const response = await fetch(`${server.url}/openapi.json`, { headers: h })
    await response.arrayBuffer()
    out.push(response.status)
  }
  return out
}

describe("per-address budgets of the served issuer", () => {
  it("the TCP peer counts; a client-sent cf-connecting-ip or x-forwarded-for does not", async () => {
    const forged = [0, 1, 2, 3].map((i) => ({ "cf-connecting-ip": `192.0.2.${i}`, "x-forwarded-for": `192.0.2.${i}` }))
    expect(await statuses({ ADDRESS_RATE_LIMIT_PER_MINUTE: "3" }, forged)).toEqual([200, 200, 200, 429])
  })

  it("with TRUST_PROXY, the named header's nearest address counts", async () => {
    const a = { "x-forwarded-for": "203.0.113.50, 192.0.2.1" }
    const b = { "x-forwarded-for": "203.0.113.50, 192.0.2.2" }
    expect(
      await statuses({ ADDRESS_RATE_LIMIT_PER_MINUTE: "2", TRUST_PROXY: "X-Forwarded-For" }, [a, a, b, a, b, b])
    ).toEqual([200, 200, 200, 429, 200, 429])
  })

  it("a budget of 0 is off", async () => {
    expect(await statuses({ ADDRESS_RATE_LIMIT_PER_MINUTE: "0" }, Array(5).fill({}))).toEqual([200, 200, 200, 200, 200])
  })

  it("RATE_LIMIT_STORE=database counts in the database", async () => {
    expect(
      await statuses({ ADDRESS_RATE_LIMIT_PER_MINUTE: "2", RATE_LIMIT_STORE: "database" }, Array(3).fill({}))
    ).toEqual([200, 200, 429])
  })
})
