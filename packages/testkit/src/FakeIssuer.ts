/**
 * The whole ICR Apps API in memory: the real core handlers over in-memory storage that obeys
 * production rules (the D1 registry's, expiry by clock), with a movable server clock, typed
 * arrange helpers, aimed and scripted faults, and a full request log.
 *
 * Two ways in: `makeFakeIssuer()` for Promise code (its `fetch` goes wherever a `fetch` does), and
 * `FakeIssuer.layer()` for Effect code — the issuer as a service, plus the SDK's own services
 * wired to it for a generated app, all on Effect's `Clock` so `TestClock` drives token expiry,
 * refresh, backoff and fault delays.
 */
import { App, AppKey } from "@icr-apps/core/api/Apps"
import { Installation } from "@icr-apps/core/api/Installations"
import type { Permissions } from "@icr-apps/core/api/Permissions"
import { type RouteName, routeOf } from "@icr-apps/core/api/Routes"
import * as AuditLog from "@icr-apps/core/issuer/AuditLog"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { makeWebHandler } from "@icr-apps/core/issuer/Issuer"
import * as RateLimiter from "@icr-apps/core/issuer/RateLimiter"
import * as Registry from "@icr-apps/core/issuer/Registry"
import { importPrivateKey, type JwtSigner, JwtSigningFailed } from "@icr-apps/core/sdk/AppJwt"
import { IcrAppsHttpClient, type RetryOptions } from "@icr-apps/core/sdk/Client"
import * as IcrApps from "@icr-apps/core/sdk/IcrApps"
import * as TokenCache from "@icr-apps/core/sdk/TokenCache"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import { layerSeeded } from "./Entropy.js"
import { type HttpFault, renderFault } from "./Faults.js"
import { testOnlyKeyPair } from "./Fixtures.js"
import { type AppKeyPair, generateAppKeyPair } from "./Keys.js"
import { trackRealWork, waitingOnClock } from "./TestTime.js"

export {
  Fault,
  type HttpFault,
  PROBLEM_CODES,
  type ProblemClass,
  type ProblemCode,
  type ProblemFields
} from "./Faults.js"

/** The name of an endpoint of the API definition (`createInstallationAccessToken`, `listInstallations`, …). */
export type { RouteName }

/** Which credential a request carried (never the credential itself). */
export type CredentialKind = "app_jwt" | "access_token" | "admin_token" | "other" | "none"

/** What a fault is matched against: a request as the issuer reads it. */
export interface MatchedRequest {
  readonly method: string
  /** The full URL, query included. */
  readonly url: string
  readonly path: string
  /** The endpoint it reaches, when it reaches one. */
  readonly route: RouteName | undefined
  readonly credential: CredentialKind
  /** The installation named in the path, lower-cased. */
  readonly installationId: string | undefined
  /** The app, from an App JWT's `iss` (read, not verified). */
  readonly appId: string | undefined
}

/** One request in the log. */
export interface LoggedRequest extends MatchedRequest {
  /**
   * The request's headers, names lower-cased; a credential is never kept: `authorization` reads
   * `Bearer <app_jwt>` (or `<access_token>`, `<admin_token>`, …: the kind, never the value).
   */
  readonly headers: Readonly<Record<string, string>>
  /** The answer's headers (empty for an injected network error, or while the request is in flight). */
  readonly responseHeaders: Readonly<Record<string, string>>
  /** The JSON body (or its text when it is not JSON; `undefined` when there is none). */
  readonly body: unknown
  /** The answer's status (0 for an injected network error, or while the request is in flight). */
  readonly status: number
  /** The problem `code` of an error answer. */
  readonly code: string | undefined
  /** From arrival to answer, on the issuer's clock. */
  readonly durationMillis: number
  /** The injected fault that answered or delayed it, if any. */
  readonly fault: HttpFault["_tag"] | undefined
}

