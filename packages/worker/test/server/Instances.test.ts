/**
 * Several instances on one database (SPEC §9: "every backend passes … concurrent writes"): two
 * servers — on different runtimes, each with its own SQLite engine or Postgres pool — take
 * concurrent key additions for one app. The 25-key cap holds across them (exactly the room left
 * succeeds, the rest are 422), one key added by many requests at once lands once (the rest 409), and
 * no request fails for the lock (SQLite's writers wait for each other: busy_timeout).
 */
import { join } from "node:path"
import { publicOnlyKey } from "@icr-apps/testkit/Contract"
import { generateAppKeyPair } from "@icr-apps/testkit/Keys"
import { afterAll, describe, expect, it } from "vitest"
import { postgresDatabase, type RuntimeName, type ServedProcess, startServer, tempDir } from "./support.js"

const ADMIN_TOKEN = "instances-admin-token-of-at-least-32-characters"

const race = async (servers: ReadonlyArray<ServedProcess>) => {
  const admin = async (server: ServedProcess, method: string, path: string, body?: unknown) => {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: response.status, json: (await response.json()) as Record<string, any> }
  }
  const keys = await generateAppKeyPair()
  const app = await admin(servers[0]!, "POST", "/admin/apps", {
    name: `instances-${Date.now()}`,
    permissions: { organization_info: "VIEW" },
    publicKey: keys.publicPem
  })
  expect(app.status).toBe(201)
  const appId = app.json.id as string

  // 30 distinct keys at once, alternating between the servers: 24 fit beside the first.
  const added = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      admin(servers[i % servers.length]!, "POST", `/admin/apps/${appId}/keys`, { publicKey: publicOnlyKey() })
    )
  )
  const statuses = added.map((r) => r.status).sort()
  expect(statuses).toEqual([...Array(24).fill(201), ...Array(6).fill(422)])
  expect((await admin(servers[1]!, "GET", `/admin/apps/${appId}`)).json.keys).toHaveLength(25)

  // One key, 12 times at once, on a second app: one lands, the others are conflicts.
  const other = await admin(servers[1]!, "POST", "/admin/apps", {
    name: `instances-other-${Date.now()}`,
    permissions: { organization_info: "VIEW" },
    publicKey: keys.publicPem
  })
  const same = publicOnlyKey()
  const again = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      admin(servers[i % servers.length]!, "POST", `/admin/apps/${other.json.id}/keys`, { publicKey: same })
    )
  )
  expect(again.map((r) => r.status).sort()).toEqual([201, ...Array(11).fill(409)])
  expect((await admin(servers[0]!, "GET", `/admin/apps/${other.json.id}`)).json.keys).toHaveLength(2)
}

const pair = async (runtimes: readonly [RuntimeName, RuntimeName], url: string) => {
  // One after the other: both migrate at start (the second finds nothing to do).
  const first = await startServer(runtimes[0], "serve", { DATABASE_URL: url, ADMIN_TOKEN })
  try {
    return [first, await startServer(runtimes[1], "serve", { DATABASE_URL: url, ADMIN_TOKEN })] as const
  } catch (error) {
    await first.stop()
    throw error
  }
}

describe("two instances on one database", () => {
  const servers: Array<ServedProcess> = []
  const temp = tempDir("icr-instances-")
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()))
    temp.remove()
  })

  it("SQLite: a Node and a Bun server on one file", async () => {
    const both = await pair(["node", "bun"], `sqlite:${join(temp.dir, "shared.db")}`)
    servers.push(...both)
    await race(both)
  }, 90_000)

  it("Postgres: a Node and a Deno server on one database", async () => {
    const database = await postgresDatabase()
    try {
      const both = await pair(["node", "deno"], database.url)
      servers.push(...both)
      await race(both)
      await Promise.all(both.map((s) => s.stop()))
    } finally {
      await database.drop()
    }
  }, 90_000)
})
