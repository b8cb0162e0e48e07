import { env } from "cloudflare:test"
import { appClaims, generateAppKeyPair, signRs256 } from "@icr-apps/testkit/Keys"
import { expect, it } from "vitest"
import worker from "../src/index.js"

type IncomingRequest = Parameters<typeof worker.fetch>[0]

/** The budgets of wrangler.jsonc's two `ratelimits` bindings, simulated by workerd. */
const ADDRESS_LIMIT = 600
const PRINCIPAL_LIMIT = 1200

const send = (path: string, options: { from?: string; token?: string; method?: string } = {}) => {
  const headers = new Headers()
  if (options.from !== undefined) headers.set("cf-connecting-ip", options.from)
  if (options.token !== undefined) headers.set("authorization", `Bearer ${options.token}`)
  return worker.fetch(
    new Request(`http://icr.test${path}`, { method: options.method ?? "GET", headers }) as IncomingRequest,
    env
  )
}

/** The bindings count in fixed windows aligned to the epoch: start well inside one. */
const freshWindow = async (needMillis: number) => {
  const toBoundary = 60_000 - (Date.now() % 60_000)
  if (toBoundary < needMillis) await new Promise((resolve) => setTimeout(resolve, toBoundary + 250))
}

/** Sends until the first 429 (at most `max`); every answer before it must be `expected`. */
const untilLimited = async (max: number, expected: number, next: () => Promise<Response>) => {
  for (let sent = 1; sent <= max; sent++) {
    const res = await next()
    if (res.status === 429) return { sent, res }
    expect(res.status).toBe(expected)
  }
  return { sent: max, res: undefined }
}

const randomHex = () => Math.floor(Math.random() * 0x10000).toString(16)

// RATE_LIMITER (600 per 60 s per client address), for requests that authenticate nobody.
it("answers 429 rate_limited with Retry-After once a client address passes its budget of failures", async () => {
  await freshWindow(15_000)
  const ip = `192.0.2.${Math.floor(Math.random() * 250) + 1}`
  const { sent, res } = await untilLimited(ADDRESS_LIMIT + 100, 401, () =>
    send("/app/installations/token", { from: ip })
  )
  expect(sent).toBe(ADDRESS_LIMIT + 1)
  expect(res!.headers.get("retry-after")).toBe("60")
  expect(((await res!.json()) as { code: string }).code).toBe("rate_limited")
  expect((await send("/app/installations/token", { from: "198.51.100.200" })).status).toBe(401)
  expect((await send("/healthz", { from: ip })).status).toBe(200)
}, 90_000)

it("an IPv6 client rotating through its /64 is limited as one address; the next /64 is not", async () => {
  await freshWindow(15_000)
  const prefix = `2001:db8:${randomHex()}:${randomHex()}`
  const rotate = () => `${prefix}:${randomHex()}:${randomHex()}:${randomHex()}:${randomHex()}`
  const { sent, res } = await untilLimited(ADDRESS_LIMIT + 100, 401, () =>
    send("/app/installations/token", { from: rotate() })
  )
  expect(sent).toBe(ADDRESS_LIMIT + 1)
  expect(((await res!.json()) as { code: string }).code).toBe("rate_limited")
  expect((await send("/app/installations/token", { from: `2001:db8:${randomHex()}:1::1` })).status).toBe(401)
}, 90_000)

// PRINCIPAL_RATE_LIMITER (1,200 per 60 s per app or installation): two apps behind one address (every
// Workers-hosted app calls from Cloudflare's shared egress) each get their own budget.
it("two apps behind one address do not starve each other, nor do failures from that address", async () => {
  // Apps get ids far from any other test file's (the bindings' counters are shared by every file).
  const base = 1_000_000_000 + Math.floor(Math.random() * 1_000_000_000)
  await env.DB.prepare("INSERT INTO apps (id, name, permissions, created_at, updated_at) VALUES (?, ?, '{}', 0, 0)")
    .bind(base, `rate-base-${base}`)
    .run()
  const keys = await generateAppKeyPair()
  const admin = (body: unknown) =>
    worker.fetch(
      new Request("http://icr.test/admin/apps", {
        method: "POST",
        headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(body)
      }) as IncomingRequest,
      env
    )
  const apps = await Promise.all(
    ["a", "b"].map(async (n) => {
      const created = await admin({ name: `rate-${n}-${base}`, permissions: {}, publicKey: keys.publicPem })
      expect(created.status).toBe(201)
      const { id } = (await created.json()) as { id: string }
      return { id, jwt: await signRs256(keys.privateKey, appClaims(id)) }
    })
  )
  const shared = `203.0.113.${Math.floor(Math.random() * 250) + 1}`
  await freshWindow(15_000)
  const appToken = async (jwt: string) => {
    const res = await send("/app/accessTokens", { method: "POST", token: jwt, from: shared })
    expect(res.status).toBe(200)
    return ((await res.json()) as { token: string }).token
  }
  const [a, b] = apps as [{ id: string; jwt: string }, { id: string; jwt: string }]
  // App A spends its whole budget (one mint, then uses of its app token), far past the address's budget.
  const aToken = await appToken(a.jwt)
  const spent = await untilLimited(PRINCIPAL_LIMIT + 100, 200, () =>
    send("/app/installations/token", { token: aToken, from: shared })
  )
  expect(spent.sent).toBe(PRINCIPAL_LIMIT)
  expect(spent.res!.headers.get("retry-after")).toBe("60")
  expect(((await spent.res!.json()) as { code: string }).code).toBe("rate_limited")
  expect((await send("/app/accessTokens", { method: "POST", token: a.jwt, from: shared })).status).toBe(429)
  // App B, from the same address, is served.
  const bToken = await appToken(b.jwt)
  expect((await send("/app/installations/token", { token: bToken, from: shared })).status).toBe(200)
  // Failures from that address exhaust the address's budget, not B's...
  const failures = await untilLimited(ADDRESS_LIMIT + 100, 401, () =>
    send("/app/installations/token", { token: `crs_${"0".repeat(48)}`, from: shared })
  )
  expect(failures.sent).toBe(ADDRESS_LIMIT + 1)
  // ...so B still is.
  expect((await send("/app/installations/token", { token: bToken, from: shared })).status).toBe(200)
}, 120_000)
