/**
 * The issuer, wired: its services over the storage it is given, its routers, and a web-standard
 * `fetch` handler ({@link makeWebHandler}) that runs unchanged on Workers, Deno, Bun and Node.
 * Storage comes in as a layer; nothing here knows about D1 or SQL.
 *
 * By concern: the handlers are in `AppRoutes.ts` (SPEC §4), `OperatorRoutes.ts` (§5) and
 * `SystemRoutes.ts`; the authentication middlewares in `Auth.ts`; the configuration in `Config.ts`;
 * the HTTP rules of §1 in `Http.ts` (over the edge shared with the broker, `../edge/`).
 */
import { RouteNotFound } from "@effect/platform/HttpServerError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as FindMyWay from "find-my-way-ts"
import { AdminAuth, AppAuth, TokenAuth } from "../api/Api.js"
import { type GroupName, routes } from "../api/Routes.js"
import { routerOf, type RouterApp, runRoute } from "../edge/Router.js"
import * as AccessTokensModule from "./AccessTokens.js"
import { AccessTokens } from "./AccessTokens.js"
import { AppsLive } from "./AppRoutes.js"
import * as AuditLog from "./AuditLog.js"
import {
  makeAdminAuth,
  makeAppAuth,
  makeTokenAuth,
  namedInstallation,
  operatorFailures,
  RouteInstallation
} from "./Auth.js"
import { type Answer, toResponse } from "../edge/Edge.js"
import { type DirectRoute, directPathFits, makeDirectPath } from "./Direct.js"
import { IssuerConfig, type IssuerOptions, makeConfig, MIN_ADMIN_TOKEN_LENGTH } from "./Config.js"
import type * as Entropy from "./Entropy.js"
import { type Connection, type Router, withCommonRules } from "./Http.js"
import * as JwtVerifier from "./JwtVerifier.js"
import { AdminLive } from "./OperatorRoutes.js"
import { RateLimiter, RequestLimits } from "./RateLimiter.js"
import { Registry } from "./Registry.js"
import { SystemLive } from "./SystemRoutes.js"

export { type Answer, type DirectRoute, IssuerConfig, type IssuerOptions, MIN_ADMIN_TOKEN_LENGTH }

/** What the issuer stores in and draws its randomness from: given by whoever runs it (memory, D1, SQL). */
export type Storage = Registry | Entropy.Entropy

/** What every group's handlers and the authentication middlewares are built over. */
type IssuerServices =
  | Storage
  | AuditLog.AuditLog
  | IssuerConfig
  | JwtVerifier.JwtVerifier
  | AccessTokens
  | AppAuth
  | TokenAuth
  | AdminAuth

/**
 * How a web handler is made: the issuer's options, and the optional services it uses — each named
 * here, never found by looking into the storage layer.
 */
export interface WebHandlerOptions<E = never> extends IssuerOptions {
  /** Where audit events go (SPEC §5). Default: one JSON line per event on the console ({@link AuditLog.layerConsole}). */
  readonly auditLog?: Layer.Layer<AuditLog.AuditLog, E> | undefined
  /** Rate limiting (SPEC §1). Default: none, nothing is limited. */
  readonly rateLimiter?: Layer.Layer<RateLimiter, E> | undefined
  /**
   * Whether a token use and an installation-token mint take the direct path (`Direct.ts`) when they
   * can: the same answers for a fraction of the work. Default: true; false routes every request
   * (the tests and benchmarks that compare the two).
   */
  readonly directPath?: boolean | undefined
  /** Told of every request the direct path answers (the tests that prove it ran). */
  readonly onDirectAnswer?: ((route: DirectRoute) => void) | undefined
}

/**
 * A storage layer: it provides {@link Storage}, and no service the options name — an audit log or
 * a rate limiter in it would be one the issuer never uses, so the type refuses it and says where it goes.
 */
export type StorageLayer<Out, E> = Layer.Layer<Out, E> &
  Layer.Layer<Storage, E> &
  ([Extract<Out, AuditLog.AuditLog | RateLimiter>] extends [never]
    ? unknown
    : { readonly "pass an audit log or a rate limiter in the options (auditLog, rateLimiter), not in storage": never })

/**
 * The issuer's own services over its storage and audit log, in one context: the configuration, the
 * JWT verifier, the access tokens and the three authentication middlewares, made by plain
 * constructors (a graph of layers would cost more to build on a cold isolate than the services themselves).
 */
const makeServices = (
  options: IssuerOptions
): Effect.Effect<Context.Context<IssuerServices>, never, Storage | AuditLog.AuditLog> =>
  Effect.flatMap(Effect.context<Storage | AuditLog.AuditLog>(), (storage) =>
    Effect.flatMap(makeConfig(options), (config) =>
      Effect.map(AccessTokensModule.make(options.lifetimes), (tokens) => {
        const verifier = JwtVerifier.make(Context.get(storage, Registry))
        return storage.pipe(
          Context.add(IssuerConfig, config),
          Context.add(JwtVerifier.JwtVerifier, verifier),
          Context.add(AccessTokens, tokens),
          Context.add(AppAuth, makeAppAuth(verifier)),
          Context.add(TokenAuth, makeTokenAuth(tokens)),
          Context.add(AdminAuth, makeAdminAuth(config, operatorFailures(Context.get(storage, AuditLog.AuditLog))))
        )
      })
    )
  )

