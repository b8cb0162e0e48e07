/**
 * The policy store's writes without a compare-and-set (SPEC §8): a PUT names the version it is
 * based on, and two writers of the same version never both stand.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import { decodePolicyArray } from "../../src/broker/Policies.js"
import * as PolicyStore from "../../src/broker/PolicyStore.js"

const ISSUER = "https://token.actions.githubusercontent.com"
const validate: PolicyStore.Validate = (p) => decodePolicyArray(p as Array<unknown>, [ISSUER], "policies")
const policy = (name: string) => [
  { name, identity: { issuer: ISSUER, sub: name }, installations: "*", permissions: { organization_info: "VIEW" } }
]

/** A KV namespace whose every read and write takes `ms`. */
const slowKv = (ms: number) => {
  const data = new Map<string, string>()
  const sleep = () => new Promise((r) => setTimeout(r, ms))
  return {
    data,
    kv: {
      get: async (k: string) => {
        await sleep()
        return data.get(k) ?? null
      },
      put: async (k: string, v: string) => {
        await sleep()
        data.set(k, v)
      },
      delete: async (k: string) => void data.delete(k)
    } as unknown as Parameters<typeof PolicyStore.make>[0]
  }
}

const store = (kv: Parameters<typeof PolicyStore.make>[0]) => PolicyStore.make(kv, { raw: [], policies: [] }, validate)
const put = (s: PolicyStore.PolicyStore, name: string, basedOn: number, now = Date.now()) =>
  Effect.runPromise(Effect.either(s.put(policy(name), basedOn, now)))
const nameIn = (text: string | undefined) =>
  (JSON.parse(text!) as { policies: Array<{ name: string }> }).policies[0]!.name

describe("PolicyStore.put", () => {
  it("two isolates writing version 1 at once: one is told 200, the other conflict, and the store holds the first", async () => {
    const { kv, data } = slowKv(5)
    const [a, b] = await Promise.all([put(store(kv), "a", 0), put(store(kv), "b", 0)])
    const outcomes = [a, b].map((r) => (Either.isRight(r) ? r.right.document.version : r.left._tag))
    expect(outcomes.sort()).toEqual([1, "Conflict"].sort())
    const winner = Either.isRight(a) ? "a" : "b"
    expect([nameIn(data.get("policies:current")), nameIn(data.get("policies:v1"))]).toEqual([winner, winner])
    // The loser's isolate reads the store again rather than keep its own document.
    const loser = store(kv)
    expect((await Effect.runPromise(loser.current(Date.now()))).policies.map((p) => p.name)).toEqual([winner])
  })

  it("refuses a change based on a version no longer in force, naming the one that is", async () => {
    const { kv } = slowKv(0)
    const s = store(kv)
    expect(Either.isRight(await put(s, "a", 0))).toBe(true)
    const stale = await put(store(kv), "b", 0)
    expect(Either.isLeft(stale) && stale.left._tag).toBe("Conflict")
    expect(Either.isLeft(stale) && stale.left.detail).toContain('If-Match: "1"')
    expect(Either.isRight(await put(s, "c", 1))).toBe(true)
  })

  it("a version claimed by a writer that never reached policies:current is taken over once abandoned", async () => {
    const { kv, data } = slowKv(0)
    const now = Date.now()
    // A writer that claimed version 1 and stopped before writing policies:current.
    data.set(
      "policies:v1",
      JSON.stringify({ version: 1, updatedAt: new Date(now).toISOString(), policies: policy("x") })
    )
    expect(Either.isLeft(await put(store(kv), "a", 0, now + 1000))).toBe(true)
    const later = await put(store(kv), "a", 0, now + PolicyStore.ABANDONED_SECONDS * 1000)
    expect(Either.isRight(later) && later.right.document.version).toBe(1)
    expect(nameIn(data.get("policies:current"))).toBe("a")
  })
})
