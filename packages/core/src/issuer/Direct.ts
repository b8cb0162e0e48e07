/**
 * The direct path: the two hot requests — a token use (`GET /app/installations/token`) and an
 * installation-token mint (`POST /app/installations/{id}/accessTokens`) — answered without the
 * router, the middlewares and a fiber: plain promise code over the promise forms of the same
 * services (`AccessTokens.authenticateNow` and `mintInstallationTokenNow`, `JwtVerifier.verifyNow`,
 * which share every rule with their effects and exist when the registry reads and writes as
 * promises, as `SqlRegistry` does on D1, SQLite and Postgres; over any other registry everything is
 * routed), the audit log and the request's rate limits (run at once when they need no waiting),
 * with the endpoint's own schemas (path, payload and headers decoded by decoders built once; the
 * answer built in its wire form and checked by the success schema's wire side), the same
 * authentication helpers (`Auth.ts`) and the same responses (`Responses.ts`). The edge around it is
 * unchanged: the SPEC §1 checks before, the address budget, the headers and the newline after.
 * `test/issuer/Direct.test.ts` sends the same requests both ways and compares the answers byte for
 * byte, and the audit events.
 *
 * Which requests it takes is decided before any work, from the request alone: the method, the path
 * spelt exactly so (no query), no body on a GET, the headers and the body the endpoint's own
 * schemas accept, and a credential of the endpoint's kind. Anything else — and anything unusual —
 * is routed, and answered by the router as before.
 *
 * A request it takes is answered by the same calls the router's middleware and handler make, in
 * the same order: the token's lookup (or the JWT's verification, with the app's keys and the
 * installation in one read), the count against the principal (SPEC §1), then the description (or
 * the audited mint). A failure of any of them is the same typed failure the router would hand the
 * edge, and the edge answers it the same way (the router encodes no failure of these routes
 * itself): an unknown, revoked, expired or killed token, a JWT that does not verify, a missing or
 * suspended installation, a grant exceeded, a budget spent, storage that fails. Falling back to the
 * router after such a failure would read storage twice, and count or audit a request twice.
 *
 * Nothing is cached across requests but what the services cache already (the verifier's imported
 * keys, by fingerprint): the token's standing and the app's keys and epochs are read on every
 * request, as on the router's path. An issuer whose runtime carries a clock or a tracer of its own
 * (a test clock, spans to export) routes everything: the direct path would skip its spans.
 */
import type * as HttpApi from "@effect/platform/HttpApi"
import type * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import { IcrAppsApi } from "../api/Api.js"
import type { Permissions } from "../api/Permissions.js"
import { accessTokenPattern } from "../api/Tokens.js"
import type { CheckedBody } from "../edge/Body.js"
import { jsonText } from "../edge/Edge.js"
import { AccessTokens } from "./AccessTokens.js"
import * as AuditLog from "./AuditLog.js"
import { bearerCredential, looksLikeAccessToken, tokenPrincipal } from "./Auth.js"
import * as JwtVerifier from "./JwtVerifier.js"
import { principalKey, type RequestLimitsService } from "./RateLimiter.js"
import { installationAccessTokenWire, tokenDescriptionWire } from "./Responses.js"
import { isRegistryFailure } from "./Registry.js"
import { toProblem } from "./StorageProblems.js"

/** The routes the direct path serves, by their names in the API definition. */
export type DirectRoute = "describeAccessToken" | "createInstallationAccessToken"

/** A direct answer: the endpoint's response, or the failure the edge answers with (as for a routed request). */
export type DirectAnswer = Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>

/** Answers a request the direct path takes; `undefined` (at once, before any work) for one to route. */
export type DirectPath = (
  request: Request,
  body: CheckedBody | undefined,
  requestId: string,
  limits: RequestLimitsService
) => Promise<DirectAnswer> | undefined

/** The services the direct path runs over: the ones the router's handlers and middlewares use. */
export type DirectServices = AccessTokens | JwtVerifier.JwtVerifier | AuditLog.AuditLog

type AnyEndpoint = HttpApiEndpoint.HttpApiEndpoint.AnyWithProps

const endpointOf = (name: DirectRoute): AnyEndpoint =>
  (IcrAppsApi as unknown as HttpApi.HttpApi.AnyWithProps).groups.apps!.endpoints[name]!

/** A success the endpoint's schema would not encode: a defect (it is built from the issuer's own records). */
const UNENCODABLE = "the direct path's answer does not encode with the endpoint's success schema"

/**
 * An endpoint's schemas as the router applies them, each compiled once: path, payload and headers
 * decoded (the headers from only the names the schema declares), the success encoded to JSON with
 * the endpoint's status and content type.
 */
