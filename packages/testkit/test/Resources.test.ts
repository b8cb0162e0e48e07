/**
 * Resource routes served beside the fake issuer (SPEC §10): an app's whole flow with no network —
 * the installation client calls a declared route, a narrowed token meets 403, an operator revocation
 * costs one re-mint, and the log shows each resource request with its route and outcome.
 */
import { createIcrAppsClient } from "@icr-apps/core"
import { describe, expect, it } from "vitest"
import { makeFakeIssuer } from "../src/FakeIssuer.js"
import { generateAppKeyPair } from "../src/Keys.js"
import { route, withResources } from "../src/Resources.js"

const keys = await generateAppKeyPair()
const org = "0b9a1f7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
const inventory = "/organizations/{organizationId}/inventory"

describe("withResources", () => {
  it("enforces each route's requirement as requireToken does, and logs what it answered", async () => {
    const issuer = makeFakeIssuer()
    const app = await issuer.arrange.createApp({ publicKey: keys.publicPem })
    const installation = await issuer.arrange.install(app.id, {
      organizationId: org,
      permissions: { organization_inventory: "REQUEST" }
    })
    const stock: Array<string> = []
    const server = withResources(issuer, [
      route(`GET ${inventory}`, { requires: { organization_inventory: "VIEW" } }, ({ params }) => ({
        organizationId: params.organizationId,
        items: stock
      })),
      route(`POST ${inventory}`, { requires: { organization_inventory: "REQUEST" } }, async ({ request }) => {
        stock.push(((await request.json()) as { item: string }).item)
        return Response.json({ ok: true }, { status: 201 })
      }),
      route("GET /projects", {}, () => ({ items: ["p1"] }))
    ])
    const icr = createIcrAppsClient({
      appId: app.id,
      privateKey: keys.privatePem,
      baseUrl: "https://icr.test",
      fetch: server.fetch
    })
    const on = { installationId: installation.id, params: { organizationId: org } }

    expect(await icr.request(`POST ${inventory}`, { ...on, body: { item: "seedlings" } })).toEqual({ ok: true })
    expect(await icr.request(`GET ${inventory}`, on)).toEqual({ organizationId: org, items: ["seedlings"] })
    expect(await icr.request("GET /projects")).toEqual({ items: ["p1"] }) // the app token

    const refused = await icr
      .request(`POST ${inventory}`, { ...on, permissions: { organization_inventory: "VIEW" }, body: { item: "x" } })
      .catch((e: unknown) => e)
    expect(refused).toMatchObject({ code: "insufficient_permissions", status: 403 })
    expect((refused as { cause: { permission: string; level: string } }).cause).toMatchObject({
      permission: "organization_inventory",
      level: "REQUEST"
    })
    const other = await icr
      .request(`GET ${inventory}`, { installationId: installation.id, params: { organizationId: crypto.randomUUID() } })
      .catch((e: unknown) => e)
    expect(other).toMatchObject({ status: 403 })

    // An operator revocation between two calls: one re-mint, no error.
    const mints = issuer.mints(installation.id)
    await issuer.admin("POST", `/admin/installations/${installation.id}/revokeTokens`)
    await new Promise((r) => setTimeout(r, 2))
    expect(await icr.request(`GET ${inventory}`, on)).toEqual({ organizationId: org, items: ["seedlings"] })
    expect(issuer.mints(installation.id) - mints).toBe(1)

    const log = server.requests(`GET ${inventory}`)
    expect(log.map((e) => [e.status, e.code])).toEqual([
      [200, undefined],
      [403, "insufficient_permissions"],
      [401, "invalid_token"],
      [200, undefined]
    ])
    expect(log[0]).toMatchObject({ tokenKind: "installation", installationId: installation.id })
    expect(JSON.stringify(server.requests())).not.toMatch(/crs_/)
    const wrongMethod = await server.fetch(`https://icr.test/organizations/${org}/inventory`, { method: "DELETE" })
    expect(wrongMethod.status).toBe(405)
    expect(wrongMethod.headers.get("allow")).toBe("GET, POST")
    await icr.dispose()
  })
})
