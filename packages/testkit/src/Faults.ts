/**
 * The faults the fake issuer can inject. A problem fault is answered exactly as the real issuer
 * answers that problem: the same problem class encodes the body (so `RateLimited.retryAfter`
 * decodes as sent), and the headers are the issuer's (`Retry-After` on 429/503 from the problem,
 * `WWW-Authenticate` on 401, `Allow` on 405, the security headers, the version, the request id).
 */
import * as HttpApi from "@effect/platform/HttpApi"
import { IcrAppsApi } from "@icr-apps/core/api/Api"
import { API_VERSION } from "@icr-apps/core/api/Primitives"
import * as Problems from "@icr-apps/core/api/Problems"
import { httpDate, SECURITY_HEADERS, sentCredentials, wwwAuthenticate } from "@icr-apps/core/edge/Edge"
import { requestIdOf } from "@icr-apps/core/edge/RequestId"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import type { InMemoryIssuer, MatchedRequest } from "./FakeIssuer.js"

/** Every SPEC §6 code, as the issuer sends it (checked against the problem classes by a test). */
export const PROBLEM_CODES = [
  "invalid_request",
  "unsupported_api_version",
  "missing_credentials",
  "invalid_jwt",
  "invalid_token",
  "installation_suspended",
  "admin_disabled",
  "forbidden",
  "insufficient_permissions",
  "not_found",
  "installation_not_found",
  "app_not_found",
  "method_not_allowed",
  "conflict",
  "payload_too_large",
  "permissions_exceed_grant",
  "invalid_public_key",
  "invalid_permissions",
  "rate_limited",
  "internal",
  "unavailable"
] as const

/** A SPEC §6 problem code: a typo is a type error. */
export type ProblemCode = (typeof PROBLEM_CODES)[number]

/** A problem class of the API (`RateLimited`, `InstallationSuspended`, …): what `Fault.problem` takes. */
export type ProblemClass = {
  readonly _tag: string
  readonly problem: Problems.ProblemMeta
  new (...args: ReadonlyArray<any>): Problems.Problem
}

/** The fields a problem class is made of, `detail` optional (the issuer's own words by default). */
export type ProblemFields<C extends ProblemClass> = Omit<ConstructorParameters<C>[0], "detail"> & {
  readonly detail?: string
}

/** One injected HTTP fault: a canned response, a network error, a delay, or a script run first. */
export type HttpFault =
  | {
      readonly _tag: "Response"
      readonly status: number
      readonly headers?: Record<string, string>
      readonly body?: unknown
      /** The problem answered, when the response is one: rendered as the issuer renders it. */
      readonly problem?: Problems.Problem
      /** Or the problem of this status that the request's endpoint declares (`Fault.status` without a code). */
      readonly problemFor?: (route: string | undefined) => Problems.Problem
    }
  | { readonly _tag: "NetworkError" }
  | { readonly _tag: "Delay"; readonly millis: number }
  | { readonly _tag: "Script"; readonly run: (request: MatchedRequest, issuer: InMemoryIssuer) => Promise<void> }

const classes: ReadonlyArray<ProblemClass> = (Object.values(Problems) as ReadonlyArray<unknown>).filter(
  (v): v is ProblemClass =>
    typeof v === "function" && typeof (v as { problem?: { code?: unknown } }).problem?.code === "string"
)
const classByCode = new Map(classes.map((c) => [c.problem.code, c]))

/** The codes the core's problem classes declare (what {@link PROBLEM_CODES} must equal). */
export const declaredCodes = (): ReadonlyArray<string> => classes.map((c) => c.problem.code)

/** The detail the issuer writes for a problem, where it always writes the same; else the title. */
const issuerDetail: Partial<Record<string, string>> = {
  installation_suspended: "The installation is suspended",
  installation_not_found: "No such installation",
  rate_limited: "Too many requests for this app or installation; retry later",
  unavailable: "The registry is unavailable; retry shortly",
  internal: "Internal error",
  missing_credentials: "Send a credential in Authorization: Bearer …"
}

/** The code a bare status stands for: the most common problem of that status. */
const codeOfStatus: Partial<Record<number, ProblemCode>> = {
  400: "invalid_request",
  401: "invalid_token",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  413: "payload_too_large",
  422: "invalid_permissions",
  429: "rate_limited",
  500: "internal",
  503: "unavailable"
}

/** Among the codes an endpoint declares for a status, the one a bare status means (most specific first). */
const PREFERRED: ReadonlyArray<ProblemCode> = [
  "invalid_jwt",
  "invalid_token",
  "installation_suspended",
  "forbidden",
  "installation_not_found",
  "app_not_found",
  "invalid_permissions"
]

