/**
 * The example resource (SPEC §10) in front of the real issuer handlers in memory, reached as a
 * service binding: the README's walk-through (mint → call → narrow → 403 → revoke → 401), the
 * app-token route, forwarding of /app/* and /healthz, and bad input as typed problems.
 */
import { createIcrAppsClient } from "@icr-apps/core"
import { makeFakeIssuer } from "@icr-apps/testkit/FakeIssuer"
import { generateAppKeyPair } from "@icr-apps/testkit/Keys"
import { afterEach, describe, expect, it, vi } from "vitest"
import { makeResourceHandler } from "../../src/resource/Resource.js"

const keys = await generateAppKeyPair()
const org = "0b9a1f7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
const BASE = "https://resource.test"

const setup = async () => {
  const issuer = makeFakeIssuer()
  const app = await issuer.arrange.createApp({ publicKey: keys.publicPem })
  const installation = await issuer.arrange.install(app.id, {
    organizationId: org,
    permissions: { organization_inventory: "REQUEST", organization_projects: "VIEW" }
  })
  const resource = makeResourceHandler({ issuer })
  // The app talks to the resource only: /app/* reaches the issuer through it (one origin).
  const icr = createIcrAppsClient({
    appId: app.id,
    privateKey: keys.privatePem,
    baseUrl: BASE,
    fetch: (input, init) => resource(new Request(input, init))
  })
  const call = (method: string, path: string, token?: string, body?: unknown) =>
    resource(
      new Request(`${BASE}${path}`, {
        method,
        headers: {
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          ...(body === undefined ? {} : { "content-type": "application/json" })
        },
        ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
      })
    )
  return { issuer, app, installation, resource, icr, call }
}

