import { env } from "cloudflare:test"
import * as SqlRegistry from "@icr-apps/core/issuer/SqlRegistry"
import { registryContract } from "@icr-apps/testkit/RegistryContract"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as D1 from "../src/sql/d1.js"

// The registry contract on D1 in workerd, through the same SqlRegistry the worker serves with.
registryContract("D1 (workerd)", () => SqlRegistry.layer(D1.make(env.DB)), {
  afterAll,
  beforeAll,
  describe,
  expect,
  it
})
