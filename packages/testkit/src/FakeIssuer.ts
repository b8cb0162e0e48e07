/**
 * The whole ICR Apps API in memory: the real core handlers over in-memory storage that obeys
 * production rules (KV's 60 s TTL floor, expiry by clock), with a movable server clock and fault
 * injection at the HTTP and storage levels. Use its `fetch` wherever a `fetch` is expected.
 */
import { Unavailable } from "@icr-apps/core/api/Problems"
import * as Entropy from "@icr-apps/core/issuer/Entropy"
import { layerSeeded } from "./Entropy.js"
import { makeWebHandler } from "@icr-apps/core/issuer/Issuer"
import * as RateLimiter from "@icr-apps/core/issuer/RateLimiter"
import * as Registry from "@icr-apps/core/issuer/Registry"
import * as TokenStore from "@icr-apps/core/issuer/TokenStore"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

/** One injected HTTP fault: a canned response, or a network error. */
export type HttpFault =
  | {
      readonly _tag: "Response"
      readonly status: number
      readonly headers?: Record<string, string>
      readonly body?: unknown
    }
  | { readonly _tag: "NetworkError" }
  | { readonly _tag: "Delay"; readonly millis: number }

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
  /** The request reaches the issuer only after `millis` of real time. */
  delay: (millis: number): HttpFault => ({ _tag: "Delay", millis })
}

/** Options of a fake issuer. */
export interface FakeIssuerOptions {
  /** The operator token (default `test-admin-token`); `null` disables the operator API. */
  readonly adminToken?: string | null
  /** A fixed seed for token and id generation (default: the platform CSPRNG). */
  readonly seed?: number
  /**
   * The issuer's notion of "now" in epoch ms (default `Date.now`). Pass a test clock's
   * `unsafeCurrentTimeMillis` to move the issuer and the code under test together.
   */
  readonly now?: () => number
  /** Limit requests per client (`cf-connecting-ip`), as the worker's rate-limiting binding does. */
  readonly rateLimit?: { readonly limit: number; readonly periodSeconds: number }
  /** Token lifetimes in seconds. */
  readonly lifetimes?: { readonly appTokenSeconds: number; readonly installationTokenSeconds: number }
}

/** A fake issuer. */
export interface FakeIssuer {
  /** Sends a request to the issuer (through any queued faults). */
  readonly fetch: (input: Request | string | URL, init?: RequestInit) => Promise<Response>
  /** The operator token. */
  readonly adminToken: string
  /** Moves the issuer's clock relative to real time (positive = the server is ahead). */
  readonly setClockOffset: (millis: number) => void
  /** Queues HTTP faults; each is consumed by one request, in order. */
  readonly inject: (...faults: ReadonlyArray<HttpFault>) => void
  /** Makes the next `n` storage operations fail (the issuer answers 503 `unavailable`). */
  readonly failStorage: (n: number) => void
  /** Every request the issuer received (method and path), in order, faults included. */
  readonly requests: ReadonlyArray<{ readonly method: string; readonly path: string }>
  /** Every value written to token storage, as text (for the plaintext-token scan). */
  readonly storageWrites: () => ReadonlyArray<string>
  /**
   * Calls the operator API with the admin token and returns the JSON answer (undefined for 204);
   * rejects on any other status. For arranging apps, keys and installations in tests.
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

/** Makes a fake issuer. */
export const makeFakeIssuer = (options: FakeIssuerOptions = {}): FakeIssuer => {
  let clockOffset = 0
  const baseNow = options.now ?? Date.now
  const now = () => baseNow() + clockOffset
  let storageFailures = 0
  const faults: Array<HttpFault> = []
  const requests: Array<{ method: string; path: string }> = []
  const writes: Array<string> = []
  const adminToken = options.adminToken === null ? "" : (options.adminToken ?? "test-admin-token")

  const maybeFail = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Unavailable, R> =>
    Effect.suspend((): Effect.Effect<A, E | Unavailable, R> => {
      if (storageFailures > 0) {
        storageFailures--
        return Effect.fail(new Unavailable({ detail: "Storage is unavailable (injected)", retryAfter: 1 }))
      }
      return effect
    })

  const store = Layer.effect(
    TokenStore.TokenStore,
    Effect.map(TokenStore.TokenStore, (inner) => ({
      put: (digest: string, token: Parameters<typeof inner.put>[1], ttl: number) =>
        maybeFail(
          Effect.zipRight(
            Effect.sync(() => writes.push(`${digest} ${JSON.stringify(token)}`)),
            inner.put(digest, token, ttl)
          )
        ),
      get: (digest: string) => maybeFail(inner.get(digest)),
      delete: (digest: string) => maybeFail(inner.delete(digest))
    }))
  ).pipe(Layer.provide(TokenStore.layerMemory))

  const registry = Layer.effect(
    Registry.Registry,
    Effect.map(Registry.Registry, (inner) => {
      const wrapped: Record<string, unknown> = {}
      for (const [name, f] of Object.entries(inner)) {
        wrapped[name] = (...args: Array<unknown>) =>
          maybeFail((f as (...a: Array<unknown>) => Effect.Effect<unknown>)(...args))
      }
      return wrapped as unknown as typeof inner
    })
  ).pipe(Layer.provide(Registry.layerMemory))

  const { handler } = makeWebHandler(
    Layer.mergeAll(
      store,
      registry,
      options.seed === undefined ? Entropy.layer : layerSeeded(options.seed),
      Layer.setClock(functionClock(now)),
      options.rateLimit === undefined ? Layer.empty : RateLimiter.layerMemory(options.rateLimit)
    ),
    {
      adminToken: adminToken === "" ? undefined : Redacted.make(adminToken),
      lifetimes: options.lifetimes
    }
  )

  const fetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request && init === undefined ? input : new Request(input, init)
    requests.push({ method: request.method, path: new URL(request.url).pathname })
    for (;;) {
      const fault = faults.shift()
      if (fault === undefined) return handler(request)
      switch (fault._tag) {
        case "NetworkError":
          throw new TypeError("fetch failed (injected network error)")
        case "Delay":
          await new Promise((resolve) => setTimeout(resolve, fault.millis))
          continue
        case "Response":
          return new Response(fault.body === undefined ? null : JSON.stringify(fault.body), {
            status: fault.status,
            headers: { date: new Date(now()).toUTCString(), ...fault.headers }
          })
      }
    }
  }

  const admin = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://icr.test${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    if (!res.ok) throw new Error(`admin ${method} ${path} answered ${res.status}: ${await res.text()}`)
    return res.status === 204 ? undefined : res.json()
  }

  return {
    fetch,
    admin,
    adminToken,
    setClockOffset: (millis) => {
      clockOffset = millis
    },
    inject: (...more) => {
      faults.push(...more)
    },
    failStorage: (n) => {
      storageFailures = n
    },
    requests,
    storageWrites: () => [...writes]
  }
}
