import { describe, expect, it } from "@effect/vitest"
import * as DateTime from "effect/DateTime"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { App, AppKey } from "../../src/api/Apps.js"
import {
  AdminInstallationsQuery,
  Installation,
  InstallationPage,
  InstallationsQuery
} from "../../src/api/Installations.js"
import { decodeCursor, encodeCursor, pageRequest } from "../../src/api/Paging.js"
import {
  canonical,
  exceeding,
  isWithin,
  PermissionCatalog,
  PermissionLevels,
  PermissionNames,
  Permissions
} from "../../src/api/Permissions.js"
import { Timestamp, Uuid } from "../../src/api/Primitives.js"
import { AccessToken, InstallationAccessToken, TokenDescription } from "../../src/api/Tokens.js"

// The example values of ../shared/seed/apps-endpoints.txt, as the API would send them.
const seedPermissions = {
  organization_info: "VIEW",
  organization_members: "VIEW",
  organization_projects: "VIEW",
  organization_inventory: "REQUEST",
  organization_warehouse: "WRITE"
}
const seedAccessToken = {
  id: "123e4567-e89b-12d3-a456-426614174000",
  createdAt: "2022-01-01T00:00:00Z",
  updatedAt: "2022-01-01T00:00:00Z",
  token: "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b",
  expiresAt: "2022-02-01T00:00:00Z",
  isActive: true,
  permissions: seedPermissions,
  appId: "67890"
}
const seedInstallationToken = {
  ...seedAccessToken,
  installationId: "123e4567-e89b-12d3-a456-426614174000",
  organizationId: "123e4567-e89b-12d3-a456-426614174000"
}
const seedInstallation = {
  id: "123e4567-e89b-12d3-a456-426614174000",
  createdAt: "2022-01-01T00:00:00Z",
  updatedAt: "2022-01-01T00:00:00Z",
  permissions: seedPermissions,
  appNameId: "app1",
  appId: "123e4567-e89b-12d3-a456-426614174000",
  organizationId: "123e4567-e89b-12d3-a456-426614174000",
  accessTokensUrl: "https://api.carbonregistry.com/app/installations/123e4567-e89b-12d3-a456-426614174000/accessTokens",
  suspendedAt: null
}

const decodes = (schema: Schema.Schema<any, any>, value: unknown) =>
  Either.isRight(Schema.decodeUnknownEither(schema)(value))

describe("Permissions (SPEC §3)", () => {
  it("accepts exactly the allowed levels of each permission", () => {
    for (const name of PermissionNames) {
      for (const level of PermissionLevels) {
        const allowed = (PermissionCatalog[name] as ReadonlyArray<string>).includes(level)
        expect({ name, level, ok: decodes(Permissions, { [name]: level }) }).toEqual({ name, level, ok: allowed })
      }
    }
    expect(PermissionCatalog).toEqual({
      organization_info: ["VIEW"],
      organization_members: ["VIEW"],
      organization_projects: ["VIEW"],
      organization_warehouse: ["VIEW", "WRITE"],
      organization_inventory: ["VIEW", "REQUEST", "WRITE"]
    })
  })
  it("rejects unknown names, unknown levels, lower-case levels and non-strings", () => {
    expect(decodes(Permissions, { organization_secrets: "VIEW" })).toBe(false)
    expect(decodes(Permissions, { organization_info: "ADMIN" })).toBe(false)
    expect(decodes(Permissions, { organization_info: "view" })).toBe(false)
    expect(decodes(Permissions, { organization_info: 1 })).toBe(false)
    expect(decodes(Permissions, { organization_info: null })).toBe(false)
    expect(decodes(Permissions, [])).toBe(false)
    expect(decodes(Permissions, {})).toBe(true)
  })
  it("narrows by the order VIEW < REQUEST < WRITE", () => {
    const grant = { organization_inventory: "REQUEST", organization_info: "VIEW" } as const
    expect(isWithin({ organization_inventory: "VIEW" }, grant)).toBe(true)
    expect(isWithin({ organization_inventory: "REQUEST" }, grant)).toBe(true)
    expect(exceeding({ organization_inventory: "WRITE" }, grant)).toEqual(["organization_inventory"])
    expect(exceeding({ organization_members: "VIEW", organization_info: "VIEW" }, grant)).toEqual([
      "organization_members"
    ])
    expect(isWithin({}, {})).toBe(true)
  })
  it("canonicalises key order so equal grants serialise equally", () => {
    expect(JSON.stringify(canonical({ organization_warehouse: "VIEW", organization_info: "VIEW" }))).toBe(
      JSON.stringify({ organization_info: "VIEW", organization_warehouse: "VIEW" })
    )
  })
})

