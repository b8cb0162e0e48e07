/**
 * The issuer contract: SPEC §4, minting, describing and revoking app and installation access tokens, and narrowing them.
 */
import { type ContractContext, uuidRe, timestampRe, tokenRe } from "./Context.js"

/** Registers the area's tests. */
export const accessTokens = (c: ContractContext) => {
  const { describe, expect, it } = c.runner
  const { api, admin, problem, newApp, install, installationToken, appToken } = c

  describe("§4 app access tokens", () => {
    it("POST /app/accessTokens mints a 1 h app token carrying the app's permissions, not cached", async () => {
      const perms = { organization_info: "VIEW", organization_inventory: "REQUEST" }
      const { appId, jwt } = await newApp(perms)
      const r = await api("POST", "/app/accessTokens", { token: await jwt() })
      expect(r.res.status).toBe(200)
      expect(r.res.headers.get("cache-control")).toBe("no-store")
      expect(r.json).toMatchObject({ appId, isActive: true, permissions: perms })
      expect(r.json.token).toMatch(tokenRe)
      expect(r.json.id).toMatch(uuidRe)
      for (const k of ["createdAt", "updatedAt", "expiresAt"]) expect(r.json[k]).toMatch(timestampRe)
      const lifetime = Date.parse(r.json.expiresAt) - Date.parse(r.json.createdAt)
      expect(lifetime).toBe(3600 * 1000)
    })
    it("GET /app/installations/token describes an app token without its secret", async () => {
      const { appId, jwt } = await newApp()
      const minted = (await api("POST", "/app/accessTokens", { token: await jwt() })).json
      const r = await api("GET", "/app/installations/token", { token: minted.token })
      expect(r.res.status).toBe(200)
      expect(r.json).toEqual({
        id: minted.id,
        kind: "app",
        appId,
        permissions: minted.permissions,
        createdAt: minted.createdAt,
        expiresAt: minted.expiresAt
      })
      expect(r.text.includes(minted.token)).toBe(false)
    })
    it("DELETE /app/installations/token revokes: 204, then 401 invalid_token on any use", async () => {
      const { jwt } = await newApp()
      const minted = (await api("POST", "/app/accessTokens", { token: await jwt() })).json
      const revoked = await api("DELETE", "/app/installations/token", { token: minted.token })
      expect(revoked.res.status).toBe(204)
      expect(revoked.text).toBe("")
      problem(await api("GET", "/app/installations/token", { token: minted.token }), 401, "invalid_token")
      problem(await api("DELETE", "/app/installations/token", { token: minted.token }), 401, "invalid_token")
    })
    it("answers an unknown, malformed or JWT credential on token endpoints with 401 invalid_token", async () => {
      problem(await api("GET", "/app/installations/token", { token: `crs_${"0".repeat(48)}` }), 401, "invalid_token")
      problem(await api("GET", "/app/installations/token", { token: "crs_short" }), 401, "invalid_token")
      const { jwt } = await newApp()
      const r = await api("GET", "/app/installations/token", { token: await jwt() })
      expect(problem(r, 401, "invalid_token").detail).toMatch(/access token/)
      problem(await api("GET", "/app/installations/token"), 401, "missing_credentials")
    })
    it("POST /app/accessTokens narrows the app's declared permissions with an optional body (SPEC §4)", async () => {
      const perms = { organization_info: "VIEW", organization_inventory: "REQUEST" }
      const { jwt } = await newApp(perms)
      const narrowed = await appToken(await jwt(), { permissions: { organization_inventory: "VIEW" } })
      expect(narrowed.res.status).toBe(200)
      expect(narrowed.json.permissions).toEqual({ organization_inventory: "VIEW" })
      const described = await api("GET", "/app/installations/token", { token: narrowed.json.token })
      expect(described.json).toMatchObject({ kind: "app", permissions: { organization_inventory: "VIEW" } })
      // No body, or `{}`, is the full declared grant.
      expect((await appToken(await jwt(), {})).json.permissions).toEqual(perms)
      expect((await appToken(await jwt())).json.permissions).toEqual(perms)
    })
    it("refuses an app token beyond the declared permissions, an empty grant, and a body member it does not know", async () => {
      const { jwt } = await newApp({ organization_info: "VIEW", organization_inventory: "REQUEST" })
      const higher = await appToken(await jwt(), { permissions: { organization_inventory: "WRITE" } })
      expect(problem(higher, 422, "permissions_exceed_grant").permissions).toEqual(["organization_inventory"])
      const undeclared = await appToken(await jwt(), { permissions: { organization_members: "VIEW" } })
      expect(problem(undeclared, 422, "permissions_exceed_grant").permissions).toEqual(["organization_members"])
      problem(await appToken(await jwt(), { permissions: {} }), 422, "invalid_permissions")
      problem(
        await appToken(await jwt(), { permissions: { organization_secrets: "VIEW" } }),
        422,
        "invalid_permissions"
      )
      // A narrowing the issuer silently ignored would hand out a wider token than the caller asked for.
      for (const body of [{ scope: "organization_info:VIEW" }, { permission: { organization_info: "VIEW" } }]) {
        const r = await appToken(await jwt(), body)
        problem(r, 400, "invalid_request")
        expect(r.text).not.toContain("crs_")
      }
    })
    it("stores no token in plain text", async () => {
      const { appId, jwt } = await newApp()
      const installation = await install(appId)
      const tokens = [
        (await api("POST", "/app/accessTokens", { token: await jwt() })).json.token,
        (await installationToken(await jwt(), installation.id)).json.token
      ]
      const stored = (await c.target.dumpStorage()).join("\n")
      expect(stored.length).toBeGreaterThan(0)
      for (const token of tokens) {
        expect(token).toMatch(tokenRe)
        expect(stored.includes(token)).toBe(false)
        expect(stored.includes(token.slice(4))).toBe(false)
      }
    })
  })

  describe("§4 installation access tokens", () => {
    it("mints a 2 h token with the installation's grant, its ids, and no-store", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId, { organization_info: "VIEW", organization_warehouse: "WRITE" })
      const r = await installationToken(await jwt(), inst.id)
      expect(r.res.status).toBe(200)
      expect(r.res.headers.get("cache-control")).toBe("no-store")
      expect(r.json).toMatchObject({
        appId,
        installationId: inst.id,
        organizationId: inst.organizationId,
        isActive: true,
        permissions: { organization_info: "VIEW", organization_warehouse: "WRITE" }
      })
      expect(r.json.token).toMatch(tokenRe)
      expect(Date.parse(r.json.expiresAt) - Date.parse(r.json.createdAt)).toBe(7200 * 1000)
      const described = await api("GET", "/app/installations/token", { token: r.json.token })
      expect(described.json).toMatchObject({
        kind: "installation",
        installationId: inst.id,
        organizationId: inst.organizationId
      })
    })
    it("narrows to requested permissions at the same or a lower level", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId, { organization_inventory: "WRITE", organization_info: "VIEW" })
      const r = await installationToken(await jwt(), inst.id, { permissions: { organization_inventory: "REQUEST" } })
      expect(r.res.status).toBe(200)
      expect(r.json.permissions).toEqual({ organization_inventory: "REQUEST" })
      const empty = await installationToken(await jwt(), inst.id, {})
      expect(empty.json.permissions).toEqual({ organization_info: "VIEW", organization_inventory: "WRITE" })
    })
    it("refuses an explicit empty grant with 422 invalid_permissions: it never means the full grant (SPEC §4)", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId, { organization_inventory: "WRITE", organization_info: "VIEW" })
      const r = await installationToken(await jwt(), inst.id, { permissions: {} })
      expect(problem(r, 422, "invalid_permissions").detail).toMatch(/^permissions: /)
      expect(r.text).not.toContain("crs_")
    })
    it("refuses wider permissions with 422 permissions_exceed_grant", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId, { organization_inventory: "REQUEST" })
      const higher = await installationToken(await jwt(), inst.id, {
        permissions: { organization_inventory: "WRITE" }
      })
      expect(problem(higher, 422, "permissions_exceed_grant").permissions).toEqual(["organization_inventory"])
      const missing = await installationToken(await jwt(), inst.id, { permissions: { organization_info: "VIEW" } })
      problem(missing, 422, "permissions_exceed_grant")
    })
    it("refuses unknown permission names or levels", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      problem(
        await installationToken(await jwt(), inst.id, { permissions: { organization_secrets: "VIEW" } }),
        422,
        "invalid_permissions"
      )
      problem(
        await installationToken(await jwt(), inst.id, { permissions: { organization_info: "WRITE" } }),
        422,
        "invalid_permissions"
      )
      problem(await installationToken(await jwt(), inst.id, { scope: "all" }), 400, "invalid_request")
    })
    it("answers another app's or an unknown installation with 404, a malformed id with 400", async () => {
      const a = await newApp()
      const b = await newApp()
      const inst = await install(b.appId)
      problem(await installationToken(await a.jwt(), inst.id), 404, "installation_not_found")
      problem(await installationToken(await a.jwt(), crypto.randomUUID()), 404, "installation_not_found")
      problem(await installationToken(await a.jwt(), "not-a-uuid"), 400, "invalid_request")
    })
    it("matches installation ids case-insensitively", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      const r = await installationToken(await jwt(), inst.id.toUpperCase())
      expect(r.res.status).toBe(200)
      expect(r.json.installationId).toBe(inst.id)
    })
    it("answers a suspended installation with 403 installation_suspended", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      expect((await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: true })).res.status).toBe(200)
      problem(await installationToken(await jwt(), inst.id), 403, "installation_suspended")
    })
  })
}
