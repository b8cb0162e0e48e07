/**
 * Permission names, their allowed levels, and the narrowing order (SPEC §3).
 */
import * as Schema from "effect/Schema"

/** Every permission level, in narrowing order: `VIEW` < `REQUEST` < `WRITE`. */
export const PermissionLevels = ["VIEW", "REQUEST", "WRITE"] as const

/** A permission level. */
export const PermissionLevel = Schema.Literal(...PermissionLevels).annotations({ identifier: "PermissionLevel" })
/** A permission level. */
export type PermissionLevel = typeof PermissionLevel.Type

/** The allow-list: each permission name and the levels it may take (SPEC §3). */
export const PermissionCatalog = {
  organization_info: ["VIEW"],
  organization_members: ["VIEW"],
  organization_projects: ["VIEW"],
  organization_warehouse: ["VIEW", "WRITE"],
  organization_inventory: ["VIEW", "REQUEST", "WRITE"]
} as const satisfies Record<string, ReadonlyArray<PermissionLevel>>

/** A permission name. */
export type PermissionName = keyof typeof PermissionCatalog

/** Every permission name. */
export const PermissionNames = Object.keys(PermissionCatalog) as ReadonlyArray<PermissionName>

const level = <const L extends ReadonlyArray<PermissionLevel>>(levels: L) =>
  Schema.optionalWith(Schema.Literal(...levels), { exact: true })

/**
 * A grant: permission names to levels. Unknown names and levels are rejected, not stripped,
 * so a typo can never silently widen or narrow what a caller asked for.
 */
export const Permissions = Schema.Struct({
  organization_info: level(PermissionCatalog.organization_info),
  organization_members: level(PermissionCatalog.organization_members),
  organization_projects: level(PermissionCatalog.organization_projects),
  organization_warehouse: level(PermissionCatalog.organization_warehouse),
  organization_inventory: level(PermissionCatalog.organization_inventory)
}).annotations({
  identifier: "Permissions",
  description: "Permission names mapped to levels",
  parseOptions: { onExcessProperty: "error" }
})
/** A grant: permission names to levels. */
export type Permissions = typeof Permissions.Type

/** The rank of a level in the narrowing order. */
export const levelRank = (l: PermissionLevel): number => PermissionLevels.indexOf(l)

/**
 * The permissions of `requested` that are not covered by `granted` (missing, or granted at a lower
 * level). Empty when `requested` is within `granted`.
 */
export const exceeding = (requested: Permissions, granted: Permissions): ReadonlyArray<PermissionName> =>
  PermissionNames.filter((name) => {
    const want = requested[name]
    if (want === undefined) return false
    const have = granted[name]
    return have === undefined || levelRank(have) < levelRank(want)
  })

/** Whether `requested` is within `granted`. */
export const isWithin = (requested: Permissions, granted: Permissions): boolean =>
  exceeding(requested, granted).length === 0

/** The same grant with keys in catalog order, so equal grants serialize (and cache) identically. */
export const canonical = (p: Permissions): Permissions => {
  const out: Record<string, PermissionLevel> = {}
  for (const name of PermissionNames) {
    const l = p[name]
    if (l !== undefined) out[name] = l
  }
  return out as Permissions
}
