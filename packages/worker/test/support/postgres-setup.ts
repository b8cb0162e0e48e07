/**
 * vitest globalSetup for the Node-side suites: one Postgres server per run (see postgres.ts), handed to
 * the tests as `inject("postgres")` and named once on the console and in .postgres-used, which `npm test`'s
 * summary quotes. A server that cannot be found or started fails the run here, before any suite.
 */
import { rmSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import type { TestProject } from "vitest/node"
import { findOrStartPostgres, type PostgresSource } from "./postgres.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** The run's server: `url` may CREATE DATABASE (use createTestDatabase from ./postgres.js). */
    postgres: { readonly url: string; readonly source: PostgresSource; readonly describe: string }
  }
}

const usedFile = fileURLToPath(new URL("../../.postgres-used", import.meta.url))

/** Finds or starts the server; the returned teardown stops one started here. */
export default async function setup({ provide }: Pick<TestProject, "provide">): Promise<() => Promise<void>> {
  // A failed run must not leave the previous run's line for the summary to quote.
  rmSync(usedFile, { force: true })
  const server = await findOrStartPostgres()
  provide("postgres", { url: server.url, source: server.source, describe: server.describe })
  console.log(`» Postgres for this run: ${server.describe}`)
  writeFileSync(usedFile, `${server.describe}\n`)
  return server.stop
}