/** Which requests a fault applies to. Every field given must match. */
export interface FaultMatch {
  readonly method?: string | undefined
  /** An endpoint name, or a pattern of the path. */
  readonly route?: RouteName | RegExp | undefined
  readonly installationId?: string | undefined
  readonly appId?: string | undefined
  /** Let this many matching requests through first (the 2nd mint: `skip: 1`). Default 0. */
  readonly skip?: number | undefined
  /** Fire this many times, then retire (default 1; `Infinity` for every match). */
  readonly times?: number | undefined
}

/** Options of a fake issuer. */
export interface FakeIssuerOptions {
  /**
   * The operator token (default `test-admin-token-of-at-least-32-characters`); `null` disables the
   * operator API, and so does one shorter than 32 characters, as in the worker (SPEC §5).
   */
  readonly adminToken?: string | null
  /** A fixed seed for token and id generation (default: the platform CSPRNG). */
  readonly seed?: number
  /**
   * The issuer's notion of "now" in epoch ms (default `Date.now`). Pass a test clock's
   * `unsafeCurrentTimeMillis` to move the issuer and the code under test together.
   */
  readonly now?: () => number
  /** How `Fault.delay` waits (default: real time). `FakeIssuer.layer` waits on Effect's `Clock`. */
  readonly sleep?: (millis: number) => Promise<void>
  /** Limit requests per client (`cf-connecting-ip`), as the worker's rate-limiting binding does. */
  readonly rateLimit?: { readonly limit: number; readonly periodSeconds: number }
  /** Token lifetimes in seconds. */
  readonly lifetimes?: { readonly appTokenSeconds: number; readonly installationTokenSeconds: number }
}

/** Typed arrange helpers: the operator API, without faults and outside the request log. */
export interface Arrange {
  /** Registers an app (a generated name and every permission unless told otherwise). */
  readonly createApp: (options: {
    readonly publicKey: string | JsonWebKey
    readonly name?: string
    readonly permissions?: Permissions
  }) => Promise<App>
  /** Installs an app in an organization (a random one unless told), with its declared permissions unless told. */
  readonly install: (
    appId: string,
    options?: { readonly organizationId?: string; readonly permissions?: Permissions }
  ) => Promise<Installation>
  readonly suspend: (installationId: string) => Promise<Installation>
  readonly unsuspend: (installationId: string) => Promise<Installation>
  readonly setPermissions: (installationId: string, permissions: Permissions) => Promise<Installation>
  readonly uninstall: (installationId: string) => Promise<void>
  readonly addKey: (appId: string, publicKey: string | JsonWebKey) => Promise<AppKey>
  readonly deleteKey: (appId: string, keyId: string) => Promise<void>
}

/** The issuer in memory, as Promise code uses it. */
export interface InMemoryIssuer {
  /** Sends a request to the issuer (through any faults that match it), and logs it. */
  readonly fetch: (input: Request | string | URL, init?: RequestInit) => Promise<Response>
  /** The operator token. */
  readonly adminToken: string
  /** Moves the issuer's clock relative to its base clock (positive = the server is ahead). */
  readonly setClockOffset: (millis: number) => void
  /** Typed arrange helpers (never faulted, never logged). */
  readonly arrange: Arrange
  /** Adds an aimed fault: applies to the requests `match` selects. */
  readonly fault: (match: FaultMatch, fault: HttpFault) => void
  /** Queues faults for the next requests, whatever they are, one each, in order. */
  readonly inject: (...faults: ReadonlyArray<HttpFault>) => void
  /** Makes the next `n` storage operations fail (the issuer answers 503 `unavailable`). */
  readonly failStorage: (n: number) => void
  /**
   * The requests the code under test sent, in order, faults included (arrange calls are not
   * among them), optionally only those to an endpoint, with a method, or for an installation.
   */
  readonly requests: (filter?: {
    readonly route?: RouteName | undefined
    readonly method?: string | undefined
    readonly installationId?: string | undefined
  }) => ReadonlyArray<LoggedRequest>
  /** How many installation tokens were minted for `installationId` (successful mints only). */
  readonly mints: (installationId: string) => number
  /** Forgets the request log and every fault. */
  readonly reset: () => void
  /** Every write to storage (apps, keys, installations, tokens) with its values, as text (for the plaintext-secret scan). */
  readonly storageWrites: () => ReadonlyArray<string>
  /**
   * Every audit event the issuer emitted (SPEC §5: mints, revocations, kill switches, operator
   * changes — arrange calls included), oldest first; the worker writes the same events to its log.
   */
  readonly auditEvents: () => ReadonlyArray<AuditLog.AuditEvent>
  /**
   * Calls the operator API with the admin token and returns the JSON answer (undefined for 204);
   * rejects on any other status. Prefer {@link Arrange}; this reaches what it does not cover.
   */
  readonly admin: (method: string, path: string, body?: unknown) => Promise<any>
}