const schemasOf = (name: DirectRoute) => {
  const endpoint = endpointOf(name)
  const decoder = (schema: Option.Option<Schema.Schema<any, unknown, any>>) =>
    Option.map(schema, (s) => Schema.decodeUnknownEither(s as Schema.Schema<any, unknown>))
  const headersSchema = endpoint.headersSchema as Option.Option<Schema.Schema<any, unknown>>
  const headerNames = Option.match(headersSchema, {
    onNone: () => [] as ReadonlyArray<string>,
    onSome: (s) => AST.getPropertySignatures(s.ast).map((p) => String(p.name))
  })
  const success = endpoint.successSchema as Schema.Schema<unknown, unknown>
  // The success's wire side, refinements included: a wire form built by hand is checked (and put in
  // the schema's member order) by it, at a fraction of the class's and `DateTime`'s encoding.
  const checkWire = Schema.validateEither(Schema.encodedBoundSchema(success))
  const status = HttpApiSchema.getStatusSuccess(success)
  const contentType = HttpApiSchema.getEncoding(success.ast).contentType
  const decodeHeaders = decoder(headersSchema)
  const nonePass = Option.isNone(decodeHeaders) || Either.isRight(decodeHeaders.value({}))
  return {
    path: decoder(endpoint.pathSchema),
    payload: decoder(endpoint.payloadSchema),
    /** Whether the headers the schema names decode (the version header, when sent, is this API's). */
    headersPass: (headers: globalThis.Headers): boolean => {
      if (Option.isNone(decodeHeaders)) return true
      const named: Record<string, string> = {}
      let any = false
      for (const name of headerNames) {
        const value = headers.get(name)
        if (value !== null) {
          named[name] = value
          any = true
        }
      }
      // None of them sent (the usual request): the schema's answer for none, decided once.
      return any ? Either.isRight(decodeHeaders.value(named)) : nonePass
    },
    /**
     * The success as the router encodes it, from its wire form; a form the schema refuses is a
     * defect (it is built from the issuer's own records).
     */
    answer: (wire: unknown): DirectAnswer => {
      const checked = checkWire(wire)
      return Either.isLeft(checked)
        ? Exit.die(new Error(UNENCODABLE))
        : Exit.succeed(jsonText(checked.right, { status, contentType }))
    }
  }
}

/** The path of a request's URL (absolute, or relative on some runtimes), when it has no query or fragment. */
const plainPathOf = (url: string): string | undefined => {
  let path = url
  if (!url.startsWith("/")) {
    const scheme = url.indexOf("://")
    if (scheme < 0) return undefined
    const slash = url.indexOf("/", scheme + 3)
    path = slash < 0 ? "/" : url.slice(slash)
  }
  return path.includes("?") || path.includes("#") ? undefined : path
}

const DESCRIBE_PATH = "/app/installations/token"
const MINT_PATH = /^\/app\/installations\/([0-9A-Fa-f-]{36})\/accessTokens$/

/** A direct answer's code that threw: the defect the router's fiber would have died with (a 500, logged). */
const died = (defect: unknown): DirectAnswer => Exit.die(defect)

/** `f`, its throw answered as {@link died}: in the same step, not one more `catch`. */
const guarded =
  <A, B>(f: (a: A) => B) =>
  (a: A): B | DirectAnswer => {
    try {
      return f(a)
    } catch (defect) {
      return died(defect)
    }
  }

/** A failure of storage as its problem (SPEC §6), any other as it is: what `asProblems` does to an effect's. */
const problemOf = (failure: unknown): unknown => (isRegistryFailure(failure) ? toProblem(failure) : failure)

/**
 * Runs a small effect — a request's count against its principal (SPEC §1), an audit event — at once
 * when it completes without waiting (a limiter in memory, or none; a log on the console), else on
 * until it does (a limiter in the database).
 */
const runNow = <E>(count: Effect.Effect<void, E>): Exit.Exit<void, E> | Promise<Exit.Exit<void, E>> => {
  const exit = Effect.runSyncExit(count)
  if (Exit.isFailure(exit) && Cause.isDieType(exit.cause) && Runtime.isAsyncFiberException(exit.cause.defect)) {
    return Effect.runPromise(Fiber.await(exit.cause.defect.fiber as Fiber.Fiber<void, E>))
  }
  return exit
}

/**
 * Whether the direct path can run on `runtime`: only over the default clock and tracer. A runtime
 * with its own (a test clock, a tracer exporting spans) routes everything.
 */
export const directPathFits = (runtime: Runtime.Runtime<never>): boolean => {
  const probe = Effect.all([Effect.clock, Effect.tracer])
  const [clock, tracer] = Runtime.runSync(runtime)(probe)
  const [defaultClock, defaultTracer] = Effect.runSync(probe)
  return clock === defaultClock && tracer === defaultTracer
}

/**
 * The direct path over the issuer's services. It takes requests only when their storage reads and
 * writes as promises (`SqlRegistry`: the promise forms of `AccessTokens` and `JwtVerifier` are then
 * there); over any other registry every request is routed. `onAnswer` is told of every request it
 * answers (tests use it to prove that it ran).
 */
