/**
 * The issuer contract: SPEC §5, the operator API: apps, keys and installations, and its guard.
 */
import { generateAppKeyPair } from "../Keys.js"
import { type ContractContext, BASE, uuidRe, timestampRe, publicOnlyKey, type Json } from "./Context.js"

/** Registers the area's tests. */
export const operatorApi = (c: ContractContext) => {
  const { describe, expect, it } = c.runner
  const { send, api, admin, problem, newApp, install, inCreationOrder, ids, suspend, unique, org } = c

  describe("§5 operator API", () => {
    it("answers every /admin route with 403 admin_disabled when no ADMIN_TOKEN is configured", async () => {
      const routes: ReadonlyArray<readonly [string, string]> = [
        ["POST", "/admin/apps"],
        ["GET", "/admin/apps"],
        ["GET", "/admin/installations?appId=1"],
        ["GET", "/admin/apps/1"],
        ["POST", "/admin/apps/1/keys"],
        ["DELETE", `/admin/apps/1/keys/${crypto.randomUUID()}`],
        ["POST", "/admin/installations"],
        ["PATCH", `/admin/installations/${crypto.randomUUID()}`],
        ["DELETE", `/admin/installations/${crypto.randomUUID()}`],
        ["POST", `/admin/installations/${crypto.randomUUID()}/revokeTokens`],
        ["POST", "/admin/apps/1/revokeTokens"]
      ]
      for (const [method, path] of routes) {
        problem(
          await send(c.target.fetchWithoutAdmin, method, path, { token: "anything-at-all" }),
          403,
          "admin_disabled"
        )
      }
    })
    it("refuses a wrong or missing operator token", async () => {
      problem(await api("GET", "/admin/apps/1", { token: `${c.target.adminToken}x` }), 401, "invalid_token")
      problem(await api("GET", "/admin/apps/1"), 401, "missing_credentials")
    })
    it("POST /admin/apps registers an app with its key and fingerprint", async () => {
      const name = unique("made")
      const r = await admin("POST", "/admin/apps", {
        name,
        permissions: { organization_info: "VIEW" },
        publicKey: c.keys.publicPem
      })
      expect(r.res.status).toBe(201)
      expect(r.json).toMatchObject({ appNameId: name, permissions: { organization_info: "VIEW" } })
      expect(r.json.keys).toHaveLength(1)
      const digest = new Uint8Array(
        await crypto.subtle.digest("SHA-256", (await crypto.subtle.exportKey("spki", c.keys.publicKey)) as ArrayBuffer)
      )
      expect(r.json.keys[0].fingerprint).toBe(`SHA256:${btoa(String.fromCharCode(...digest))}`)
      const got = await admin("GET", `/admin/apps/${r.json.id}`)
      expect(got.json).toEqual(r.json)
    })
    it("accepts PKCS#1 PEM and JWK public keys with the same fingerprint as SPKI", async () => {
      const spki = await admin("POST", "/admin/apps", {
        name: unique("spki"),
        permissions: {},
        publicKey: c.keys.publicPem
      })
      const pkcs1 = await admin("POST", "/admin/apps", {
        name: unique("pkcs1"),
        permissions: {},
        publicKey: c.keys.publicPkcs1Pem
      })
      const jwk = await admin("POST", "/admin/apps", {
        name: unique("jwk"),
        permissions: {},
        publicKey: c.keys.publicJwk
      })
      const crlf = await admin("POST", "/admin/apps", {
        name: unique("crlf"),
        permissions: {},
        publicKey: c.keys.publicPem.replace(/\n/g, "\r\n")
      })
      for (const r of [pkcs1, jwk, crlf]) {
        expect(r.res.status).toBe(201)
        expect(r.json.keys[0].fingerprint).toBe(spki.json.keys[0].fingerprint)
      }
    })
    it("refuses bad names with 400 and a taken name with 409 conflict", async () => {
      for (const name of ["", "UPPER", "-lead", "a".repeat(40), "sp ace"]) {
        problem(
          await admin("POST", "/admin/apps", { name, permissions: {}, publicKey: c.keys.publicPem }),
          400,
          "invalid_request"
        )
      }
      const name = unique("taken")
      expect(
        (await admin("POST", "/admin/apps", { name, permissions: {}, publicKey: c.keys.publicPem })).res.status
      ).toBe(201)
      problem(
        await admin("POST", "/admin/apps", { name, permissions: {}, publicKey: c.keys.publicPem }),
        409,
        "conflict"
      )
    })
    it("refuses non-RSA, short, private and unreadable keys with 422 invalid_public_key", async () => {
      const ec = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
        "sign"
      ])) as CryptoKeyPair
      const ecJwk = await crypto.subtle.exportKey("jwk", ec.publicKey)
      const ecSpki = new Uint8Array((await crypto.subtle.exportKey("spki", ec.publicKey)) as ArrayBuffer)
      const ecPem = `-----BEGIN PUBLIC KEY-----\n${btoa(String.fromCharCode(...ecSpki))}\n-----END PUBLIC KEY-----`
      const short = await generateAppKeyPair(1024)
      for (const publicKey of [
        ecJwk,
        ecPem,
        short.publicPem,
        c.keys.privatePem,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        "ssh-rsa AAAAB3NzaC1yc2E",
        c.keys.publicPem.slice(0, 200)
      ]) {
        problem(
          await admin("POST", "/admin/apps", { name: unique("bad"), permissions: {}, publicKey }),
          422,
          "invalid_public_key"
        )
      }
    })
    it("refuses unknown permissions with 422 invalid_permissions, writing nothing", async () => {
      const name = unique("perm")
      problem(
        await admin("POST", "/admin/apps", {
          name,
          permissions: { organization_everything: "VIEW" },
          publicKey: c.keys.publicPem
        }),
        422,
        "invalid_permissions"
      )
      problem(
        await admin("POST", "/admin/apps", {
          name,
          permissions: { organization_members: "WRITE" },
          publicKey: c.keys.publicPem
        }),
        422,
        "invalid_permissions"
      )
      expect(
        (await admin("POST", "/admin/apps", { name, permissions: {}, publicKey: c.keys.publicPem })).res.status
      ).toBe(201)
    })
    it("GET /admin/apps/{appId} of an unknown app is 404 app_not_found", async () => {
      problem(await admin("GET", "/admin/apps/987654321"), 404, "app_not_found")
      problem(await admin("GET", "/admin/apps/not-an-app"), 404, "app_not_found")
    })
    it("caps an app at 25 keys with 422 and deletes keys with 204, unknown ones with 404", async () => {
      const { app, appId } = await newApp()
      for (let i = 1; i < 25; i++) {
        expect((await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: publicOnlyKey() })).res.status).toBe(201)
      }
      problem(
        await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: publicOnlyKey() }),
        422,
        "invalid_public_key"
      )
      expect((await admin("GET", `/admin/apps/${appId}`)).json.keys).toHaveLength(25)
      expect((await admin("DELETE", `/admin/apps/${appId}/keys/${app.keys[0].id}`)).res.status).toBe(204)
      problem(await admin("DELETE", `/admin/apps/${appId}/keys/${app.keys[0].id}`), 404, "not_found")
      problem(await admin("DELETE", `/admin/apps/987654321/keys/${app.keys[0].id}`), 404, "app_not_found")
      problem(await admin("POST", "/admin/apps/987654321/keys", { publicKey: c.keys.publicPem }), 404, "app_not_found")
      problem(await admin("DELETE", `/admin/apps/${appId}/keys/not-a-uuid`), 400, "invalid_request")
    })
    it("refuses the same key twice for one app with 409 conflict, in any of its formats (SPEC §5)", async () => {
      const { appId } = await newApp()
      for (const publicKey of [c.keys.publicPem, c.keys.publicPkcs1Pem, c.keys.publicJwk]) {
        problem(await admin("POST", `/admin/apps/${appId}/keys`, { publicKey }), 409, "conflict")
      }
      const added = await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: c.otherKeys.publicPem })
      expect(added.res.status).toBe(201)
      problem(await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: c.otherKeys.publicJwk }), 409, "conflict")
      // One key, once: the app lists each fingerprint once, and another app may hold the same key.
      const fingerprints = (await admin("GET", `/admin/apps/${appId}`)).json.keys.map((k: Json) => k.fingerprint)
      expect(new Set(fingerprints).size).toBe(fingerprints.length)
      expect(fingerprints).toHaveLength(2)
      const other = await newApp()
      expect(
        (await admin("POST", `/admin/apps/${other.appId}/keys`, { publicKey: c.otherKeys.publicPem })).res.status
      ).toBe(201)
      // Once deleted, the key may come back (a new key id, the same fingerprint).
      expect((await admin("DELETE", `/admin/apps/${appId}/keys/${added.json.id}`)).res.status).toBe(204)
      expect((await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: c.otherKeys.publicPem })).res.status).toBe(
        201
      )
    })
    it("POST /admin/installations installs within the app's permissions, once per organization", async () => {
      const { appId } = await newApp({ organization_info: "VIEW", organization_inventory: "REQUEST" })
      const organizationId = org()
      const r = await admin("POST", "/admin/installations", {
        appId,
        organizationId,
        permissions: { organization_info: "VIEW" }
      })
      expect(r.res.status).toBe(201)
      expect(r.json).toMatchObject({
        appId,
        organizationId,
        permissions: { organization_info: "VIEW" },
        suspendedAt: null
      })
      expect(r.json.id).toMatch(uuidRe)
      problem(await admin("POST", "/admin/installations", { appId, organizationId, permissions: {} }), 409, "conflict")
      problem(
        await admin("POST", "/admin/installations", {
          appId,
          organizationId: org(),
          permissions: { organization_inventory: "WRITE" }
        }),
        422,
        "invalid_permissions"
      )
      problem(
        await admin("POST", "/admin/installations", { appId: "987654321", organizationId: org(), permissions: {} }),
        404,
        "app_not_found"
      )
      problem(
        await admin("POST", "/admin/installations", { appId, organizationId: "nope", permissions: {} }),
        400,
        "invalid_request"
      )
    })
    it("PATCH /admin/installations/{id} changes permissions and suspension", async () => {
      const { appId } = await newApp({ organization_info: "VIEW", organization_members: "VIEW" })
      const inst = await install(appId, { organization_info: "VIEW" })
      const r = await admin("PATCH", `/admin/installations/${inst.id}`, {
        permissions: { organization_members: "VIEW" },
        suspended: true
      })
      expect(r.res.status).toBe(200)
      expect(r.json.permissions).toEqual({ organization_members: "VIEW" })
      expect(r.json.suspendedAt).toMatch(timestampRe)
      const back = await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: false })
      expect(back.json.suspendedAt).toBeNull()
      problem(
        await admin("PATCH", `/admin/installations/${inst.id}`, { permissions: { organization_warehouse: "VIEW" } }),
        422,
        "invalid_permissions"
      )
      problem(
        await admin("PATCH", `/admin/installations/${crypto.randomUUID()}`, { suspended: true }),
        404,
        "installation_not_found"
      )
      problem(await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: "yes" }), 400, "invalid_request")
    })
    it("GET /admin/apps pages every app in creation order, with keys, total and Link", async () => {
      const mine = []
      for (let i = 0; i < 3; i++) mine.push((await newApp()).app)
      const head = await admin("GET", "/admin/apps?limit=2")
      expect(head.res.status).toBe(200)
      expect(head.json).toMatchObject({ page: 0, limit: 2 })
      const total: number = head.json.total
      expect(total).toBeGreaterThanOrEqual(3)
      expect(head.res.headers.get("link")).toBe(`<${BASE}/admin/apps?limit=2&page=1>; rel="next"`)
      // Apps are listed oldest first, so the three just made are the last three.
      for (const [k, app] of mine.entries()) {
        const page = total - 3 + k
        const r = await admin("GET", `/admin/apps?limit=1&page=${page}`)
        expect(r.json).toEqual({ items: [app], page, limit: 1, total })
        expect(r.res.headers.get("link")).toMatch(new RegExp(`page=${page - 1}>; rel="prev"`))
        if (k === 2) expect(r.res.headers.get("link")).not.toMatch(/rel="next"/)
      }
      expect((await admin("GET", `/admin/apps?page=${total}&limit=1`)).json).toEqual({
        items: [],
        page: total,
        limit: 1,
        total
      })
      const all = await admin("GET", "/admin/apps?limit=100")
      expect(all.json.items.length).toBe(Math.min(100, total))
      for (const q of ["limit=0", "limit=101", "page=-1", "page=x", "limit="]) {
        problem(await admin("GET", `/admin/apps?${q}`), 400, "invalid_request")
      }
      problem(await api("GET", "/admin/apps", { token: `${c.target.adminToken}x` }), 401, "invalid_token")
    })
    it("GET /admin/installations?appId= pages one app's installations, suspended ones too", async () => {
      const { appId } = await newApp()
      const made: Array<Json> = []
      for (let i = 0; i < 3; i++) made.push(await install(appId))
      await suspend(made[1].id)
      const created = inCreationOrder(made).map((i) => i.id)
      await install((await newApp()).appId)

      const all = await admin("GET", `/admin/installations?appId=${appId}`)
      expect(all.res.status).toBe(200)
      expect(all.json).toMatchObject({ page: 0, limit: 10, total: 3 })
      expect(ids(all.json)).toEqual(created)
      expect(all.json.items.find((i: Json) => i.id === made[1].id).suspendedAt).toMatch(timestampRe)
      expect(all.json.items[0]).toEqual(
        (await admin("GET", `/admin/installations?appId=${appId}&limit=1`)).json.items[0]
      )

      const first = await admin("GET", `/admin/installations?appId=${appId}&limit=2`)
      expect(ids(first.json)).toEqual(created.slice(0, 2))
      expect(first.res.headers.get("link")).toBe(
        `<${BASE}/admin/installations?appId=${appId}&limit=2&page=1>; rel="next"`
      )
      const second = await admin("GET", `/admin/installations?appId=${appId}&limit=2&page=1`)
      expect(ids(second.json)).toEqual(created.slice(2))
      expect(second.res.headers.get("link")).toBe(
        `<${BASE}/admin/installations?appId=${appId}&limit=2&page=0>; rel="prev"`
      )
    })
    it("GET /admin/installations lists every app's installations in creation order", async () => {
      const a = await newApp()
      const b = await newApp()
      const mine = [await install(a.appId), await install(b.appId), await install(a.appId)]
      await suspend(mine[2].id)
      const listed: Array<Json> = []
      let total = -1
      for (let page = 0; ; page++) {
        const r = await admin("GET", `/admin/installations?limit=100&page=${page}`)
        expect(r.res.status).toBe(200)
        total = r.json.total
        listed.push(...r.json.items)
        if (r.json.items.length < 100) break
      }
      expect(listed).toHaveLength(total)
      expect(listed.map((i) => i.id)).toEqual(inCreationOrder(listed).map((i) => i.id))
      for (const inst of mine) expect(listed.filter((i) => i.id === inst.id)).toHaveLength(1)
    })
    it("GET /admin/installations?appId= of an unknown app is 404 app_not_found, of a malformed one 400", async () => {
      problem(await admin("GET", "/admin/installations?appId=987654321"), 404, "app_not_found")
      problem(await admin("GET", "/admin/installations?appId=no-such-app"), 404, "app_not_found")
      problem(await admin("GET", "/admin/installations?appId="), 400, "invalid_request")
      problem(await admin("GET", "/admin/installations?appId=a%20b"), 400, "invalid_request")
      problem(await admin("GET", "/admin/installations?limit=101"), 400, "invalid_request")
    })
    it("DELETE /admin/installations/{id} uninstalls: 204, then 404", async () => {
      const { appId } = await newApp()
      const inst = await install(appId)
      expect((await admin("DELETE", `/admin/installations/${inst.id}`)).res.status).toBe(204)
      problem(await admin("DELETE", `/admin/installations/${inst.id}`), 404, "installation_not_found")
    })
  })
}
