/**
 * Every statement the issuer runs, for both dialects, in one place (SPEC §9). Written once with `?`
 * placeholders in SQL both SQLite (D1, SQLite) and Postgres accept; the few places where they differ
 * are the branches of {@link statementsFor}, each saying why. The schema they run against is
 * `migrations/` (SQLite) and `migrations-postgres/` in `@icr-apps/worker`, proven equivalent by a test.
 *
 * Values bound into a `SELECT` list (`INSERT … SELECT ?, …`) are cast, because Postgres cannot
 * infer their types there; SQLite ignores the cast's type name but for its affinity.
 */
import type { SqlDialect } from "./Sql.js"

/** Which installation listing a query serves. */
export interface ListingShape {
  /** `app_id = ?` (bound first). */
  readonly byApp: boolean
  /** `suspended_at IS NULL`. */
  readonly activeOnly: boolean
  /** `(created_at, id) > (?, ?)`, a cursor's position (bound next). */
  readonly keyset: boolean
}

const INSTALLATION_COLUMNS = `i.id, i.app_id, a.name AS app_name, i.organization_id, i.permissions,
  i.created_at, i.updated_at, i.suspended_at, i.token_epoch, a.token_epoch AS app_token_epoch`

const APP_COLUMNS = "id, name, permissions, created_at, updated_at, token_epoch"

const KEY_COLUMNS = "id, app_id, fingerprint, spki, created_at, not_before"

/**
 * A token with what it stands on, in one statement: the `tokens` row, the installation it was
 * minted for joined with that installation's app (installation tokens), or its own app (app tokens).
 * Every column of the installation side is NULL when the installation or app is gone.
 */
export const TOKEN_STANDING_SQL = `SELECT t.id AS t_id, t.kind, t.app_id AS t_app_id, t.installation_id, t.organization_id AS t_organization_id,
  t.permissions AS t_permissions, t.created_at AS t_created_at, t.expires_at, t.app_epoch, t.installation_epoch, t.revoked_at,
  i.id, i.app_id, a.name AS app_name, i.organization_id, i.permissions, i.created_at, i.updated_at, i.suspended_at,
  i.token_epoch, a.token_epoch AS app_token_epoch
  FROM tokens t
  LEFT JOIN installations i ON t.kind = 'installation' AND i.id = t.installation_id
  LEFT JOIN apps a ON a.id = CASE t.kind WHEN 'installation' THEN i.app_id ELSE t.app_id END
  WHERE t.digest = ?`

const listingWhere = (shape: ListingShape, keyset: boolean): string => {
  const conditions = [
    ...(shape.byApp ? ["i.app_id = ?"] : []),
    ...(shape.activeOnly ? ["i.suspended_at IS NULL"] : []),
    ...(keyset ? ["(i.created_at, i.id) > (?, ?)"] : [])
  ]
  return conditions.length === 0 ? "" : `WHERE ${conditions.join(" AND ")}`
}

/**
 * One page of installations in (created_at, id) order, then `LIMIT ? OFFSET ?`. Every shape walks
 * an index in that order (a test checks the query plans on D1).
 */
export const installationListingSql = (shape: ListingShape): string =>
  `SELECT ${INSTALLATION_COLUMNS} FROM installations i JOIN apps a ON a.id = i.app_id
   ${listingWhere(shape, shape.keyset)} ORDER BY i.created_at, i.id LIMIT ? OFFSET ?`

/** How many installations the listing holds (the cursor does not narrow it: `total` is the whole). */
export const installationCountSql = (shape: ListingShape): string =>
  `SELECT COUNT(*) AS total FROM installations i ${listingWhere(shape, false)}`

/** One page of apps in (created_at, id) order, then `LIMIT ? OFFSET ?`. */
export const APP_LISTING_SQL = `SELECT ${APP_COLUMNS} FROM apps ORDER BY created_at, id LIMIT ? OFFSET ?`

