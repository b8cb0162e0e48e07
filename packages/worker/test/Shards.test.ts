/**
 * The issuer Worker with its registry split over three D1 databases (SHARD_BINDINGS, SCALE.md), end to
 * end over HTTP: installations spread over the shards, each token used on its own shard, an app's kill
 * switch ending the tokens on every shard, listings merged — and a binding that is not there refused.
 */
import { env } from "cloudflare:test"
import { appClaims, generateAppKeyPair, signRs256 } from "@icr-apps/testkit/Keys"
import { shardOfInstallation, shardOfSecret } from "@icr-apps/core/issuer/Shards"
import { expect, it } from "vitest"
import { openShardsFromEnv, shardsFromEnv } from "../src/index.js"
import { callWorker } from "./callWorker.js"

const call = callWorker({ ...env, SHARD_BINDINGS: "DB, DB_SHARD_1, DB_SHARD_2" })
const json = async <A>(response: Response, status: number): Promise<A> => {
  expect(response.status, await response.clone().text()).toBe(status)
  return (await response.json()) as A
}

it("spreads installations over the shards, uses each token on its own shard, and ends them all with the app's kill switch", async () => {
  const keys = await generateAppKeyPair()
  const admin = env.ADMIN_TOKEN!
  const app = await json<{ id: string }>(
    await call("POST", "/admin/apps", admin, {
      name: `sharded-${Date.now()}`,
      permissions: { organization_info: "VIEW" },
      publicKey: keys.publicPem
    }),
    201
  )
  const installations: Array<{ id: string }> = []
  for (let i = 0; i < 12; i++) {
    installations.push(
      await json<{ id: string }>(
        await call("POST", "/admin/installations", admin, {
          appId: app.id,
          organizationId: crypto.randomUUID(),
          permissions: { organization_info: "VIEW" }
        }),
        201
      )
    )
  }
  const shards = new Set(installations.map((i) => shardOfInstallation(i.id)))
  expect(shards.size).toBeGreaterThan(1)
  const jwt = await signRs256(keys.privateKey, appClaims(app.id))
  const tokens: Array<string> = []
  for (const installation of installations) {
    const { token } = await json<{ token: string }>(
      await call("POST", `/app/installations/${installation.id}/accessTokens`, jwt),
      200
    )
    expect(shardOfSecret(token)).toBe(shardOfInstallation(installation.id))
    tokens.push(token)
  }
  for (const token of tokens) await json(await call("GET", "/app/installations/token", token), 200)
  // Each token's row is on its installation's shard, and only there.
  const databases = [env.DB, env.DB_SHARD_1!, env.DB_SHARD_2!]
  for (const [i, installation] of installations.entries()) {
    const where = await Promise.all(
      databases.map((db) =>
        db.prepare("SELECT COUNT(*) AS n FROM installations WHERE id = ?").bind(installation.id).first<{ n: number }>()
      )
    )
    expect(where.map((r) => r?.n)).toEqual(
      databases.map((_, k) => (k === shardOfInstallation(installation.id) ? 1 : 0))
    )
    expect(shardOfSecret(tokens[i]!)).toBe(shardOfInstallation(installation.id))
  }
  const listed = await json<{ total_count?: number; items?: Array<{ id: string }> }>(
    await call("GET", `/admin/installations?appId=${app.id}&limit=100`, admin),
    200
  )
  expect(JSON.stringify(listed)).toContain(installations[11]!.id)
  for (const installation of installations) expect(JSON.stringify(listed)).toContain(installation.id)

  // The app's kill switch: acknowledged once every shard has it, so every token is refused next.
  expect((await call("POST", `/admin/apps/${app.id}/revokeTokens`, admin)).status).toBe(204)
  for (const token of tokens) expect((await call("GET", "/app/installations/token", token)).status).toBe(401)
})

it("refuses a SHARD_BINDINGS entry that is no D1 binding, or twice, and OPEN_SHARDS that are not its shards", () => {
  expect(() => shardsFromEnv({ ...env, SHARD_BINDINGS: "DB,DB_NOPE" })).toThrow(/DB_NOPE/)
  expect(() => shardsFromEnv({ ...env, SHARD_BINDINGS: "DB,DB" })).toThrow(/once/)
  expect(() => shardsFromEnv({ ...env, SHARD_BINDINGS: "DB,,DB_SHARD_1" })).toThrow(/once/)
  expect(openShardsFromEnv({ ...env, OPEN_SHARDS: "1, 2" }, 3)).toEqual([1, 2])
  for (const bad of ["1,,2", "3", "-1", "1,1", "x"]) {
    expect(() => openShardsFromEnv({ ...env, OPEN_SHARDS: bad }, 3)).toThrow(/OPEN_SHARDS/)
  }
  expect(shardsFromEnv(env)).toEqual([env.DB])
})