/**
 * Which group of the API serves a request, as the routers themselves decide it: the API's routes
 * (method and path, from the one definition) in a router of the same kind and configuration as the
 * platform's, so a path reaches a group here exactly when it reaches that group's route there —
 * however it is spelt (case, percent-encoding, doubled or trailing slashes). `undefined`: no route.
 */
const groupFinder = (): ((method: string, url: string) => GroupName | undefined) => {
  const finder = FindMyWay.make<GroupName>()
  for (const route of routes) finder.on(route.method, route.path, route.group)
  return (method, url) =>
    (finder.find(method, url) ?? (method === "HEAD" ? finder.find("GET", url) : undefined))?.handler
}

/**
 * The issuer's router over its storage, built on the first request that needs it.
 *
 * It is two routers. The Apps API's is built at once. The rest (the operator API and the system
 * endpoints: 13 of the 19 routes) is built on the first request that reaches it: an isolate that
 * only serves apps never needs it, and liveness probes are answered before either. Every request
 * goes to the Apps API's router first (the hot paths pay nothing more); one it has no route for goes
 * to the other router only when the API's groups say a route of that router serves it
 * ({@link groupFinder}), so a stray path never builds it. 404 and 405 depend on the API's routes,
 * not on the router that answered, so the two answer exactly as one router over both would.
 */
const makeRouter = <E>(storage: Layer.Layer<Storage, E>, options: WebHandlerOptions<E>, scope: Scope.Scope) =>
  Effect.gen(function* () {
    const built = yield* Layer.build(
      Layer.mergeAll(
        storage,
        options.auditLog ?? AuditLog.layerConsole,
        (options.rateLimiter ?? Layer.empty) as Layer.Layer<never, E>
      )
    )
    const services = yield* Effect.provide(makeServices(options), built)
    const apps = yield* Effect.provide(routerOf(AppsLive), services)
    // Whatever the storage layer set for every fiber (a Clock, a logger) is in this fiber's refs now.
    const runtime = yield* Effect.provide(Effect.runtime<Storage | AuditLog.AuditLog>(), built)
    let other: RouterApp | undefined
    let building: Promise<RouterApp> | undefined
    const otherRouter: RouterApp = Effect.suspend(
      () =>
        other ??
        Effect.flatten(
          Effect.promise(() => {
            building ??= Runtime.runPromise(runtime)(
              Scope.extend(Effect.provide(routerOf(Layer.merge(AdminLive, SystemLive)), services), scope)
            ).then((app) => (other = app))
            return building
          })
        )
    )
    const groupOf = groupFinder()
    const appsFirst: RouterApp = Effect.catchIf(
      apps,
      (e) => e instanceof RouteNotFound && (groupOf(e.request.method, e.request.url) ?? "apps") !== "apps",
      () => otherRouter
    )
    const run = runRoute(runtime as Runtime.Runtime<never>)
    const route: Router["route"] = (request, requestId, limits) =>
      run(appsFirst, request, requestId, [
        [RequestLimits.key, limits],
        [RouteInstallation.key, namedInstallation()]
      ])
    const direct =
      options.directPath === false || !directPathFits(runtime as Runtime.Runtime<never>)
        ? undefined
        : makeDirectPath(services, options.onDirectAnswer)
    return {
      route,
      direct,
      runtime: runtime as Runtime.Runtime<never>,
      limiter:
        options.rateLimiter === undefined ? undefined : Context.unsafeGet(built as Context.Context<never>, RateLimiter),
      clock: yield* Effect.clock
    } satisfies Router
  }).pipe(Scope.extend(scope))

/** A web-standard request handler. */
export interface WebHandler {
  /** Answers one request; a server passes what it knows of the connection (its TCP peer). */
  readonly handler: (request: Request, connection?: Connection) => Promise<Response>
  /**
   * The same answer before it is made a `Response`: what a server that writes its own bytes
   * (`node:http`) sends as it is, saving the `Response` and its body stream.
   */
  readonly answer: (request: Request, connection?: Connection) => Promise<Answer>
  readonly dispose: () => Promise<void>
}

/**
 * A `fetch`-style handler for the issuer over `storage` (its registry and entropy), with the audit
 * log and the rate limiter `options` name. Build it once per isolate (it holds the routers and the
 * imported-key cache) and call `handler` per request: the routers are built on the first request
 * that needs them, all the layers in one build (so a layer two of them share is built once).
 */
export const makeWebHandler = <Out, E = never, EO = never>(
  storage: StorageLayer<Out, E>,
  options: WebHandlerOptions<EO> = {}
): WebHandler => {
  const scope = Effect.runSync(Scope.make())
  const answer = withCommonRules(
    () =>
      Effect.runPromise(
        makeRouter(storage as unknown as Layer.Layer<Storage, E | EO>, options as WebHandlerOptions<E | EO>, scope)
      ),
    options.clientAddress
  )
  return {
    handler: async (request, connection) => toResponse(await answer(request, connection)),
    answer,
    dispose: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
