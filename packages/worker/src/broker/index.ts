/**
 * The token broker as a Cloudflare Worker (SPEC §8), configured by `wrangler.broker.jsonc`.
 *
 * **Service-binding callers.** A Worker bound to the broker is identified by the `props` of its
 * binding — `"services": [{ "binding": "BROKER", "service": "icr-apps-broker", "props": { "service":
 * "inventory-sync" } }]` in the *caller's* configuration — which Cloudflare hands to the broker as
 * `ctx.props`. Nothing in a request can set it: a request from the internet (or one a caller merely
 * forwards) has no props, so it can only authenticate with an identity token. The trust boundary is
 * the Cloudflare account: whoever may deploy a Worker bound to the broker may choose its `props`, as
 * they could read a shared secret from its configuration. A header such as `x-broker-service`,
 * "honoured when there is no `cf-connecting-ip`", was rejected: a caller that rebuilds a request
 * from an incoming one could pass an attacker's header through.
 *
 * No I/O at module load: the handler (and, on its first request, the SDK with the imported key and
 * the derived cache keys) is built once per bindings object, which in production is once per isolate.
 */
import { type BrokerBindings, makeHandler, type BrokerHandler } from "./Broker.js"

/** The broker's bindings (`wrangler.broker.jsonc`, plus its two secrets and the optional ISSUER binding). */
export interface BrokerEnv extends BrokerBindings {
  readonly BROKER_CACHE: KVNamespace
  readonly ISSUER?: Fetcher | undefined
  readonly CALLER_RATE_LIMITER?: RateLimit | undefined
  readonly ISSUER_RATE_LIMITER?: RateLimit | undefined
}

const handlers = new WeakMap<BrokerEnv, BrokerHandler>()

/** The service name in `ctx.props`, if the request came over a binding that set one. */
const serviceOf = (ctx: ExecutionContext | undefined): string | undefined => {
  const service = (ctx as { readonly props?: { readonly service?: unknown } } | undefined)?.props?.service
  return typeof service === "string" && service !== "" ? service : undefined
}

export default {
  fetch(request, env, ctx) {
    let handler = handlers.get(env)
    if (handler === undefined) {
      handler = makeHandler(env)
      handlers.set(env, handler)
    }
    return handler.handler(request as unknown as Request, { service: serviceOf(ctx) })
  }
} satisfies ExportedHandler<BrokerEnv>
