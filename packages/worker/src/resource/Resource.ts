/**
 * An example resource server that accepts ICR access tokens (SPEC §10), as a plain `fetch` handler
 * (the Worker entry is `index.ts`; any runtime can serve it). Each route says what it requires and
 * `requireToken` checks it against the issuer:
 *
 * | route | requires |
 * |---|---|
 * | `GET /organizations/{organizationId}/inventory` | an installation token of that organization with `organization_inventory: VIEW` |
 * | `POST /organizations/{organizationId}/inventory` | the same with `REQUEST` (a stock request `{ "item", "quantity"? }`) |
 * | `GET /projects` | an app token or an installation token |
 *
 * `/app/*` and `/healthz` are forwarded to the issuer, so an app sees one origin as in production.
 * The inventory is in memory (per isolate): this is an example of the checks, not a store.
 */
import { API_VERSION } from "@icr-apps/core/api/Primitives"
import { MAX_BODY_BYTES, readCapped } from "@icr-apps/core/edge/Body"
import { makeRequireToken } from "@icr-apps/core/resource/RequireToken"
import type { FetchLike } from "@icr-apps/core/resource/TokenStanding"

/** What the example needs: the issuer (a service binding, or a URL) and how long a standing may be reused. */
export interface ResourceConfig {
  /** A service binding to the issuer (wins over `issuerUrl`). */
  readonly issuer?: FetchLike | undefined
  /** The issuer's base URL, when there is no binding. */
  readonly issuerUrl?: string | undefined
  /** Seconds a token's standing may be reused (default 0: the issuer is asked on every request). */
  readonly tokenCacheSeconds?: number | undefined
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const headers = (extra: Record<string, string> = {}) => ({
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "x-icr-api-version": API_VERSION,
  ...extra
})
const json = (status: number, body: unknown, extra: Record<string, string> = {}) =>
  new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: headers({ "content-type": "application/json", ...extra })
  })
const problem = (status: number, code: string, title: string, detail: string, extra: Record<string, string> = {}) =>
  new Response(`${JSON.stringify({ type: `urn:icr:problem:${code}`, title, status, code, detail })}\n`, {
    status,
    headers: headers({ "content-type": "application/problem+json", ...extra })
  })

/** The demo projects every token may read. */
const PROJECTS = [
  { id: "5f0c6b7e-2a51-4c43-9d0e-6a8f3b1c2d01", name: "Mangrove restoration, Sundarbans" },
  { id: "5f0c6b7e-2a51-4c43-9d0e-6a8f3b1c2d02", name: "Cookstoves, Rwanda" }
]

/** A stock request, as `POST /organizations/{id}/inventory` records it. */
interface StockRequest {
  readonly id: string
  readonly organizationId: string
  readonly item: string
  readonly quantity: number
  readonly status: "requested"
  readonly requestedBy: { readonly appId: string; readonly installationId: string | undefined }
  readonly requestedAt: string
}

/** Headers a proxy never passes on: hop-by-hop ones, and the client's own claims about its address. */
const HOP_BY_HOP_AND_FORWARDING = [
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
  "proxy-connection",
  "host",
  "accept-encoding",
  "cookie",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
  "cf-connecting-ip",
  "true-client-ip"
] as const

const unreachable = () =>
  problem(503, "unavailable", "Service unavailable", "the issuer could not be reached; retry shortly", {
    "retry-after": "1"
  })

/** A path segment, percent-decoded, or undefined when its escapes are not UTF-8 (`%E0%A4%A`). */
const decodedOrUndefined = (segment: string): string | undefined => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

/** The body as text if it is at most `cap` bytes, declared and as read; else undefined. */
const readText = async (request: Request, cap: number): Promise<string | undefined> => {
  const declared = Number(request.headers.get("content-length") ?? "0")
  if (Number.isFinite(declared) && declared > cap) return undefined
  if (request.body === null) return ""
  const bytes = await readCapped(request.body, cap)
  return bytes === undefined ? undefined : new TextDecoder().decode(bytes)
}