describe("seed examples round-trip", () => {
  it("AccessToken", () => {
    const decoded = Schema.decodeUnknownSync(AccessToken)(seedAccessToken)
    expect(Redacted.isRedacted(decoded.token)).toBe(true)
    expect(String(decoded.token)).not.toContain("crs_")
    expect(Schema.encodeSync(AccessToken)(decoded)).toEqual(seedAccessToken)
  })
  it("InstallationAccessToken", () => {
    const decoded = Schema.decodeUnknownSync(InstallationAccessToken)(seedInstallationToken)
    expect(Schema.encodeSync(InstallationAccessToken)(decoded)).toEqual(seedInstallationToken)
  })
  it("Installation", () => {
    const decoded = Schema.decodeUnknownSync(Installation)(seedInstallation)
    expect(Schema.encodeSync(Installation)(decoded)).toEqual(seedInstallation)
    const suspended = { ...seedInstallation, suspendedAt: "2022-03-01T10:00:00.250Z" }
    expect(Schema.encodeSync(Installation)(Schema.decodeUnknownSync(Installation)(suspended))).toEqual(suspended)
  })
  it("TokenDescription, InstallationPage, App and AppKey, built from the seed's values", () => {
    const description = {
      id: seedAccessToken.id,
      kind: "installation",
      appId: "67890",
      installationId: seedInstallationToken.installationId,
      organizationId: seedInstallationToken.organizationId,
      permissions: seedPermissions,
      createdAt: "2022-01-01T00:00:00Z",
      expiresAt: "2022-02-01T00:00:00Z"
    }
    expect(Schema.encodeSync(TokenDescription)(Schema.decodeUnknownSync(TokenDescription)(description))).toEqual(
      description
    )
    const appDescription = { ...description, kind: "app" } as Record<string, unknown>
    delete appDescription.installationId
    delete appDescription.organizationId
    expect(Schema.encodeSync(TokenDescription)(Schema.decodeUnknownSync(TokenDescription)(appDescription))).toEqual(
      appDescription
    )
    const page = { items: [seedInstallation], page: 0, limit: 10, total: 1 }
    expect(Schema.encodeSync(InstallationPage)(Schema.decodeUnknownSync(InstallationPage)(page))).toEqual(page)
    const key = {
      id: "123e4567-e89b-12d3-a456-426614174000",
      fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
      createdAt: "2022-01-01T00:00:00Z"
    }
    const app = {
      id: "67890",
      appNameId: "app1",
      permissions: seedPermissions,
      createdAt: "2022-01-01T00:00:00Z",
      updatedAt: "2022-01-01T00:00:00Z",
      keys: [key]
    }
    expect(Schema.encodeSync(App)(Schema.decodeUnknownSync(App)(app))).toEqual(app)
    expect(decodes(AppKey, { ...key, fingerprint: "MD5:abc" })).toBe(false)
    expect(decodes(InstallationPage, { ...page, limit: 101 })).toBe(false)
    expect(decodes(TokenDescription, { ...description, kind: "user" })).toBe(false)
  })
  it("rejects a token that is not crs_ + 48 lower-case hex", () => {
    expect(decodes(AccessToken, { ...seedAccessToken, token: "crs_ABC" })).toBe(false)
    expect(decodes(AccessToken, { ...seedAccessToken, token: seedAccessToken.token.toUpperCase() })).toBe(false)
  })
})

