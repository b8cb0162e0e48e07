/**
 * The plain worker of issue 12's benchmark: `core/bench/plain.ts` (the plain handler) over the same
 * binding and schema as the issuer (D1 `DB` for apps, keys, installations and tokens by digest), with
 * the fewest round trips that storage design allows:
 *
 * - mint: one D1 batch (app, its keys, the installation), then one D1 batch (prune + insert);
 * - describe: one D1 statement (the token joined with its installation and app).
 *
 * If the issuer's storage changes (STORAGE.md), change it here too, or the comparison stops being "same work".
 */
import { makePlainHandler, type PlainStorage, type PlainToken } from "../../core/bench/plain.js"

interface PlainEnv {
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

// The token and what it stands on in one statement, as the issuer's D1Registry reads it.
const TOKEN_SQL =
  "SELECT t.id AS t_id, t.kind, t.app_id AS t_app_id, t.installation_id, t.organization_id AS t_organization_id, " +
  "t.permissions AS t_permissions, t.created_at AS t_created_at, t.expires_at, t.app_epoch, t.installation_epoch, " +
  "t.revoked_at, i.id, i.app_id, i.organization_id, i.permissions, i.suspended_at, i.token_epoch, " +
  "a.token_epoch AS app_token_epoch FROM tokens t " +
  "LEFT JOIN installations i ON t.kind = 'installation' AND i.id = t.installation_id " +
  "LEFT JOIN apps a ON a.id = CASE t.kind WHEN 'installation' THEN i.app_id ELSE t.app_id END WHERE t.digest = ?"

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
  putToken: async (digest, token) => {
    await env.DB.batch([
      env.DB.prepare(
        "DELETE FROM tokens WHERE digest IN (SELECT digest FROM tokens WHERE expires_at < ? ORDER BY expires_at LIMIT 100)"
      ).bind(token.createdAt),
      env.DB.prepare(
        "INSERT INTO tokens (digest, id, kind, app_id, installation_id, organization_id, permissions, created_at, " +
          "expires_at, app_epoch, installation_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
      ).bind(
        digest,
        token.id,
        token.kind,
        appRowId(token.appId),
        token.installationId ?? null,
        token.organizationId ?? null,
        JSON.stringify(token.permissions),
        token.createdAt,
        token.expiresAt,
        token.appEpoch,
        token.installationEpoch
      )
    ])
  },
  findToken: async (digest) => {
    const row = await env.DB.prepare(TOKEN_SQL).bind(digest).first<Record<string, any>>()
    if (row === null) return undefined
    const token: PlainToken = {
      id: row.t_id,
      kind: row.kind,
      appId: String(row.t_app_id),
      ...(row.installation_id === null ? {} : { installationId: row.installation_id }),
      ...(row.t_organization_id === null ? {} : { organizationId: row.t_organization_id }),
      permissions: JSON.parse(row.t_permissions),
      createdAt: row.t_created_at,
      expiresAt: row.expires_at,
      appEpoch: row.app_epoch,
      installationEpoch: row.installation_epoch
    }
    return {
      token,
      revoked: row.revoked_at !== null,
      installation:
        token.kind === "installation" && row.id !== null && row.app_token_epoch !== null
          ? toInstallation(row as InstallationRow)
          : undefined,
      appExists: token.kind === "app" && row.app_token_epoch !== null
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
