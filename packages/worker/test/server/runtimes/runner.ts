/**
 * A test runner small enough to run the testkit's runner-neutral suites (`TestRunner`) under any
 * runtime — Deno, Bun, Node — with vitest's own matchers (`@vitest/expect` on chai), so a suite
 * asserts exactly the same there as under vitest. The suites are registered, then run in order; the
 * results come out as one JSON line (`{"results":[{"name","ok","error"}]}`) that a vitest test in
 * Node reads back and reports test by test (test/server/Runtimes.test.ts).
 */
import { chai, JestAsymmetricMatchers, JestChaiExpect, JestExtend } from "@vitest/expect"
import type { TestRunner } from "@icr-apps/testkit/TestRunner"

chai.use(JestExtend)
chai.use(JestChaiExpect)
chai.use(JestAsymmetricMatchers)

type Body = () => Promise<unknown> | unknown

interface Suite {
  readonly name: string
  readonly before: Array<Body>
  readonly after: Array<Body>
  readonly tests: Array<{ readonly name: string; readonly body: Body }>
  readonly suites: Array<Suite>
}

/** One test's outcome. */
export interface Result {
  readonly name: string
  readonly ok: boolean
  readonly error?: string | undefined
}

/** A runner to register suites with, and `run` to run them. */
export const makeRunner = (): TestRunner & {
  readonly run: () => Promise<ReadonlyArray<Result>>
  /** How many tests are registered (without running them). */
  readonly count: () => number
} => {
  const root: Suite = { name: "", before: [], after: [], tests: [], suites: [] }
  let current = root
  const describe = (name: string, body: () => void) => {
    const suite: Suite = { name, before: [], after: [], tests: [], suites: [] }
    current.suites.push(suite)
    const parent = current
    current = suite
    try {
      body()
    } finally {
      current = parent
    }
  }
  const run = async (suite: Suite, prefix: string, out: Array<Result>): Promise<void> => {
    const path = suite.name === "" ? prefix : prefix === "" ? suite.name : `${prefix} > ${suite.name}`
    try {
      for (const before of suite.before) await before()
    } catch (e) {
      // A failed set-up fails every test under it, by name, so none goes missing from the count.
      const each = (s: Suite, p: string): Array<Result> => [
        ...s.tests.map((t) => ({ name: `${p} > ${t.name}`, ok: false, error: `beforeAll failed: ${String(e)}` })),
        ...s.suites.flatMap((child) => each(child, `${p} > ${child.name}`))
      ]
      out.push(...each(suite, path))
      return
    }
    for (const test of suite.tests) {
      try {
        await test.body()
        out.push({ name: `${path} > ${test.name}`, ok: true })
      } catch (e) {
        out.push({
          name: `${path} > ${test.name}`,
          ok: false,
          error: e instanceof Error ? (e.stack ?? e.message) : String(e)
        })
      }
    }
    for (const child of suite.suites) await run(child, path, out)
    for (const after of suite.after) await after()
  }
  return {
    describe,
    it: (name, body) => {
      current.tests.push({ name, body })
    },
    beforeAll: (body) => {
      current.before.push(body)
    },
    afterAll: (body) => {
      current.after.push(body)
    },
    expect: chai.expect as unknown as TestRunner["expect"],
    run: async () => {
      const out: Array<Result> = []
      await run(root, "", out)
      return out
    },
    count: () => {
      const of = (suite: Suite): number => suite.tests.length + suite.suites.reduce((n, s) => n + of(s), 0)
      return of(root)
    }
  }
}

/** The line a runtime prints its results on, for the Node side to find among other output. */
export const RESULTS_PREFIX = "icr-suite-results "