describe("primitives (SPEC §1)", () => {
  it("matches UUIDs case-insensitively and outputs them lower-case", () => {
    expect(Schema.decodeUnknownSync(Uuid)("123E4567-E89B-12D3-A456-426614174000")).toBe(
      "123e4567-e89b-12d3-a456-426614174000"
    )
    expect(decodes(Uuid, "123e4567e89b12d3a456426614174000")).toBe(false)
    expect(decodes(Uuid, "x23e4567-e89b-12d3-a456-426614174000")).toBe(false)
  })
  it("reads RFC 3339 UTC timestamps, with or without milliseconds, and nothing else", () => {
    const t = Schema.decodeUnknownSync(Timestamp)("2022-01-01T00:00:00.123Z")
    expect(DateTime.toEpochMillis(t)).toBe(Date.UTC(2022, 0, 1, 0, 0, 0, 123))
    expect(Schema.encodeSync(Timestamp)(t)).toBe("2022-01-01T00:00:00.123Z")
    for (const bad of ["2022-01-01", "2022-01-01T00:00:00+02:00", "2022-01-01 00:00:00Z", "yesterday"]) {
      expect(decodes(Timestamp, bad)).toBe(false)
    }
  })
  it("applies the paging defaults and bounds of SPEC §4", () => {
    const read = (query: Record<string, string>) => pageRequest(Schema.decodeUnknownSync(InstallationsQuery)(query))
    expect(read({})).toEqual(Either.right({ _tag: "Offset", limit: 10, page: 0 }))
    expect(read({ limit: "100", page: "3" })).toEqual(Either.right({ _tag: "Offset", limit: 100, page: 3 }))
    for (const bad of [
      { limit: "0" },
      { limit: "101" },
      { limit: "-1" },
      { page: "-1" },
      { page: "1.0" },
      { limit: "01" }
    ]) {
      expect(decodes(InstallationsQuery, bad)).toBe(false)
      expect(decodes(AdminInstallationsQuery, bad)).toBe(false)
    }
    expect(decodes(AdminInstallationsQuery, { appId: "" })).toBe(false)
    expect(decodes(AdminInstallationsQuery, { appId: "67890", limit: "5" })).toBe(true)
  })
  it("reads a keyset cursor, never with page, and starts a walk from neither (SPEC §4)", () => {
    const position = { createdAt: 1_700_000_000_123, id: "123e4567-e89b-12d3-a456-426614174000" }
    const cursor = encodeCursor(position)
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(decodeCursor(cursor)).toEqual(Option.some(position))
    const read = (query: Record<string, string>) => pageRequest(Schema.decodeUnknownSync(InstallationsQuery)(query))
    expect(read({ cursor, limit: "5" })).toEqual(Either.right({ _tag: "Cursor", limit: 5, after: position }))
    const both = read({ cursor, page: "0" })
    expect(Either.isLeft(both) && both.left._tag).toBe("InvalidRequest")
  })
  it("refuses every cursor that is not exactly what the server wrote", () => {
    const id = "123e4567-e89b-12d3-a456-426614174000"
    const base64url = (text: string) => btoa(text).replace(/\+/g, "-").replace(/\//g, "_")
    const cursor = encodeCursor({ createdAt: 5, id })
    for (const bad of [
      "",
      "not a cursor",
      `${cursor}=`, // padding
      `${cursor}A`,
      `${cursor.slice(0, 10)}+${cursor.slice(11)}`, // outside the base64url alphabet
      base64url(`5.${id.toUpperCase()}`), // one spelling of an id only
      base64url(`05.${id}`),
      base64url(`-5.${id}`),
      base64url(`5.5.${id}`),
      base64url(`99999999999999999.${id}`), // beyond a safe integer
      base64url(`5.${id}x`),
      base64url(`{"createdAt":5,"id":"${id}"}`),
      "A".repeat(200)
    ]) {
      expect(Option.isNone(decodeCursor(bad)), bad).toBe(true)
      expect(decodes(InstallationsQuery, { cursor: bad }), bad).toBe(false)
    }
    expect(decodes(InstallationsQuery, { cursor })).toBe(true)
  })
  it("InstallationPage round-trips a cursor page: nextCursor, and no page number", () => {
    const cursorPage = {
      items: [seedInstallation],
      limit: 10,
      total: 3,
      nextCursor: encodeCursor({ createdAt: 1, id: seedInstallation.id })
    }
    expect(Schema.encodeSync(InstallationPage)(Schema.decodeUnknownSync(InstallationPage)(cursorPage))).toEqual(
      cursorPage
    )
  })
})
