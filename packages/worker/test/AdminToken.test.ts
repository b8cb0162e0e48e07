import { env } from "cloudflare:test"
import { afterEach, expect, it, vi } from "vitest"
import worker from "../src/index.js"

type IncomingRequest = Parameters<typeof worker.fetch>[0]

afterEach(() => {
  vi.restoreAllMocks()
})

// SPEC §5: an ADMIN_TOKEN shorter than 32 characters counts as not configured, and the worker says why in its log.
it("keeps /admin disabled (403 admin_disabled) with an ADMIN_TOKEN shorter than 32 characters, and logs why", async () => {
  const short = "a-short-operator-token"
  const lines: Array<string> = []
  for (const method of ["log", "info", "warn", "error"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: Array<unknown>) => {
      lines.push(args.map(String).join(" "))
    })
  }
  const res = await worker.fetch(
    new Request("http://icr.test/admin/apps", { headers: { authorization: `Bearer ${short}` } }) as IncomingRequest,
    { ...env, ADMIN_TOKEN: short }
  )
  expect(res.status).toBe(403)
  expect(((await res.json()) as { code: string }).code).toBe("admin_disabled")
  expect(lines.some((line) => /ADMIN_TOKEN is shorter than 32 characters/.test(line))).toBe(true)
  expect(lines.join("\n")).not.toContain(short)
  // The configured test token is long enough, and serves.
  expect(env.ADMIN_TOKEN!.length).toBeGreaterThanOrEqual(32)
  const ok = await worker.fetch(
    new Request("http://icr.test/admin/apps", {
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` }
    }) as IncomingRequest,
    env
  )
  expect(ok.status).toBe(200)
})
