/**
 * A KV namespace over SQL, for the broker off Cloudflare: the three calls its token cache makes of
 * Workers KV (`get(name, "text")`, `put(name, value, { expirationTtl })`, `delete(name)`), on the
 * table `broker_kv` (migrations-broker/). The broker seals values before they get here, exactly as
 * it does for KV. An expired entry is never returned; expired rows are pruned a few at a time by
 * later writes, so the table stays as small as the live cache.
 */
import type { SqlDriver } from "@icr-apps/core/issuer/Sql"
import { sql } from "@icr-apps/core/issuer/Sql"
import type { KvLike } from "../broker/EncryptedTokenCache.js"

/** How many expired rows a write prunes. */
const PRUNE = 16

/** A KV namespace on `driver`'s `broker_kv` table; `now` is the clock (epoch milliseconds). */
export const make = (driver: SqlDriver, now: () => number = Date.now): KvLike => ({
  get: async (key) => {
    const row = await driver.first<{ value: string }>("SELECT value FROM broker_kv WHERE key = ? AND expires_at > ?", [
      key,
      now()
    ])
    return row === undefined ? null : row.value
  },
  put: async (key, value, { expirationTtl }) => {
    const at = now()
    await driver.batch([
      sql(
        "DELETE FROM broker_kv WHERE key IN (SELECT key FROM broker_kv WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
        at,
        PRUNE
      ),
      sql(
        "INSERT INTO broker_kv (key, value, expires_at) VALUES (?, ?, ?) " +
          "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        key,
        value,
        at + expirationTtl * 1000
      )
    ])
  },
  delete: async (key) => {
    await driver.run("DELETE FROM broker_kv WHERE key = ?", [key])
  }
})
