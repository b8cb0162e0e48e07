/**
 * The issuer contract: SPEC §4 and §5, revocation and the kill switches: each takes effect on the next request, for good.
 */
import { appClaims, signRs256 } from "../Keys.js"
import type { ContractContext, Json } from "./Context.js"

/** Registers the area's tests. */
export const killSwitches = (c: ContractContext) => {
  const { describe, expect, it } = c.runner
  const { api, admin, problem, newApp, install, suspend, installationToken } = c

  describe("§4 revocation takes effect on the next request", () => {
    it("suspending an installation stops its tokens; unsuspending restores minting", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      const token = (await installationToken(await jwt(), inst.id)).json.token
      expect((await api("GET", "/app/installations/token", { token })).res.status).toBe(200)
      await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: true })
      problem(await api("GET", "/app/installations/token", { token }), 401, "invalid_token")
      await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: false })
      expect((await installationToken(await jwt(), inst.id)).res.status).toBe(200)
    })
    it("uninstalling stops the installation's tokens", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      const token = (await installationToken(await jwt(), inst.id)).json.token
      expect((await admin("DELETE", `/admin/installations/${inst.id}`)).res.status).toBe(204)
      problem(await api("GET", "/app/installations/token", { token }), 401, "invalid_token")
      problem(await installationToken(await jwt(), inst.id), 404, "installation_not_found")
    })
    it("reducing an installation's permissions stops its tokens, even those within the new grant (SPEC §5)", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId, { organization_info: "VIEW", organization_inventory: "WRITE" })
      const wide = (await installationToken(await jwt(), inst.id)).json.token
      const narrow = (await installationToken(await jwt(), inst.id, { permissions: { organization_info: "VIEW" } }))
        .json.token
      await admin("PATCH", `/admin/installations/${inst.id}`, { permissions: { organization_info: "VIEW" } })
      problem(await api("GET", "/app/installations/token", { token: wide }), 401, "invalid_token")
      problem(await api("GET", "/app/installations/token", { token: narrow }), 401, "invalid_token")
      const after = (await installationToken(await jwt(), inst.id)).json.token
      expect((await api("GET", "/app/installations/token", { token: after })).res.status).toBe(200)
    })
    it("deleting the key a JWT was signed with refuses that JWT", async () => {
      const { app, appId } = await newApp()
      const added = await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: c.otherKeys.publicPem })
      const jwt = await signRs256(c.otherKeys.privateKey, appClaims(appId))
      expect((await api("POST", "/app/accessTokens", { token: jwt })).res.status).toBe(200)
      expect((await admin("DELETE", `/admin/apps/${appId}/keys/${added.json.id}`)).res.status).toBe(204)
      expect(problem(await api("POST", "/app/accessTokens", { token: jwt }), 401, "invalid_jwt").reason).toBe(
        "invalid_signature"
      )
      const stillGood = await signRs256(c.keys.privateKey, appClaims(appId), { alg: "RS256", kid: app.keys[0].id })
      expect((await api("POST", "/app/accessTokens", { token: stillGood })).res.status).toBe(200)
    })
  })

  describe("§5 kill switches are final", () => {
    /** The status of one use of a token (`GET /app/installations/token`). */
    const use = async (token: string) => (await api("GET", "/app/installations/token", { token })).res.status
    const refused = async (token: string) =>
      problem(await api("GET", "/app/installations/token", { token }), 401, "invalid_token")
    const appToken = async (jwt: string) => {
      const r = await api("POST", "/app/accessTokens", { token: jwt })
      expect(r.res.status).toBe(200)
      return r.json.token as string
    }
    const mint = async (jwt: string, installationId: string, body?: unknown) => {
      const r = await installationToken(jwt, installationId, body)
      expect(r.res.status).toBe(200)
      return r.json.token as string
    }

    it("unsuspending never revives a token minted before the suspension", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      const before = await mint(await jwt(), inst.id)
      await suspend(inst.id)
      await refused(before)
      expect((await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: false })).res.status).toBe(200)
      await refused(before)
      expect(await use(await mint(await jwt(), inst.id))).toBe(200)
    })
    it("widening permissions again never revives a token a narrowing ended; any change ends older tokens", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId, { organization_info: "VIEW", organization_inventory: "WRITE" })
      const wide = await mint(await jwt(), inst.id)
      const narrow = await mint(await jwt(), inst.id, { permissions: { organization_info: "VIEW" } })
      const patch = (permissions: Json) => admin("PATCH", `/admin/installations/${inst.id}`, { permissions })
      expect((await patch({ organization_info: "VIEW", organization_inventory: "REQUEST" })).res.status).toBe(200)
      await refused(wide)
      // Within the new grant, yet minted before the change: ended too.
      await refused(narrow)
      expect((await patch({ organization_info: "VIEW", organization_inventory: "WRITE" })).res.status).toBe(200)
      await refused(wide)
      await refused(narrow)
      const after = await mint(await jwt(), inst.id)
      expect(await use(after)).toBe(200)
      // The same permissions again are no change: the token just minted stays.
      expect((await patch({ organization_inventory: "WRITE", organization_info: "VIEW" })).res.status).toBe(200)
      expect(await use(after)).toBe(200)
    })
    it("deleting any key of the app ends every token of the app, app and installation tokens", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      const added = await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: c.otherKeys.publicPem })
      expect(added.res.status).toBe(201)
      const app = await appToken(await jwt())
      const installation = await mint(await jwt(), inst.id)
      expect((await admin("DELETE", `/admin/apps/${appId}/keys/${added.json.id}`)).res.status).toBe(204)
      await refused(app)
      await refused(installation)
      // The remaining key still signs, and what it mints now works.
      expect(await use(await appToken(await jwt()))).toBe(200)
      expect(await use(await mint(await jwt(), inst.id))).toBe(200)
    })
    it("POST /admin/installations/{id}/revokeTokens ends that installation's tokens minted before it, no others", async () => {
      const { appId, jwt } = await newApp()
      const [one, two] = [await install(appId), await install(appId)]
      const ofOne = await mint(await jwt(), one.id)
      const ofTwo = await mint(await jwt(), two.id)
      const app = await appToken(await jwt())
      const r = await api("POST", `/admin/installations/${one.id.toUpperCase()}/revokeTokens`, {
        token: c.target.adminToken
      })
      expect(r.res.status).toBe(204)
      expect(r.text).toBe("")
      await refused(ofOne)
      expect(await use(ofTwo)).toBe(200)
      expect(await use(app)).toBe(200)
      expect(await use(await mint(await jwt(), one.id))).toBe(200)
      problem(
        await admin("POST", `/admin/installations/${crypto.randomUUID()}/revokeTokens`),
        404,
        "installation_not_found"
      )
      problem(await admin("POST", "/admin/installations/12345/revokeTokens"), 400, "invalid_request")
      problem(await api("POST", `/admin/installations/${one.id}/revokeTokens`), 401, "missing_credentials")
    })
    it("POST /admin/apps/{appId}/revokeTokens ends every token of the app minted before it, no other app's", async () => {
      const mine = await newApp()
      const other = await newApp()
      const inst = await install(mine.appId)
      const otherInst = await install(other.appId)
      const app = await appToken(await mine.jwt())
      const installation = await mint(await mine.jwt(), inst.id)
      const othersApp = await appToken(await other.jwt())
      const othersInstallation = await mint(await other.jwt(), otherInst.id)
      const r = await admin("POST", `/admin/apps/${mine.appId}/revokeTokens`)
      expect(r.res.status).toBe(204)
      await refused(app)
      await refused(installation)
      expect(await use(othersApp)).toBe(200)
      expect(await use(othersInstallation)).toBe(200)
      // The app itself is not touched: its JWTs still mint, and what they mint works.
      expect(await use(await appToken(await mine.jwt()))).toBe(200)
      expect(await use(await mint(await mine.jwt(), inst.id))).toBe(200)
      problem(await admin("POST", "/admin/apps/987654321/revokeTokens"), 404, "app_not_found")
      problem(await admin("POST", "/admin/apps/no-such-app/revokeTokens"), 404, "app_not_found")
    })
    it("decides a token minted right after a kill switch deterministically: it works, every time", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      const signed = await jwt()
      for (let i = 0; i < 5; i++) {
        const old = await mint(signed, inst.id)
        const oldApp = await appToken(signed)
        expect((await admin("POST", `/admin/installations/${inst.id}/revokeTokens`)).res.status).toBe(204)
        expect((await admin("POST", `/admin/apps/${appId}/revokeTokens`)).res.status).toBe(204)
        const fresh = await mint(signed, inst.id)
        const freshApp = await appToken(signed)
        await refused(old)
        await refused(oldApp)
        expect(await use(fresh)).toBe(200)
        expect(await use(freshApp)).toBe(200)
      }
    })
  })
}
