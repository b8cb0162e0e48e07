/**
 * The example resource Worker (SPEC §10), configured by `wrangler.resource.jsonc`: the routes of
 * `Resource.ts`, with the issuer reached through the `ISSUER` service binding (or `ISSUER_URL`).
 * No I/O at module load: the handler is built once per bindings object (once per isolate).
 */
import { makeResourceHandler } from "./Resource.js"

/** The example's bindings. */
export interface ResourceEnv {
  /** A service binding to the issuer Worker (`"services": [{ "binding": "ISSUER", "service": "icr-apps" }]`). */
  readonly ISSUER?: Fetcher | undefined
  /** The issuer's base URL, when there is no binding (`npm start` sets it to the local issuer). */
  readonly ISSUER_URL?: string | undefined
  /** Seconds a token's standing may be reused (default 0: every request asks the issuer). */
  readonly TOKEN_CACHE_SECONDS?: string | undefined
}

const handlers = new WeakMap<ResourceEnv, (request: Request) => Promise<Response>>()

export default {
  fetch(request, env) {
    let handler = handlers.get(env)
    if (handler === undefined) {
      const binding = env.ISSUER
      handler = makeResourceHandler({
        issuer: binding === undefined ? undefined : { fetch: (r) => binding.fetch(r) as unknown as Promise<Response> },
        issuerUrl: env.ISSUER_URL,
        tokenCacheSeconds: Number(env.TOKEN_CACHE_SECONDS ?? "0") || 0
      })
      handlers.set(env, handler)
    }
    return handler(request as unknown as Request) as unknown as Promise<globalThis.Response>
  }
} satisfies ExportedHandler<ResourceEnv>
