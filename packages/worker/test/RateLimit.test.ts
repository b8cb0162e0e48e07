import { env } from "cloudflare:test"
import { expect, it } from "vitest"
import worker from "../src/index.js"

type IncomingRequest = Parameters<typeof worker.fetch>[0]

// The RATE_LIMITER binding of wrangler.jsonc (600 per 60 s per client address), simulated by workerd.
it("answers 429 rate_limited with Retry-After once a client address passes the binding's limit", async () => {
  const ip = `192.0.2.${Math.floor(Math.random() * 250) + 1}`
  const send = (address: string) =>
    worker.fetch(
      new Request("http://icr.test/app/installations/token", {
        headers: { "cf-connecting-ip": address }
      }) as IncomingRequest,
      env
    )
  // The binding counts in fixed 60 s windows aligned to the epoch: start well inside one.
  const toBoundary = 60_000 - (Date.now() % 60_000)
  if (toBoundary < 15_000) await new Promise((resolve) => setTimeout(resolve, toBoundary + 250))
  let first429: Response | undefined
  let sent = 0
  while (first429 === undefined && sent < 700) {
    const res = await send(ip)
    sent++
    if (res.status === 429) first429 = res
    else expect(res.status).toBe(401)
  }
  expect(first429).toBeDefined()
  expect(sent).toBe(601)
  expect(first429!.headers.get("retry-after")).toBe("60")
  expect(((await first429!.json()) as { code: string }).code).toBe("rate_limited")
  expect((await send("198.51.100.200")).status).toBe(401)
}, 60_000)
