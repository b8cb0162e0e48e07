import { env } from "cloudflare:test"
import { sdkContract } from "@icr-apps/testkit/SdkContract"
import { beforeAll, describe, expect, it } from "vitest"
import worker from "../src/index.js"

const withoutAdmin = { ...env, ADMIN_TOKEN: undefined }
type IncomingRequest = Parameters<typeof worker.fetch>[0]

// The SDK's conformance suite against the real worker: every SPEC §6 problem, and clock skew, end to end.
sdkContract(
  "worker (workerd, D1)",
  () => ({
    fetch: (request) => worker.fetch(request as IncomingRequest, env),
    fetchWithoutAdmin: (request) => worker.fetch(request as IncomingRequest, withoutAdmin),
    adminToken: env.ADMIN_TOKEN!
  }),
  { describe, it, expect, beforeAll }
)
