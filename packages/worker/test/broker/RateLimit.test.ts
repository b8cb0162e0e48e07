import { describe, expect, it } from "vitest"
import * as RateLimit from "../../src/broker/RateLimit.js"

/** The table size of the limiter (RateLimit.MAX_KEYS), written out: the test must not depend on the export. */
const MAX_KEYS = 10_000

describe("the broker's in-memory rate limiter", () => {
  it("never forgets an exhausted key to make room: a full table does not reset anyone's count", () => {
    const limiter = RateLimit.make(2)
    const now = 1_000_000
    for (let i = 0; i < 3; i++) limiter.take("victim", now)
    expect(limiter.take("victim", now).allowed).toBe(false)
    // An attacker fills the table with fresh keys (an IPv6 /48 has 65,536 /64s)…
    for (let i = 0; i < MAX_KEYS + 50; i++) limiter.take(`address-${i}`, now + 1)
    // …and the exhausted key is still exhausted.
    expect(limiter.take("victim", now + 2).allowed).toBe(false)
    expect(limiter.peek("victim", now + 2).allowed).toBe(false)
  })

  it("puts keys beyond the table on one shared overflow window", () => {
    const limiter = RateLimit.make(2)
    const now = 5_000_000
    for (let i = 0; i < MAX_KEYS; i++) limiter.take(`k-${i}`, now)
    // The overflow window has its own budget of 2, shared by every key that finds no room.
    expect(limiter.take("new-1", now).allowed).toBe(true)
    expect(limiter.take("new-2", now).allowed).toBe(true)
    expect(limiter.take("new-3", now).allowed).toBe(false)
    expect(limiter.peek("new-4", now).allowed).toBe(false)
    // Once the windows have finished, a sweep makes room again: keys get their own windows.
    const later = now + 61_000
    expect(limiter.take("new-5", later).allowed).toBe(true)
    expect(limiter.take("new-5", later).allowed).toBe(true)
    expect(limiter.take("new-6", later).allowed).toBe(true)
    expect(limiter.take("new-6", later).allowed).toBe(true)
  })

  it("sweeps at most once a second, so a flood of new keys costs linear work", () => {
    const limiter = RateLimit.make(5)
    const now = 9_000_000
    for (let i = 0; i < MAX_KEYS; i++) limiter.take(`open-${i}`, now)
    // 20,000 more keys in the same millisecond: no window has finished, and a sweep per key would
    // walk 10,000 windows 20,000 times (200 million steps). At most one sweep: well under a second.
    const started = performance.now()
    for (let i = 0; i < 20_000; i++) limiter.take(`flood-${i}`, now)
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it("charges a cost of several units at once", () => {
    const limiter = RateLimit.make(10)
    expect(limiter.take("lister", 0, 10).allowed).toBe(true)
    expect(limiter.take("lister", 0).allowed).toBe(false)
  })
})