/** A clock that reads `now()`. */
const functionClock = (now: () => number): Clock.Clock => {
  const base = Clock.make()
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: now,
    currentTimeMillis: Effect.sync(now),
    unsafeCurrentTimeNanos: () => BigInt(Math.floor(now())) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(Math.floor(now())) * 1_000_000n),
    sleep: (duration: Duration.Duration) => base.sleep(duration)
  }
}

const uuidIn = /\/installations\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(\/|$)/i

const credentialOf = (authorization: string | null, adminToken: string): CredentialKind => {
  const value = authorization?.replace(/^Bearer\s+/i, "").trim()
  if (!value) return "none"
  if (value.startsWith("crs_")) return "access_token"
  if (adminToken !== "" && value === adminToken) return "admin_token"
  return value.split(".").length === 3 ? "app_jwt" : "other"
}

/** Headers that carry a credential (their value is never logged). */
const SECRET_HEADERS = new Set(["authorization", "cookie", "proxy-authorization", "x-admin-token", "x-api-key"])

const redactedHeaders = (headers: Headers, credential: CredentialKind): Record<string, string> => {
  const out: Record<string, string> = {}
  headers.forEach((value, name) => {
    out[name] = !SECRET_HEADERS.has(name)
      ? value
      : name === "authorization" && /^Bearer\s/i.test(value)
        ? `Bearer <${credential}>`
        : "<redacted>"
  })
  return out
}

const issuerOf = (authorization: string | null): string | undefined => {
  const payload = authorization?.replace(/^Bearer\s+/i, "").split(".")[1]
  if (payload === undefined) return undefined
  try {
    const iss = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")))?.iss
    return typeof iss === "string" || typeof iss === "number" ? String(iss) : undefined
  } catch {
    return undefined
  }
}

const matches = (match: FaultMatch, request: MatchedRequest): boolean =>
  (match.method === undefined || match.method.toUpperCase() === request.method) &&
  (match.route === undefined ||
    (typeof match.route === "string" ? match.route === request.route : match.route.test(request.path))) &&
  (match.installationId === undefined || match.installationId.toLowerCase() === request.installationId) &&
  (match.appId === undefined || match.appId === request.appId)

const decodeApp = Schema.decodeUnknownSync(App)
const decodeAppKey = Schema.decodeUnknownSync(AppKey)
const decodeInstallation = Schema.decodeUnknownSync(Installation)

/** Every permission at its highest level: what `arrange.createApp` declares unless told otherwise. */
const EVERY_PERMISSION: Permissions = {
  organization_info: "VIEW",
  organization_members: "VIEW",
  organization_projects: "VIEW",
  organization_warehouse: "WRITE",
  organization_inventory: "WRITE"
}

