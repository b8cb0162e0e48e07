import { beforeAll, describe, expect, it } from "vitest"
import { makeFakeIssuer } from "../src/FakeIssuer.js"
import { sdkContract } from "../src/SdkContract.js"

// The SDK's conformance suite against the in-memory issuer (the same suite runs against the worker in workerd).
sdkContract(
  "in memory",
  () => {
    const issuer = makeFakeIssuer()
    const disabled = makeFakeIssuer({ adminToken: null })
    return {
      fetch: (request) => issuer.fetch(request),
      fetchWithoutAdmin: (request) => disabled.fetch(request),
      adminToken: issuer.adminToken
    }
  },
  { describe, it, expect, beforeAll }
)
