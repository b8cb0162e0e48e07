// One cold start, in a fresh Node process (run by workerd.ts, several times, interleaved):
//   node cold.mjs <bundle.mjs>
// Prints JSON: the module's evaluation (import of the wrangler bundle: parse, compile, top level),
// its first request (for the issuer: building the handler — layers, router — then answering) and its
// second (what a warm isolate pays), all on GET /healthz with stub bindings that are never touched.
import { pathToFileURL } from "node:url"

const bundle = process.argv[2]
const stub = new Proxy(
  {},
  {
    get: (_target, name) => () => {
      throw new Error(`storage touched on /healthz: ${String(name)}`)
    }
  }
)
const env = { TOKENS: stub, DB: stub, APP_TOKEN_TTL_SECONDS: "3600", INSTALLATION_TOKEN_TTL_SECONDS: "7200" }
const ctx = { waitUntil() {}, passThroughOnException() {} }

// Node loads its web platform (undici's Request/Response, WebCrypto) lazily on first use; workerd has
// it built in. Touch it first, so the figures below are the bundle's own.
await new Response(new Request("http://warm.local/", { method: "POST", body: "{}" }).body).text()
new Headers({ a: "b" }).set("c", "d")
crypto.randomUUID()
await crypto.subtle.digest("SHA-256", new TextEncoder().encode("warm"))
new URL("http://warm.local/a?b=c").searchParams.get("b")

const t0 = performance.now()
const mod = await import(pathToFileURL(bundle).href)
const t1 = performance.now()
const first = await mod.default.fetch(new Request("http://cold.local/healthz"), env, ctx)
await first.text()
const t2 = performance.now()
const second = await mod.default.fetch(new Request("http://cold.local/healthz"), env, ctx)
await second.text()
const t3 = performance.now()
if (first.status !== 200 || second.status !== 200) throw new Error(`healthz answered ${first.status}/${second.status}`)
console.log(JSON.stringify({ evaluate: t1 - t0, first: t2 - t1, second: t3 - t2 }))