let declared: Map<string, Map<number, ReadonlyArray<string>>> | undefined
/** The problem codes each endpoint declares, by status, read from the API definition. */
const declaredCodesOf = (route: string): ReadonlyMap<number, ReadonlyArray<string>> | undefined => {
  if (declared === undefined) {
    const byRoute = new Map<string, Map<number, ReadonlyArray<string>>>()
    HttpApi.reflect(IcrAppsApi, {
      onGroup() {},
      onEndpoint({ endpoint, errors }) {
        const byStatus = new Map<number, ReadonlyArray<string>>()
        for (const [status, error] of errors) {
          if (error.ast._tag !== "Some") continue
          const members = AST.isUnion(error.ast.value) ? error.ast.value.types : [error.ast.value]
          const codes: Array<string> = []
          for (const member of members) {
            const id = AST.getIdentifierAnnotation(member)
            if (id._tag === "Some" && id.value.startsWith("Problem_")) codes.push(id.value.slice("Problem_".length))
          }
          byStatus.set(status, codes)
        }
        // Operator and app endpoints share no names that matter here; the app's win.
        if (!byRoute.has(endpoint.name)) byRoute.set(endpoint.name, byStatus)
      }
    })
    declared = byRoute
  }
  return declared.get(route)
}

/** The code a bare `status` means on `route`: the endpoint's own problem of that status, else the status's usual one. */
const defaultCode = (status: number, route: string | undefined): ProblemCode | undefined => {
  const codes = route === undefined ? undefined : declaredCodesOf(route)?.get(status)
  if (codes !== undefined && codes.length > 0) {
    const preferred = PREFERRED.find((c) => codes.includes(c))
    if (preferred !== undefined) return preferred
    const usual = codeOfStatus[status]
    if (usual !== undefined && codes.includes(usual)) return usual
    return codes[0] as ProblemCode
  }
  return codeOfStatus[status]
}

/** Fields a problem needs besides `detail`, when the fault did not give them. */
const requiredDefaults: Partial<Record<string, Record<string, unknown>>> = {
  invalid_jwt: { reason: "invalid_signature" },
  method_not_allowed: { allow: [] },
  permissions_exceed_grant: { permissions: [] }
}

const makeProblem = (cls: ProblemClass, fields: Record<string, unknown>): Problems.Problem =>
  new cls({
    ...requiredDefaults[cls.problem.code],
    detail: issuerDetail[cls.problem.code] ?? cls.problem.title,
    ...fields
  })

const problemFault = (problem: Problems.Problem): HttpFault => ({
  _tag: "Response",
  status: problem.status,
  problem
})