/** Makes a fake issuer. */
export const makeFakeIssuer = (options: FakeIssuerOptions = {}): InMemoryIssuer => {
  let clockOffset = 0
  const baseNow = options.now ?? Date.now
  const now = () => baseNow() + clockOffset
  const sleep = options.sleep ?? ((millis: number) => new Promise<void>((resolve) => setTimeout(resolve, millis)))
  let storageFailures = 0
  const queued: Array<HttpFault> = []
  let aimed: Array<{ readonly match: FaultMatch; readonly fault: HttpFault; seen: number; fired: number }> = []
  const log: Array<LoggedRequest> = []
  const writes: Array<string> = []
  const audit: Array<AuditLog.AuditEvent> = []
  const adminToken =
    options.adminToken === null ? "" : (options.adminToken ?? "test-admin-token-of-at-least-32-characters")
  let counter = 0

  const maybeFail = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Registry.StorageUnavailable, R> =>
    Effect.suspend((): Effect.Effect<A, E | Registry.StorageUnavailable, R> => {
      if (storageFailures > 0) {
        storageFailures--
        return Effect.fail(new Registry.StorageUnavailable())
      }
      return effect
    })

  /** The registry's writes: what `storageWrites` records (arguments as text), after any injected failure. */
  const writing = new Set([
    "createApp",
    "addKey",
    "deleteKey",
    "revokeAppTokens",
    "createInstallation",
    "updateInstallation",
    "deleteInstallation",
    "revokeInstallationTokens",
    "putToken",
    "revokeToken"
  ])
  const registry = Layer.effect(
    Registry.Registry,
    Effect.map(Registry.Registry, (inner) => {
      const wrapped: Record<string, unknown> = {}
      for (const [name, f] of Object.entries(inner)) {
        // Where a token will be stored is no storage call: it neither fails nor writes.
        if (name === "tokenShard") {
          wrapped[name] = f
          continue
        }
        const call = f as (...a: Array<unknown>) => Effect.Effect<unknown>
        wrapped[name] = (...args: Array<unknown>) =>
          maybeFail(
            writing.has(name)
              ? Effect.zipRight(
                  Effect.sync(() => writes.push(`${name} ${JSON.stringify(args)}`)),
                  call(...args)
                )
              : call(...args)
          )
      }
      return wrapped as unknown as typeof inner
    })
  ).pipe(Layer.provide(Registry.layerMemory))

  const { handler } = makeWebHandler(
    Layer.mergeAll(
      registry,
      options.seed === undefined ? Entropy.layer : layerSeeded(options.seed),
      Layer.setClock(functionClock(now))
    ),
    {
      adminToken: adminToken === "" ? undefined : Redacted.make(adminToken),
      lifetimes: options.lifetimes,
      auditLog: AuditLog.layerMemory(audit),
      rateLimiter: options.rateLimit === undefined ? undefined : RateLimiter.layerMemory(options.rateLimit)
    }
  )

  /** The fault this request meets, if any: aimed faults first, then the queue. */
  const faultFor = (request: MatchedRequest): HttpFault | undefined => {
    for (const entry of aimed) {
      if (!matches(entry.match, request)) continue
      entry.seen++
      if (entry.seen <= (entry.match.skip ?? 0) || entry.fired >= (entry.match.times ?? 1)) continue
      entry.fired++
      return entry.fault
    }
    return queued.shift()
  }

  const describe = (request: Request): MatchedRequest => {
    const url = new URL(request.url)
    const route = routeOf(request.method, url.pathname)?.name
    const authorization = request.headers.get("authorization")
    const credential = credentialOf(authorization, adminToken)
    return {
      method: request.method,
      url: url.href,
      path: url.pathname,
      route,
      credential,
      installationId: uuidIn.exec(url.pathname)?.[1]?.toLowerCase(),
      appId: credential === "app_jwt" ? issuerOf(authorization) : undefined
    }
  }

  const bodyOf = async (request: Request): Promise<unknown> => {
    const text = await request.clone().text()
    if (text === "") return undefined
    try {
      return JSON.parse(text)
    } catch {
      return text
    }
  }

  const codeOf = async (response: Response): Promise<string | undefined> => {
    if (response.status < 400) return undefined
    try {
      const code = ((await response.clone().json()) as { code?: unknown }).code
      return typeof code === "string" ? code : undefined
    } catch {
      return undefined
    }
  }

  const fetch = (input: Request | string | URL, init?: RequestInit): Promise<Response> =>
    trackRealWork(() => serve(input, init))

  const serve = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request && init === undefined ? input : new Request(input, init)
    const started = now()
    const matched = describe(request)
    const body = await bodyOf(request)
    // Logged on arrival (so a request still in flight is counted), completed when answered.
    const entry: { -readonly [K in keyof LoggedRequest]: LoggedRequest[K] } = {
      ...matched,
      headers: redactedHeaders(request.headers, matched.credential),
      responseHeaders: {},
      body,
      status: 0,
      code: undefined,
      durationMillis: 0,
      fault: undefined
    }
    log.push(entry)
    const record = (status: number, code: string | undefined, fault: HttpFault["_tag"] | undefined) => {
      entry.status = status
      entry.code = code
      entry.fault = fault
      entry.durationMillis = now() - started
    }
    let applied: HttpFault["_tag"] | undefined
    for (;;) {
      const fault = faultFor(matched)
      if (fault === undefined) break
      applied = fault._tag
      if (fault._tag === "NetworkError") {
        record(0, undefined, applied)
        throw new TypeError("fetch failed (injected network error)")
      }
      if (fault._tag === "Response") {
        const response = renderFault(fault, request, matched.route, now())
        record(response.status, await codeOf(response), applied)
        entry.responseHeaders = Object.fromEntries(response.headers)
        return response
      }
      if (fault._tag === "Delay") await waitingOnClock(sleep(fault.millis))
      else await fault.run(matched, issuer)
    }
    const response = await handler(request)
    record(response.status, await codeOf(response), applied)
    entry.responseHeaders = Object.fromEntries(response.headers)
    return response
  }

  /** The operator API straight to the handler: no faults, no log. */
  const admin = (method: string, path: string, body?: unknown) => trackRealWork(() => adminCall(method, path, body))
  const adminCall = async (method: string, path: string, body?: unknown) => {
    const res = await handler(
      new Request(`http://icr.test${path}`, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
    )
    if (!res.ok) throw new Error(`admin ${method} ${path} answered ${res.status}: ${await res.text()}`)
    return res.status === 204 ? undefined : res.json()
  }

  const patch = (installationId: string, body: unknown) =>
    admin("PATCH", `/admin/installations/${installationId}`, body).then(decodeInstallation)

  const arrange: Arrange = {
    createApp: async ({ publicKey, name, permissions }) =>
      decodeApp(
        await admin("POST", "/admin/apps", {
          name: name ?? `app-${(counter++).toString(36)}-${Math.floor(Math.random() * 36 ** 6).toString(36)}`,
          permissions: permissions ?? EVERY_PERMISSION,
          publicKey
        })
      ),
    install: async (appId, opts = {}) => {
      const permissions = opts.permissions ?? (await admin("GET", `/admin/apps/${appId}`)).permissions
      return decodeInstallation(
        await admin("POST", "/admin/installations", {
          appId,
          organizationId: opts.organizationId ?? crypto.randomUUID(),
          permissions
        })
      )
    },
    suspend: (installationId) => patch(installationId, { suspended: true }),
    unsuspend: (installationId) => patch(installationId, { suspended: false }),
    setPermissions: (installationId, permissions) => patch(installationId, { permissions }),
    uninstall: (installationId) => admin("DELETE", `/admin/installations/${installationId}`),
    addKey: async (appId, publicKey) => decodeAppKey(await admin("POST", `/admin/apps/${appId}/keys`, { publicKey })),
    deleteKey: (appId, keyId) => admin("DELETE", `/admin/apps/${appId}/keys/${keyId}`)
  }

  const issuer: InMemoryIssuer = {
    fetch,
    admin,
    arrange,
    adminToken,
    setClockOffset: (millis) => {
      clockOffset = millis
    },
    fault: (match, fault) => {
      aimed.push({ match, fault, seen: 0, fired: 0 })
    },
    inject: (...more) => {
      queued.push(...more)
    },
    failStorage: (n) => {
      storageFailures = n
    },
    requests: (filter = {}) =>
      log.filter(
        (r) =>
          (filter.route === undefined || r.route === filter.route) &&
          (filter.method === undefined || r.method === filter.method.toUpperCase()) &&
          (filter.installationId === undefined || r.installationId === filter.installationId.toLowerCase())
      ),
    mints: (installationId) =>
      log.filter(
        (r) =>
          r.route === "createInstallationAccessToken" &&
          r.status === 200 &&
          r.installationId === installationId.toLowerCase()
      ).length,
    reset: () => {
      log.length = 0
      queued.length = 0
      aimed = []
    },
    storageWrites: () => [...writes],
    auditEvents: () => [...audit]
  }
  return issuer
}

