/**
 * The issuer's conformance suite: every row of SPEC §1, §2, §4, §5 and §6 as a black-box test over
 * `fetch`. It runs unchanged against the in-memory issuer (Node) and the real worker (workerd and
 * D1), so both are held to the same contract.
 */
import { type AppKeyPair, appClaims, generateAppKeyPair, jsonSegment, signRs256 } from "./Keys.js"
import type { AuditEvent } from "@icr-apps/core/issuer/AuditLog"
import * as Encoding from "effect/Encoding"
import type { TestRunner } from "./TestRunner.js"

/** What the suite needs of an issuer. */
export interface IssuerTarget {
  /** Sends a request to the issuer under test. */
  readonly fetch: (request: Request) => Promise<Response>
  /** The same issuer with no ADMIN_TOKEN configured. */
  readonly fetchWithoutAdmin: (request: Request) => Promise<Response>
  /** The configured ADMIN_TOKEN. */
  readonly adminToken: string
  /** Every stored key and value, as text, for the plaintext-token scan. */
  readonly dumpStorage: () => Promise<ReadonlyArray<string>>
  /** Every audit event the issuer has emitted so far (SPEC §5): the worker's log lines, the fake issuer's `auditEvents()`. */
  readonly auditEvents: () => Promise<ReadonlyArray<AuditEvent>>
  /**
   * The origin the issuer builds every URL on whatever a request's host (a server configured with
   * `PUBLIC_BASE_URL`, SPEC §9: then it must be `http://icr.test`, the suite's); absent, the request's own.
   */
  readonly origin?: string | undefined
}

/** Every permission at its highest level. */
export const ALL_PERMISSIONS = {
  organization_info: "VIEW",
  organization_members: "VIEW",
  organization_projects: "VIEW",
  organization_warehouse: "WRITE",
  organization_inventory: "WRITE"
} as const

const BASE = "http://icr.test"
const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const timestampRe = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/
const tokenRe = /^crs_[0-9a-f]{48}$/

type Json = any

interface Call {
  readonly body?: unknown
  readonly rawBody?: string
  readonly token?: string
  readonly headers?: Record<string, string>
}

/**
 * A distinct, well-formed RSA-2048 public key (odd modulus, e = 65537) whose private half nobody
 * has: enough for tests that only need many different keys, at no key-generation cost.
 */
export const publicOnlyKey = (): JsonWebKey => {
  const n = crypto.getRandomValues(new Uint8Array(256))
  n[0] = n[0]! | 0x80
  n[255] = n[255]! | 0x01
  return { kty: "RSA", n: Encoding.encodeBase64Url(n), e: "AQAB" }
}