/** Faults to inject. */
export const Fault = {
  /**
   * The issuer's answer with this problem, byte for byte as the issuer sends it:
   * `Fault.problem(RateLimited, { retryAfter: 3 })`, `Fault.problem(InstallationSuspended)`,
   * `Fault.problem(InvalidJwt, { reason: "expired" })`. `detail` defaults to the issuer's own words.
   */
  problem: <C extends ProblemClass>(cls: C, fields?: ProblemFields<C>): HttpFault =>
    problemFault(makeProblem(cls, (fields ?? {}) as Record<string, unknown>)),
  /**
   * A problem answer with `status`: its code defaults from the status (403 `forbidden`, 401
   * `invalid_token`, 429 `rate_limited`, 503 `unavailable`, …), and it is the real issuer's problem
   * of that code — so it decodes to the SDK's typed error (`RateLimited` with its `retryAfter`,
   * `InvalidJwt` with `reason: "invalid_signature"` unless told). A status with no problem of its
   * own (408, 502, 504) is a bare problem document that the SDK retries and then reports as unexpected.
   */
  status: (
    status: number,
    options: {
      /** Seconds, as the header carries them (`"3"`); the body's `retryAfter` follows. */
      readonly retryAfter?: string | number
      readonly code?: ProblemCode
      readonly detail?: string
      /** For `invalid_jwt`: why (default `invalid_signature`). */
      readonly reason?: Problems.JwtFailureReason
    } = {}
  ): HttpFault => {
    const retryAfter = options.retryAfter === undefined ? undefined : String(options.retryAfter).trim()
    const problemOf = (code: ProblemCode): { problem: Problems.Problem; carriesRetryAfter: boolean } | undefined => {
      const cls = classByCode.get(code)
      if (cls === undefined || cls.problem.status !== status) return undefined
      const fields: Record<string, unknown> = {}
      if (options.detail !== undefined) fields.detail = options.detail
      if (options.reason !== undefined && code === "invalid_jwt") fields.reason = options.reason
      const carriesRetryAfter =
        retryAfter !== undefined && /^\d+$/.test(retryAfter) && (code === "rate_limited" || code === "unavailable")
      if (carriesRetryAfter) fields.retryAfter = Number(retryAfter)
      return { problem: makeProblem(cls, fields), carriesRetryAfter }
    }
    // A Retry-After the problem cannot carry (an HTTP-date, or on another status) goes out as given.
    const extra = (carries: boolean) =>
      retryAfter !== undefined && !carries ? { headers: { "retry-after": retryAfter } } : {}
    if (options.code !== undefined) {
      const made = problemOf(options.code)
      if (made !== undefined)
        return { _tag: "Response", status, problem: made.problem, ...extra(made.carriesRetryAfter) }
    } else if (codeOfStatus[status] !== undefined) {
      const usual = problemOf(codeOfStatus[status]!)!
      return {
        _tag: "Response",
        status,
        problemFor: (route) => {
          const code = defaultCode(status, route)
          return (code === undefined ? undefined : problemOf(code))?.problem ?? usual.problem
        },
        ...extra(usual.carriesRetryAfter)
      }
    }
    return {
      _tag: "Response",
      status,
      headers: {
        "content-type": Problems.PROBLEM_CONTENT_TYPE,
        ...(retryAfter !== undefined ? { "retry-after": retryAfter } : {})
      },
      body: {
        type: Problems.problemType(options.code ?? "internal"),
        title: "Injected fault",
        status,
        code: options.code ?? "internal",
        detail: options.detail ?? "Injected by @icr-apps/testkit"
      }
    }
  },
  /** A network failure: `fetch` rejects with a `TypeError`, as browsers and runtimes do. */
  networkError: (): HttpFault => ({ _tag: "NetworkError" }),
  /**
   * The request reaches the issuer only after `millis` — on the issuer's clock: Effect's `Clock`
   * with `FakeIssuer.layer` (so a `TestClock` decides when), real time with `makeFakeIssuer`.
   */
  delay: (millis: number): HttpFault => ({ _tag: "Delay", millis }),
  /** Runs `script` against the issuer, then lets the request through (it sees what the script did). */
  script: (run: (request: MatchedRequest, issuer: InMemoryIssuer) => Promise<void>): HttpFault => ({
    _tag: "Script",
    run
  }),
  /** Suspends the request's installation just before the request is handled. */
  suspendInstallation: (): HttpFault => ({
    _tag: "Script",
    run: async (request, issuer) => {
      if (request.installationId === undefined)
        throw new Error("Fault.suspendInstallation: the request names no installation")
      await issuer.arrange.suspend(request.installationId)
    }
  })
}

const encoders = new Map<string, (problem: Problems.Problem) => Problems.ProblemDocument>()
const encode = (problem: Problems.Problem): Problems.ProblemDocument => {
  let f = encoders.get(problem._tag)
  if (f === undefined) {
    const schema = (Problems.Problems as Record<string, Schema.Schema<Problems.Problem, Problems.ProblemDocument>>)[
      problem._tag
    ]!
    f = Schema.encodeSync(schema)
    encoders.set(problem._tag, f)
  }
  return f(problem)
}

/** A canned response as the issuer would send it to `request` at `nowMillis`. */
export const renderFault = (
  fault: Extract<HttpFault, { readonly _tag: "Response" }>,
  request: Request,
  route: string | undefined,
  nowMillis: number
): Response => {
  const problem = fault.problem ?? fault.problemFor?.(route)
  if (problem === undefined) {
    return new Response(fault.body === undefined ? null : JSON.stringify(fault.body), {
      status: fault.status,
      headers: { date: new Date(nowMillis).toUTCString(), ...fault.headers }
    })
  }
  // The edge's problem answer (core/edge/Edge.ts): common headers, the document and a newline.
  const document = encode(problem)
  const body = new TextEncoder().encode(`${JSON.stringify(document)}\n`)
  const headers: Record<string, string> = {
    ...SECURITY_HEADERS,
    "x-icr-api-version": API_VERSION,
    "x-request-id": requestIdOf(request.headers.get("x-request-id")),
    date: httpDate(nowMillis),
    "content-type": Problems.PROBLEM_CONTENT_TYPE,
    "content-length": String(body.length)
  }
  if (document.status === 429 || document.status === 503) {
    headers["retry-after"] = String(typeof document.retryAfter === "number" ? document.retryAfter : 1)
  }
  if (document.status === 401) headers["www-authenticate"] = wwwAuthenticate(sentCredentials(request.headers))
  if (document.status === 405) headers.allow = ((document.allow as ReadonlyArray<string>) ?? []).join(", ")
  Object.assign(headers, fault.headers)
  return new Response(request.method.toUpperCase() === "HEAD" ? null : body, { status: problem.status, headers })
}
