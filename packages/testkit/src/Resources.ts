/**
 * Resource routes in tests (SPEC §10): declare what each route requires, and the test serves them
 * beside the fake issuer, enforcing the requirements exactly as `requireToken` does (it *is*
 * `requireToken`, asking the fake issuer for each token's standing) — so an app's whole flow (mint,
 * call, narrow, 403, revoke, re-mint) is testable with no network.
 *
 * ```ts
 * const issuer = makeFakeIssuer()
 * const server = withResources(issuer, [
 *   route("GET /organizations/{organizationId}/inventory", { requires: { organization_inventory: "VIEW" } },
 *     ({ params }) => ({ organizationId: params.organizationId, items: [] }))
 * ])
 * const icr = createIcrAppsClient({ appId, privateKey, baseUrl: "https://icr.test", fetch: server.fetch })
 * ```
 *
 * A route with an `{organizationId}` (or `{org}`) parameter takes installation tokens of that
 * organization only. Anything no route matches goes to the issuer (`/app/*`, `/admin/*`, 404s).
 */
import type { Permissions } from "@icr-apps/core/api/Permissions"
import type { TokenDescription, TokenKind } from "@icr-apps/core/api/Tokens"
import { makeRequireToken, type Requirement } from "@icr-apps/core/resource/RequireToken"
import type { FetchLike } from "@icr-apps/core/resource/TokenStanding"

/** What a resource route requires of its token. */
export interface RouteRequirement {
  /** Each permission at this level or higher (`VIEW` < `REQUEST` < `WRITE`). */
  readonly requires?: Permissions | undefined
  /** The token kinds accepted (default both). */
  readonly kind?: TokenKind | ReadonlyArray<TokenKind> | undefined
  /**
   * The path parameter naming the organization the token must belong to (default: `organizationId`
   * or `org`, when the route has one; `null` for none).
   */
  readonly organization?: string | null | undefined
}

/** What a route's handler gets: the request, the checked token, the path parameters. */
export interface RouteContext {
  readonly request: Request
  readonly token: TokenDescription
  readonly params: Readonly<Record<string, string>>
}

/** A handler's answer: a `Response`, or any value (answered as JSON, 200). */
export type RouteHandler = (context: RouteContext) => Response | unknown | Promise<Response | unknown>

/** One declared resource route. */
export interface ResourceRoute {
  readonly method: string
  readonly template: string
  readonly requirement: RouteRequirement
  readonly handler: RouteHandler
}

/** Declares a route: `"METHOD /path/{param}"`, what it requires, and what it answers. */
export const route = (spec: string, requirement: RouteRequirement, handler: RouteHandler): ResourceRoute => {
  const match = /^([A-Z]+) (\/\S*)$/.exec(spec.trim())
  if (match === null) throw new Error(`a route is "METHOD /path", not ${JSON.stringify(spec)}`)
  return { method: match[1]!, template: match[2]!, requirement, handler }
}

/** One request a resource route answered, as the log shows it (never the token). */
export interface ResourceRequest {
  readonly method: string
  readonly path: string
  /** The route's template (`GET /organizations/{organizationId}/inventory`). */
  readonly route: string
  readonly status: number
  /** The problem code of a refusal (`invalid_token`, `insufficient_permissions`, …). */
  readonly code?: string | undefined
  readonly tokenKind?: TokenKind | undefined
  readonly installationId?: string | undefined
}

/** The fake issuer with resource routes in front: one `fetch` for the app under test. */
export interface ResourceServer {
  /** Serves a resource route, or passes the request to the issuer. */
  readonly fetch: (input: Request | string | URL, init?: RequestInit) => Promise<Response>
  /** The resource requests answered, in order (optionally only one route's). */
  readonly requests: (route?: string) => ReadonlyArray<ResourceRequest>
  /** Forgets the log. */
  readonly reset: () => void
}

const matchPath = (template: string, path: string): Record<string, string> | undefined => {
  const want = template.split("/")
  const got = path.split("/")
  if (want.length !== got.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < want.length; i++) {
    const part = want[i]!
    const param = /^\{(\w+)\}$/.exec(part)
    if (param !== null) {
      if (got[i] === "") return undefined
      try {
        params[param[1]!] = decodeURIComponent(got[i]!)
      } catch {
        return undefined
      }
    } else if (part !== got[i]) return undefined
  }
  return params
}

/** Serves `routes` in front of `issuer`, each checked as `requireToken` checks (standing asked every time unless `cacheSeconds`). */
export const withResources = (
  issuer: FetchLike,
  routes: ReadonlyArray<ResourceRoute>,
  options: { readonly cacheSeconds?: number | undefined } = {}
): ResourceServer => {
  const guard = makeRequireToken({ issuer, cacheSeconds: options.cacheSeconds ?? 0 })
  const log: Array<ResourceRequest> = []
  const fetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init)
    const path = new URL(request.url).pathname
    const matching = routes.flatMap((r) => {
      const params = matchPath(r.template, path)
      return params === undefined ? [] : [{ route: r, params }]
    })
    if (matching.length === 0) return issuer.fetch(request)
    const hit = matching.find((m) => m.route.method === request.method)
    if (hit === undefined) {
      const allow = [...new Set(matching.map((m) => m.route.method))].join(", ")
      return new Response(
        `${JSON.stringify({ type: "urn:icr:problem:method_not_allowed", title: "Method not allowed", status: 405, code: "method_not_allowed", detail: `this path allows ${allow}`, allow: allow.split(", ") })}\n`,
        { status: 405, headers: { "content-type": "application/problem+json", allow } }
      )
    }
    const { route: r, params } = hit
    const organizationParam =
      r.requirement.organization === null
        ? undefined
        : (r.requirement.organization ??
          ("organizationId" in params ? "organizationId" : "org" in params ? "org" : undefined))
    const requirement: Requirement = {
      kind: r.requirement.kind,
      permissions: r.requirement.requires,
      organizationId: organizationParam === undefined ? undefined : params[organizationParam]
    }
    const name = `${r.method} ${r.template}`
    const checked = await guard.check(request, requirement)
    if (!checked.ok) {
      const code = ((await checked.response.clone().json()) as { code?: string }).code
      log.push({ method: request.method, path, route: name, status: checked.response.status, code })
      return checked.response
    }
    const answer = await r.handler({ request, token: checked.token, params })
    const response = answer instanceof Response ? answer : Response.json(answer ?? null)
    log.push({
      method: request.method,
      path,
      route: name,
      status: response.status,
      tokenKind: checked.token.kind,
      installationId: checked.token.installationId
    })
    return response
  }
  return {
    fetch,
    requests: (name) => (name === undefined ? [...log] : log.filter((entry) => entry.route === name)),
    reset: () => void log.splice(0)
  }
}
