/**
 * The SDK for code that does not use Effect: the same behaviour (JWT reuse, retries, clock-skew
 * recovery, cached tokens, pagination), with Promises, plain JSON values, and real `Error`s.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { AuthenticatedClient, type RequestOptions } from "../client/AuthenticatedClient.js"
import { checkBaseUrl, DEFAULT_BASE_URL, IcrAppsClient } from "./Client.js"
import { Installation, InstallationPage } from "../api/Installations.js"
import type { Permissions } from "../api/Permissions.js"
import { codeOf, InvalidJwt, isProblem } from "../api/Problems.js"
import { AccessToken, InstallationAccessToken, TokenDescription } from "../api/Tokens.js"
import { type IcrAppsConfig, type IcrAppsTransport, layer } from "./IcrApps.js"
import { InstallationTokens } from "./InstallationTokens.js"

/** A failed call, as a plain `Error` carrying the tag and, for API problems, the SPEC §6 code. */
export class IcrAppsFailure extends Error {
  override readonly name = "IcrAppsFailure"
  constructor(
    /** The tagged error's `_tag` (`InvalidJwt`, `TransportError`, …). */
    readonly _tag: string,
    /** The SPEC §6 code, for API problems (`invalid_jwt`, …). */
    readonly code: string | undefined,
    /** The HTTP status, for API problems. */
    readonly status: number | undefined,
    message: string,
    /** The original tagged error. */
    override readonly cause: unknown,
    /** Why an App JWT was refused, for `invalid_jwt` (`invalid_signature`, `expired`, …). */
    readonly reason?: string | undefined
  ) {
    super(message)
  }
}

const toFailure = (cause: Cause.Cause<unknown>): IcrAppsFailure => {
  const e = Cause.squash(cause)
  const tag = typeof e === "object" && e !== null && "_tag" in e ? String((e as { _tag: unknown })._tag) : "Defect"
  const problem = isProblem(e) ? codeOf(e) : undefined
  const message = e instanceof Error ? e.message : "Unexpected failure"
  const reason = e instanceof InvalidJwt ? e.reason : undefined
  return new IcrAppsFailure(tag, problem?.code, problem?.status, message, e, reason)
}

const encodeInstallation = Schema.encodeSync(Installation)

/** Options of the Promise client: the SDK's, plus the `fetch` to use (default `globalThis.fetch`) and the cache. */
export interface PromiseClientOptions extends IcrAppsConfig, IcrAppsTransport {}

/**
 * Makes a Promise client. A base URL that is not an absolute `http(s)://` URL throws here, at once
 * (an `IcrAppsFailure` with `_tag` `InvalidBaseUrl`); an unusable key rejects the first call with an
 * `InvalidPrivateKey` failure.
 */