/** Options of {@link layer}: the issuer's, the SDK's (minus what the layer decides), and its transport. */
export interface FakeIssuerLayerOptions extends Omit<FakeIssuerOptions, "now" | "sleep"> {
  /** The generated app's declared permissions (default: every permission at its highest level). */
  readonly permissions?: Permissions
  /**
   * SDK options: retry policy, refresh margin, JWT lifetime, … — and `privateKey`, to make the SDK
   * sign with a key the app does not have (the wrong-key case). `retry` is merged over the kit's
   * {@link SDK_DEFAULTS} field by field: `{ maxAttempts: 2 }` keeps the kit's `attemptTimeout`.
   */
  readonly sdk?: Partial<Omit<IcrApps.IcrAppsConfig, "appId" | "signer" | "baseUrl">>
  /** The SDK's token cache (default: its in-memory LRU), e.g. `KvTokenCache.layer(kv)` over a test KV. */
  readonly cache?: Layer.Layer<TokenCache.TokenCache> | undefined
  /**
   * The SDK's `HttpClient`: a function of the kit's client (the one that reaches this issuer) that
   * returns the one the SDK sends with (your middleware: tracing, headers), or a whole client.
   */
  readonly httpClient?: HttpClient.HttpClient | ((issuer: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
  /**
   * The app's key pair: the fixed fixture key `testOnlyKeyPair(0)` by default (no RSA key
   * generation: fast), `"generate"` for a fresh one, or a pair of your own.
   */
  readonly keys?: AppKeyPair | "generate" | undefined
}

/**
 * What the kit sets in the SDK unless told otherwise: one attempt may take an hour, so a
 * `Fault.delay` of minutes is a slow answer, not a timeout (give `sdk.retry.attemptTimeout` to
 * test the SDK's own 10 s). Merged with `sdk.retry`, never replaced by it.
 */
export const SDK_DEFAULTS: { readonly retry: RetryOptions } = { retry: { attemptTimeout: "1 hour" } }

const BASE_URL = "http://icr.test"

/** A signer over WebCrypto whose work {@link runAdvancing} waits for (it is real asynchronous work). */
const trackedSigner = (key: CryptoKey, kid: string | undefined): JwtSigner => ({
  kid,
  sign: (data) =>
    Effect.tryPromise({
      try: () =>
        trackRealWork(() => crypto.subtle.sign({ name: "RSASSA-PKCS1-v1_5" }, key, new Uint8Array(data))).then(
          (signature) => new Uint8Array(signature)
        ),
      catch: () => new JwtSigningFailed({ detail: "WebCrypto refused to sign" })
    })
})

/**
 * The issuer in memory as a layer: the {@link FakeIssuer} service (arrange, faults, log) and the SDK's
 * services (`IcrAppsClient`, `InstallationTokens`, `AppJwt`) for an app it generates. Time is
 * Effect's `Clock` throughout — under `TestClock`, token expiry, refresh, backoff and
 * `Fault.delay` move only when the test moves the clock (see {@link runAdvancing}).
 */
const makeLayer = (
  options: FakeIssuerLayerOptions = {}
): Layer.Layer<FakeIssuer | IcrApps.IcrAppsServices, never, never> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      // The issuer reads the Clock of whoever calls it: every request the SDK sends and every
      // Effect arrange call binds it to the calling fiber's Clock (a test's TestClock, even when
      // the layer was built elsewhere); until the first, the Clock the layer was built with.
      let clock = yield* Effect.clock
      const useClock = (c: Clock.Clock) => {
        clock = c
      }
      const runtime = yield* Effect.runtime<never>()
      const issuer = makeFakeIssuer({
        ...options,
        now: () => clock.unsafeCurrentTimeMillis(),
        sleep: (millis) => Runtime.runPromise(runtime)(Effect.withClock(Effect.sleep(millis), clock))
      })
      const keys =
        options.keys === "generate"
          ? yield* Effect.promise(() => generateAppKeyPair())
          : (options.keys ?? (yield* Effect.promise(() => testOnlyKeyPair(0))))
      const app = yield* Effect.promise(() =>
        issuer.arrange.createApp({
          publicKey: keys.publicPem,
          ...(options.permissions ? { permissions: options.permissions } : {})
        })
      )
      const service = Layer.succeed(FakeIssuer, { ...issuer, app, keys, baseUrl: BASE_URL, useClock })
      const { privateKey, kid, retry, ...sdkOptions } = options.sdk ?? {}
      const signingKey = yield* Effect.orDie(importPrivateKey(privateKey ?? keys.privateKey))
      const fetch = issuer.fetch as typeof globalThis.fetch
      const kitClient = Layer.unwrapEffect(
        Effect.map(HttpClient.HttpClient, (c) =>
          Layer.succeed(
            IcrAppsHttpClient,
            HttpClient.transform(c, (send) =>
              Effect.zipRight(
                Effect.clockWith((current) => Effect.sync(() => useClock(current))),
                send
              )
            )
          )
        )
      ).pipe(Layer.provide(FetchHttpClient.layer), Layer.provide(Layer.succeed(FetchHttpClient.Fetch, fetch)))
      const httpClient =
        options.httpClient === undefined
          ? kitClient
          : typeof options.httpClient === "function"
            ? Layer.effect(
                IcrAppsHttpClient,
                Effect.map(IcrAppsHttpClient, options.httpClient as (c: HttpClient.HttpClient) => HttpClient.HttpClient)
              ).pipe(Layer.provide(kitClient))
            : Layer.succeed(IcrAppsHttpClient, options.httpClient)
      const sdk = IcrApps.layerWith({
        ...sdkOptions,
        retry: { ...SDK_DEFAULTS.retry, ...retry },
        signer: trackedSigner(signingKey, kid),
        appId: app.id,
        baseUrl: BASE_URL
      }).pipe(Layer.provide(Layer.merge(httpClient, options.cache ?? TokenCache.layerMemoryCache())))
      return Layer.merge(service, Layer.orDie(sdk))
    })
  )

