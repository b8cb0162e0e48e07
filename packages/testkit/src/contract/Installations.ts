/**
 * The issuer contract: SPEC §4, an app's installations: pages by offset and by cursor, one installation.
 */
import { type ContractContext, ALL_PERMISSIONS, BASE, timestampRe, type Json } from "./Context.js"

/** Registers the area's tests. */
export const installations = (c: ContractContext) => {
  const { describe, expect, it } = c.runner
  const { api, admin, problem, newApp, install, inCreationOrder, ids, suspend } = c

  describe("§4 installations", () => {
    it("pages an app's active installations in creation order with total and Link", async () => {
      const { appId, jwt } = await newApp()
      const made = []
      for (let i = 0; i < 5; i++) made.push(await install(appId))
      // SPEC §4 order: createdAt ascending, then id (installs made in the same millisecond tie on time).
      const created = [...made].sort((a, b) =>
        a.createdAt === b.createdAt ? (a.id < b.id ? -1 : 1) : Date.parse(a.createdAt) - Date.parse(b.createdAt)
      )
      const suspended = await install(appId)
      await admin("PATCH", `/admin/installations/${suspended.id}`, { suspended: true })
      const other = await newApp()
      await install(other.appId)

      const first = await api("GET", "/app/installations?limit=2&page=0", { token: await jwt() })
      expect(first.res.status).toBe(200)
      expect(first.json).toMatchObject({ page: 0, limit: 2, total: 5 })
      expect(first.json.items.map((i: Json) => i.id)).toEqual(created.slice(0, 2).map((i) => i.id))
      expect(first.res.headers.get("link")).toMatch(/<[^>]*\/app\/installations\?limit=2&page=1>; rel="next"/)
      expect(first.res.headers.get("link")).not.toMatch(/rel="prev"/)

      const middle = await api("GET", "/app/installations?limit=2&page=1", { token: await jwt() })
      expect(middle.res.headers.get("link")).toMatch(/page=2>; rel="next"/)
      expect(middle.res.headers.get("link")).toMatch(/page=0>; rel="prev"/)

      const last = await api("GET", "/app/installations?limit=2&page=2", { token: await jwt() })
      expect(last.json.items.map((i: Json) => i.id)).toEqual([created[4].id])
      expect(last.res.headers.get("link")).not.toMatch(/rel="next"/)

      const past = await api("GET", "/app/installations?limit=2&page=9", { token: await jwt() })
      expect(past.res.status).toBe(200)
      expect(past.json.items).toEqual([])
      expect(past.json.total).toBe(5)

      const all = await api("GET", "/app/installations", { token: await jwt() })
      expect(all.json).toMatchObject({ page: 0, limit: 10, total: 5 })
      const item = all.json.items[0]
      expect(item).toEqual({
        id: created[0].id,
        createdAt: expect.stringMatching(timestampRe),
        updatedAt: expect.stringMatching(timestampRe),
        permissions: ALL_PERMISSIONS,
        appNameId: expect.any(String),
        appId,
        organizationId: created[0].organizationId,
        accessTokensUrl: `${BASE}/app/installations/${created[0].id}/accessTokens`,
        suspendedAt: null
      })
    })
    it("refuses limit and page outside their bounds with 400", async () => {
      const { jwt } = await newApp()
      for (const q of ["limit=0", "limit=101", "limit=abc", "limit=1.5", "page=-1", "page=x", "limit=", "page=1e3"]) {
        problem(await api("GET", `/app/installations?${q}`, { token: await jwt() }), 400, "invalid_request")
      }
      expect((await api("GET", "/app/installations?limit=100", { token: await jwt() })).res.status).toBe(200)
      expect((await api("GET", "/app/installations?limit=1", { token: await jwt() })).res.status).toBe(200)
    })
    it("walks by cursor: nextCursor on every page but the last, Link by cursor, no page number", async () => {
      const { appId, jwt } = await newApp()
      const made = []
      for (let i = 0; i < 5; i++) made.push(await install(appId))
      const created = inCreationOrder(made).map((i) => i.id)
      await suspend((await install(appId)).id)
      const list = async (query: string) => api("GET", `/app/installations?${query}`, { token: await jwt() })

      // A walk starts with neither cursor nor page: that is page 0, with page links and a nextCursor.
      const first = await list("limit=2")
      expect(first.json).toMatchObject({ page: 0, limit: 2, total: 5, nextCursor: expect.any(String) })
      expect(ids(first.json)).toEqual(created.slice(0, 2))
      expect(first.res.headers.get("link")).toMatch(/limit=2&page=1>; rel="next"/)

      const second = await list(`limit=2&cursor=${first.json.nextCursor}`)
      expect(second.res.status).toBe(200)
      expect(ids(second.json)).toEqual(created.slice(2, 4))
      expect(second.json).toMatchObject({ limit: 2, total: 5, nextCursor: expect.any(String) })
      expect(second.json).not.toHaveProperty("page")
      expect(second.res.headers.get("link")).toBe(
        `<${BASE}/app/installations?limit=2&cursor=${second.json.nextCursor}>; rel="next"`
      )

      // The Link is a URL a client can follow as it is.
      const next = /<([^>]*)>; rel="next"/.exec(second.res.headers.get("link") ?? "")![1]!
      const last = await api("GET", next.slice(BASE.length), { token: await jwt() })
      expect(ids(last.json)).toEqual(created.slice(4))
      expect(last.json).toEqual({ items: [expect.any(Object)], limit: 2, total: 5 })
      expect(last.res.headers.get("link")).toBeNull()

      // An offset page carries a nextCursor too; following it continues after that page.
      const byPage = await list("limit=2&page=1")
      expect(ids((await list(`limit=3&cursor=${byPage.json.nextCursor}`)).json)).toEqual(created.slice(4))
    })
    it("leaves nextCursor out when no installation follows, even on a full last page", async () => {
      const { appId, jwt } = await newApp()
      const list = async (query: string) => api("GET", `/app/installations?${query}`, { token: await jwt() })
      const none = await list("")
      expect(none.json).toEqual({ items: [], page: 0, limit: 10, total: 0 })
      for (let i = 0; i < 4; i++) await install(appId)
      const first = await list("limit=2")
      const full = await list(`limit=2&cursor=${first.json.nextCursor}`)
      expect(full.json.items).toHaveLength(2)
      expect(full.json).not.toHaveProperty("nextCursor")
      expect(full.res.headers.get("link")).toBeNull()
      expect((await list("limit=2&page=1")).json).not.toHaveProperty("nextCursor")
      expect((await list("limit=4")).json).not.toHaveProperty("nextCursor")
      expect((await list("limit=2&page=7")).json).toEqual({ items: [], page: 7, limit: 2, total: 4 })
    })
    it("refuses a malformed cursor, and cursor with page, with 400 invalid_request", async () => {
      const { appId, jwt } = await newApp()
      for (let i = 0; i < 3; i++) await install(appId)
      const cursor: string = (await api("GET", "/app/installations?limit=1", { token: await jwt() })).json.nextCursor
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/)
      const b64 = (text: string) => btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
      for (const q of [
        "cursor=",
        "cursor=abc",
        "cursor=%21%21",
        `cursor=${cursor}%3D`,
        `cursor=${cursor.slice(0, -2)}`,
        `cursor=${b64(`1.${crypto.randomUUID()}x`)}`,
        `cursor=${b64(`{"createdAt":1,"id":"${crypto.randomUUID()}"}`)}`,
        `cursor=${b64(`-1.${crypto.randomUUID()}`)}`,
        `cursor=${"A".repeat(400)}`,
        `cursor=${cursor}&page=0`,
        `page=1&cursor=${cursor}`,
        `cursor=${cursor}&cursor=${cursor}`,
        `cursor=${cursor}&limit=0`
      ]) {
        problem(await api("GET", `/app/installations?${q}`, { token: await jwt() }), 400, "invalid_request")
      }
      const ok = await api("GET", `/app/installations?cursor=${cursor}&limit=1`, { token: await jwt() })
      expect(ok.res.status).toBe(200)
    })
    it("a cursor walk sees every installation active for the whole walk exactly once, while others come and go", async () => {
      const { appId, jwt } = await newApp()
      const made: Array<Json> = []
      for (let i = 0; i < 10; i++) made.push(await install(appId))
      const suspendedDuringWalk = new Set<string>()
      const seen: Array<string> = []
      let cursor: string | undefined
      let pages = 0
      do {
        const r = await api("GET", `/app/installations?limit=3${cursor === undefined ? "" : `&cursor=${cursor}`}`, {
          token: await jwt()
        })
        expect(r.res.status).toBe(200)
        expect(r.json.items.length).toBeLessThanOrEqual(3)
        seen.push(...ids(r.json))
        cursor = r.json.nextCursor
        if (pages++ < 2) {
          // One already seen (offset pages would shift the unseen ones back under the reader) and
          // one not yet seen leave the listing; a new one joins it.
          const done = new Set(seen)
          const behind = made.find((i) => done.has(i.id) && !suspendedDuringWalk.has(i.id))
          const ahead = made.find((i) => !done.has(i.id) && !suspendedDuringWalk.has(i.id))
          for (const leaving of [behind, ahead]) {
            await suspend(leaving.id)
            suspendedDuringWalk.add(leaving.id)
          }
          await install(appId)
        }
        expect(pages).toBeLessThan(20)
      } while (cursor !== undefined)
      const stable = made.filter((i) => !suspendedDuringWalk.has(i.id)).map((i) => i.id)
      expect(stable).toHaveLength(6)
      expect(new Set(seen).size).toBe(seen.length)
      for (const id of stable) expect(seen.filter((s) => s === id)).toHaveLength(1)
    })
    it("offset pages, unlike cursors, skip one when an installation already read leaves (SPEC §4)", async () => {
      const { appId, jwt } = await newApp()
      const made = []
      for (let i = 0; i < 4; i++) made.push(await install(appId))
      const created = inCreationOrder(made).map((i) => i.id)
      const first = await api("GET", "/app/installations?limit=2", { token: await jwt() })
      await suspend(created[0]!)
      const byPage = await api("GET", "/app/installations?limit=2&page=1", { token: await jwt() })
      expect(ids(byPage.json)).toEqual([created[3]])
      const byCursor = await api("GET", `/app/installations?limit=2&cursor=${first.json.nextCursor}`, {
        token: await jwt()
      })
      expect(ids(byCursor.json)).toEqual(created.slice(2, 4))
    })
    it("GET /app/installations/{id} returns the app's installation, suspended ones too", async () => {
      const { appId, jwt } = await newApp()
      const inst = await install(appId)
      await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: true })
      const r = await api("GET", `/app/installations/${inst.id}`, { token: await jwt() })
      expect(r.res.status).toBe(200)
      expect(r.json.id).toBe(inst.id)
      expect(r.json.suspendedAt).toMatch(timestampRe)
      const other = await newApp()
      problem(
        await api("GET", `/app/installations/${inst.id}`, { token: await other.jwt() }),
        404,
        "installation_not_found"
      )
      problem(await api("GET", "/app/installations/12345", { token: await jwt() }), 400, "invalid_request")
    })
  })
}