/** Registers the suite under `name`. */
export const issuerContract = (
  name: string,
  makeTarget: () => IssuerTarget | Promise<IssuerTarget>,
  { beforeAll, describe, expect, it }: TestRunner
) =>
  describe(`issuer contract: ${name}`, () => {
    let target: IssuerTarget
    let keys: AppKeyPair
    let otherKeys: AppKeyPair
    let counter = 0
    const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`
    const org = () => crypto.randomUUID()

    beforeAll(async () => {
      target = await makeTarget()
      ;[keys, otherKeys] = await Promise.all([generateAppKeyPair(), generateAppKeyPair()])
    }, 60_000)

    const send = async (fetcher: (r: Request) => Promise<Response>, method: string, path: string, call: Call = {}) => {
      const headers = new Headers(call.headers)
      if (call.token !== undefined) headers.set("authorization", `Bearer ${call.token}`)
      let body: string | undefined
      if (call.rawBody !== undefined) body = call.rawBody
      else if (call.body !== undefined) {
        body = JSON.stringify(call.body)
        if (!headers.has("content-type")) headers.set("content-type", "application/json")
      }
      const res = await fetcher(new Request(BASE + path, { method, headers, ...(body !== undefined ? { body } : {}) }))
      const text = await res.text()
      // No error, ever, echoes the credential it was sent.
      if (res.status >= 400 && call.token !== undefined && call.token.length >= 8) {
        expect(text.includes(call.token)).toBe(false)
      }
      return { res, text, json: text === "" ? undefined : (JSON.parse(text) as Json) }
    }
    const api = (method: string, path: string, call: Call = {}) => send(target.fetch, method, path, call)
    const admin = (method: string, path: string, body?: unknown) =>
      api(method, path, { token: target.adminToken, ...(body !== undefined ? { body } : {}) })

    /** Asserts a problem document with the given status and code. */
    const problem = (r: { res: Response; json: Json }, status: number, code: string) => {
      expect({ status: r.res.status, code: r.json?.code }).toEqual({ status, code })
      expect(r.res.headers.get("content-type")).toMatch(/^application\/problem\+json/)
      expect(r.json).toMatchObject({ status, code, type: expect.any(String), title: expect.any(String) })
      expect(typeof r.json.detail).toBe("string")
      expect(r.json.detail.length).toBeGreaterThan(0)
      if (status === 401) expect(r.res.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"')
      return r.json
    }

    const now = () => Math.floor(Date.now() / 1000)

    /** A new app with `keys` (or `pair`) and the given permissions. */
    const newApp = async (permissions: Json = ALL_PERMISSIONS, pair: AppKeyPair = keys) => {
      const r = await admin("POST", "/admin/apps", { name: unique("app"), permissions, publicKey: pair.publicPem })
      expect(r.res.status).toBe(201)
      const appId: string = r.json.id
      return {
        app: r.json,
        appId,
        jwt: (claims: Json = {}, header?: Json) =>
          signRs256(pair.privateKey, { ...appClaims(appId), ...claims }, header)
      }
    }
    const install = async (appId: string, permissions: Json = ALL_PERMISSIONS) => {
      const r = await admin("POST", "/admin/installations", { appId, organizationId: org(), permissions })
      expect(r.res.status).toBe(201)
      return r.json
    }
    /** SPEC §4 order: createdAt ascending, then id (records made in the same millisecond tie on time). */
    const inCreationOrder = <A extends { createdAt: string; id: string }>(items: ReadonlyArray<A>): Array<A> =>
      [...items].sort((a, b) =>
        a.createdAt === b.createdAt ? (a.id < b.id ? -1 : 1) : Date.parse(a.createdAt) - Date.parse(b.createdAt)
      )
    const ids = (page: Json): Array<string> => page.items.map((i: Json) => i.id)
    const suspend = async (installationId: string) =>
      expect((await admin("PATCH", `/admin/installations/${installationId}`, { suspended: true })).res.status).toBe(200)
    const installationToken = async (jwt: string, installationId: string, body?: unknown) =>
      api("POST", `/app/installations/${installationId}/accessTokens`, {
        token: jwt,
        ...(body !== undefined ? { body } : {})
      })

    describe("§1 common rules", () => {
      it("GET /healthz answers {status: ok} with the common headers", async () => {
        const r = await api("GET", "/healthz")
        expect(r.res.status).toBe(200)
        expect(r.json).toEqual({ status: "ok" })
        expect(r.res.headers.get("x-icr-api-version")).toBe("2023-06-16")
        expect(r.res.headers.get("x-request-id")).toMatch(uuidRe)
        expect(Number.isNaN(Date.parse(r.res.headers.get("date") ?? ""))).toBe(false)
        expect(r.res.headers.get("x-content-type-options")).toBe("nosniff")
      })
      it("serves x-icr-api-version 2023-06-16 and refuses any other", async () => {
        const ok = await api("GET", "/healthz", { headers: { "x-icr-api-version": "2023-06-16" } })
        expect(ok.res.status).toBe(200)
        problem(
          await api("GET", "/healthz", { headers: { "x-icr-api-version": "2022-11-28" } }),
          400,
          "unsupported_api_version"
        )
      })
      it("echoes a sane x-request-id and replaces an insane one", async () => {
        const sane = await api("GET", "/healthz", { headers: { "x-request-id": "req-123.abc" } })
        expect(sane.res.headers.get("x-request-id")).toBe("req-123.abc")
        const insane = await api("GET", "/healthz", { headers: { "x-request-id": "<script>" } })
        expect(insane.res.headers.get("x-request-id")).toMatch(uuidRe)
      })
      it("answers an unknown route with 404 not_found", async () => {
        problem(await api("GET", "/nope"), 404, "not_found")
      })
      it("answers a known path with the wrong method with 405 and Allow", async () => {
        const r = await api("PUT", "/app/accessTokens")
        problem(r, 405, "method_not_allowed")
        expect(r.res.headers.get("allow")).toBe("POST")
        const t = await api("POST", "/app/installations/token")
        problem(t, 405, "method_not_allowed")
        expect(t.res.headers.get("allow")).toBe("DELETE, GET, HEAD")
      })
      it("answers a path it cannot decode with 400 invalid_request, not 404 or 405", async () => {
        const { jwt } = await newApp()
        problem(await api("GET", "/app/installations/%E0%A4%A", { token: await jwt() }), 400, "invalid_request")
      })
      it("refuses a body over 16 KiB with 413 payload_too_large", async () => {
        const big = JSON.stringify({ name: "x".repeat(17 * 1024) })
        problem(
          await api("POST", "/admin/apps", {
            token: target.adminToken,
            rawBody: big,
            headers: { "content-type": "application/json" }
          }),
          413,
          "payload_too_large"
        )
      })
      it("refuses an Authorization value over 8 KiB with 401", async () => {
        const r = await api("POST", "/app/accessTokens", { token: "a".repeat(8 * 1024 + 1) })
        expect(r.res.status).toBe(401)
        expect(r.res.headers.get("content-type")).toMatch(/^application\/problem\+json/)
      })
      it("answers a body that is not JSON with 400 invalid_request", async () => {
        problem(
          await api("POST", "/admin/apps", {
            token: target.adminToken,
            rawBody: "{nope",
            headers: { "content-type": "application/json" }
          }),
          400,
          "invalid_request"
        )
        problem(
          await api("POST", "/admin/apps", {
            token: target.adminToken,
            rawBody: "name=x",
            headers: { "content-type": "application/x-www-form-urlencoded" }
          }),
          400,
          "invalid_request"
        )
        problem(
          await api("POST", "/admin/apps", {
            token: target.adminToken,
            rawBody: "[1,2]",
            headers: { "content-type": "application/json" }
          }),
          400,
          "invalid_request"
        )
      })
      it("never echoes a credential that appears in a path or a body", async () => {
        const { jwt, appId } = await newApp()
        const token = (await api("POST", "/app/accessTokens", { token: await jwt() })).json.token as string
        const signed = await jwt()
        const texts = [
          (await api("GET", `/${token}`)).text,
          (await api("GET", `/app/installations/${token}`, { token: signed })).text,
          (await admin("POST", "/admin/apps", { name: "x", permissions: {}, publicKey: keys.publicPem, [token]: 1 }))
            .text,
          (
            await admin("POST", "/admin/installations", {
              appId,
              organizationId: org(),
              permissions: { [signed]: "VIEW" }
            })
          ).text,
          (await admin("POST", "/admin/apps", { name: "y", permissions: {}, publicKey: keys.privatePem })).text
        ]
        for (const text of texts) {
          expect(text).toMatch(/"status":4\d\d/)
          expect(text).not.toContain(token.slice(4))
          expect(text).not.toContain(signed.split(".")[2])
          expect(text).not.toContain("PRIVATE KEY-----\n")
          expect(text).not.toContain(keys.privatePem.split("\n")[1])
        }
      })
      it("ends every JSON body, problem documents included, with one newline that Content-Length counts", async () => {
        const { jwt } = await newApp()
        const responses = [
          await api("GET", "/healthz"),
          await api("GET", "/openapi.json"),
          await api("GET", "/nope"),
          await api("GET", "/app/installations", { token: await jwt() }),
          await api("POST", "/app/accessTokens", { token: "not-a-jwt" }),
          await admin("POST", "/admin/apps", { name: unique("nl"), permissions: {}, publicKey: keys.publicPem })
        ]
        for (const { res, text } of responses) {
          expect(text.endsWith("}\n"), `${res.status} ${text.slice(-40)}`).toBe(true)
          const length = res.headers.get("content-length")
          if (length !== null) expect(Number(length)).toBe(new TextEncoder().encode(text).byteLength)
        }
        const head = await api("HEAD", "/healthz")
        expect(head.res.status).toBe(200)
        expect(head.text).toBe("")
      })
      it("GET /openapi.json names the origin it is served from first ('This server'), then production", async () => {
        const here = await api("GET", "/openapi.json")
        expect(here.json.servers).toEqual([
          { url: BASE, description: "This server" },
          { url: "https://api.carbonregistry.com", description: "Production" }
        ])
        // A request for another host names that host, unless the issuer has an origin of its own (SPEC §9).
        const elsewhere = await target.fetch(new Request("http://127.0.0.1:8788/openapi.json"))
        expect(((await elsewhere.json()) as Json).servers[0]).toEqual({
          url: target.origin ?? "http://127.0.0.1:8788",
          description: "This server"
        })
      })
      it("GET /openapi.json is an OpenAPI 3.1 document listing every public path", async () => {
        const r = await api("GET", "/openapi.json")
        expect(r.res.status).toBe(200)
        expect(r.json.openapi).toMatch(/^3\.1\./)
        expect(Object.keys(r.json.paths).sort()).toEqual(
          [
            "/admin/apps",
            "/admin/apps/{appId}",
            "/admin/apps/{appId}/keys",
            "/admin/apps/{appId}/keys/{keyId}",
            "/admin/apps/{appId}/revokeTokens",
            "/admin/installations",
            "/admin/installations/{installationId}",
            "/admin/installations/{installationId}/revokeTokens",
            "/app/accessTokens",
            "/app/installations",
            "/app/installations/token",
            "/app/installations/{installationId}",
            "/app/installations/{installationId}/accessTokens",
            "/healthz",
            "/openapi.json"
          ].sort()
        )
        expect(Object.keys(r.json.components.securitySchemes).sort()).toEqual(["accessToken", "adminToken", "appJwt"])
        expect(Object.keys(r.json.paths["/admin/apps"]).sort()).toEqual(["get", "post"])
        expect(Object.keys(r.json.paths["/admin/installations"]).sort()).toEqual(["get", "post"])
        const params = r.json.paths["/app/installations"].get.parameters.map((p: Json) => p.name)
        expect(params).toEqual(expect.arrayContaining(["limit", "page", "cursor"]))
        expect(r.json.components.schemas.InstallationPage.properties).toHaveProperty("nextCursor")
      })
    })

    describe("§2 App JWT", () => {
      it("accepts a well-formed JWT, with iss as a string or as an equal integer", async () => {
        const { appId, jwt } = await newApp()
        expect((await api("POST", "/app/accessTokens", { token: await jwt() })).res.status).toBe(200)
        expect((await api("POST", "/app/accessTokens", { token: await jwt({ iss: Number(appId) }) })).res.status).toBe(
          200
        )
      })
      it("selects the key by kid (key id or fingerprint) and otherwise tries every active key", async () => {
        const { app, appId } = await newApp()
        const added = await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: otherKeys.publicPem })
        expect(added.res.status).toBe(201)
        const claims = appClaims(appId)
        const byOther = await signRs256(otherKeys.privateKey, claims)
        expect((await api("POST", "/app/accessTokens", { token: byOther })).res.status).toBe(200)
        const byId = await signRs256(otherKeys.privateKey, claims, { alg: "RS256", typ: "JWT", kid: added.json.id })
        expect((await api("POST", "/app/accessTokens", { token: byId })).res.status).toBe(200)
        const byFingerprint = await signRs256(otherKeys.privateKey, claims, {
          alg: "RS256",
          kid: added.json.fingerprint
        })
        expect((await api("POST", "/app/accessTokens", { token: byFingerprint })).res.status).toBe(200)
        // A kid naming the first key while the signature is by the second: refused.
        const wrongKid = await signRs256(otherKeys.privateKey, claims, { alg: "RS256", kid: app.keys[0].id })
        expect(problem(await api("POST", "/app/accessTokens", { token: wrongKid }), 401, "invalid_jwt").reason).toBe(
          "invalid_signature"
        )
      })

      const attacks: ReadonlyArray<
        readonly [
          string,
          string,
          (ctx: { appId: string; jwt: (c?: Json, h?: Json) => Promise<string> }) => Promise<string>
        ]
      > = [
        [
          "alg none",
          "unsupported_algorithm",
          async ({ appId }) => `${jsonSegment({ alg: "none", typ: "JWT" })}.${jsonSegment(appClaims(appId))}.`
        ],
        [
          "alg none (capitalised)",
          "unsupported_algorithm",
          async ({ appId }) => `${jsonSegment({ alg: "None" })}.${jsonSegment(appClaims(appId))}.`
        ],
        [
          "HS256 keyed with the public key PEM",
          "unsupported_algorithm",
          async ({ appId }) => {
            const input = `${jsonSegment({ alg: "HS256", typ: "JWT" })}.${jsonSegment(appClaims(appId))}`
            const key = await crypto.subtle.importKey(
              "raw",
              new TextEncoder().encode(keys.publicPem),
              { name: "HMAC", hash: "SHA-256" },
              false,
              ["sign"]
            )
            const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input))
            return `${input}.${Encoding.encodeBase64Url(new Uint8Array(mac))}`
          }
        ],
        [
          "ES256",
          "unsupported_algorithm",
          async ({ appId }) => {
            const ec = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
              "sign"
            ])) as CryptoKeyPair
            const input = `${jsonSegment({ alg: "ES256" })}.${jsonSegment(appClaims(appId))}`
            const sig = await crypto.subtle.sign(
              { name: "ECDSA", hash: "SHA-256" },
              ec.privateKey,
              new TextEncoder().encode(input)
            )
            return `${input}.${Encoding.encodeBase64Url(new Uint8Array(sig))}`
          }
        ],
        [
          "PS256 with the app's own modulus",
          "unsupported_algorithm",
          async ({ appId }) => {
            const pss = await crypto.subtle.importKey(
              "jwk",
              { ...keys.privateJwk, alg: "PS256" },
              { name: "RSA-PSS", hash: "SHA-256" },
              false,
              ["sign"]
            )
            const input = `${jsonSegment({ alg: "PS256" })}.${jsonSegment(appClaims(appId))}`
            const sig = await crypto.subtle.sign(
              { name: "RSA-PSS", saltLength: 32 },
              pss,
              new TextEncoder().encode(input)
            )
            return `${input}.${Encoding.encodeBase64Url(new Uint8Array(sig))}`
          }
        ],
        ["RS512", "unsupported_algorithm", async ({ jwt }) => jwt({}, { alg: "RS512" })],
        ["expired", "expired", async ({ jwt }) => jwt({ iat: now() - 600, exp: now() - 1 })],
        ["iat in the future", "iat_in_future", async ({ jwt }) => jwt({ iat: now() + 120, exp: now() + 500 })],
        ["exp too far", "exp_too_far", async ({ jwt }) => jwt({ iat: now(), exp: now() + 700 })],
        ["lifetime over 660 s", "exp_too_far", async ({ jwt }) => jwt({ iat: now() - 700, exp: now() + 30 })],
        ["exp before iat", "malformed", async ({ jwt }) => jwt({ iat: now() + 50, exp: now() + 40 })],
        ["missing iss", "missing_claim", async ({ jwt }) => jwt({ iss: undefined })],
        ["missing iat", "missing_claim", async ({ jwt }) => jwt({ iat: undefined })],
        ["missing exp", "missing_claim", async ({ jwt }) => jwt({ exp: undefined })],
        ["non-numeric iat", "malformed", async ({ jwt }) => jwt({ iat: String(now()) })],
        ["non-numeric exp", "malformed", async ({ jwt }) => jwt({ exp: "soon" })],
        ["iss of the wrong type", "malformed", async ({ jwt }) => jwt({ iss: { id: 1 } })],
        ["unknown app", "invalid_signature", async () => signRs256(keys.privateKey, appClaims("999999999"))],
        ["foreign key", "invalid_signature", async ({ appId }) => signRs256(otherKeys.privateKey, appClaims(appId))],
        [
          "tampered payload",
          "invalid_signature",
          async ({ appId, jwt }) => {
            const [h, , s] = (await jwt()).split(".")
            return `${h}.${jsonSegment({ ...appClaims(appId), exp: now() + 600 })}.${s}`
          }
        ],
        [
          "stripped signature",
          "invalid_signature",
          async ({ jwt }) => `${(await jwt()).split(".").slice(0, 2).join(".")}.`
        ],
        ["truncated signature", "invalid_signature", async ({ jwt }) => (await jwt()).slice(0, -12)],
        [
          "embedded jwk header",
          "malformed",
          async ({ jwt }) => jwt({}, { alg: "RS256", jwk: { kty: "RSA", n: keys.publicJwk.n, e: keys.publicJwk.e } })
        ],
        ["jku header", "malformed", async ({ jwt }) => jwt({}, { alg: "RS256", jku: "http://127.0.0.1:9/keys" })],
        ["x5u header", "malformed", async ({ jwt }) => jwt({}, { alg: "RS256", x5u: "http://127.0.0.1:9/cert" })],
        ["crit header", "malformed", async ({ jwt }) => jwt({}, { alg: "RS256", crit: ["exp"] })],
        ["typ other than JWT", "malformed", async ({ jwt }) => jwt({}, { alg: "RS256", typ: "at+jwt" })],
        ["oversized token", "malformed", async ({ jwt }) => jwt({ pad: "x".repeat(5000) })],
        ["two segments", "malformed", async ({ jwt }) => (await jwt()).split(".").slice(0, 2).join(".")],
        ["garbage", "malformed", async () => "not-a-jwt"]
      ]
      for (const [label, reason, make] of attacks) {
        it(`refuses ${label}: 401 invalid_jwt (${reason})`, async () => {
          const ctx = await newApp()
          const token = await make(ctx)
          const r = await api("POST", "/app/accessTokens", { token })
          expect(problem(r, 401, "invalid_jwt").reason).toBe(reason)
        })
      }
      it("makes an unknown app and a bad signature indistinguishable", async () => {
        const { appId } = await newApp()
        const unknown = await api("POST", "/app/accessTokens", {
          token: await signRs256(keys.privateKey, appClaims("424242424"))
        })
        const foreign = await api("POST", "/app/accessTokens", {
          token: await signRs256(otherKeys.privateKey, appClaims(appId))
        })
        expect(unknown.json).toEqual(foreign.json)
      })
      it("answers an endpoint wanting a JWT that gets an access token with a detail naming the JWT", async () => {
        const { jwt } = await newApp()
        const minted = await api("POST", "/app/accessTokens", { token: await jwt() })
        const r = await api("GET", "/app/installations", { token: minted.json.token })
        expect(problem(r, 401, "invalid_jwt").detail).toMatch(/App JWT/)
      })
      it("answers a missing or non-Bearer credential with 401 missing_credentials", async () => {
        problem(await api("POST", "/app/accessTokens"), 401, "missing_credentials")
        problem(
          await api("POST", "/app/accessTokens", { headers: { authorization: "Basic dXNlcjpwYXNz" } }),
          401,
          "missing_credentials"
        )
      })
    })

    describe("§4 app access tokens", () => {
      it("POST /app/accessTokens mints a 1 h app token carrying the app's permissions, not cached", async () => {
        const perms = { organization_info: "VIEW", organization_inventory: "REQUEST" }
        const { appId, jwt } = await newApp(perms)
        const r = await api("POST", "/app/accessTokens", { token: await jwt() })
        expect(r.res.status).toBe(200)
        expect(r.res.headers.get("cache-control")).toBe("no-store")
        expect(r.json).toMatchObject({ appId, isActive: true, permissions: perms })
        expect(r.json.token).toMatch(tokenRe)
        expect(r.json.id).toMatch(uuidRe)
        for (const k of ["createdAt", "updatedAt", "expiresAt"]) expect(r.json[k]).toMatch(timestampRe)
        const lifetime = Date.parse(r.json.expiresAt) - Date.parse(r.json.createdAt)
        expect(lifetime).toBe(3600 * 1000)
      })
      it("GET /app/installations/token describes an app token without its secret", async () => {
        const { appId, jwt } = await newApp()
        const minted = (await api("POST", "/app/accessTokens", { token: await jwt() })).json
        const r = await api("GET", "/app/installations/token", { token: minted.token })
        expect(r.res.status).toBe(200)
        expect(r.json).toEqual({
          id: minted.id,
          kind: "app",
          appId,
          permissions: minted.permissions,
          createdAt: minted.createdAt,
          expiresAt: minted.expiresAt
        })
        expect(r.text.includes(minted.token)).toBe(false)
      })
      it("DELETE /app/installations/token revokes: 204, then 401 invalid_token on any use", async () => {
        const { jwt } = await newApp()
        const minted = (await api("POST", "/app/accessTokens", { token: await jwt() })).json
        const revoked = await api("DELETE", "/app/installations/token", { token: minted.token })
        expect(revoked.res.status).toBe(204)
        expect(revoked.text).toBe("")
        problem(await api("GET", "/app/installations/token", { token: minted.token }), 401, "invalid_token")
        problem(await api("DELETE", "/app/installations/token", { token: minted.token }), 401, "invalid_token")
      })
      it("answers an unknown, malformed or JWT credential on token endpoints with 401 invalid_token", async () => {
        problem(await api("GET", "/app/installations/token", { token: `crs_${"0".repeat(48)}` }), 401, "invalid_token")
        problem(await api("GET", "/app/installations/token", { token: "crs_short" }), 401, "invalid_token")
        const { jwt } = await newApp()
        const r = await api("GET", "/app/installations/token", { token: await jwt() })
        expect(problem(r, 401, "invalid_token").detail).toMatch(/access token/)
        problem(await api("GET", "/app/installations/token"), 401, "missing_credentials")
      })
      it("stores no token in plain text", async () => {
        const { appId, jwt } = await newApp()
        const installation = await install(appId)
        const tokens = [
          (await api("POST", "/app/accessTokens", { token: await jwt() })).json.token,
          (await installationToken(await jwt(), installation.id)).json.token
        ]
        const stored = (await target.dumpStorage()).join("\n")
        expect(stored.length).toBeGreaterThan(0)
        for (const token of tokens) {
          expect(token).toMatch(tokenRe)
          expect(stored.includes(token)).toBe(false)
          expect(stored.includes(token.slice(4))).toBe(false)
        }
      })
    })

    describe("§4 installation access tokens", () => {
      it("mints a 2 h token with the installation's grant, its ids, and no-store", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId, { organization_info: "VIEW", organization_warehouse: "WRITE" })
        const r = await installationToken(await jwt(), inst.id)
        expect(r.res.status).toBe(200)
        expect(r.res.headers.get("cache-control")).toBe("no-store")
        expect(r.json).toMatchObject({
          appId,
          installationId: inst.id,
          organizationId: inst.organizationId,
          isActive: true,
          permissions: { organization_info: "VIEW", organization_warehouse: "WRITE" }
        })
        expect(r.json.token).toMatch(tokenRe)
        expect(Date.parse(r.json.expiresAt) - Date.parse(r.json.createdAt)).toBe(7200 * 1000)
        const described = await api("GET", "/app/installations/token", { token: r.json.token })
        expect(described.json).toMatchObject({
          kind: "installation",
          installationId: inst.id,
          organizationId: inst.organizationId
        })
      })
      it("narrows to requested permissions at the same or a lower level", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId, { organization_inventory: "WRITE", organization_info: "VIEW" })
        const r = await installationToken(await jwt(), inst.id, { permissions: { organization_inventory: "REQUEST" } })
        expect(r.res.status).toBe(200)
        expect(r.json.permissions).toEqual({ organization_inventory: "REQUEST" })
        const empty = await installationToken(await jwt(), inst.id, {})
        expect(empty.json.permissions).toEqual({ organization_info: "VIEW", organization_inventory: "WRITE" })
        const emptyPermissions = await installationToken(await jwt(), inst.id, { permissions: {} })
        expect(emptyPermissions.json.permissions).toEqual({
          organization_info: "VIEW",
          organization_inventory: "WRITE"
        })
      })
      it("refuses wider permissions with 422 permissions_exceed_grant", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId, { organization_inventory: "REQUEST" })
        const higher = await installationToken(await jwt(), inst.id, {
          permissions: { organization_inventory: "WRITE" }
        })
        expect(problem(higher, 422, "permissions_exceed_grant").permissions).toEqual(["organization_inventory"])
        const missing = await installationToken(await jwt(), inst.id, { permissions: { organization_info: "VIEW" } })
        problem(missing, 422, "permissions_exceed_grant")
      })
      it("refuses unknown permission names or levels", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId)
        problem(
          await installationToken(await jwt(), inst.id, { permissions: { organization_secrets: "VIEW" } }),
          422,
          "invalid_permissions"
        )
        problem(
          await installationToken(await jwt(), inst.id, { permissions: { organization_info: "WRITE" } }),
          422,
          "invalid_permissions"
        )
        problem(await installationToken(await jwt(), inst.id, { scope: "all" }), 400, "invalid_request")
      })
      it("answers another app's or an unknown installation with 404, a malformed id with 400", async () => {
        const a = await newApp()
        const b = await newApp()
        const inst = await install(b.appId)
        problem(await installationToken(await a.jwt(), inst.id), 404, "installation_not_found")
        problem(await installationToken(await a.jwt(), crypto.randomUUID()), 404, "installation_not_found")
        problem(await installationToken(await a.jwt(), "not-a-uuid"), 400, "invalid_request")
      })
      it("matches installation ids case-insensitively", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId)
        const r = await installationToken(await jwt(), inst.id.toUpperCase())
        expect(r.res.status).toBe(200)
        expect(r.json.installationId).toBe(inst.id)
      })
      it("answers a suspended installation with 403 installation_suspended", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId)
        expect((await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: true })).res.status).toBe(200)
        problem(await installationToken(await jwt(), inst.id), 403, "installation_suspended")
      })
    })

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

    describe("§4 revocation takes effect on the next request", () => {
      it("suspending an installation stops its tokens; unsuspending restores minting", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId)
        const token = (await installationToken(await jwt(), inst.id)).json.token
        expect((await api("GET", "/app/installations/token", { token })).res.status).toBe(200)
        await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: true })
        problem(await api("GET", "/app/installations/token", { token }), 401, "invalid_token")
        await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: false })
        expect((await installationToken(await jwt(), inst.id)).res.status).toBe(200)
      })
      it("uninstalling stops the installation's tokens", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId)
        const token = (await installationToken(await jwt(), inst.id)).json.token
        expect((await admin("DELETE", `/admin/installations/${inst.id}`)).res.status).toBe(204)
        problem(await api("GET", "/app/installations/token", { token }), 401, "invalid_token")
        problem(await installationToken(await jwt(), inst.id), 404, "installation_not_found")
      })
      it("reducing an installation's permissions stops its tokens, even those within the new grant (SPEC §5)", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId, { organization_info: "VIEW", organization_inventory: "WRITE" })
        const wide = (await installationToken(await jwt(), inst.id)).json.token
        const narrow = (await installationToken(await jwt(), inst.id, { permissions: { organization_info: "VIEW" } }))
          .json.token
        await admin("PATCH", `/admin/installations/${inst.id}`, { permissions: { organization_info: "VIEW" } })
        problem(await api("GET", "/app/installations/token", { token: wide }), 401, "invalid_token")
        problem(await api("GET", "/app/installations/token", { token: narrow }), 401, "invalid_token")
        const after = (await installationToken(await jwt(), inst.id)).json.token
        expect((await api("GET", "/app/installations/token", { token: after })).res.status).toBe(200)
      })
      it("deleting the key a JWT was signed with refuses that JWT", async () => {
        const { app, appId } = await newApp()
        const added = await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: otherKeys.publicPem })
        const jwt = await signRs256(otherKeys.privateKey, appClaims(appId))
        expect((await api("POST", "/app/accessTokens", { token: jwt })).res.status).toBe(200)
        expect((await admin("DELETE", `/admin/apps/${appId}/keys/${added.json.id}`)).res.status).toBe(204)
        expect(problem(await api("POST", "/app/accessTokens", { token: jwt }), 401, "invalid_jwt").reason).toBe(
          "invalid_signature"
        )
        const stillGood = await signRs256(keys.privateKey, appClaims(appId), { alg: "RS256", kid: app.keys[0].id })
        expect((await api("POST", "/app/accessTokens", { token: stillGood })).res.status).toBe(200)
      })
    })

    describe("§5 kill switches are final", () => {
      /** The status of one use of a token (`GET /app/installations/token`). */
      const use = async (token: string) => (await api("GET", "/app/installations/token", { token })).res.status
      const refused = async (token: string) =>
        problem(await api("GET", "/app/installations/token", { token }), 401, "invalid_token")
      const appToken = async (jwt: string) => {
        const r = await api("POST", "/app/accessTokens", { token: jwt })
        expect(r.res.status).toBe(200)
        return r.json.token as string
      }
      const mint = async (jwt: string, installationId: string, body?: unknown) => {
        const r = await installationToken(jwt, installationId, body)
        expect(r.res.status).toBe(200)
        return r.json.token as string
      }

      it("unsuspending never revives a token minted before the suspension", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId)
        const before = await mint(await jwt(), inst.id)
        await suspend(inst.id)
        await refused(before)
        expect((await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: false })).res.status).toBe(200)
        await refused(before)
        expect(await use(await mint(await jwt(), inst.id))).toBe(200)
      })
      it("widening permissions again never revives a token a narrowing ended; any change ends older tokens", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId, { organization_info: "VIEW", organization_inventory: "WRITE" })
        const wide = await mint(await jwt(), inst.id)
        const narrow = await mint(await jwt(), inst.id, { permissions: { organization_info: "VIEW" } })
        const patch = (permissions: Json) => admin("PATCH", `/admin/installations/${inst.id}`, { permissions })
        expect((await patch({ organization_info: "VIEW", organization_inventory: "REQUEST" })).res.status).toBe(200)
        await refused(wide)
        // Within the new grant, yet minted before the change: ended too.
        await refused(narrow)
        expect((await patch({ organization_info: "VIEW", organization_inventory: "WRITE" })).res.status).toBe(200)
        await refused(wide)
        await refused(narrow)
        const after = await mint(await jwt(), inst.id)
        expect(await use(after)).toBe(200)
        // The same permissions again are no change: the token just minted stays.
        expect((await patch({ organization_inventory: "WRITE", organization_info: "VIEW" })).res.status).toBe(200)
        expect(await use(after)).toBe(200)
      })
      it("deleting any key of the app ends every token of the app, app and installation tokens", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId)
        const added = await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: otherKeys.publicPem })
        expect(added.res.status).toBe(201)
        const app = await appToken(await jwt())
        const installation = await mint(await jwt(), inst.id)
        expect((await admin("DELETE", `/admin/apps/${appId}/keys/${added.json.id}`)).res.status).toBe(204)
        await refused(app)
        await refused(installation)
        // The remaining key still signs, and what it mints now works.
        expect(await use(await appToken(await jwt()))).toBe(200)
        expect(await use(await mint(await jwt(), inst.id))).toBe(200)
      })
      it("POST /admin/installations/{id}/revokeTokens ends that installation's tokens minted before it, no others", async () => {
        const { appId, jwt } = await newApp()
        const [one, two] = [await install(appId), await install(appId)]
        const ofOne = await mint(await jwt(), one.id)
        const ofTwo = await mint(await jwt(), two.id)
        const app = await appToken(await jwt())
        const r = await api("POST", `/admin/installations/${one.id.toUpperCase()}/revokeTokens`, {
          token: target.adminToken
        })
        expect(r.res.status).toBe(204)
        expect(r.text).toBe("")
        await refused(ofOne)
        expect(await use(ofTwo)).toBe(200)
        expect(await use(app)).toBe(200)
        expect(await use(await mint(await jwt(), one.id))).toBe(200)
        problem(
          await admin("POST", `/admin/installations/${crypto.randomUUID()}/revokeTokens`),
          404,
          "installation_not_found"
        )
        problem(await admin("POST", "/admin/installations/12345/revokeTokens"), 400, "invalid_request")
        problem(await api("POST", `/admin/installations/${one.id}/revokeTokens`), 401, "missing_credentials")
      })
      it("POST /admin/apps/{appId}/revokeTokens ends every token of the app minted before it, no other app's", async () => {
        const mine = await newApp()
        const other = await newApp()
        const inst = await install(mine.appId)
        const otherInst = await install(other.appId)
        const app = await appToken(await mine.jwt())
        const installation = await mint(await mine.jwt(), inst.id)
        const othersApp = await appToken(await other.jwt())
        const othersInstallation = await mint(await other.jwt(), otherInst.id)
        const r = await admin("POST", `/admin/apps/${mine.appId}/revokeTokens`)
        expect(r.res.status).toBe(204)
        await refused(app)
        await refused(installation)
        expect(await use(othersApp)).toBe(200)
        expect(await use(othersInstallation)).toBe(200)
        // The app itself is not touched: its JWTs still mint, and what they mint works.
        expect(await use(await appToken(await mine.jwt()))).toBe(200)
        expect(await use(await mint(await mine.jwt(), inst.id))).toBe(200)
        problem(await admin("POST", "/admin/apps/987654321/revokeTokens"), 404, "app_not_found")
        problem(await admin("POST", "/admin/apps/no-such-app/revokeTokens"), 404, "app_not_found")
      })
      it("decides a token minted right after a kill switch deterministically: it works, every time", async () => {
        const { appId, jwt } = await newApp()
        const inst = await install(appId)
        const signed = await jwt()
        for (let i = 0; i < 5; i++) {
          const old = await mint(signed, inst.id)
          const oldApp = await appToken(signed)
          expect((await admin("POST", `/admin/installations/${inst.id}/revokeTokens`)).res.status).toBe(204)
          expect((await admin("POST", `/admin/apps/${appId}/revokeTokens`)).res.status).toBe(204)
          const fresh = await mint(signed, inst.id)
          const freshApp = await appToken(signed)
          await refused(old)
          await refused(oldApp)
          expect(await use(fresh)).toBe(200)
          expect(await use(freshApp)).toBe(200)
        }
      })
    })

    describe("§5 audit trail", () => {
      it("emits one event per mint, revocation, kill switch and operator change, under its request id", async () => {
        const auditEvents = target.auditEvents
        const run = unique("audit")
        let step = 0
        /** A call under a request id of its own, and that id. */
        const traced = async (method: string, path: string, call: Call = {}) => {
          const requestId = `${run}.${step++}`
          const r = await api(method, path, { ...call, headers: { ...call.headers, "x-request-id": requestId } })
          expect(r.res.headers.get("x-request-id")).toBe(requestId)
          return { ...r, requestId }
        }
        const asAdmin = (method: string, path: string, body?: unknown) =>
          traced(method, path, { token: target.adminToken, ...(body !== undefined ? { body } : {}) })
        const expected: Array<[string, Array<Json>]> = []
        const expect_ = (requestId: string, ...events: Array<Json>) => void expected.push([requestId, events])
        const operator = { actor: "operator", outcome: "success" }

        const created = await asAdmin("POST", "/admin/apps", {
          name: unique("audited"),
          permissions: ALL_PERMISSIONS,
          publicKey: keys.publicPem
        })
        const appId: string = created.json.id
        expect_(created.requestId, { ...operator, action: "app.create", appId, keyId: created.json.keys[0].id })
        const added = await asAdmin("POST", `/admin/apps/${appId}/keys`, { publicKey: otherKeys.publicPem })
        expect_(added.requestId, { ...operator, action: "app.key_add", appId, keyId: added.json.id })
        const again = await asAdmin("POST", `/admin/apps/${appId}/keys`, { publicKey: otherKeys.publicPem })
        expect_(again.requestId, {
          action: "app.key_add",
          actor: "operator",
          appId,
          outcome: "failure",
          code: "conflict"
        })
        const installed = await asAdmin("POST", "/admin/installations", {
          appId,
          organizationId: org(),
          permissions: ALL_PERMISSIONS
        })
        const installationId: string = installed.json.id
        expect_(installed.requestId, { ...operator, action: "installation.create", appId, installationId })

        const jwt = await signRs256(keys.privateKey, appClaims(appId))
        const appMint = await traced("POST", "/app/accessTokens", { token: jwt })
        const app = { actor: "app", outcome: "success", appId }
        expect_(appMint.requestId, { ...app, action: "app_token.mint", tokenId: appMint.json.id })
        const instMint = await traced("POST", `/app/installations/${installationId}/accessTokens`, { token: jwt })
        expect_(instMint.requestId, {
          ...app,
          action: "installation_token.mint",
          installationId,
          tokenId: instMint.json.id
        })
        const revoked = await traced("DELETE", "/app/installations/token", { token: appMint.json.token })
        expect(revoked.res.status).toBe(204)
        expect_(revoked.requestId, {
          action: "token.revoke",
          actor: "token",
          outcome: "success",
          appId,
          tokenId: appMint.json.id
        })

        const suspended = await asAdmin("PATCH", `/admin/installations/${installationId}`, { suspended: true })
        const killed = { ...operator, appId, installationId }
        expect_(
          suspended.requestId,
          { ...killed, action: "installation.update" },
          { ...killed, action: "installation.tokens_revoked" }
        )
        const refused = await traced("POST", `/app/installations/${installationId}/accessTokens`, { token: jwt })
        expect_(refused.requestId, {
          action: "installation_token.mint",
          actor: "app",
          appId,
          installationId,
          outcome: "failure",
          code: "installation_suspended"
        })
        const unsuspended = await asAdmin("PATCH", `/admin/installations/${installationId}`, { suspended: false })
        expect_(unsuspended.requestId, { ...killed, action: "installation.update" })
        const revokeInstallation = await asAdmin("POST", `/admin/installations/${installationId}/revokeTokens`)
        expect_(revokeInstallation.requestId, { ...killed, action: "installation.tokens_revoked" })
        const revokeApp = await asAdmin("POST", `/admin/apps/${appId}/revokeTokens`)
        expect_(revokeApp.requestId, { ...operator, action: "app.tokens_revoked", appId })
        const deletedKey = await asAdmin("DELETE", `/admin/apps/${appId}/keys/${added.json.id}`)
        const keyEvent = { ...operator, appId, keyId: added.json.id }
        expect_(
          deletedKey.requestId,
          { ...keyEvent, action: "app.key_delete" },
          { ...keyEvent, action: "app.tokens_revoked" }
        )
        const uninstalled = await asAdmin("DELETE", `/admin/installations/${installationId}`)
        expect_(uninstalled.requestId, { ...killed, action: "installation.delete" })
        const unknown = crypto.randomUUID()
        const missing = await asAdmin("POST", `/admin/installations/${unknown}/revokeTokens`)
        expect_(missing.requestId, {
          action: "installation.tokens_revoked",
          actor: "operator",
          installationId: unknown,
          outcome: "failure",
          code: "installation_not_found"
        })
        // Reads are not changes: no event.
        const read = await asAdmin("GET", `/admin/apps/${appId}`)
        expect_(read.requestId)

        const events = (await auditEvents()).filter((e) => e.requestId.startsWith(`${run}.`))
        for (const [requestId, wanted] of expected) {
          const got = events.filter((e) => e.requestId === requestId)
          expect(
            got.map(({ time: _t, requestId: _r, ...rest }) => rest),
            requestId
          ).toEqual(wanted)
          for (const e of got) expect(e.time).toMatch(timestampRe)
        }
        expect(events).toHaveLength(expected.reduce((n, [, wanted]) => n + wanted.length, 0))
        // Never a secret: no token, JWT (or any part of one), key or ADMIN_TOKEN.
        const text = JSON.stringify(events)
        for (const secret of [
          appMint.json.token,
          instMint.json.token,
          jwt,
          ...jwt.split("."),
          target.adminToken,
          keys.publicPem.split("\n")[1]!,
          otherKeys.publicPem.split("\n")[1]!,
          "crs_"
        ]) {
          expect(text).not.toContain(secret)
        }
      })
    })

    describe("§5 operator API", () => {
      it("answers every /admin route with 403 admin_disabled when no ADMIN_TOKEN is configured", async () => {
        const routes: ReadonlyArray<readonly [string, string]> = [
          ["POST", "/admin/apps"],
          ["GET", "/admin/apps"],
          ["GET", "/admin/installations?appId=1"],
          ["GET", "/admin/apps/1"],
          ["POST", "/admin/apps/1/keys"],
          ["DELETE", `/admin/apps/1/keys/${crypto.randomUUID()}`],
          ["POST", "/admin/installations"],
          ["PATCH", `/admin/installations/${crypto.randomUUID()}`],
          ["DELETE", `/admin/installations/${crypto.randomUUID()}`],
          ["POST", `/admin/installations/${crypto.randomUUID()}/revokeTokens`],
          ["POST", "/admin/apps/1/revokeTokens"]
        ]
        for (const [method, path] of routes) {
          problem(
            await send(target.fetchWithoutAdmin, method, path, { token: "anything-at-all" }),
            403,
            "admin_disabled"
          )
        }
      })
      it("refuses a wrong or missing operator token", async () => {
        problem(await api("GET", "/admin/apps/1", { token: `${target.adminToken}x` }), 401, "invalid_token")
        problem(await api("GET", "/admin/apps/1"), 401, "missing_credentials")
      })
      it("POST /admin/apps registers an app with its key and fingerprint", async () => {
        const name = unique("made")
        const r = await admin("POST", "/admin/apps", {
          name,
          permissions: { organization_info: "VIEW" },
          publicKey: keys.publicPem
        })
        expect(r.res.status).toBe(201)
        expect(r.json).toMatchObject({ appNameId: name, permissions: { organization_info: "VIEW" } })
        expect(r.json.keys).toHaveLength(1)
        const digest = new Uint8Array(
          await crypto.subtle.digest("SHA-256", (await crypto.subtle.exportKey("spki", keys.publicKey)) as ArrayBuffer)
        )
        expect(r.json.keys[0].fingerprint).toBe(`SHA256:${btoa(String.fromCharCode(...digest))}`)
        const got = await admin("GET", `/admin/apps/${r.json.id}`)
        expect(got.json).toEqual(r.json)
      })
      it("accepts PKCS#1 PEM and JWK public keys with the same fingerprint as SPKI", async () => {
        const spki = await admin("POST", "/admin/apps", {
          name: unique("spki"),
          permissions: {},
          publicKey: keys.publicPem
        })
        const pkcs1 = await admin("POST", "/admin/apps", {
          name: unique("pkcs1"),
          permissions: {},
          publicKey: keys.publicPkcs1Pem
        })
        const jwk = await admin("POST", "/admin/apps", {
          name: unique("jwk"),
          permissions: {},
          publicKey: keys.publicJwk
        })
        const crlf = await admin("POST", "/admin/apps", {
          name: unique("crlf"),
          permissions: {},
          publicKey: keys.publicPem.replace(/\n/g, "\r\n")
        })
        for (const r of [pkcs1, jwk, crlf]) {
          expect(r.res.status).toBe(201)
          expect(r.json.keys[0].fingerprint).toBe(spki.json.keys[0].fingerprint)
        }
      })
      it("refuses bad names with 400 and a taken name with 409 conflict", async () => {
        for (const name of ["", "UPPER", "-lead", "a".repeat(40), "sp ace"]) {
          problem(
            await admin("POST", "/admin/apps", { name, permissions: {}, publicKey: keys.publicPem }),
            400,
            "invalid_request"
          )
        }
        const name = unique("taken")
        expect(
          (await admin("POST", "/admin/apps", { name, permissions: {}, publicKey: keys.publicPem })).res.status
        ).toBe(201)
        problem(
          await admin("POST", "/admin/apps", { name, permissions: {}, publicKey: keys.publicPem }),
          409,
          "conflict"
        )
      })
      it("refuses non-RSA, short, private and unreadable keys with 422 invalid_public_key", async () => {
        const ec = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
          "sign"
        ])) as CryptoKeyPair
        const ecJwk = await crypto.subtle.exportKey("jwk", ec.publicKey)
        const ecSpki = new Uint8Array((await crypto.subtle.exportKey("spki", ec.publicKey)) as ArrayBuffer)
        const ecPem = `-----BEGIN PUBLIC KEY-----\n${btoa(String.fromCharCode(...ecSpki))}\n-----END PUBLIC KEY-----`
        const short = await generateAppKeyPair(1024)
        for (const publicKey of [
          ecJwk,
          ecPem,
          short.publicPem,
          keys.privatePem,
          "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
          "ssh-rsa AAAAB3NzaC1yc2E",
          keys.publicPem.slice(0, 200)
        ]) {
          problem(
            await admin("POST", "/admin/apps", { name: unique("bad"), permissions: {}, publicKey }),
            422,
            "invalid_public_key"
          )
        }
      })
      it("refuses unknown permissions with 422 invalid_permissions, writing nothing", async () => {
        const name = unique("perm")
        problem(
          await admin("POST", "/admin/apps", {
            name,
            permissions: { organization_everything: "VIEW" },
            publicKey: keys.publicPem
          }),
          422,
          "invalid_permissions"
        )
        problem(
          await admin("POST", "/admin/apps", {
            name,
            permissions: { organization_members: "WRITE" },
            publicKey: keys.publicPem
          }),
          422,
          "invalid_permissions"
        )
        expect(
          (await admin("POST", "/admin/apps", { name, permissions: {}, publicKey: keys.publicPem })).res.status
        ).toBe(201)
      })
      it("GET /admin/apps/{appId} of an unknown app is 404 app_not_found", async () => {
        problem(await admin("GET", "/admin/apps/987654321"), 404, "app_not_found")
        problem(await admin("GET", "/admin/apps/not-an-app"), 404, "app_not_found")
      })
      it("caps an app at 25 keys with 422 and deletes keys with 204, unknown ones with 404", async () => {
        const { app, appId } = await newApp()
        for (let i = 1; i < 25; i++) {
          expect((await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: publicOnlyKey() })).res.status).toBe(
            201
          )
        }
        problem(
          await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: publicOnlyKey() }),
          422,
          "invalid_public_key"
        )
        expect((await admin("GET", `/admin/apps/${appId}`)).json.keys).toHaveLength(25)
        expect((await admin("DELETE", `/admin/apps/${appId}/keys/${app.keys[0].id}`)).res.status).toBe(204)
        problem(await admin("DELETE", `/admin/apps/${appId}/keys/${app.keys[0].id}`), 404, "not_found")
        problem(await admin("DELETE", `/admin/apps/987654321/keys/${app.keys[0].id}`), 404, "app_not_found")
        problem(await admin("POST", "/admin/apps/987654321/keys", { publicKey: keys.publicPem }), 404, "app_not_found")
        problem(await admin("DELETE", `/admin/apps/${appId}/keys/not-a-uuid`), 400, "invalid_request")
      })
      it("refuses the same key twice for one app with 409 conflict, in any of its formats (SPEC §5)", async () => {
        const { appId } = await newApp()
        for (const publicKey of [keys.publicPem, keys.publicPkcs1Pem, keys.publicJwk]) {
          problem(await admin("POST", `/admin/apps/${appId}/keys`, { publicKey }), 409, "conflict")
        }
        const added = await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: otherKeys.publicPem })
        expect(added.res.status).toBe(201)
        problem(await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: otherKeys.publicJwk }), 409, "conflict")
        // One key, once: the app lists each fingerprint once, and another app may hold the same key.
        const fingerprints = (await admin("GET", `/admin/apps/${appId}`)).json.keys.map((k: Json) => k.fingerprint)
        expect(new Set(fingerprints).size).toBe(fingerprints.length)
        expect(fingerprints).toHaveLength(2)
        const other = await newApp()
        expect(
          (await admin("POST", `/admin/apps/${other.appId}/keys`, { publicKey: otherKeys.publicPem })).res.status
        ).toBe(201)
        // Once deleted, the key may come back (a new key id, the same fingerprint).
        expect((await admin("DELETE", `/admin/apps/${appId}/keys/${added.json.id}`)).res.status).toBe(204)
        expect((await admin("POST", `/admin/apps/${appId}/keys`, { publicKey: otherKeys.publicPem })).res.status).toBe(
          201
        )
      })
      it("POST /admin/installations installs within the app's permissions, once per organization", async () => {
        const { appId } = await newApp({ organization_info: "VIEW", organization_inventory: "REQUEST" })
        const organizationId = org()
        const r = await admin("POST", "/admin/installations", {
          appId,
          organizationId,
          permissions: { organization_info: "VIEW" }
        })
        expect(r.res.status).toBe(201)
        expect(r.json).toMatchObject({
          appId,
          organizationId,
          permissions: { organization_info: "VIEW" },
          suspendedAt: null
        })
        expect(r.json.id).toMatch(uuidRe)
        problem(
          await admin("POST", "/admin/installations", { appId, organizationId, permissions: {} }),
          409,
          "conflict"
        )
        problem(
          await admin("POST", "/admin/installations", {
            appId,
            organizationId: org(),
            permissions: { organization_inventory: "WRITE" }
          }),
          422,
          "invalid_permissions"
        )
        problem(
          await admin("POST", "/admin/installations", { appId: "987654321", organizationId: org(), permissions: {} }),
          404,
          "app_not_found"
        )
        problem(
          await admin("POST", "/admin/installations", { appId, organizationId: "nope", permissions: {} }),
          400,
          "invalid_request"
        )
      })
      it("PATCH /admin/installations/{id} changes permissions and suspension", async () => {
        const { appId } = await newApp({ organization_info: "VIEW", organization_members: "VIEW" })
        const inst = await install(appId, { organization_info: "VIEW" })
        const r = await admin("PATCH", `/admin/installations/${inst.id}`, {
          permissions: { organization_members: "VIEW" },
          suspended: true
        })
        expect(r.res.status).toBe(200)
        expect(r.json.permissions).toEqual({ organization_members: "VIEW" })
        expect(r.json.suspendedAt).toMatch(timestampRe)
        const back = await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: false })
        expect(back.json.suspendedAt).toBeNull()
        problem(
          await admin("PATCH", `/admin/installations/${inst.id}`, { permissions: { organization_warehouse: "VIEW" } }),
          422,
          "invalid_permissions"
        )
        problem(
          await admin("PATCH", `/admin/installations/${crypto.randomUUID()}`, { suspended: true }),
          404,
          "installation_not_found"
        )
        problem(await admin("PATCH", `/admin/installations/${inst.id}`, { suspended: "yes" }), 400, "invalid_request")
      })
      it("GET /admin/apps pages every app in creation order, with keys, total and Link", async () => {
        const mine = []
        for (let i = 0; i < 3; i++) mine.push((await newApp()).app)
        const head = await admin("GET", "/admin/apps?limit=2")
        expect(head.res.status).toBe(200)
        expect(head.json).toMatchObject({ page: 0, limit: 2 })
        const total: number = head.json.total
        expect(total).toBeGreaterThanOrEqual(3)
        expect(head.res.headers.get("link")).toBe(`<${BASE}/admin/apps?limit=2&page=1>; rel="next"`)
        // Apps are listed oldest first, so the three just made are the last three.
        for (const [k, app] of mine.entries()) {
          const page = total - 3 + k
          const r = await admin("GET", `/admin/apps?limit=1&page=${page}`)
          expect(r.json).toEqual({ items: [app], page, limit: 1, total })
          expect(r.res.headers.get("link")).toMatch(new RegExp(`page=${page - 1}>; rel="prev"`))
          if (k === 2) expect(r.res.headers.get("link")).not.toMatch(/rel="next"/)
        }
        expect((await admin("GET", `/admin/apps?page=${total}&limit=1`)).json).toEqual({
          items: [],
          page: total,
          limit: 1,
          total
        })
        const all = await admin("GET", "/admin/apps?limit=100")
        expect(all.json.items.length).toBe(Math.min(100, total))
        for (const q of ["limit=0", "limit=101", "page=-1", "page=x", "limit="]) {
          problem(await admin("GET", `/admin/apps?${q}`), 400, "invalid_request")
        }
        problem(await api("GET", "/admin/apps", { token: `${target.adminToken}x` }), 401, "invalid_token")
      })
      it("GET /admin/installations?appId= pages one app's installations, suspended ones too", async () => {
        const { appId } = await newApp()
        const made: Array<Json> = []
        for (let i = 0; i < 3; i++) made.push(await install(appId))
        await suspend(made[1].id)
        const created = inCreationOrder(made).map((i) => i.id)
        await install((await newApp()).appId)

        const all = await admin("GET", `/admin/installations?appId=${appId}`)
        expect(all.res.status).toBe(200)
        expect(all.json).toMatchObject({ page: 0, limit: 10, total: 3 })
        expect(ids(all.json)).toEqual(created)
        expect(all.json.items.find((i: Json) => i.id === made[1].id).suspendedAt).toMatch(timestampRe)
        expect(all.json.items[0]).toEqual(
          (await admin("GET", `/admin/installations?appId=${appId}&limit=1`)).json.items[0]
        )

        const first = await admin("GET", `/admin/installations?appId=${appId}&limit=2`)
        expect(ids(first.json)).toEqual(created.slice(0, 2))
        expect(first.res.headers.get("link")).toBe(
          `<${BASE}/admin/installations?appId=${appId}&limit=2&page=1>; rel="next"`
        )
        const second = await admin("GET", `/admin/installations?appId=${appId}&limit=2&page=1`)
        expect(ids(second.json)).toEqual(created.slice(2))
        expect(second.res.headers.get("link")).toBe(
          `<${BASE}/admin/installations?appId=${appId}&limit=2&page=0>; rel="prev"`
        )
      })
      it("GET /admin/installations lists every app's installations in creation order", async () => {
        const a = await newApp()
        const b = await newApp()
        const mine = [await install(a.appId), await install(b.appId), await install(a.appId)]
        await suspend(mine[2].id)
        const listed: Array<Json> = []
        let total = -1
        for (let page = 0; ; page++) {
          const r = await admin("GET", `/admin/installations?limit=100&page=${page}`)
          expect(r.res.status).toBe(200)
          total = r.json.total
          listed.push(...r.json.items)
          if (r.json.items.length < 100) break
        }
        expect(listed).toHaveLength(total)
        expect(listed.map((i) => i.id)).toEqual(inCreationOrder(listed).map((i) => i.id))
        for (const inst of mine) expect(listed.filter((i) => i.id === inst.id)).toHaveLength(1)
      })
      it("GET /admin/installations?appId= of an unknown app is 404 app_not_found, of a malformed one 400", async () => {
        problem(await admin("GET", "/admin/installations?appId=987654321"), 404, "app_not_found")
        problem(await admin("GET", "/admin/installations?appId=no-such-app"), 404, "app_not_found")
        problem(await admin("GET", "/admin/installations?appId="), 400, "invalid_request")
        problem(await admin("GET", "/admin/installations?appId=a%20b"), 400, "invalid_request")
        problem(await admin("GET", "/admin/installations?limit=101"), 400, "invalid_request")
      })
      it("DELETE /admin/installations/{id} uninstalls: 204, then 404", async () => {
        const { appId } = await newApp()
        const inst = await install(appId)
        expect((await admin("DELETE", `/admin/installations/${inst.id}`)).res.status).toBe(204)
        problem(await admin("DELETE", `/admin/installations/${inst.id}`), 404, "installation_not_found")
      })
    })
  })
