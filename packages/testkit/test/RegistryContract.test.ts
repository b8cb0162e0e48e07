import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Registry from "@icr-apps/core/issuer/Registry"
import { registryContract } from "../src/RegistryContract.js"

// The registry contract against the in-memory registry (the test kit's); SQL backends run it too.
registryContract("in memory", () => Registry.layerMemory, { afterAll, beforeAll, describe, expect, it })
