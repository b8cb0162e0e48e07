/**
 * Where each of the issuer's statements runs when Postgres has synchronous standbys (STORAGE.md,
 * "Postgres with standbys"), decided by the statement's identity — its text, as `SqlStatements` and
 * `SqlRateLimiter` write it — and listed here, in one place, to be audited:
 *
 * - `standing`: the token-standing read (`TOKEN_STANDING_SQL`, the registry's `findToken`). It may be
 *   served by a synchronous standby; a miss there is asked again of the primary.
 * - `killSwitch`: a revocation or kill switch. On the primary, in a transaction committed with
 *   `synchronous_commit = remote_apply` (every synchronous standby has applied it before it is
 *   acknowledged), within a bounded wait.
 * - `mint`: a token's write. On the primary, committed normally (`on`: flushed on every synchronous
 *   standby, not yet applied; a use that misses it on a standby retries on the primary).
 * - `write`: every other write (an app, a key, an installation, a request budget), committed normally.
 * - `primary`: every other read (JWT key checks, the app and installation a mint reads, listings),
 *   on the primary.
 *
 * A statement that is not listed is treated as a kill switch: the strictest route, so a statement
 * added to the registry later can cost a wait, never a guarantee.
 */
import { COUNT_SQL, PRUNE_SQL } from "@icr-apps/core/issuer/SqlRateLimiter"
import {
  APP_LISTING_KEYS_SQL,
  APP_LISTING_SQL,
  installationCountSql,
  installationListingSql,
  PRUNE_TOKENS_SQL,
  type Statements,
  statementsFor,
  TOKEN_STANDING_SQL
} from "@icr-apps/core/issuer/SqlStatements"

/** Where a statement runs (see the module's comment). */
export type StatementRoute = "standing" | "primary" | "write" | "mint" | "killSwitch"

/** From the loosest to the strictest: a batch takes the strictest route of its statements. */
const STRICTNESS: Record<StatementRoute, number> = { standing: 0, primary: 1, write: 2, mint: 3, killSwitch: 4 }

/**
 * The route of each named statement of `statementsFor("postgres")`: the audit list. A test checks
 * that every statement the registry has is named here.
 */
export const REGISTRY_ROUTES: { readonly [K in keyof Statements]?: StatementRoute } = {
  findToken: "standing",
  // The reads a JWT check and a mint make.
  app: "primary",
  keysOfApp: "primary",
  installation: "primary",
  appExists: "primary",
  keyExists: "primary",
  countApps: "primary",
  // The ordinary writes (a key added is no kill switch: it ends nothing).
  createApp: "write",
  lockApp: "write",
  addKey: "write",
  keyAdded: "write",
  createInstallation: "write",
  putToken: "mint",
  // Revocations and kill switches (SPEC §5). Every installation update is one: a suspension or a
  // change of permissions is, and the rest (an unsuspension) costs the same wait, rarely.
  revokeToken: "killSwitch",
  deleteKey: "killSwitch",
  revokeAppTokens: "killSwitch",
  updateInstallation: "killSwitch",
  deleteInstallation: "killSwitch",
  revokeInstallationTokens: "killSwitch"
}

/** Every text `updateInstallation(sets, bumps)` builds, as `SqlRegistry` calls it. */
const installationUpdates = (statements: Statements): ReadonlyArray<string> => {
  const texts: Array<string> = []
  for (const permissions of [false, true])
    for (const suspension of ["unchanged", "lifted", "imposed"] as const)
      texts.push(
        statements.updateInstallation(
          [
            "updated_at = ?",
            ...(permissions ? ["permissions = ?"] : []),
            ...(suspension === "unchanged" ? [] : ["suspended_at = ?"])
          ],
          [...(permissions ? ["permissions <> ?"] : []), ...(suspension === "imposed" ? ["suspended_at IS NULL"] : [])]
        )
      )
  return texts
}

/** The texts of one named statement (a string, the statements of a batch, or a builder's outputs). */
const textsOf = (statements: Statements, name: keyof Statements): ReadonlyArray<string> => {
  if (name === "updateInstallation") return installationUpdates(statements)
  const value: unknown = statements[name]
  if (typeof value === "string") return [value]
  if (Array.isArray(value)) return value.filter((text): text is string => typeof text === "string")
  return []
}

/** Every listing shape (`installationListingSql` and `installationCountSql` take one). */
const LISTING_SHAPES = [false, true].flatMap((byApp) =>
  [false, true].flatMap((activeOnly) => [false, true].map((keyset) => ({ byApp, activeOnly, keyset })))
)

const buildRoutes = (): ReadonlyMap<string, StatementRoute> => {
  const routes = new Map<string, StatementRoute>()
  const add = (text: string, route: StatementRoute) => {
    const known = routes.get(text)
    // The same text under two names takes the stricter route.
    if (known === undefined || STRICTNESS[route] > STRICTNESS[known]) routes.set(text, route)
  }
  const statements = statementsFor("postgres")
  for (const [name, route] of Object.entries(REGISTRY_ROUTES) as Array<[keyof Statements, StatementRoute]>)
    for (const text of textsOf(statements, name)) add(text, route)
  add(TOKEN_STANDING_SQL, "standing")
  for (const shape of LISTING_SHAPES) {
    add(installationListingSql(shape), "primary")
    add(installationCountSql(shape), "primary")
  }
  add(APP_LISTING_SQL, "primary")
  add(APP_LISTING_KEYS_SQL, "primary")
  add(PRUNE_TOKENS_SQL, "write")
  // RATE_LIMIT_STORE=database: one counter write per request, committed normally.
  add(COUNT_SQL, "write")
  add(PRUNE_SQL, "write")
  return routes
}

let routes: ReadonlyMap<string, StatementRoute> | undefined

/** Every listed statement text and its route. */
export const statementRoutes = (): ReadonlyMap<string, StatementRoute> => (routes ??= buildRoutes())

/** The route of one statement; an unlisted one is a kill switch (the strictest). */
export const routeOf = (sql: string): StatementRoute => statementRoutes().get(sql) ?? "killSwitch"

/** The route of a batch: the strictest of its statements; a batch is never served by a standby. */
export const routeOfBatch = (texts: ReadonlyArray<string>): Exclude<StatementRoute, "standing"> => {
  let route: StatementRoute = "primary"
  for (const text of texts) {
    const next = routeOf(text)
    if (STRICTNESS[next] > STRICTNESS[route]) route = next
  }
  return route === "standing" ? "primary" : route
}

/** Whether `names` (the keys of `statementsFor`) are all listed in {@link REGISTRY_ROUTES}: the unlisted ones. */
export const unlistedStatements = (): ReadonlyArray<string> =>
  Object.keys(statementsFor("postgres")).filter((name) => !(name in REGISTRY_ROUTES))