/** Makes the example's handler over one issuer. */
export const makeResourceHandler = (config: ResourceConfig): ((request: Request) => Promise<Response>) => {
  const issuerBase = (config.issuerUrl ?? "").replace(/\/+$/, "")
  if (config.issuer === undefined && issuerBase === "") {
    throw new Error("the example resource needs an issuer: an ISSUER service binding or ISSUER_URL")
  }
  const issuer: FetchLike = config.issuer ?? { fetch: (request) => fetch(request) }
  const guard = makeRequireToken({ issuer: config.issuer ?? issuerBase, cacheSeconds: config.tokenCacheSeconds ?? 0 })
  const requests = new Map<string, Array<StockRequest>>()

  /** `/app/*` and `/healthz` go to the issuer unchanged (method, headers, body), its answer comes back unchanged. */
  const forward = (request: Request, url: URL) => {
    const headers = new Headers(request.headers)
    // Hop-by-hop headers end here (RFC 9110 §7.6.1), and so do client-written claims about where the
    // request came from: an issuer trusting x-forwarded-for (TRUST_PROXY) would otherwise count a
    // caller under any address it chose. Credentials other than Authorization are not the issuer's.
    for (const name of HOP_BY_HOP_AND_FORWARDING) headers.delete(name)
    for (const name of (request.headers.get("connection") ?? "").split(",")) {
      const token = name.trim()
      if (/^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(token)) headers.delete(token)
    }
    const answer = issuer.fetch(
      new Request(`${issuerBase === "" ? "https://issuer.internal" : issuerBase}${url.pathname}${url.search}`, {
        method: request.method,
        headers,
        body: request.method === "GET" || request.method === "HEAD" ? null : request.body,
        redirect: "manual",
        // Required by Node's fetch for a streamed body; ignored elsewhere.
        ...({ duplex: "half" } as object)
      })
    )
    // A Worker's fetch decodes the body it reads, and a Worker's response with Content-Encoding is
    // encoded again on the way out, whatever the caller accepts: pass the answer on decoded.
    // An issuer that cannot be reached is a 503 the caller can retry, not a thrown 500.
    return answer.then((response) => {
      if (!response.headers.has("content-encoding")) return response
      const plain = new Headers(response.headers)
      plain.delete("content-encoding")
      plain.delete("content-length")
      return new Response(response.body, { status: response.status, statusText: response.statusText, headers: plain })
    }, unreachable)
  }

  const readInventory = (organizationId: string) =>
    guard.route({ organizationId, permissions: { organization_inventory: "VIEW" } }, () =>
      json(200, { organizationId, items: requests.get(organizationId.toLowerCase()) ?? [] })
    )

  const requestStock = (organizationId: string) =>
    guard.route({ organizationId, permissions: { organization_inventory: "REQUEST" } }, async (request, token) => {
      // Read at most the cap: a larger body is refused without being buffered whole.
      const text = await readText(request, MAX_BODY_BYTES)
      if (text === undefined) {
        return problem(413, "payload_too_large", "Payload too large", "the body is over 16 KiB")
      }
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        return problem(400, "invalid_request", "Invalid request", "the body must be JSON")
      }
      const {
        item,
        quantity = 1,
        ...rest
      } = (typeof body === "object" && body !== null ? body : {}) as {
        item?: unknown
        quantity?: unknown
      }
      if (
        typeof item !== "string" ||
        item.length === 0 ||
        item.length > 200 ||
        typeof quantity !== "number" ||
        !Number.isInteger(quantity) ||
        quantity < 1 ||
        quantity > 1_000_000 ||
        Object.keys(rest).length > 0
      ) {
        return problem(
          400,
          "invalid_request",
          "Invalid request",
          'the body is { "item": string (1..200 characters), "quantity"?: integer 1..1000000 } and nothing else'
        )
      }
      const record: StockRequest = {
        id: crypto.randomUUID(),
        organizationId: organizationId.toLowerCase(),
        item,
        quantity,
        status: "requested",
        requestedBy: { appId: token.appId, installationId: token.installationId },
        requestedAt: new Date().toISOString()
      }
      const list = requests.get(record.organizationId) ?? []
      list.push(record)
      if (list.length > 1000) list.shift()
      requests.set(record.organizationId, list)
      return json(201, record)
    })

  const projects = guard.route({ kind: ["app", "installation"] }, () => json(200, { items: PROJECTS }))

  const notAllowed = (allow: string) =>
    problem(405, "method_not_allowed", "Method not allowed", `this path allows ${allow}`, { allow })

  return async (request) => {
    const url = new URL(request.url)
    const path = url.pathname
    if (path === "/healthz" || path.startsWith("/app/")) return forward(request, url)
    // SPEC §1, as the issuer answers it: a version this API does not serve is refused, not guessed at.
    const version = request.headers.get("x-icr-api-version")
    if (version !== null && version !== API_VERSION) {
      return problem(
        400,
        "unsupported_api_version",
        "Unsupported API version",
        `this resource serves x-icr-api-version ${API_VERSION}`
      )
    }
    if (path === "/projects") return request.method === "GET" ? projects(request) : notAllowed("GET")
    const inventory = /^\/organizations\/([^/]+)\/inventory$/.exec(path)
    if (inventory !== null) {
      const organizationId = decodedOrUndefined(inventory[1]!)
      if (organizationId === undefined || !uuid.test(organizationId)) {
        return problem(400, "invalid_request", "Invalid request", "organizationId must be a UUID")
      }
      if (request.method === "GET") return readInventory(organizationId)(request)
      if (request.method === "POST") return requestStock(organizationId)(request)
      return notAllowed("GET, POST")
    }
    return problem(404, "not_found", "Not found", `no route ${request.method} ${path}`)
  }
}