describe("the example resource", () => {
  it("walks mint → call → narrow → 403 → revoke → 401", async () => {
    const { installation, icr, call } = await setup()
    const inventory = `/organizations/${org}/inventory`
    const { token } = await icr.createInstallationAccessToken(installation.id)
    const read = await call("GET", inventory, token)
    expect(read.status).toBe(200)
    expect(await read.json()).toEqual({ organizationId: org, items: [] })
    const created = await call("POST", inventory, token, { item: "seedlings", quantity: 40 })
    expect(created.status).toBe(201)
    expect(await created.json()).toMatchObject({
      organizationId: org,
      item: "seedlings",
      quantity: 40,
      status: "requested"
    })
    expect((await (await call("GET", inventory, token)).json()).items).toHaveLength(1)

    const narrowed = (
      await icr.createInstallationAccessToken(installation.id, { permissions: { organization_inventory: "VIEW" } })
    ).token
    expect((await call("GET", inventory, narrowed)).status).toBe(200)
    const refused = await call("POST", inventory, narrowed, { item: "seedlings" })
    expect(refused.status).toBe(403)
    expect(refused.headers.get("content-type")).toBe("application/problem+json")
    expect(await refused.json()).toMatchObject({
      code: "insufficient_permissions",
      permission: "organization_inventory",
      level: "REQUEST"
    })

    await icr.revokeAccessToken(narrowed)
    const revoked = await call("GET", inventory, narrowed)
    expect(revoked.status).toBe(401)
    expect(revoked.headers.get("www-authenticate")).toBe('Bearer realm="icr-apps", error="invalid_token"')
    expect((await revoked.json()).code).toBe("invalid_token")
    await icr.dispose()
  })

  it("another organization's inventory is 403; an app token reads /projects but no inventory; no token is 401", async () => {
    const { installation, icr, call } = await setup()
    const { token } = await icr.createInstallationAccessToken(installation.id)
    const other = await call("GET", `/organizations/${crypto.randomUUID()}/inventory`, token)
    expect(other.status).toBe(403)
    const appToken = (await icr.createAppAccessToken()).token
    expect((await call("GET", "/projects", appToken)).status).toBe(200)
    expect((await call("GET", "/projects", token)).status).toBe(200)
    expect((await call("GET", `/organizations/${org}/inventory`, appToken)).status).toBe(403)
    const none = await call("GET", "/projects")
    expect(none.status).toBe(401)
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="icr-apps"')
    await icr.dispose()
  })

  it("the SDK through the resource's origin: /app/* forwarded, request() with the installation client, a typed 403", async () => {
    const { installation, icr, call, issuer } = await setup()
    expect(await (await call("GET", "/healthz")).json()).toEqual({ status: "ok" })
    const installations = await icr.allInstallations()
    expect(installations.map((i) => i.id)).toEqual([installation.id])
    const inventory = "/organizations/{organizationId}/inventory"
    expect(
      await icr.request(`GET ${inventory}`, { installationId: installation.id, params: { organizationId: org } })
    ).toEqual({ organizationId: org, items: [] })
    const refused = await icr
      .request(`POST ${inventory}`, {
        installationId: installation.id,
        params: { organizationId: org },
        permissions: { organization_inventory: "VIEW" },
        body: { item: "x" }
      })
      .catch((e: unknown) => e)
    expect(refused).toMatchObject({ name: "IcrAppsFailure", code: "insufficient_permissions", status: 403 })
    // An operator revokeTokens between two calls: one re-mint, no error.
    const before = issuer.mints(installation.id)
    await issuer.admin("POST", `/admin/installations/${installation.id}/revokeTokens`)
    await new Promise((r) => setTimeout(r, 2))
    expect(
      await icr.request(`GET ${inventory}`, { installationId: installation.id, params: { organizationId: org } })
    ).toEqual({ organizationId: org, items: [] })
    expect(issuer.mints(installation.id) - before).toBe(1)
    await icr.dispose()
  })

  it("bad input is a typed problem, never a 500", async () => {
    const { installation, icr, call, resource } = await setup()
    const { token } = await icr.createInstallationAccessToken(installation.id)
    const inventory = `/organizations/${org}/inventory`
    expect((await call("GET", "/organizations/not-a-uuid/inventory", token)).status).toBe(400)
    expect((await call("POST", inventory, token, "{not json")).status).toBe(400)
    expect((await call("POST", inventory, token, { item: "x", quantity: -1 })).status).toBe(400)
    expect((await call("POST", inventory, token, { item: "x", extra: 1 })).status).toBe(400)
    expect((await call("POST", inventory, token, { item: "x".repeat(20_000) })).status).toBe(413)
    const wrong = await call("DELETE", inventory, token)
    expect(wrong.status).toBe(405)
    expect(wrong.headers.get("allow")).toBe("GET, POST")
    expect((await call("GET", "/nowhere", token)).status).toBe(404)
    const version = await resource(
      new Request(`${BASE}/projects`, {
        headers: { authorization: `Bearer ${token}`, "x-icr-api-version": "2099-01-01" }
      })
    )
    expect(version.status).toBe(400)
    expect((await version.json()).code).toBe("unsupported_api_version")
    // Escapes that are not UTF-8 are a 400, not a URIError.
    expect((await call("GET", "/organizations/%E0%A4%A/inventory", token)).status).toBe(400)
    // A body over the cap, streamed without a length, is refused once the cap is passed.
    let pulled = 0
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 1
        controller.enqueue(new Uint8Array(4096).fill(32))
        if (pulled > 10_000) controller.close()
      }
    })
    const big = await resource(
      new Request(`${BASE}${inventory}`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: endless,
        ...({ duplex: "half" } as object)
      })
    )
    expect(big.status).toBe(413)
    expect(pulled).toBeLessThan(20)
    await icr.dispose()
  })

  it("forwards /app/* without hop-by-hop headers or the client's claims about its address; an unreachable issuer is 503", async () => {
    const seen: Array<Headers> = []
    const resource = makeResourceHandler({
      issuer: {
        fetch: async (request: Request) => {
          seen.push(request.headers)
          return new Response("{}\n", { headers: { "content-type": "application/json" } })
        }
      }
    })
    await resource(
      new Request(`${BASE}/app/installations`, {
        headers: {
          authorization: "Bearer eyJ.x.y",
          "x-forwarded-for": "1.2.3.4",
          "cf-connecting-ip": "9.9.9.9",
          forwarded: "for=1.2.3.4",
          cookie: "s=1",
          "proxy-authorization": "Basic Zm9v",
          connection: "x-private",
          "x-private": "1",
          "x-icr-api-version": "2026-01-01"
        }
      })
    )
    const sent = Object.fromEntries(seen[0]!.entries())
    expect(sent.authorization).toBe("Bearer eyJ.x.y")
    expect(sent["x-icr-api-version"]).toBe("2026-01-01")
    for (const name of [
      "x-forwarded-for",
      "cf-connecting-ip",
      "forwarded",
      "cookie",
      "proxy-authorization",
      "x-private"
    ])
      expect(sent[name]).toBeUndefined()
    const down = makeResourceHandler({
      issuer: {
        fetch: async () => {
          throw new TypeError("fetch failed")
        }
      }
    })
    const answer = await down(new Request(`${BASE}/healthz`))
    expect(answer.status).toBe(503)
    expect(answer.headers.get("retry-after")).toBe("1")
    expect((await answer.json()).code).toBe("unavailable")
  })

  afterEach(() => vi.unstubAllGlobals())

  it("over ISSUER_URL (no binding): the standing is asked of that URL; forwarded answers lose Content-Encoding", async () => {
    const issuer = makeFakeIssuer()
    const app = await issuer.arrange.createApp({ publicKey: keys.publicPem })
    const installation = await issuer.arrange.install(app.id, { organizationId: org })
    const asked: Array<string> = []
    vi.stubGlobal("fetch", async (request: Request) => {
      asked.push(request.url)
      const answer = await issuer.fetch(request)
      // As a Worker's fetch hands back a compressed answer: decoded body, header still there.
      const headers = new Headers(answer.headers)
      headers.set("content-encoding", "br")
      return new Response(answer.body, { status: answer.status, headers })
    })
    const resource = makeResourceHandler({ issuerUrl: "http://issuer.local:8787/" })
    const health = await resource(new Request(`${BASE}/healthz`))
    expect(health.headers.get("content-encoding")).toBeNull()
    expect(await health.json()).toEqual({ status: "ok" })
    const icr = createIcrAppsClient({ appId: app.id, privateKey: keys.privatePem, fetch: issuer.fetch, baseUrl: BASE })
    const { token } = await icr.createInstallationAccessToken(installation.id)
    const read = await resource(
      new Request(`${BASE}/organizations/${org}/inventory`, { headers: { authorization: `Bearer ${token}` } })
    )
    expect(read.status).toBe(200)
    expect(asked).toEqual(["http://issuer.local:8787/healthz", "http://issuer.local:8787/app/installations/token"])
    await icr.dispose()
  })
})