export const createIcrAppsClient = (options: PromiseClientOptions) => {
  const checked = Effect.runSyncExit(checkBaseUrl(options.baseUrl ?? DEFAULT_BASE_URL))
  if (Exit.isFailure(checked)) throw toFailure(checked.cause)
  const runtime = ManagedRuntime.make(layer(options))
  let built: Runtime.Runtime<IcrAppsClient | InstallationTokens | AuthenticatedClient> | undefined
  // The token service, once built: its synchronous peek answers a fresh cached token with no Effect run.
  let tokens: InstallationTokens["Type"] | undefined
  // The authenticated clients, once built: their fast path answers a cached-token GET with no Effect run.
  let clients: AuthenticatedClient["Type"] | undefined
  const settle = <A>(exit: Exit.Exit<A, unknown>): A => {
    if (Exit.isSuccess(exit)) return exit.value
    throw toFailure(exit.cause)
  }
  /**
   * Runs synchronously when it can (a cached token or JWT needs no I/O), so a cache hit costs no
   * scheduler round trip; anything that goes async is awaited on the same fiber.
   */
  const run = async <A, E>(
    effect: Effect.Effect<A, E, IcrAppsClient | InstallationTokens | AuthenticatedClient>
  ): Promise<A> => {
    built ??= settle(await Effect.runPromiseExit(runtime.runtimeEffect))
    const exit = Runtime.runSyncExit(built)(effect)
    if (Exit.isFailure(exit) && Cause.isDie(exit.cause)) {
      const defect = Cause.squash(exit.cause)
      if (Runtime.isAsyncFiberException(defect)) {
        return settle(await Runtime.runPromiseExit(built)(Fiber.join(defect.fiber as Fiber.Fiber<A, E>)))
      }
    }
    return settle(exit)
  }
  const client = <A, E>(f: (c: IcrAppsClient["Type"]) => Effect.Effect<A, E>) => run(Effect.flatMap(IcrAppsClient, f))
  const authenticated = <A, E>(f: (c: AuthenticatedClient["Type"]) => Effect.Effect<A, E>) =>
    run(Effect.flatMap(AuthenticatedClient, f))
  /** A stream of the SDK as an async iterator whose failures are {@link IcrAppsFailure}s. */
  async function* iterate<A, E>(
    stream: Stream.Stream<A, E, IcrAppsClient | InstallationTokens | AuthenticatedClient>
  ): AsyncGenerator<A> {
    built ??= settle(await Effect.runPromiseExit(runtime.runtimeEffect))
    for await (const item of Stream.toAsyncIterableRuntime(Stream.either(stream), built)) {
      if (Either.isLeft(item)) throw toFailure(Cause.fail(item.left))
      yield item.right
    }
  }
  /**
   * Any ICR endpoint, `"METHOD /path"` (`{name}` placeholders filled from `params`), with the app's
   * credential or, given `installationId`, that installation's token: resolves to the parsed JSON
   * body (`undefined` when empty) or rejects with an {@link IcrAppsFailure} (`code`, `status`).
   * Retries, the 401 refresh and the concurrency cap as in SPEC §10.
   */
  const request = (route: string, opts: RequestOptions = {}): Promise<unknown> => {
    // A cached token and a free permit: sent at once, no fiber (see AuthenticatedClient's unsafeRequest).
    const fast = clients?.unsafeRequest(route, opts)
    if (fast === undefined) {
      return authenticated((c) => {
        clients = c
        return c.request(route, opts)
      })
    }
    // Anything but a 2xx carries on from there: an answer handled as it is (a 401 refreshes the token
    // the fast path sent), the rest (a redirect, a network error) through the Effect path, not this one again.
    return fast.then((outcome) =>
      outcome._tag === "Done" ? outcome.body : authenticated((c) => c.requestFrom(route, opts, outcome))
    )
  }
  return {
    /** `POST /app/accessTokens` (optionally narrowed below the app's declared permissions), as the wire JSON. */
    createAppAccessToken: (opts: { permissions?: Permissions } = {}) =>
      client((c) => Effect.map(c.createAppAccessToken(opts), Schema.encodeSync(AccessToken))),
    /** `POST /app/installations/{id}/accessTokens`, as the wire JSON. */
    createInstallationAccessToken: (installationId: string, opts: { permissions?: Permissions } = {}) =>
      client((c) =>
        Effect.map(c.createInstallationAccessToken(installationId, opts), Schema.encodeSync(InstallationAccessToken))
      ),
    /** `GET /app/installations/token`. */
    describeAccessToken: (token: string) =>
      client((c) => Effect.map(c.describeAccessToken(token), Schema.encodeSync(TokenDescription))),
    /** `DELETE /app/installations/token`; the token is forgotten wherever this client cached it. */
    revokeAccessToken: (token: string) => authenticated((c) => c.revokeAccessToken(token)),
    /** `GET /app/installations?limit=&page=`. */
    listInstallations: (opts: { limit?: number; page?: number; cursor?: string } = {}) =>
      client((c) => Effect.map(c.listInstallations(opts), Schema.encodeSync(InstallationPage))),
    /** `GET /app/installations/{id}`. */
    getInstallation: (installationId: string) =>
      client((c) => Effect.map(c.getInstallation(installationId), Schema.encodeSync(Installation))),
    /** Every installation, following pages. */
    allInstallations: () =>
      client((c) =>
        Effect.map(Stream.runCollect(c.installations()), (chunk) =>
          Array.from(chunk, (i) => Schema.encodeSync(Installation)(i))
        )
      ),
    /** A cached installation token string (minted, reused, refreshed ahead of expiry). */
    getInstallationToken: async (
      installationId: string,
      opts: { permissions?: Permissions; refresh?: boolean } = {}
    ): Promise<string> => {
      if (tokens !== undefined && opts.refresh !== true) {
        const hit = tokens.unsafePeek(installationId, opts, Date.now())
        if (hit !== undefined) return Redacted.value(hit.token)
      }
      return run(
        Effect.flatMap(InstallationTokens, (t) => {
          tokens = t
          return Effect.map(t.get(installationId, opts), (cached) => Redacted.value(cached.token))
        })
      )
    },
    /**
     * Any ICR endpoint, `"METHOD /path"` (`{name}` placeholders filled from `params`), with the app's
     * credential or, given `installationId`, that installation's token: resolves to the parsed JSON
     * body (`undefined` when empty) or rejects with an {@link IcrAppsFailure} (`code`, `status`).
     * Retries, the 401 refresh and the concurrency cap as in SPEC §10.
     */
    request,
    /** Every item of a list endpoint (following `Link: rel="next"` or `nextCursor`), as an async iterator. */
    paginate: (route: string, opts: RequestOptions = {}): AsyncIterable<unknown> =>
      iterate(Stream.unwrap(Effect.map(AuthenticatedClient, (c) => c.paginate(route, opts)))),
    /**
     * Every installation, each with a `request` bound to its token: `for await (const { installation,
     * request } of icr.eachInstallation()) await request("GET /projects")`.
     */
    eachInstallation: (): AsyncIterable<{
      readonly installation: ReturnType<typeof encodeInstallation>
      readonly request: (route: string, opts?: Omit<RequestOptions, "installationId">) => Promise<unknown>
    }> =>
      iterate(
        Stream.map(Stream.unwrap(Effect.map(IcrAppsClient, (c) => c.installations())), (installation) => ({
          installation: encodeInstallation(installation),
          request: (route: string, opts: Omit<RequestOptions, "installationId"> = {}) =>
            request(route, { ...opts, installationId: installation.id })
        }))
      ),
    /** Revokes and evicts the cached installation token. */
    revokeInstallationToken: (installationId: string, opts: { permissions?: Permissions } = {}) =>
      run(Effect.flatMap(InstallationTokens, (t) => t.revoke(installationId, opts))),
    /** Releases the client's resources. */
    dispose: () => runtime.dispose()
  }
}

/** The Promise client. */
export type IcrAppsPromiseClient = ReturnType<typeof createIcrAppsClient>
