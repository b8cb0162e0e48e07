/**
 * The issuer contract: SPEC §5, the audit trail: one event per mint, revocation, kill switch and operator change, never a secret.
 */
import { appClaims, signRs256 } from "../Keys.js"
import { type ContractContext, ALL_PERMISSIONS, timestampRe, type Json, type Call } from "./Context.js"

/** Registers the area's tests. */
export const auditTrail = (c: ContractContext) => {
  const { describe, expect, it } = c.runner
  const { api, problem, unique, org } = c

  describe("§5 audit trail", () => {
    it("emits one event per mint, revocation, kill switch and operator change, under its request id", async () => {
      const auditEvents = c.target.auditEvents
      const run = unique("audit")
      let step = 0
      /** A call under a request id of its own, and that id. */
      const traced = async (method: string, path: string, call: Call = {}) => {
        const requestId = `${run}.${step++}`
        const r = await api(method, path, { ...call, headers: { ...call.headers, "x-request-id": requestId } })
        expect(r.res.headers.get("x-request-id")).toBe(requestId)
        return { ...r, requestId }
      }
      const asAdmin = (method: string, path: string, body?: unknown) =>
        traced(method, path, { token: c.target.adminToken, ...(body !== undefined ? { body } : {}) })
      const expected: Array<[string, Array<Json>]> = []
      const expect_ = (requestId: string, ...events: Array<Json>) => void expected.push([requestId, events])
      const operator = { actor: "operator", outcome: "success" }

      const created = await asAdmin("POST", "/admin/apps", {
        name: unique("audited"),
        permissions: ALL_PERMISSIONS,
        publicKey: c.keys.publicPem
      })
      const appId: string = created.json.id
      expect_(created.requestId, { ...operator, action: "app.create", appId, keyId: created.json.keys[0].id })
      const added = await asAdmin("POST", `/admin/apps/${appId}/keys`, { publicKey: c.otherKeys.publicPem })
      expect_(added.requestId, { ...operator, action: "app.key_add", appId, keyId: added.json.id })
      const again = await asAdmin("POST", `/admin/apps/${appId}/keys`, { publicKey: c.otherKeys.publicPem })
      expect_(again.requestId, {
        action: "app.key_add",
        actor: "operator",
        appId,
        outcome: "failure",
        code: "conflict"
      })
      const installed = await asAdmin("POST", "/admin/installations", {
        appId,
        organizationId: org(),
        permissions: ALL_PERMISSIONS
      })
      const installationId: string = installed.json.id
      expect_(installed.requestId, { ...operator, action: "installation.create", appId, installationId })

      const jwt = await signRs256(c.keys.privateKey, appClaims(appId))
      const appMint = await traced("POST", "/app/accessTokens", { token: jwt })
      const app = { actor: "app", outcome: "success", appId }
      expect_(appMint.requestId, { ...app, action: "app_token.mint", tokenId: appMint.json.id })
      const instMint = await traced("POST", `/app/installations/${installationId}/accessTokens`, { token: jwt })
      expect_(instMint.requestId, {
        ...app,
        action: "installation_token.mint",
        installationId,
        tokenId: instMint.json.id
      })
      const revoked = await traced("DELETE", "/app/installations/token", { token: appMint.json.token })
      expect(revoked.res.status).toBe(204)
      expect_(revoked.requestId, {
        action: "token.revoke",
        actor: "token",
        outcome: "success",
        appId,
        tokenId: appMint.json.id
      })

      const suspended = await asAdmin("PATCH", `/admin/installations/${installationId}`, { suspended: true })
      const killed = { ...operator, appId, installationId }
      expect_(
        suspended.requestId,
        { ...killed, action: "installation.update" },
        { ...killed, action: "installation.tokens_revoked" }
      )
      const refused = await traced("POST", `/app/installations/${installationId}/accessTokens`, { token: jwt })
      expect_(refused.requestId, {
        action: "installation_token.mint",
        actor: "app",
        appId,
        installationId,
        outcome: "failure",
        code: "installation_suspended"
      })
      const unsuspended = await asAdmin("PATCH", `/admin/installations/${installationId}`, { suspended: false })
      expect_(unsuspended.requestId, { ...killed, action: "installation.update" })
      const revokeInstallation = await asAdmin("POST", `/admin/installations/${installationId}/revokeTokens`)
      expect_(revokeInstallation.requestId, { ...killed, action: "installation.tokens_revoked" })
      const revokeApp = await asAdmin("POST", `/admin/apps/${appId}/revokeTokens`)
      expect_(revokeApp.requestId, { ...operator, action: "app.tokens_revoked", appId })
      const deletedKey = await asAdmin("DELETE", `/admin/apps/${appId}/keys/${added.json.id}`)
      const keyEvent = { ...operator, appId, keyId: added.json.id }
      expect_(
        deletedKey.requestId,
        { ...keyEvent, action: "app.key_delete" },
        { ...keyEvent, action: "app.tokens_revoked" }
      )
      const uninstalled = await asAdmin("DELETE", `/admin/installations/${installationId}`)
      expect_(uninstalled.requestId, { ...killed, action: "installation.delete" })
      const unknown = crypto.randomUUID()
      const missing = await asAdmin("POST", `/admin/installations/${unknown}/revokeTokens`)
      expect_(missing.requestId, {
        action: "installation.tokens_revoked",
        actor: "operator",
        installationId: unknown,
        outcome: "failure",
        code: "installation_not_found"
      })
      // Reads are not changes: no event.
      const read = await asAdmin("GET", `/admin/apps/${appId}`)
      expect_(read.requestId)

      const events = (await auditEvents()).filter((e) => e.requestId.startsWith(`${run}.`))
      for (const [requestId, wanted] of expected) {
        const got = events.filter((e) => e.requestId === requestId)
        expect(
          got.map(({ time: _t, requestId: _r, ...rest }) => rest),
          requestId
        ).toEqual(wanted)
        for (const e of got) expect(e.time).toMatch(timestampRe)
      }
      expect(events).toHaveLength(expected.reduce((n, [, wanted]) => n + wanted.length, 0))
      // Never a secret: no token, JWT (or any part of one), key or ADMIN_TOKEN.
      const text = JSON.stringify(events)
      for (const secret of [
        appMint.json.token,
        instMint.json.token,
        jwt,
        ...jwt.split("."),
        c.target.adminToken,
        c.keys.publicPem.split("\n")[1]!,
        c.otherKeys.publicPem.split("\n")[1]!,
        "crs_"
      ]) {
        expect(text).not.toContain(secret)
      }
    })
    it("audits failed operator authentications without the value presented, at most once per address per second", async () => {
      const run = unique("denied")
      // An address of its own where the issuer trusts the header (Workers, the fake issuer); elsewhere
      // the TCP peer counts, and the pauses below keep earlier tests' failures out of this one's budget.
      const address = `198.51.100.${1 + Math.floor(Math.random() * 250)}`
      const headers = (i: number) => ({ "x-request-id": `${run}.${i}`, "cf-connecting-ip": address })
      const wrong = `${c.target.adminToken}-but-not-it`
      const basic = "Basic b3BlcmF0b3I6aHVudGVyMg=="
      const pause = () => new Promise((resolve) => setTimeout(resolve, 1100))
      await pause()
      problem(await api("GET", "/admin/apps", { token: wrong, headers: headers(0) }), 401, "invalid_token")
      for (let i = 1; i <= 10; i++) {
        problem(await api("GET", "/admin/apps", { token: wrong, headers: headers(i) }), 401, "invalid_token")
      }
      await pause()
      const other = await api("POST", "/admin/apps", { headers: { ...headers(11), authorization: basic } })
      problem(other, 401, "missing_credentials")
      // No credential at all is no authentication attempt: nothing to audit.
      problem(await api("GET", "/admin/apps", { headers: headers(12) }), 401, "missing_credentials")

      const events = (await c.target.auditEvents()).filter((e) => e.requestId.startsWith(`${run}.`))
      const of = (i: number) => events.filter((e) => e.requestId === `${run}.${i}`)
      const failure = { action: "operator.authenticate", actor: "unauthenticated", outcome: "failure" }
      expect(of(0)).toHaveLength(1)
      expect(of(0)[0]).toMatchObject({ ...failure, code: "invalid_token" })
      expect(of(11)).toHaveLength(1)
      expect(of(11)[0]).toMatchObject({ ...failure, code: "missing_credentials" })
      expect(of(12)).toEqual([])
      // The flood is not one event per attempt, and none is lost: each attempt after the first was
      // recorded, or counted (`suppressed`) in the next event that was.
      const flood = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].flatMap(of)
      expect(flood.length).toBeLessThan(10)
      const later = [...flood, ...of(11)]
      expect(later.length + later.reduce((n, e) => n + (e.suppressed ?? 0), 0)).toBe(11)
      for (const e of events) {
        expect(e.time).toMatch(timestampRe)
        expect(Object.keys(e).sort()).toEqual(
          expect.arrayContaining(["action", "actor", "code", "outcome", "requestId", "time"])
        )
      }
      const text = JSON.stringify(events)
      for (const secret of [wrong, c.target.adminToken, basic, basic.slice(6)]) expect(text).not.toContain(secret)
    }, 30_000)
  })
}
