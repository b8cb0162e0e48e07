/**
 * The handlers of `/healthz` (liveness, usually answered before the router: see `Http.ts`) and
 * `/openapi.json` (which names the origin it is served from first).
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as Effect from "effect/Effect"
import { IcrAppsApi, openApiDocument } from "../api/Api.js"
import { originOf } from "./Config.js"

/** Handlers of `/healthz` and `/openapi.json`. */
export const SystemLive = HttpApiBuilder.group(IcrAppsApi, "system", (handlers) =>
  Effect.succeed(
    handlers
      .handle("healthz", () => Effect.succeed({ status: "ok" as const }))
      .handle("openapi", () => Effect.map(originOf, openApiDocument))
  )
)
