/**
 * Same answers, before and after: sends one list of requests (every SPEC §1 rule, the hot paths and
 * their usual failures, the operator API, a defect, the rate limits) to two builds of the issuer and
 * prints every difference in status, headers (names and values) and body. Ids, tokens, timestamps,
 * `Date` and generated request ids are masked, since they differ between any two runs.
 *
 *   npx tsc -p tsconfig.build.json --outDir dist/base     # the code before the change
 *   tsx bench/answers.ts [--a dist/base/src] [--b src] [--verbose]
 *
 * Exit status 1 when the two builds answer differently.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type * as AuditLogModule from "../src/issuer/AuditLog.js"
import type * as EntropyModule from "../src/issuer/Entropy.js"
import type * as IssuerModule from "../src/issuer/Issuer.js"
import type * as RateLimiterModule from "../src/issuer/RateLimiter.js"
import type * as RegistryModule from "../src/issuer/Registry.js"
import { GRANT, generateKey, MINT_BODY, ORGANIZATION_ID, signAppJwt, webHandlerOf } from "./fixtures.js"
import { arg } from "./args.js"

const core = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const verbose = process.argv.includes("--verbose")
const ORIGIN = "http://answers.local"
const ADMIN = "answers-admin-token-0123456789abcdef0123456789"
/** An app id whose registry reads die: the defect scenario. */
const BOOM = "boom"

type Handler = (request: Request) => Promise<Response>

/** One build of the issuer, twice: unlimited, and limited to 3 requests per address and 4 per principal. */
const load = async (dir: string) => {
  const base = resolve(core, dir)
  const AuditLog: typeof AuditLogModule = await import(`${base}/issuer/AuditLog.js`)
  const Entropy: typeof EntropyModule = await import(`${base}/issuer/Entropy.js`)
  const { makeWebHandler }: typeof IssuerModule = await import(`${base}/issuer/Issuer.js`)
  const RateLimiter: typeof RateLimiterModule = await import(`${base}/issuer/RateLimiter.js`)
  const Registry: typeof RegistryModule = await import(`${base}/issuer/Registry.js`)
  // A build from before tokens moved into the registry (issue 12) has its own token store.
  const older: { layerMemory?: Layer.Layer<never> } = await import(`${base}/issuer/TokenStore.js`).catch(() => ({}))
  const audit: Array<AuditLogModule.AuditEvent> = []
  const dying = Layer.effect(
    Registry.Registry,
    Effect.map(Registry.Registry, (inner) => {
      const wrapped: Record<string, unknown> = {}
      for (const [name, f] of Object.entries(inner)) {
        wrapped[name] = (...args: Array<unknown>) =>
          args[0] === BOOM
            ? Effect.die(new Error(`a secret the defect must not leak: ${ADMIN}`))
            : (f as (...a: Array<unknown>) => Effect.Effect<unknown>)(...args)
      }
      return wrapped as unknown as typeof inner
    })
  ).pipe(Layer.provide(Registry.layerMemory))
  const make = (limited: boolean) =>
    webHandlerOf(
      makeWebHandler,
      Layer.mergeAll(
        older.layerMemory ?? Layer.empty,
        dying,
        Entropy.layer,
        Logger.replace(
          Logger.defaultLogger,
          Logger.make(() => {})
        )
      ),
      {
        auditLog: AuditLog.layerMemory(audit),
        rateLimiter: limited
          ? RateLimiter.layerMemory({ limit: 3, periodSeconds: 3600, principal: { limit: 4, periodSeconds: 3600 } })
          : undefined
      },
      { adminToken: Redacted.make(ADMIN) }
    )
  return { open: make(false), limited: make(true), audit }
}

const key = await generateKey()
const a = await load(arg("a", "dist/base/src"))
const b = await load(arg("b", "src"))

interface Step {
  readonly name: string
  readonly limited?: boolean
  readonly request: (vars: Vars) => Request
  /** Reads what later steps need off a successful answer. */
  readonly keep?: (body: any, vars: Vars) => void
}
type Vars = Record<string, string>

