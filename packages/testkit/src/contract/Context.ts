/**
 * What every area of the issuer contract shares: the issuer under test, two app key pairs, and the
 * helpers that send requests and check SPEC §1's answers (problem documents, `WWW-Authenticate`,
 * never an echoed credential). Made once per registered suite; the issuer and the keys are set
 * before its first test runs.
 */
import type { AuditEvent } from "@icr-apps/core/issuer/AuditLog"
import * as Encoding from "effect/Encoding"
import { type AppKeyPair, appClaims, signRs256 } from "../Keys.js"
import type { TestRunner } from "../TestRunner.js"

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

/** The origin every request of the suite names. */
export const BASE = "http://icr.test"
/** A lower-case UUID. */
export const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** An RFC 3339 UTC timestamp. */
export const timestampRe = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/
/** An access token. */
export const tokenRe = /^crs_[0-9a-f]{48}$/

/** A JSON answer, read loosely (the assertions say what it must hold). */
export type Json = any

/** One request's extras: a JSON body (or a raw one), a Bearer credential, headers. */
export interface Call {
  readonly body?: unknown
  readonly rawBody?: string
  readonly token?: string
  readonly headers?: Record<string, string>
}

/** An answer: the response, its text, its JSON, and whether the request sent credentials. */
export interface Answer {
  readonly res: Response
  readonly text: string
  readonly json: Json
  /** Whether the request had an `Authorization` header with a value (what `WWW-Authenticate` depends on). */
  readonly sentCredentials: boolean
}

/** `WWW-Authenticate` on a 401 (SPEC §1, RFC 6750 §3.1): the realm, and the error only when credentials were sent. */
export const wwwAuthenticate = (sentCredentials: boolean): string =>
  sentCredentials ? 'Bearer realm="icr-apps", error="invalid_token"' : 'Bearer realm="icr-apps"'

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

/** What the areas of the suite share. */
export interface ContractContext {
  /** The test runner the suite is registered with. */
  readonly runner: TestRunner
  /** The issuer under test (set before the first test). */
  target: IssuerTarget
  /** The key pair apps are registered with by default (set before the first test). */
  keys: AppKeyPair
  /** A second key pair (set before the first test). */
  otherKeys: AppKeyPair
  /** A name no other test of this run uses. */
  readonly unique: (prefix: string) => string
  /** A fresh organization id. */
  readonly org: () => string
  /** Sends a request through `fetcher`; an error answer never contains the credential sent. */
  readonly send: (
    fetcher: (r: Request) => Promise<Response>,
    method: string,
    path: string,
    call?: Call
  ) => Promise<Answer>
  /** Sends a request to the issuer. */
  readonly api: (method: string, path: string, call?: Call) => Promise<Answer>
  /** Sends a request with the operator token. */
  readonly admin: (method: string, path: string, body?: unknown) => Promise<Answer>
  /** Asserts a problem document with the given status and code (and SPEC §1's headers); returns its JSON. */
  readonly problem: (r: Answer, status: number, code: string) => Json
  /** The time in epoch seconds. */
  readonly now: () => number
  /** A new app with the default keys (or `pair`) and the given permissions, and a JWT signer for it. */
  readonly newApp: (
    permissions?: Json,
    pair?: AppKeyPair
  ) => Promise<{ app: Json; appId: string; jwt: (claims?: Json, header?: Json) => Promise<string> }>
  /** Installs an app in a fresh organization. */
  readonly install: (appId: string, permissions?: Json) => Promise<Json>
  /** SPEC §4 order: createdAt ascending, then id (records made in the same millisecond tie on time). */
  readonly inCreationOrder: <A extends { createdAt: string; id: string }>(items: ReadonlyArray<A>) => Array<A>
  /** The ids of a page's items. */
  readonly ids: (page: Json) => Array<string>
  /** Suspends an installation. */
  readonly suspend: (installationId: string) => Promise<void>
  /** `POST /app/installations/{id}/accessTokens` with a JWT and an optional body. */
  readonly installationToken: (jwt: string, installationId: string, body?: unknown) => Promise<Answer>
  /** `POST /app/accessTokens` with a JWT and an optional body. */
  readonly appToken: (jwt: string, body?: unknown) => Promise<Answer>
}

/** The shared context of one registered suite. */
export const makeContext = (runner: TestRunner): ContractContext => {
  const { expect } = runner
  let counter = 0
  const c: ContractContext = {
    runner,
    target: undefined as unknown as IssuerTarget,
    keys: undefined as unknown as AppKeyPair,
    otherKeys: undefined as unknown as AppKeyPair,
    unique: (prefix) => `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`,
    org: () => crypto.randomUUID(),
    send: async (fetcher, method, path, call = {}) => {
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
      const authorization = headers.get("authorization")
      return {
        res,
        text,
        json: text === "" ? undefined : (JSON.parse(text) as Json),
        sentCredentials: authorization !== null && authorization.trim() !== ""
      }
    },
    api: (method, path, call = {}) => c.send(c.target.fetch, method, path, call),
    admin: (method, path, body) =>
      c.api(method, path, { token: c.target.adminToken, ...(body !== undefined ? { body } : {}) }),
    problem: (r, status, code) => {
      expect({ status: r.res.status, code: r.json?.code }).toEqual({ status, code })
      expect(r.res.headers.get("content-type")).toMatch(/^application\/problem\+json/)
      expect(r.json).toMatchObject({ status, code, type: expect.any(String), title: expect.any(String) })
      expect(typeof r.json.detail).toBe("string")
      expect(r.json.detail.length).toBeGreaterThan(0)
      if (status === 401) expect(r.res.headers.get("www-authenticate")).toBe(wwwAuthenticate(r.sentCredentials))
      return r.json
    },
    now: () => Math.floor(Date.now() / 1000),
    newApp: async (permissions = ALL_PERMISSIONS, pair) => {
      const keys = pair ?? c.keys
      const r = await c.admin("POST", "/admin/apps", { name: c.unique("app"), permissions, publicKey: keys.publicPem })
      expect(r.res.status).toBe(201)
      const appId: string = r.json.id
      return {
        app: r.json,
        appId,
        jwt: (claims: Json = {}, header?: Json) =>
          signRs256(keys.privateKey, { ...appClaims(appId), ...claims }, header)
      }
    },
    install: async (appId, permissions = ALL_PERMISSIONS) => {
      const r = await c.admin("POST", "/admin/installations", { appId, organizationId: c.org(), permissions })
      expect(r.res.status).toBe(201)
      return r.json
    },
    inCreationOrder: (items) =>
      [...items].sort((a, b) =>
        a.createdAt === b.createdAt ? (a.id < b.id ? -1 : 1) : Date.parse(a.createdAt) - Date.parse(b.createdAt)
      ),
    ids: (page) => page.items.map((i: Json) => i.id),
    suspend: async (installationId) =>
      expect((await c.admin("PATCH", `/admin/installations/${installationId}`, { suspended: true })).res.status).toBe(
        200
      ),
    installationToken: (jwt, installationId, body) =>
      c.api("POST", `/app/installations/${installationId}/accessTokens`, {
        token: jwt,
        ...(body !== undefined ? { body } : {})
      }),
    appToken: (jwt, body) => c.api("POST", "/app/accessTokens", { token: jwt, ...(body !== undefined ? { body } : {}) })
  }
  return c
}