/** The keys of the apps on one page (`LIMIT ? OFFSET ?` as the page). */
export const APP_LISTING_KEYS_SQL = `SELECT ${KEY_COLUMNS} FROM app_keys
  WHERE app_id IN (SELECT id FROM apps ORDER BY created_at, id LIMIT ? OFFSET ?) ORDER BY app_id, created_at, id`

/** Deletes up to `?2` token records that expired before `?1`, oldest first, off `tokens_by_expiry`. */
export const PRUNE_TOKENS_SQL =
  "DELETE FROM tokens WHERE digest IN (SELECT digest FROM tokens WHERE expires_at < ? ORDER BY expires_at LIMIT ?)"

const INSERT_TOKEN_SQL = `INSERT INTO tokens (digest, id, kind, app_id, installation_id, organization_id, permissions, created_at,
  expires_at, app_epoch, installation_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

/** The statements of one dialect, built once per registry. */
export const statementsFor = (dialect: SqlDialect) => ({
  app: `SELECT ${APP_COLUMNS} FROM apps WHERE id = ?`,
  keysOfApp: `SELECT ${KEY_COLUMNS} FROM app_keys WHERE app_id = ? ORDER BY created_at, id`,
  installation: `SELECT ${INSTALLATION_COLUMNS} FROM installations i JOIN apps a ON a.id = i.app_id WHERE i.id = ?`,
  appExists: "SELECT 1 AS one FROM apps WHERE id = ?",
  keyExists: "SELECT 1 AS one FROM app_keys WHERE app_id = ? AND fingerprint = ?",

  /**
   * The app and its first key, atomically. SQLite: two statements in one batch, the key taking the
   * app's row id from `last_insert_rowid()`. Postgres: one statement, the key taking it from a
   * data-modifying CTE (Postgres has no `last_insert_rowid()`, SQLite no data-modifying CTEs).
   * Either way the first statement returns the new app's id.
   */
  createApp:
    dialect === "postgres"
      ? [
          `WITH app AS (INSERT INTO apps (name, permissions, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id)
           INSERT INTO app_keys (id, app_id, fingerprint, spki, created_at, not_before)
           SELECT CAST(? AS TEXT), app.id, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), NULL FROM app RETURNING app_id AS id`
        ]
      : [
          "INSERT INTO apps (name, permissions, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id",
          `INSERT INTO app_keys (id, app_id, fingerprint, spki, created_at, not_before)
           VALUES (?, last_insert_rowid(), ?, ?, ?, NULL)`
        ],

  /**
   * Locks the app's row for the rest of the transaction (Postgres): two key additions to one app
   * then run one after the other, so neither can pass the key cap on a count the other is about to
   * change. SQLite (and D1) run one write transaction at a time: nothing to lock.
   */
  lockApp: dialect === "postgres" ? "SELECT id FROM apps WHERE id = ? FOR UPDATE" : undefined,

  /**
   * Adds a key in one statement, only if the app exists, has no key with this fingerprint and has
   * fewer than `?` keys; the key's `not_before` is the last deletion of the same key from this app.
   * `UNIQUE (app_id, fingerprint)` backs the duplicate check up under any interleaving.
   */
  addKey: `INSERT INTO app_keys (id, app_id, fingerprint, spki, created_at, not_before)
    SELECT CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT),
      (SELECT d.deleted_at FROM deleted_app_keys d WHERE d.app_id = ? AND d.fingerprint = ?)
    WHERE EXISTS (SELECT 1 FROM apps WHERE id = ?)
      AND NOT EXISTS (SELECT 1 FROM app_keys WHERE app_id = ? AND fingerprint = ?)
      AND (SELECT COUNT(*) FROM app_keys WHERE app_id = ?) < ?
    RETURNING not_before`,

  /**
   * A key deletion, as one batch: the app's epoch moves on exactly when the key goes (a kill
   * switch), and the deletion is remembered for the key's fingerprint (so a JWT issued before it never
   * verifies with the same key registered again). The first statement tells whether the app exists,
   * the last whether the key did.
   */
  deleteKey: [
    "SELECT id FROM apps WHERE id = ?",
    `UPDATE apps SET token_epoch = token_epoch + 1, version = version + 1
     WHERE id = ? AND EXISTS (SELECT 1 FROM app_keys WHERE app_id = ? AND id = ?)`,
    `INSERT INTO deleted_app_keys (app_id, fingerprint, deleted_at)
     SELECT app_id, fingerprint, CAST(? AS BIGINT) FROM app_keys WHERE app_id = ? AND id = ?
     ON CONFLICT (app_id, fingerprint) DO UPDATE SET deleted_at = excluded.deleted_at`,
    "DELETE FROM app_keys WHERE app_id = ? AND id = ?"
  ],

  revokeAppTokens: "UPDATE apps SET token_epoch = token_epoch + 1, version = version + 1 WHERE id = ?",

  /**
   * After a key addition, in the same batch: the app's `version` (what the shards' copies of the app
   * are compared by, `ShardedRegistry`) moves on exactly when the key was added.
   */
  keyAdded:
    "UPDATE apps SET version = version + 1 WHERE id = ? AND EXISTS (SELECT 1 FROM app_keys WHERE app_id = ? AND id = ?)",

  createInstallation: `INSERT INTO installations (id, app_id, organization_id, permissions, created_at, updated_at, suspended_at)
    SELECT CAST(? AS TEXT), id, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), NULL
    FROM apps WHERE id = ?`,

  /**
   * An installation change; `sets` are `column = ?` assignments, `bumps` the conditions under which
   * the change is a kill switch (SPEC §5). Both dialects evaluate every `SET` expression on the row as
   * it was before this `UPDATE`, so the rule is judged against the row being written, not as last read.
   */
  updateInstallation: (sets: ReadonlyArray<string>, bumps: ReadonlyArray<string>): string =>
    `UPDATE installations SET ${[
      ...sets,
      ...(bumps.length > 0 ? [`token_epoch = token_epoch + CASE WHEN ${bumps.join(" OR ")} THEN 1 ELSE 0 END`] : [])
    ].join(", ")} WHERE id = ?`,

  deleteInstallation: "DELETE FROM installations WHERE id = ? RETURNING app_id",
  revokeInstallationTokens: "UPDATE installations SET token_epoch = token_epoch + 1 WHERE id = ? RETURNING app_id",

  /**
   * A mint's write: prune up to `?` records that expired before `?` (oldest first, off
   * `tokens_by_expiry`), then insert. SQLite: two statements in one batch. Postgres: one statement
   * (one round trip), the prune a data-modifying CTE that skips rows another mint is pruning right
   * now (`SKIP LOCKED`), so concurrent mints never wait on, or deadlock over, the same expired rows.
   */
  putToken:
    dialect === "postgres"
      ? [
          `WITH pruned AS (DELETE FROM tokens WHERE digest IN
             (SELECT digest FROM tokens WHERE expires_at < ? ORDER BY expires_at LIMIT ? FOR UPDATE SKIP LOCKED))
           ${INSERT_TOKEN_SQL}`
        ]
      : [PRUNE_TOKENS_SQL, INSERT_TOKEN_SQL],

  findToken: TOKEN_STANDING_SQL,
  revokeToken: "UPDATE tokens SET revoked_at = ? WHERE digest = ? AND revoked_at IS NULL",
  countApps: "SELECT COUNT(*) AS total FROM apps"
})

/** The statements of one dialect. */
export type Statements = ReturnType<typeof statementsFor>

/**
 * The statements of a registry split over several databases (`ShardedRegistry`, SCALE.md), the same
 * for both dialects. Values bound in a `SELECT` list are cast, as above.
 */
export const SHARD_STATEMENTS = {
  /** An app as home holds it, with the version its copies are compared by and how far they caught up. */
  /**
   * The app's row with its version, in **one** statement: on Postgres each statement of a batch reads
   * its own snapshot, so a row and a version read apart could come from two different changes.
   */
  appState: `SELECT ${APP_COLUMNS}, version, replicated_version FROM apps WHERE id = ?`,
  /** The shards other than home that hold (or are about to hold) installations of an app. */
  appShards: "SELECT DISTINCT shard FROM installation_claims WHERE app_id = ? AND shard <> 0 ORDER BY shard",

  /**
   * A shard's copy of an app, replaced only by a newer version (so copies written in any order
   * end as the newest). With {@link SHARD_STATEMENTS.replicaKeysClear} and
   * {@link SHARD_STATEMENTS.replicaKey}, in one batch: the keys follow the row they belong to.
   */
  replicaApp: `INSERT INTO apps (id, name, permissions, created_at, updated_at, token_epoch, version)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, permissions = excluded.permissions,
      updated_at = excluded.updated_at, token_epoch = excluded.token_epoch, version = excluded.version
    WHERE excluded.version > apps.version`,
  /** The copy's keys go, when the copy is now exactly this version (this batch's, or an identical one). */
  replicaKeysClear: "DELETE FROM app_keys WHERE app_id = ? AND (SELECT version FROM apps WHERE id = ?) = ?",
  /** One key of the copy, under the same condition. */
  replicaKey: `INSERT INTO app_keys (id, app_id, fingerprint, spki, created_at, not_before)
    SELECT CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT)
    WHERE (SELECT version FROM apps WHERE id = ?) = ?`,
  /** Home: the copies are known to have reached `version`. */
  markReplicated: "UPDATE apps SET replicated_version = ? WHERE id = ? AND replicated_version < ?",

  /**
   * Home: claims an (app, organization) for a new installation on a shard, unless another claim has
   * it, the app is missing, or an installation made before sharding (on home, without a claim) has it.
   */
  claim: `INSERT INTO installation_claims (app_id, organization_id, installation_id, shard, state)
    SELECT CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), 'creating'
    WHERE EXISTS (SELECT 1 FROM apps WHERE id = ?)
      AND NOT EXISTS (SELECT 1 FROM installations WHERE app_id = ? AND organization_id = ?)
    ON CONFLICT DO NOTHING`,
  claimOf: "SELECT installation_id, shard, state FROM installation_claims WHERE app_id = ? AND organization_id = ?",
  claimActive: "UPDATE installation_claims SET state = 'active' WHERE installation_id = ? AND state = 'creating'",
  claimDeleting: "UPDATE installation_claims SET state = 'deleting' WHERE installation_id = ? RETURNING app_id",
  claimRemove: "DELETE FROM installation_claims WHERE installation_id = ?",

  /**
   * An installation on its shard, unless it is there already (a claim completed by another caller):
   * then nothing changes, and the caller knows it did not create it.
   */
  installationIfAbsent: `INSERT INTO installations (id, app_id, organization_id, permissions, created_at, updated_at, suspended_at)
    SELECT CAST(? AS TEXT), id, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), NULL
    FROM apps WHERE id = ? AND NOT EXISTS (SELECT 1 FROM deleted_installations WHERE id = ?)
    ON CONFLICT DO NOTHING`,
  /** Whether an installation is on its shard (after {@link SHARD_STATEMENTS.installationIfAbsent} changed nothing). */
  installationExists: "SELECT 1 AS one FROM installations WHERE id = ?",
  /** Home: an installation from before sharding (it has no claim) holds the organization. */
  installedBeforeSharding: "SELECT 1 AS one FROM installations WHERE app_id = ? AND organization_id = ?",
  /**
   * An uninstall on the installation's shard, in one batch: the id is remembered for good (a claim
   * completed late can never write it again: old tokens would stand on it), then the row goes.
   */
  rememberDeleted: `INSERT INTO deleted_installations (id)
    SELECT CAST(? AS TEXT) WHERE ? = 1 OR EXISTS (SELECT 1 FROM installations WHERE id = ?)
    ON CONFLICT DO NOTHING`,
  deleteInstallation: "DELETE FROM installations WHERE id = ? RETURNING app_id"
} as const
