import { beforeAll, describe, expect, it } from "vitest"
import { issuerContract } from "../src/Contract.js"
import { makeFakeIssuer } from "../src/FakeIssuer.js"

// The conformance suite against the in-memory issuer (the same suite runs against the worker in workerd).
issuerContract(
  "in memory",
  () => {
    const issuer = makeFakeIssuer()
    const disabled = makeFakeIssuer({ adminToken: null })
    return {
      fetch: (request) => issuer.fetch(request),
      fetchWithoutAdmin: (request) => disabled.fetch(request),
      adminToken: issuer.adminToken,
      dumpStorage: async () => issuer.storageWrites(),
      auditEvents: async () => issuer.auditEvents()
    }
  },
  { describe, it, expect, beforeAll }
)
