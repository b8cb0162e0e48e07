/**
 * The ICR Apps API issuer as a Cloudflare Worker. Bindings become the core's layers in
 * {@link layerFromEnv}; the handler is built on the first request (no I/O at module load) and
 * reused for the life of the isolate, so imported keys stay cached.
 */
import * as Entropy from "@icr-apps/core/Entropy"
import { type IssuerOptions, makeWebHandler, type WebHandler } from "@icr-apps/core/Issuer"
import type { Registry } from "@icr-apps/core/Registry"
import type { TokenStore } from "@icr-apps/core/TokenStore"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as D1Registry from "./D1Registry.js"
import * as KvTokenStore from "./KvTokenStore.js"

/** The worker's bindings: the generated `Env` plus the ADMIN_TOKEN secret. */
export interface WorkerEnv extends Env {
  readonly ADMIN_TOKEN?: string | undefined
}

/** The storage and entropy layers of the issuer, from the worker's bindings. */
export const layerFromEnv = (env: WorkerEnv): Layer.Layer<TokenStore | Registry | Entropy.Entropy> =>
  Layer.mergeAll(KvTokenStore.layer(env.TOKENS), D1Registry.layer(env.DB), Entropy.layer)

const seconds = (value: string | undefined, fallback: number): number => {
  const n = Number(value)
  return Number.isInteger(n) && n >= 60 ? n : fallback
}

/** The issuer's options, from the worker's vars and secrets. */
export const optionsFromEnv = (env: WorkerEnv): IssuerOptions => ({
  adminToken: env.ADMIN_TOKEN ? Redacted.make(env.ADMIN_TOKEN) : undefined,
  lifetimes: {
    appTokenSeconds: seconds(env.APP_TOKEN_TTL_SECONDS, 3600),
    installationTokenSeconds: seconds(env.INSTALLATION_TOKEN_TTL_SECONDS, 7200)
  },
  publicBaseUrl: env.PUBLIC_BASE_URL || undefined
})

/** One handler per bindings object: in production that is one per isolate. */
const handlers = new WeakMap<WorkerEnv, WebHandler>()

export default {
  fetch(request, env) {
    let handler = handlers.get(env)
    if (handler === undefined) {
      handler = makeWebHandler(layerFromEnv(env), optionsFromEnv(env))
      handlers.set(env, handler)
    }
    return handler.handler(request)
  }
} satisfies ExportedHandler<WorkerEnv>
