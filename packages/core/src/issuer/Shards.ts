/**
 * Where a token and an installation live when the registry is split over several databases
 * (`ShardedRegistry`, SCALE.md): each names its shard itself, so that a token use is one statement on
 * one shard, with no directory to read first.
 *
 * - An access token is `crs_` + 48 lower-case hex, as always (SPEC §4): the first 4 hex digits are its
 *   shard (0000–ffff), the other 44 are random (176 bits, above the 160 the format promises). A
 *   registry of one database mints shard 0000 and ignores the digits on use.
 * - An installation id is a UUID (SPEC §1): a sharded registry mints version-8 UUIDs ("custom", RFC
 *   9562 §5.8) whose first 4 hex digits are the shard; any other version (every id minted before the
 *   registry was sharded: random version 4) lives on the home shard, 0.
 *
 * A shard never changes for a token or an installation: growing the number of shards sends new
 * installations to new shards and moves nothing.
 */

/** How many shards a token or an installation id can name. */
export const MAX_SHARDS = 0x10000

const hex4 = (shard: number): string => shard.toString(16).padStart(4, "0")

/** The shard a token's secret names (its first 4 hex digits); `undefined` when it is no access token. */
export const shardOfSecret = (secret: string): number | undefined => {
  const digits = secret.slice(4, 8)
  return /^[0-9a-f]{4}$/.test(digits) ? Number.parseInt(digits, 16) : undefined
}

/** A secret on `shard`: `crs_`, the shard in 4 hex digits, then the last 44 of `randomHex` (≥ 44 hex digits). */
export const secretOn = (shard: number, randomHex: string): string => `crs_${hex4(shard)}${randomHex.slice(-44)}`

/** The shard an installation id names: its first 4 hex digits in a version-8 UUID, else the home shard (0). */
export const shardOfInstallation = (id: string): number =>
  id.length === 36 && id[14] === "8" ? Number.parseInt(id.slice(0, 4), 16) || 0 : 0

/** A fresh UUID `uuid` (version 4) made an installation id on `shard`: the shard in front, version 8. */
export const installationIdOn = (shard: number, uuid: string): string => {
  const id = uuid.toLowerCase()
  return `${hex4(shard)}${id.slice(4, 14)}8${id.slice(15)}`
}