/** The service {@link FakeIssuer} provides: the issuer, and the app the layer made for the SDK. */
export interface FakeIssuerService extends InMemoryIssuer {
  /** The app the SDK's services speak for (created when the layer was built). */
  readonly app: App
  /** Its key pair. */
  readonly keys: AppKeyPair
  /** The base URL the SDK addresses the issuer by. */
  readonly baseUrl: string
  /**
   * Binds the issuer's clock to `clock` (the kit does this on every request the SDK sends and every
   * Effect helper call, with the calling fiber's `Clock`).
   */
  readonly useClock: (clock: Clock.Clock) => void
}

/** The service, its clock bound to the calling fiber's (the tag is passed in: the class is not yet defined here). */
const bound = <I>(tag: Context.Tag<I, FakeIssuerService>): Effect.Effect<FakeIssuerService, never, I> =>
  Effect.flatMap(tag, (issuer) =>
    Effect.clockWith((clock) =>
      Effect.sync(() => {
        issuer.useClock(clock)
        return issuer
      })
    )
  )

type ArrangeEffects = {
  readonly [K in keyof Arrange]: (
    ...args: Parameters<Arrange[K]>
  ) => Effect.Effect<Awaited<ReturnType<Arrange[K]>>, never, FakeIssuer>
}

const arrangeKeys: ReadonlyArray<keyof Arrange> = [
  "createApp",
  "install",
  "suspend",
  "unsuspend",
  "setPermissions",
  "uninstall",
  "addKey",
  "deleteKey"
]

