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
import * as IcrApps from "@icr-apps/core/sdk/IcrApps"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import { layerSeeded } from "./Entropy.js"
import { type AppKeyPair, generateAppKeyPair } from "./Keys.js"

/** One injected HTTP fault: a canned response, a network error, a delay, or a script run first. */
export type HttpFault =
  | {
      readonly _tag: "Response"
      readonly status: number
      readonly headers?: Record<string, string>
      readonly body?: unknown
    }
  | { readonly _tag: "NetworkError" }
  | { readonly _tag: "Delay"; readonly millis: number }
  | { readonly _tag: "Script"; readonly run: (request: MatchedRequest, issuer: InMemoryIssuer) => Promise<void> }

/** Faults to inject. */
export const Fault = {
  /** A canned problem response with `status` (and `Retry-After` when given). */
  status: (status: number, options: { readonly retryAfter?: string; readonly code?: string } = {}): HttpFault => ({
    _tag: "Response",
    status,
    headers: {
      "content-type": "application/problem+json",
      ...(options.retryAfter !== undefined ? { "retry-after": options.retryAfter } : {})
    },
    body: {
      type: `urn:icr:problem:${options.code ?? "injected"}`,
      title: "Injected fault",
      status,
      code: options.code ?? (status === 429 ? "rate_limited" : status === 503 ? "unavailable" : "internal"),
      detail: "Injected by @icr-apps/testkit"
    }
  }),
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

  const fetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request && init === undefined ? input : new Request(input, init)
    const started = now()
    const matched = describe(request)
    const body = await bodyOf(request)
    // Logged on arrival (so a request still in flight is counted), completed when answered.
    const entry: { -readonly [K in keyof LoggedRequest]: LoggedRequest[K] } = {
      ...matched,
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
        const response = new Response(fault.body === undefined ? null : JSON.stringify(fault.body), {
          status: fault.status,
          headers: { date: new Date(now()).toUTCString(), ...fault.headers }
        })
        record(response.status, await codeOf(response), applied)
        return response
      }
      if (fault._tag === "Delay") await sleep(fault.millis)
      else await fault.run(matched, issuer)
    }
    const response = await handler(request)
    record(response.status, await codeOf(response), applied)
    return response
  }

  /** The operator API straight to the handler: no faults, no log. */
  const admin = async (method: string, path: string, body?: unknown) => {
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

/** Options of {@link layer}: the issuer's, and the SDK's (minus what the layer decides). */
export interface FakeIssuerLayerOptions extends Omit<FakeIssuerOptions, "now" | "sleep"> {
  /** The generated app's declared permissions (default: every permission at its highest level). */
  readonly permissions?: Permissions
  /**
   * SDK options: retry policy, refresh margin, JWT lifetime, … — and `privateKey`, to make the SDK
   * sign with a key the app does not have (the wrong-key case).
   */
  readonly sdk?: Partial<Omit<IcrApps.IcrAppsConfig, "appId" | "signer" | "baseUrl">>
}

const BASE_URL = "http://icr.test"

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
      const clock = yield* Effect.clock
      const runtime = yield* Effect.runtime<never>()
      const issuer = makeFakeIssuer({
        ...options,
        now: () => clock.unsafeCurrentTimeMillis(),
        sleep: (millis) => Runtime.runPromise(runtime)(Effect.sleep(millis))
      })
      const keys = yield* Effect.promise(() => generateAppKeyPair())
      const app = yield* Effect.promise(() =>
        issuer.arrange.createApp({
          publicKey: keys.publicPem,
          ...(options.permissions ? { permissions: options.permissions } : {})
        })
      )
      const service = Layer.succeed(FakeIssuer, { ...issuer, app, keys, baseUrl: BASE_URL })
      const sdk = IcrApps.layer({
        retry: { attemptTimeout: "1 hour" },
        privateKey: keys.privateKey,
        ...options.sdk,
        appId: app.id,
        baseUrl: BASE_URL,
        fetch: issuer.fetch as typeof globalThis.fetch
      })
      return Layer.merge(service, Layer.orDie(sdk))
    })
  )

/**
 * The fake issuer as an Effect service — `yield* FakeIssuer` in a test — with the app the layer
 * generated for the SDK; `FakeIssuer.layer()` provides it and the SDK's services.
 */
export class FakeIssuer extends Context.Tag("@icr-apps/testkit/FakeIssuer")<
  FakeIssuer,
  InMemoryIssuer & {
    /** The app the SDK's services speak for (created when the layer was built). */
    readonly app: App
    /** Its key pair. */
    readonly keys: AppKeyPair
    /** The base URL the SDK addresses the issuer by. */
    readonly baseUrl: string
  }
>() {
  /** See {@link makeLayer}. */
  static readonly layer = (options: FakeIssuerLayerOptions = {}) => makeLayer(options)
}

/** The issuer and the SDK in memory, as one layer (also `FakeIssuer.layer`). */
export const layer = FakeIssuer.layer
