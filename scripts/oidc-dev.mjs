#!/usr/bin/env node
// A local OIDC identity provider for trying the broker (README, "Broker"). Development only.
//
//   node scripts/oidc-dev.mjs [--port 8789]
//       serves, on http://127.0.0.1:PORT, the issuer's discovery document and JWKS (a fresh RS256 key
//       each run), and GET /token?sub=…&aud=…[&name=value…] → {"value": "<identity token>"}, the same
//       shape as GitHub Actions' ACTIONS_ID_TOKEN_REQUEST_URL. Other query parameters become claims.
//   node scripts/oidc-dev.mjs token --sub SUB --aud AUD [--port 8789] [--claim name=value …]
//       asks that server for a token and prints it alone (for `ID_TOKEN=$(…)`).
//
// The broker trusts it once BROKER_OIDC_ISSUERS lists http://127.0.0.1:PORT (http: is accepted only
// for loopback hosts). Tokens live 5 minutes; restart the server and the old ones stop verifying.
import { createSign, generateKeyPairSync, randomBytes } from "node:crypto"
import { createServer } from "node:http"
import { parseArgs } from "node:util"

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: "string", default: "8789" },
    sub: { type: "string" },
    aud: { type: "string" },
    claim: { type: "string", multiple: true, default: [] },
    ttl: { type: "string", default: "300" }
  }
})
const port = Number(values.port)
const issuer = `http://127.0.0.1:${port}`

if (positionals[0] === "token") {
  if (!values.sub || !values.aud) {
    console.error("usage: node scripts/oidc-dev.mjs token --sub SUB --aud AUD [--port 8789] [--claim name=value …]")
    process.exit(2)
  }
  const query = new URLSearchParams({ sub: values.sub, aud: values.aud, ttl: values.ttl })
  for (const claim of values.claim) {
    const at = claim.indexOf("=")
    if (at > 0) query.append(claim.slice(0, at), claim.slice(at + 1))
  }
  try {
    const response = await fetch(`${issuer}/token?${query}`)
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`)
    console.log((await response.json()).value)
  } catch (e) {
    console.error(`✗ no token from ${issuer} (is \`node scripts/oidc-dev.mjs\` running?): ${e.message}`)
    process.exit(1)
  }
} else if (positionals.length === 0 || positionals[0] === "serve") {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
  const kid = randomBytes(8).toString("hex")
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" }
  const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url")

  const sign = (claims) => {
    const input = `${b64url({ alg: "RS256", typ: "JWT", kid })}.${b64url(claims)}`
    return `${input}.${createSign("RSA-SHA256").update(input).sign(privateKey).toString("base64url")}`
  }

  const send = (res, status, body) => {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
    res.end(JSON.stringify(body))
  }

  createServer((req, res) => {
    const url = new URL(req.url ?? "/", issuer)
    if (req.method !== "GET") return send(res, 405, { error: "method not allowed" })
    if (url.pathname === "/.well-known/openid-configuration") {
      return send(res, 200, {
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks.json`,
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"]
      })
    }
    if (url.pathname === "/.well-known/jwks.json") return send(res, 200, { keys: [jwk] })
    if (url.pathname === "/token") {
      const sub = url.searchParams.get("sub")
      const aud = url.searchParams.get("aud") ?? url.searchParams.get("audience")
      if (!sub || !aud) return send(res, 400, { error: "give ?sub=…&aud=…" })
      const ttl = Math.min(3600, Math.max(1, Number(url.searchParams.get("ttl") ?? 300) || 300))
      const now = Math.floor(Date.now() / 1000)
      const claims = { iss: issuer, sub, aud, iat: now, nbf: now, exp: now + ttl, jti: randomBytes(8).toString("hex") }
      for (const [name, value] of url.searchParams) {
        if (!["sub", "aud", "audience", "ttl", "iss", "iat", "nbf", "exp"].includes(name)) claims[name] = value
      }
      console.log(`» issued an identity token: sub=${sub} aud=${aud}`)
      return send(res, 200, { value: sign(claims) })
    }
    send(res, 404, { error: "not found" })
  }).listen(port, "127.0.0.1", () => {
    console.log(`» local OIDC issuer on ${issuer} (development only; a fresh key each run)`)
    console.log(`  trust it:   BROKER_OIDC_ISSUERS='["${issuer}"]'`)
    console.log(
      `  a token:    curl -s '${issuer}/token?sub=repo:acme/inventory:ref:refs/heads/main&aud=http://127.0.0.1:8788'`
    )
  })
} else {
  console.error(
    "usage: node scripts/oidc-dev.mjs [serve] [--port 8789] | token --sub SUB --aud AUD [--claim name=value]"
  )
  process.exit(2)
}
