import { env } from "cloudflare:test"
import { appClaims, generateAppKeyPair, signRs256 } from "@icr-apps/testkit/Keys"
import { describe, expect, it } from "vitest"
import worker from "../src/index.js"

type IncomingRequest = Parameters<typeof worker.fetch>[0]

/** A binding whose round trips are recorded: D1 `batch`/`exec` and statement reads, KV reads and writes. */
const counting = <T extends object>(target: T, log: Array<string>, name: string, calls: ReadonlyArray<string>): T =>
  new Proxy(target, {
    get(object, prop, receiver) {
      const value = Reflect.get(object, prop, receiver)
      if (typeof value !== "function") return value
      if (prop === "prepare") {
        return (sql: string) =>
          counting((object as unknown as D1Database).prepare(sql), log, `${name}:${sql.slice(0, 40)}`, [
            "first",
            "run",
            "all",
            "raw",
            "bind"
          ])
      }
      if (prop === "bind") {
        return (...args: Array<unknown>) =>
          counting((value as (...a: Array<unknown>) => object).apply(object, args), log, name, calls)
      }
      if (calls.includes(String(prop))) {
        return (...args: Array<unknown>) => {
          log.push(`${name}.${String(prop)}`)
          return (value as (...a: Array<unknown>) => unknown).apply(object, args)
        }
      }
      return value.bind(object)
    }
  })

// Issue 12: a mint is one D1 batch (the app, its keys and the installation) and one write.
describe("storage round trips", () => {
  it("a mint reads the app, its keys and the installation in one D1 batch, then writes once", async () => {
    const trips: Array<string> = []
    const countedEnv = {
      ...env,
      DB: counting(env.DB, trips, "D1", ["batch", "exec"]),
      TOKENS: counting(env.TOKENS, trips, "KV", ["get", "put", "delete", "list"])
    }
    const send = (path: string, init: RequestInit = {}) =>
      worker.fetch(new Request(`http://icr.test${path}`, init) as IncomingRequest, countedEnv)
    const admin = (path: string, body: unknown) =>
      send(path, {
        method: "POST",
        headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(body)
      }).then((r) => r.json() as Promise<{ id: string }>)
    const keys = await generateAppKeyPair()
    const permissions = { organization_info: "VIEW" }
    const app = await admin("/admin/apps", { name: `trips-${Date.now()}`, permissions, publicKey: keys.publicPem })
    const installation = await admin("/admin/installations", {
      appId: app.id,
      organizationId: crypto.randomUUID(),
      permissions
    })
    const jwt = await signRs256(keys.privateKey, appClaims(app.id))
    trips.length = 0
    const minted = await send(`/app/installations/${installation.id}/accessTokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}` }
    })
    expect(minted.status).toBe(200)
    expect(trips).toEqual(["D1.batch", "KV.put"])
  })
})
