/**
 * What the testkit's conformance suites need of a test runner, so they run under whichever one
 * the project uses — vitest 3 or 4, or anything with the same four functions (jest, bun:test):
 * `issuerContract("mine", target, { describe, it, expect, beforeAll })`.
 */

/**
 * An `expect` with the matchers the suites use (`toBe`, `toEqual`, `toMatchObject`, …) and the
 * asymmetric ones (`expect.any`, `expect.stringMatching`, `expect.arrayContaining`); vitest's and
 * jest's both fit.
 */
export type Expect = ((actual: unknown, message?: string) => any) & { readonly [matcher: string]: any }

/** The four functions a suite is registered with. */
export interface TestRunner {
  readonly describe: (name: string, body: () => void) => unknown
  readonly it: (name: string, body: () => Promise<unknown> | unknown, timeout?: number) => unknown
  readonly beforeAll: (body: () => Promise<unknown> | unknown, timeout?: number) => unknown
  /** Optional: suites that hold a resource (a database connection) release it here when given. */
  readonly afterAll?: ((body: () => Promise<unknown> | unknown, timeout?: number) => unknown) | undefined
  readonly expect: Expect
}