const json = (method: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  new Request(`${ORIGIN}${path}`, {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
  new Request(`${ORIGIN}${path}`, { method, headers })

const steps: ReadonlyArray<Step> = [
  // the operator API, seeding
  {
    name: "create app",
    request: () =>
      json("POST", "/admin/apps", { name: "answers", permissions: GRANT, publicKey: key.publicPem }, bearer(ADMIN)),
    keep: (body, v) => {
      v.appId = String(body.id)
      v.keyId = body.keys[0].id
    }
  },
  {
    name: "create app, taken name",
    request: () =>
      json("POST", "/admin/apps", { name: "answers", permissions: GRANT, publicKey: key.publicPem }, bearer(ADMIN))
  },
  {
    name: "create installation",
    request: (v) =>
      json(
        "POST",
        "/admin/installations",
        { appId: v.appId, organizationId: ORGANIZATION_ID, permissions: GRANT },
        bearer(ADMIN)
      ),
    keep: (body, v) => {
      v.installationId = body.id
    }
  },
  {
    name: "create second installation",
    request: (v) =>
      json(
        "POST",
        "/admin/installations",
        {
          appId: v.appId,
          organizationId: "0b5c1f7e-9d1a-4c3e-8f2b-6a7d8e9f0a1b",
          permissions: { organization_info: "VIEW" }
        },
        bearer(ADMIN)
      ),
    keep: (body, v) => {
      v.second = body.id
    }
  },
  { name: "admin: list apps", request: () => get("/admin/apps?limit=1&page=0", bearer(ADMIN)) },
  {
    name: "admin: list installations",
    request: (v) => get(`/admin/installations?appId=${v.appId}&limit=1`, bearer(ADMIN))
  },
  { name: "admin: get app", request: (v) => get(`/admin/apps/${v.appId}`, bearer(ADMIN)) },
  { name: "admin: get unknown app", request: () => get("/admin/apps/nope", bearer(ADMIN)) },
  { name: "admin: wrong token", request: () => get("/admin/apps", bearer(`${ADMIN}x`)) },
  { name: "admin: no token", request: () => get("/admin/apps") },
  { name: "admin: HEAD list apps", request: () => get("/admin/apps", bearer(ADMIN), "HEAD") },
  { name: "admin: bad body", request: () => json("POST", "/admin/apps", { name: 1 }, bearer(ADMIN)) },
  {
    name: "admin: percent-encoded path",
    request: (v) => get(`/%61dmin/apps/${v.appId}`, bearer(ADMIN))
  },
  { name: "admin: upper-case path", request: (v) => get(`/ADMIN/apps/${v.appId}`, bearer(ADMIN)) },
  { name: "admin: 405", request: () => get("/admin/apps", bearer(ADMIN), "PUT") },
  // the Apps API
  {
    name: "mint",
    request: (v) => json("POST", `/app/installations/${v.installationId}/accessTokens`, MINT_BODY, bearer(v.jwt!)),
    keep: (body, v) => {
      v.token = body.token
    }
  },
  {
    name: "mint, no body",
    request: (v) =>
      new Request(`${ORIGIN}/app/installations/${v.installationId}/accessTokens`, {
        method: "POST",
        headers: bearer(v.jwt!)
      })
  },
  {
    name: "mint, upper-case id",
    request: (v) =>
      json("POST", `/app/installations/${v.installationId!.toUpperCase()}/accessTokens`, "{}", bearer(v.jwt!))
  },
  {
    name: "mint, second installation (prefetch for another id)",
    request: (v) => json("POST", `/app/installations/${v.second}/accessTokens`, "{}", bearer(v.jwt!))
  },
  {
    name: "mint, beyond grant",
    request: (v) =>
      json(
        "POST",
        `/app/installations/${v.installationId}/accessTokens`,
        { permissions: { organization_members: "VIEW" } },
        bearer(v.jwt!)
      )
  },
  {
    name: "mint, unknown level",
    request: (v) =>
      json(
        "POST",
        `/app/installations/${v.installationId}/accessTokens`,
        { permissions: { organization_info: "WRITE" } },
        bearer(v.jwt!)
      )
  },
  {
    name: "mint, unknown field",
    request: (v) => json("POST", `/app/installations/${v.installationId}/accessTokens`, { x: 1 }, bearer(v.jwt!))
  },
  {
    name: "mint, array body",
    request: (v) => json("POST", `/app/installations/${v.installationId}/accessTokens`, "[]", bearer(v.jwt!))
  },
  {
    name: "mint, invalid JSON",
    request: (v) => json("POST", `/app/installations/${v.installationId}/accessTokens`, "{", bearer(v.jwt!))
  },
  {
    name: "mint, not JSON",
    request: (v) =>
      new Request(`${ORIGIN}/app/installations/${v.installationId}/accessTokens`, {
        method: "POST",
        headers: { ...bearer(v.jwt!), "content-type": "text/plain" },
        body: "permissions"
      })
  },
  {
    name: "mint, too large (read)",
    request: (v) =>
      json("POST", `/app/installations/${v.installationId}/accessTokens`, { pad: "x".repeat(17_000) }, bearer(v.jwt!))
  },
  {
    name: "mint, too large (declared)",
    request: (v) =>
      json("POST", `/app/installations/${v.installationId}/accessTokens`, "{}", {
        ...bearer(v.jwt!),
        "content-length": "99999"
      })
  },
  {
    name: "mint, malformed id",
    request: (v) => json("POST", "/app/installations/not-a-uuid/accessTokens", "{}", bearer(v.jwt!))
  },
  {
    name: "mint, unknown installation",
    request: (v) =>
      json("POST", "/app/installations/11111111-2222-4333-8444-555555555555/accessTokens", "{}", bearer(v.jwt!))
  },
  {
    name: "mint, an access token instead",
    request: (v) => json("POST", `/app/installations/${v.installationId}/accessTokens`, "{}", bearer(v.token!))
  },
  {
    name: "mint, bad signature",
    request: (v) => json("POST", `/app/installations/${v.installationId}/accessTokens`, "{}", bearer(v.foreign!))
  },
  {
    name: "mint, expired",
    request: (v) => json("POST", `/app/installations/${v.installationId}/accessTokens`, "{}", bearer(v.expired!))
  },
  {
    name: "mint, defect in storage",
    request: (v) => json("POST", `/app/installations/${v.installationId}/accessTokens`, "{}", bearer(v.boom!))
  },
  { name: "app token", request: (v) => json("POST", "/app/accessTokens", "", bearer(v.jwt!)) },
  { name: "describe", request: (v) => get("/app/installations/token", bearer(v.token!)) },
  { name: "describe, HEAD", request: (v) => get("/app/installations/token", bearer(v.token!), "HEAD") },
  { name: "describe, trailing slash", request: (v) => get("/app/installations/token/", bearer(v.token!)) },
  { name: "describe, double slash", request: (v) => get("//app/installations/token", bearer(v.token!)) },
  { name: "describe, a JWT instead", request: (v) => get("/app/installations/token", bearer(v.jwt!)) },
  { name: "describe, unknown token", request: () => get("/app/installations/token", bearer(`crs_${"ab".repeat(24)}`)) },
  { name: "describe, no credential", request: () => get("/app/installations/token") },
  { name: "describe, Basic", request: () => get("/app/installations/token", { authorization: "Basic abc" }) },
  {
    name: "describe, Authorization too long",
    request: () => get("/app/installations/token", bearer("a".repeat(8 * 1024)))
  },
  {
    name: "describe, other version",
    request: (v) => get("/app/installations/token", { ...bearer(v.token!), "x-icr-api-version": "2020-01-01" })
  },
  {
    name: "describe, the served version",
    request: (v) => get("/app/installations/token", { ...bearer(v.token!), "x-icr-api-version": "2023-06-16" })
  },
  {
    name: "describe, sane request id",
    request: (v) => get("/app/installations/token", { ...bearer(v.token!), "x-request-id": "abc.DEF-1:2_3" })
  },
  {
    name: "describe, insane request id",
    request: (v) => get("/app/installations/token", { ...bearer(v.token!), "x-request-id": "a b" })
  },
  { name: "list installations", request: (v) => get("/app/installations?limit=1&page=1", bearer(v.jwt!)) },
  { name: "list installations, cursor", request: (v) => get("/app/installations?limit=1&cursor=", bearer(v.jwt!)) },
  { name: "list installations, bad limit", request: (v) => get("/app/installations?limit=0", bearer(v.jwt!)) },
  { name: "get installation", request: (v) => get(`/app/installations/${v.installationId}`, bearer(v.jwt!)) },
  { name: "get installation, bad id", request: (v) => get("/app/installations/xyz", bearer(v.jwt!)) },
  { name: "get installation, bad percent", request: (v) => get("/app/installations/%E0%A4%A", bearer(v.jwt!)) },
  { name: "revoke", request: (v) => get("/app/installations/token", bearer(v.token!), "DELETE") },
  { name: "describe, revoked", request: (v) => get("/app/installations/token", bearer(v.token!)) },
  // the rest of §1
  { name: "healthz", request: () => get("/healthz") },
  { name: "healthz, HEAD", request: () => get("/healthz", {}, "HEAD") },
  { name: "healthz, POST", request: () => json("POST", "/healthz", "{}") },
  { name: "healthz, other version", request: () => get("/healthz", { "x-icr-api-version": "1" }) },
  { name: "healthz, trailing slash", request: () => get("/healthz/") },
  { name: "openapi.json", request: () => get("/openapi.json") },
  { name: "unknown route", request: () => get("/nowhere") },
  { name: "unknown route, POST with body", request: () => json("POST", "/nowhere", "{}") },
  { name: "405 with Allow", request: () => get("/app/accessTokens") },
  { name: "405 on a token route", request: () => get("/app/installations/token", {}, "PUT") },
  // rate limits (address 3, principal 4)
  ...[1, 2, 3, 4].map(
    (i): Step => ({
      name: `limited: unauthenticated #${i}`,
      limited: true,
      request: () => get("/app/installations/token", { "cf-connecting-ip": "203.0.113.7" })
    })
  ),
  {
    name: "limited: healthz is never limited",
    limited: true,
    request: () => get("/healthz", { "cf-connecting-ip": "203.0.113.7", "x-icr-api-version": "x" })
  },
  {
    name: "limited: other version past the budget",
    limited: true,
    request: () => get("/openapi.json", { "cf-connecting-ip": "203.0.113.7", "x-icr-api-version": "x" })
  },
  {
    name: "limited: too large past the budget",
    limited: true,
    request: () => json("POST", "/app/accessTokens", { pad: "x".repeat(17_000) }, { "cf-connecting-ip": "203.0.113.7" })
  },
  {
    name: "limited: another address",
    limited: true,
    request: () => get("/openapi.json", { "cf-connecting-ip": "2001:db8::1" })
  },
  ...[1, 2, 3, 4, 5].map(
    (i): Step => ({
      name: `limited: app JWT #${i}`,
      limited: true,
      request: (v) =>
        json("POST", "/app/accessTokens", "", { ...bearer(v.limitedJwt!), "cf-connecting-ip": "203.0.113.7" })
    })
  ),
  {
    name: "limited: operator is exempt",
    limited: true,
    request: () => get("/admin/apps", { ...bearer(ADMIN), "cf-connecting-ip": "203.0.113.7" })
  }
]

/** Masks what differs between any two runs: ids, tokens, times, dates. */
const mask = (text: string) =>
  text
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, "<uuid>")
    .replace(/crs_[0-9a-f]{48}/g, "crs_<token>")
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, "<time>")
    .replace(/cursor=[\w-]+/g, "cursor=<cursor>")
    .replace(/"nextCursor":"[\w-]+"/g, '"nextCursor":"<cursor>"')
    .replace(/"retryAfter":\d+/g, '"retryAfter":<n>')
    .replace(/SHA256:[\w+/=]+/g, "SHA256:<fp>")
    .replace(/"id":"?\d+"?/g, '"id":<id>')
    .replace(/apps\/\d+/g, "apps/<id>")
    .replace(/appId=\d+/g, "appId=<id>")
    .replace(/"appId":"?\d+"?/g, '"appId":<id>')

const answer = async (response: Response) => {
  const text = await response.text()
  const headers = [...response.headers]
    .filter(([name]) => name !== "date")
    .map(([name, value]) => `${name}: ${name === "retry-after" ? "<n>" : mask(value)}`)
  return { status: response.status, headers: headers.join("\n"), body: mask(text) }
}

const run = async (side: typeof a) => {
  const vars: Vars = {}
  const seeded = await side.limited.handler(
    json("POST", "/admin/apps", { name: "answers", permissions: GRANT, publicKey: key.publicPem }, bearer(ADMIN))
  )
  if (seeded.status !== 201) throw new Error(`seeding the limited issuer: ${seeded.status}`)
  vars.limitedJwt = await signAppJwt(key, String(((await seeded.json()) as { id: string }).id))
  const answers: Array<Awaited<ReturnType<typeof answer>>> = []
  for (const step of steps) {
    if (step.name === "mint") {
      vars.jwt = await signAppJwt(key, vars.appId!)
      vars.foreign = await signAppJwt(await generateKey(), vars.appId!)
      vars.boom = await signAppJwt(key, BOOM)
      const { SignJWT } = await import("jose")
      const now = Math.floor(Date.now() / 1000)
      vars.expired = await new SignJWT({})
        .setProtectedHeader({ alg: "RS256", typ: "JWT" })
        .setIssuer(vars.appId!)
        .setIssuedAt(now - 700)
        .setExpirationTime(now - 100)
        .sign(key.privateKey)
    }
    const handler: Handler = step.limited ? side.limited.handler : side.open.handler
    const response = await handler(step.request(vars))
    const copy = response.clone()
    answers.push(await answer(response))
    if (step.keep && response.ok) step.keep(await copy.json(), vars)
  }
  return answers
}

const answersA = await run(a)
const answersB = await run(b)
let differences = 0
steps.forEach((step, i) => {
  const x = answersA[i]!
  const y = answersB[i]!
  const same = x.status === y.status && x.headers === y.headers && x.body === y.body
  if (!same) {
    differences++
    console.log(`✗ ${step.name}`)
    for (const k of ["status", "headers", "body"] as const) {
      if (x[k] !== y[k])
        console.log(
          `  ${k}\n    A: ${String(x[k]).replace(/\n/g, "\n       ")}\n    B: ${String(y[k]).replace(/\n/g, "\n       ")}`
        )
    }
  } else if (verbose) {
    console.log(`✓ ${step.name}: ${x.status}\n    ${x.headers.replace(/\n/g, "\n    ")}\n    ${x.body.slice(0, 300)}`)
  }
})
const auditA = a.audit.map((e) => mask(JSON.stringify({ ...(e as object), time: "" })))
const auditB = b.audit.map((e) => mask(JSON.stringify({ ...(e as object), time: "" })))
if (auditA.join("\n") !== auditB.join("\n")) {
  differences++
  console.log(`✗ audit events differ\n  A: ${auditA.join("\n     ")}\n  B: ${auditB.join("\n     ")}`)
}
console.log(
  differences === 0
    ? `same answers in ${steps.length} steps (and the same ${auditA.length} audit events)`
    : `${differences} difference(s) in ${steps.length} steps`
)
await Promise.all([a.open.dispose(), a.limited.dispose(), b.open.dispose(), b.limited.dispose()])
process.exit(differences === 0 ? 0 : 1)
