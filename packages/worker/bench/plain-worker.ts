/**
 * The plain worker of issue 12's benchmark: `core/bench/plain.ts` (the plain handler) over the same
 * bindings and schema as the issuer (KV `TOKENS` for token records by digest, D1 `DB` for apps, keys,
 * installations and revocations), with the fewest round trips that storage design allows:
 *
 * - mint: one D1 batch (app, its keys, the installation), then one KV write;
 * - describe: one KV read, then one D1 batch (revocation + the installation).
 *
 * If the issuer moves tokens (STORAGE.md), move them here too, or the comparison stops being "same work".
 */
import { makePlainHandler, type PlainStorage, type PlainToken } from "../../core/bench/plain.js"

interface PlainEnv {
  readonly TOKENS: KVNamespace
  readonly DB: D1Database
  readonly INSTALLATION_TOKEN_TTL_SECONDS?: string
}

const appRowId = (appId: string) => (/^[1-9][0-9]{0,15}$/.test(appId) ? Number(appId) : 0)

interface InstallationRow {
  readonly id: string
  readonly app_id: number
  readonly organization_id: string
  readonly permissions: string
  readonly suspended_at: number | null
  readonly token_epoch: number
  readonly app_token_epoch: number
}
const toInstallation = (row: InstallationRow) => ({
  id: row.id,
  appId: String(row.app_id),
  organizationId: row.organization_id,
  permissions: JSON.parse(row.permissions) as Record<string, string>,
  suspendedAt: row.suspended_at,
  tokenEpoch: row.token_epoch,
  appTokenEpoch: row.app_token_epoch
})
// The installation with its own and its app's kill-switch epochs, as the issuer's D1Registry reads it.
const INSTALLATION_SQL =
  "SELECT i.id, i.app_id, i.organization_id, i.permissions, i.suspended_at, i.token_epoch, " +
  "a.token_epoch AS app_token_epoch FROM installations i JOIN apps a ON a.id = i.app_id WHERE i.id = ?"

const storage = (env: PlainEnv): PlainStorage => ({
  loadForMint: async (appId, installationId) => {
    const id = appRowId(appId)
    const [apps, keys, installations] = await env.DB.batch<Record<string, any>>([
      env.DB.prepare("SELECT id, permissions FROM apps WHERE id = ?").bind(id),
      env.DB.prepare("SELECT id, fingerprint, spki FROM app_keys WHERE app_id = ? ORDER BY created_at, id").bind(id),
      env.DB.prepare(INSTALLATION_SQL).bind(installationId)
    ])
    const app = apps?.results[0]
    const installation = installations?.results[0] as InstallationRow | undefined
    return {
      app:
        app === undefined
          ? undefined
          : {
              id: String(app.id),
              permissions: JSON.parse(app.permissions),
              keys: (keys?.results ?? []).map((k) => ({ id: k.id, fingerprint: k.fingerprint, spki: k.spki }))
            },
      installation: installation === undefined ? undefined : toInstallation(installation)
    }
  },
  putToken: (digest, token, ttlSeconds) =>
    env.TOKENS.put(`token:${digest}`, JSON.stringify(token), { expirationTtl: ttlSeconds }),
  getToken: async (digest) => {
    const text = await env.TOKENS.get(`token:${digest}`, "text")
    if (text === null) return undefined
    try {
      const token = JSON.parse(text) as PlainToken
      return typeof token.id === "string" && typeof token.expiresAt === "number" ? token : undefined
    } catch {
      return undefined
    }
  },
  standing: async (token) => {
    const [revoked, dependency] = await env.DB.batch<Record<string, any>>([
      env.DB.prepare("SELECT 1 AS one FROM revoked_tokens WHERE id = ?").bind(token.id),
      token.kind === "installation"
        ? env.DB.prepare(INSTALLATION_SQL).bind(token.installationId ?? "")
        : env.DB.prepare("SELECT 1 AS one FROM apps WHERE id = ?").bind(appRowId(token.appId))
    ])
    const row = dependency?.results[0]
    return {
      revoked: (revoked?.results.length ?? 0) > 0,
      installation:
        token.kind === "installation" && row !== undefined ? toInstallation(row as InstallationRow) : undefined,
      appExists: token.kind === "app" && row !== undefined
    }
  }
})

const handlers = new WeakMap<PlainEnv, (request: Request) => Promise<Response>>()

export default {
  fetch(request: Request, env: PlainEnv): Promise<Response> {
    let handler = handlers.get(env)
    if (handler === undefined) {
      handler = makePlainHandler(storage(env), {
        installationTokenSeconds: Number(env.INSTALLATION_TOKEN_TTL_SECONDS) || 7200
      })
      handlers.set(env, handler)
    }
    return handler(request)
  }
}
