import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { makeWebHandler } from "./src/Issuer.js"
import * as TokenStore from "./src/TokenStore.js"
import * as Registry from "./src/Registry.js"
import * as Entropy from "./src/Entropy.js"
const h = makeWebHandler(Layer.mergeAll(TokenStore.layerMemory, Registry.layerMemory, Entropy.layer), {
  adminToken: Redacted.make("secret-admin")
})
const show = async (r: Response) =>
  console.log(r.status, JSON.stringify(Object.fromEntries(r.headers)), (await r.text()).slice(0, 300))
await show(await h.handler(new Request("http://x/healthz")))
await show(await h.handler(new Request("http://x/nope")))
await show(await h.handler(new Request("http://x/healthz", { method: "POST" })))
await show(await h.handler(new Request("http://x/app/accessTokens", { method: "POST" })))
await show(
  await h.handler(new Request("http://x/app/installations/abc", { headers: { authorization: "Bearer a.b.c" } }))
)
await show(await h.handler(new Request("http://x/healthz", { headers: { "x-icr-api-version": "2020-01-01" } })))
const { generateKeyPairSync } = await import("node:crypto")
const kp = generateKeyPairSync("rsa", { modulusLength: 2048 })
const pub = kp.publicKey.export({ type: "spki", format: "pem" })
const r = await h.handler(
  new Request("http://x/admin/apps", {
    method: "POST",
    headers: { authorization: "Bearer secret-admin", "content-type": "application/json" },
    body: JSON.stringify({ name: "app1", permissions: { organization_info: "VIEW" }, publicKey: pub })
  })
)
await show(r)
await show(
  await h.handler(
    new Request("http://x/admin/apps", {
      method: "POST",
      headers: { authorization: "Bearer secret-admin", "content-type": "application/json" },
      body: JSON.stringify({ name: "app1", permissions: { organization_infox: "VIEW" }, publicKey: pub })
    })
  )
)
await show(
  await h.handler(
    new Request("http://x/admin/apps", {
      method: "POST",
      headers: { authorization: "Bearer secret-admin", "content-type": "application/json" },
      body: "{bad"
    })
  )
)
await show(
  await h.handler(
    new Request("http://x/admin/apps", {
      method: "POST",
      headers: { authorization: "Bearer secret-admin", "content-type": "application/json" },
      body: "x".repeat(20000)
    })
  )
)
