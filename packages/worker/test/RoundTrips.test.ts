import { env } from "cloudflare:test"
import { appClaims, generateAppKeyPair, signRs256 } from "@icr-apps/testkit/Keys"
import { describe, expect, it } from "vitest"
import worker from "../src/index.js"

type IncomingRequest = Parameters<typeof worker.fetch>[0]

/** A binding whose round trips are recorded: D1 `batch`/`exec` and each statement's `first`/`run`/`all`/`raw`. */
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

// Issue 12: a mint is one D1 batch (the app, its keys and the installation) and one write; every use
// of a token is one statement (the token, its revocation, its installation or app, and their epochs).
describe("storage round trips", () => {
  const trips: Array<string> = []
  const countedEnv = { ...env, DB: counting(env.DB, trips, "D1", ["batch", "exec"]) }
  const send = (path: string, init: RequestInit = {}) =>
    worker.fetch(new Request(`http://icr.test${path}`, init) as IncomingRequest, countedEnv)
  const admin = (path: string, body: unknown) =>
    send(path, {
      method: "POST",
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body)
    }).then((r) => r.json() as Promise<{ id: string }>)
  const seeded = async () => {
    const keys = await generateAppKeyPair()
    const permissions = { organization_info: "VIEW" }
    const app = await admin("/admin/apps", {
      name: `trips-${crypto.randomUUID().slice(0, 8)}`,
      permissions,
      publicKey: keys.publicPem
    })
    const installation = await admin("/admin/installations", {
      appId: app.id,
      organizationId: crypto.randomUUID(),
      permissions
    })
    return { installation, jwt: await signRs256(keys.privateKey, appClaims(app.id)) }
  }

  it("a mint reads the app, its keys and the installation in one D1 batch, then writes once", async () => {
    const { installation, jwt } = await seeded()
    trips.length = 0
    const minted = await send(`/app/installations/${installation.id}/accessTokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}` }
    })
    expect(minted.status).toBe(200)
    expect(trips).toEqual(["D1.batch", "D1.batch"])
  })

  it("a token use is one D1 statement; a revocation one more, the write", async () => {
    const { installation, jwt } = await seeded()
    const minted = await send(`/app/installations/${installation.id}/accessTokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}` }
    })
    const { token } = (await minted.json()) as { token: string }
    const bearer = { authorization: `Bearer ${token}` }
    trips.length = 0
    expect((await send("/app/installations/token", { headers: bearer })).status).toBe(200)
    expect(trips).toEqual(["D1:SELECT t.id AS t_id, t.kind, t.app_id AS.first"])
    trips.length = 0
    expect((await send("/app/installations/token", { method: "DELETE", headers: bearer })).status).toBe(204)
    expect(trips).toEqual([
      "D1:SELECT t.id AS t_id, t.kind, t.app_id AS.first",
      "D1:UPDATE tokens SET revoked_at = ? WHERE d.run"
    ])
    trips.length = 0
    expect((await send("/app/installations/token", { headers: bearer })).status).toBe(401)
    expect(trips).toHaveLength(1)
  })
})
