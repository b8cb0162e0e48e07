import { env } from "cloudflare:test"
import { describe, expect, it } from "vitest"
import {
  APP_LISTING_KEYS_SQL,
  APP_LISTING_SQL,
  installationCountSql,
  installationListingSql,
  type ListingShape
} from "../src/D1Registry.js"

/** The plan SQLite (D1) chooses for `sql`, one line per step. */
const planOf = async (sql: string, values: ReadonlyArray<unknown>): Promise<Array<string>> => {
  const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
    .bind(...values)
    .all<{ detail: string }>()
  return results.map((row) => row.detail)
}

const shapes: Array<ListingShape> = [false, true].flatMap((byApp) =>
  [false, true].flatMap((activeOnly) => [false, true].map((keyset) => ({ byApp, activeOnly, keyset })))
)

// The listings must stay cheap as installations grow: each reads its index in (created_at, id)
// order and stops after a page, rather than reading and sorting the table (migrations/0003).
describe("D1 listing queries walk an index in listing order", () => {
  for (const shape of shapes) {
    const name = `installations ${JSON.stringify(shape)}`
    it(name, async () => {
      const values = [
        ...(shape.byApp ? [1] : []),
        ...(shape.keyset ? [1_700_000_000_000, crypto.randomUUID()] : []),
        11,
        0
      ]
      const plan = await planOf(installationListingSql(shape), values)
      expect(plan.join("\n"), name).not.toMatch(/TEMP B-TREE/)
      const installations = plan.find((step) => / i\b/.test(step)) ?? ""
      expect(installations, plan.join("\n")).toMatch(/USING (COVERING )?INDEX installations_/)
      if (shape.byApp) expect(installations).toMatch(/^SEARCH/)
      if (shape.keyset) expect(installations).toMatch(/\(created_at,id\)>\(\?,\?\)/)
      const count = await planOf(installationCountSql(shape), shape.byApp ? [1] : [])
      if (shape.byApp) expect(count.join("\n")).toMatch(/SEARCH i USING (COVERING )?INDEX/)
    })
  }
  it("apps, with their keys", async () => {
    const apps = await planOf(APP_LISTING_SQL, [11, 0])
    expect(apps.join("\n")).toMatch(/SCAN apps USING (COVERING )?INDEX apps_by_creation/)
    expect(apps.join("\n")).not.toMatch(/TEMP B-TREE/)
    const keys = await planOf(APP_LISTING_KEYS_SQL, [10, 0])
    expect(keys.join("\n")).toMatch(/SEARCH app_keys USING INDEX app_keys_by_app/)
  })
})