export const makeDirectPath = (
  services: Context.Context<DirectServices>,
  onAnswer: (route: DirectRoute) => void = () => {}
): DirectPath => {
  const tokens = Context.get(services, AccessTokens)
  const authenticateNow = tokens.authenticateNow
  const verifier = Context.get(services, JwtVerifier.JwtVerifier)
  const log = Context.get(services, AuditLog.AuditLog)
  /**
   * Records an event (an audit log never fails, SPEC §5): at once — by the sink's own `emitNow`, else
   * its effect run at once — or waited for, as the router does.
   */
  const emitNow = log.emitNow
  const audit = (event: AuditLog.AuditEvent): Promise<unknown> | undefined => {
    if (emitNow !== undefined) {
      emitNow(event)
      return undefined
    }
    const done = runNow(log.emit(event))
    return Exit.isExit(done) ? undefined : done
  }
  const verifyNow = verifier.verifyNow
  const mintNow = tokens.mintInstallationTokenNow
  const describeSchemas = schemasOf("describeAccessToken")
  const mintSchemas = schemasOf("createInstallationAccessToken")

  /** `GET /app/installations/token`: `TokenAuth`'s lookup and count, then the handler's description. */
  const describe = (request: Request, limits: RequestLimitsService): Promise<DirectAnswer> | undefined => {
    if (authenticateNow === undefined) return undefined
    if (request.body !== null || !describeSchemas.headersPass(request.headers)) return undefined
    const credential = bearerCredential(request.headers.get("authorization"))
    if (typeof credential !== "string" || !accessTokenPattern.test(credential)) return undefined
    onAnswer("describeAccessToken")
    return authenticateNow(credential, Date.now).then(
      guarded((result): DirectAnswer | Promise<DirectAnswer> => {
        if (Either.isLeft(result)) return Exit.fail(problemOf(result.left))
        const token = result.right.token
        const count = limits.counting ? runNow(limits.principal(tokenPrincipal(token))) : Exit.void
        const after = guarded((counted: Exit.Exit<void, unknown>): DirectAnswer => {
          if (Exit.isFailure(counted)) return Exit.failCause(counted.cause)
          return describeSchemas.answer(tokenDescriptionWire(token))
        })
        return Exit.isExit(count) ? after(count) : count.then(after)
      }),
      died
    )
  }

  /**
   * `POST /app/installations/{id}/accessTokens`: `AppAuth`'s verification (the app's keys and the
   * installation in one read) and count, then the handler's audited mint.
   */
  const mint = (
    request: Request,
    rawId: string,
    body: CheckedBody,
    requestId: string,
    limits: RequestLimitsService
  ): Promise<DirectAnswer> | undefined => {
    if (verifyNow === undefined || mintNow === undefined) return undefined
    if (!mintSchemas.headersPass(request.headers)) return undefined
    if (Option.isNone(mintSchemas.path) || Option.isNone(mintSchemas.payload)) return undefined
    const path = mintSchemas.path.value({ installationId: rawId })
    const payload = mintSchemas.payload.value(body.parsed)
    if (Either.isLeft(path) || Either.isLeft(payload)) return undefined
    const installationId: string = path.right.installationId
    const requested: Permissions | undefined = payload.right.permissions
    const credential = bearerCredential(request.headers.get("authorization"))
    if (typeof credential !== "string" || looksLikeAccessToken(credential)) return undefined
    onAnswer("createInstallationAccessToken")
    return (async (): Promise<DirectAnswer> => {
      try {
        const verified = await verifyNow(credential, installationId, Date.now())
        if (!("appId" in verified)) return Exit.fail(problemOf(verified))
        const { appId, tokenEpoch, installation } = verified
        // From here on the app is the principal its requests count against (SPEC §1).
        const count = limits.counting ? runNow(limits.principal(principalKey.app(appId))) : Exit.void
        const counted = Exit.isExit(count) ? count : await count
        if (Exit.isFailure(counted)) return Exit.failCause(counted.cause)
        const fields = { action: "installation_token.mint", actor: "app", appId, installationId } as const
        const minted = await mintNow(
          appId,
          installationId,
          requested,
          tokenEpoch,
          installation ?? Option.none(),
          Date.now()
        )
        if (!("record" in minted)) {
          const problem = problemOf(minted)
          await audit(AuditLog.eventOf(fields, requestId, Date.now(), "failure", AuditLog.codeOfFailure(problem)))
          return Exit.fail(problem)
        }
        await audit(AuditLog.eventOf({ ...fields, tokenId: minted.record.id }, requestId, Date.now(), "success"))
        return mintSchemas.answer(installationAccessTokenWire(minted))
      } catch (defect) {
        return died(defect)
      }
    })()
  }

  return (request, body, requestId, limits) => {
    const method = request.method
    if (method !== "GET" && method !== "POST") return undefined
    const path = plainPathOf(request.url)
    if (path === undefined) return undefined
    if (method === "GET") return path === DESCRIBE_PATH ? describe(request, limits) : undefined
    if (body === undefined) return undefined
    const match = MINT_PATH.exec(path)
    return match === null ? undefined : mint(request, match[1]!, body, requestId, limits)
  }
}