/**
 * The fake issuer as an Effect service — `yield* FakeIssuer` in a test — with the app the layer
 * generated for the SDK; `FakeIssuer.layer()` provides it and the SDK's services. Beside the
 * service's Promise helpers, the statics are the same as Effects: `yield* FakeIssuer.arrange.install(id)`,
 * `yield* FakeIssuer.fault(match, fault)`, `yield* FakeIssuer.requests(filter)`.
 */
export class FakeIssuer extends Context.Tag("@icr-apps/testkit/FakeIssuer")<FakeIssuer, FakeIssuerService>() {
  /** See {@link makeLayer}. */
  static readonly layer = (options: FakeIssuerLayerOptions = {}) => makeLayer(options)
  /** The arrange helpers as Effects (never faulted, never logged; a refusal is a defect: the test is wrong). */
  static readonly arrange: ArrangeEffects = Object.fromEntries(
    arrangeKeys.map((name) => [
      name,
      (...args: Array<unknown>) =>
        Effect.flatMap(bound(FakeIssuer), (issuer) =>
          Effect.promise(() => (issuer.arrange[name] as (...a: Array<unknown>) => Promise<unknown>)(...args))
        )
    ])
  ) as unknown as ArrangeEffects
  /** Adds an aimed fault (see {@link InMemoryIssuer.fault}). */
  static readonly fault = (match: FaultMatch, fault: HttpFault): Effect.Effect<void, never, FakeIssuer> =>
    Effect.flatMap(bound(FakeIssuer), (issuer) => Effect.sync(() => issuer.fault(match, fault)))
  /** Queues faults for the next requests (see {@link InMemoryIssuer.inject}). */
  static readonly inject = (...faults: ReadonlyArray<HttpFault>): Effect.Effect<void, never, FakeIssuer> =>
    Effect.flatMap(bound(FakeIssuer), (issuer) => Effect.sync(() => issuer.inject(...faults)))
  /** Makes the next `n` storage operations fail. */
  static readonly failStorage = (n: number): Effect.Effect<void, never, FakeIssuer> =>
    Effect.flatMap(bound(FakeIssuer), (issuer) => Effect.sync(() => issuer.failStorage(n)))
  /** The request log (see {@link InMemoryIssuer.requests}). */
  static readonly requests = (
    filter?: Parameters<InMemoryIssuer["requests"]>[0]
  ): Effect.Effect<ReadonlyArray<LoggedRequest>, never, FakeIssuer> =>
    Effect.flatMap(bound(FakeIssuer), (issuer) => Effect.sync(() => issuer.requests(filter)))
  /** Successful mints for an installation. */
  static readonly mints = (installationId: string): Effect.Effect<number, never, FakeIssuer> =>
    Effect.flatMap(bound(FakeIssuer), (issuer) => Effect.sync(() => issuer.mints(installationId)))
  /** Moves the issuer's clock against the SDK's (a skewed server). */
  static readonly setClockOffset = (millis: number): Effect.Effect<void, never, FakeIssuer> =>
    Effect.flatMap(bound(FakeIssuer), (issuer) => Effect.sync(() => issuer.setClockOffset(millis)))
  /** Forgets the log and the faults. */
  static readonly reset: Effect.Effect<void, never, FakeIssuer> = Effect.flatMap(bound(FakeIssuer), (issuer) =>
    Effect.sync(() => issuer.reset())
  )
}

/** The issuer and the SDK in memory, as one layer (also `FakeIssuer.layer`). */
export const layer = FakeIssuer.layer
