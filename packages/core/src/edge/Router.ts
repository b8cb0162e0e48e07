/**
 * A router over an `HttpApi`'s groups, as an edge ({@link ./Edge.ts}) runs it: built once, then
 * run per request in one fiber whose context is only what that request brings (the request, its id,
 * whatever the server adds). The services the handlers use were captured when the groups were built.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpRouter from "@effect/platform/HttpRouter"
import type { ResponseError } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { RequestId } from "./RequestId.js"

/** A routed request's answer, as an effect that needs nothing but what {@link runRoute} puts in its context. */
export type RouterApp = Effect.Effect<HttpServerResponse.HttpServerResponse, unknown>

/**
 * Applies the pre-response handlers a handler registered (`HttpApp.appendPreResponseHandler`, for
 * a `Link` header) to its response, as the platform's own server does.
 */
export const withPreResponseHandlers = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, E | ResponseError, R> =>
  Effect.flatMap(app, (response) =>
    Effect.withFiberRuntime<HttpServerResponse.HttpServerResponse, ResponseError>((fiber) => {
      const handler = fiber.getFiberRef(HttpApp.currentPreResponseHandlers)
      if (handler._tag === "None") return Effect.succeed(response)
      return handler.value(Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest), response)
    })
  )

/**
 * One router over some of an API's groups (each implemented in full), built over the services in
 * the context, with the headers its handlers set through pre-response handlers.
 */
export const routerOf = <G, R>(groups: Layer.Layer<G, never, R>): Effect.Effect<RouterApp, never, R | Scope.Scope> =>
  Effect.gen(function* () {
    // The groups add their routes to the HttpApiBuilder.Router they build; built again with the
    // same memo map, Router.Live is that same router. One after the other: no merge, no fork.
    const memoMap = yield* Layer.makeMemoMap
    const scope = yield* Effect.scope
    yield* Layer.buildWithMemoMap(groups, memoMap, scope)
    const built = yield* Layer.buildWithMemoMap(HttpApiBuilder.Router.Live, memoMap, scope)
    const router = yield* Context.get(built, HttpApiBuilder.Router).router
    return withPreResponseHandlers(yield* HttpRouter.toHttpApp(router)) as RouterApp
  })

/**
 * Runs routed requests on `runtime`'s fiber refs (its `Clock`, its logger) with a context of only
 * the request, its id and the `extra` services a server adds per request — not the platform's
 * file-serving services (HttpPlatform, FileSystem, Path, Etag) that a router's type asks for: only
 * file and multipart bodies use them, and no endpoint here reads or answers one.
 */
export const runRoute =
  (runtime: Runtime.Runtime<never>) =>
  (
    app: RouterApp,
    request: HttpServerRequest.HttpServerRequest,
    requestId: string,
    extra: ReadonlyArray<readonly [string, unknown]> = []
  ): Promise<Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>> => {
    const services = new Map<string, unknown>([
      [HttpServerRequest.HttpServerRequest.key, request],
      [RequestId.key, requestId]
    ])
    for (const [key, value] of extra) services.set(key, value)
    const { fiberRefs, runtimeFlags } = runtime
    return Runtime.runPromiseExit(
      Runtime.make({ context: Context.unsafeMake<never>(services), fiberRefs, runtimeFlags })
    )(app)
  }
