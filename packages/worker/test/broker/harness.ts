/**
 * The broker under test, wired to the real issuer worker (in-process, over real KV and D1) and to
 * the testkit's in-memory OIDC provider. Each `setup()` registers a fresh app and installations
 * at the issuer and builds a broker for it; `broker.fresh()` is the same broker in a new isolate
 * (new in-memory state, same KV).
 */
import { env } from "cloudflare:test"
import type { Permissions } from "@icr-apps/core/api/Permissions"
import { generateAppKeyPair } from "@icr-apps/testkit/Keys"
import { makeOidcProvider, type OidcAlgorithm, type OidcProvider } from "@icr-apps/testkit/Oidc"
import type { ExchangeEvent } from "../../src/broker/Audit.js"
import { type BrokerBindings, type BrokerDependencies, makeHandler } from "../../src/broker/Broker.js"
import type { BrokerVars } from "../../src/broker/Config.js"
import type { BrokerEnv } from "../../src/broker/index.js"
import issuerWorker, { type WorkerEnv } from "../../src/index.js"

/** The issuer as the broker's ISSUER binding would reach it. */
export const ISSUER_URL = "http://issuer.test"
export const AUDIENCE = "https://broker.test"
export const OIDC_ISSUER = "https://oidc.test"
export const CACHE_SECRET = "a-test-cache-secret-that-is-long-enough-0123456789"

/** The broker's own bindings from wrangler.broker.jsonc (BROKER_CACHE and the vars). */
export const brokerBindings = env as unknown as BrokerEnv

type IncomingRequest = Parameters<typeof issuerWorker.fetch>[0]

/** Calls the real issuer worker in-process. */
export const callIssuer = (request: Request): Promise<Response> =>
  issuerWorker.fetch(request as unknown as IncomingRequest, env as unknown as WorkerEnv)

/** Calls the issuer's operator API. */
export const admin = async (method: string, path: string, body?: unknown): Promise<any> => {
  const response = await callIssuer(
    new Request(`${ISSUER_URL}${path}`, {
      method,
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
  )
  if (!response.ok) throw new Error(`admin ${method} ${path}: ${response.status} ${await response.text()}`)
  return response.status === 204 ? undefined : response.json()
}

/** What the issuer says a token is. */
export const describe = async (token: string) => {
  const response = await callIssuer(
    new Request(`${ISSUER_URL}/app/installations/token`, { headers: { authorization: `Bearer ${token}` } })
  )
  return { status: response.status, body: (await response.json()) as Record<string, any> }
}

/** The issuer behind the broker: every request counted, and it can be taken down. */
export const makeIssuerLink = () => {
  const requests: Array<{ method: string; path: string }> = []
  let down = false
  return {
    binding: {
      fetch: (async (input: RequestInfo | URL, init?: RequestInit) => {
        const request = new Request(input, init)
        requests.push({ method: request.method, path: new URL(request.url).pathname })
        if (down) throw new TypeError("fetch failed: connection refused (the issuer is down)")
        return callIssuer(request)
      }) as typeof globalThis.fetch
    },
    /** Successful or not, how many mints were attempted. */
    mints: () => requests.filter((r) => r.method === "POST" && r.path.endsWith("/accessTokens")).length,
    requests,
    setDown: (value: boolean) => {
      down = value
    }
  }
}

/** Every permission at its highest level: what the test app declares. */
export const ALL: Permissions = {
  organization_info: "VIEW",
  organization_members: "VIEW",
  organization_projects: "VIEW",
  organization_warehouse: "WRITE",
  organization_inventory: "WRITE"
}

let appCounter = 0

/** A fresh app at the issuer with installations of the given grants. */
export const makeApp = async (grants: ReadonlyArray<Permissions> = [ALL]) => {
  const keys = await generateAppKeyPair()
  const app = await admin("POST", "/admin/apps", {
    name: `broker-${Date.now().toString(36)}-${appCounter++}`,
    permissions: ALL,
    publicKey: keys.publicPem
  })
  const installations: Array<{ id: string }> = []
  for (const permissions of grants) {
    installations.push(
      await admin("POST", "/admin/installations", {
        appId: app.id,
        organizationId: crypto.randomUUID(),
        permissions
      })
    )
  }
  return { appId: String(app.id), privatePem: keys.privatePem, installations: installations.map((i) => i.id) }
}

/** Options of {@link setup}. */
export interface SetupOptions {
  /** The policies, given the installation ids (default: none). */
  readonly policies?: (installations: ReadonlyArray<string>) => ReadonlyArray<unknown>
  readonly grants?: ReadonlyArray<Permissions>
  readonly alg?: OidcAlgorithm
  /** Vars to add or replace (undefined removes). */
  readonly vars?: Partial<Record<keyof BrokerVars, string | undefined>>
  readonly deps?: BrokerDependencies
  /** Bindings to add (the Rate Limiting ones, say). */
  readonly bindings?: Partial<BrokerBindings>
}

/** An app, its installations, an OIDC provider, the issuer link and a broker over them. */
export const setup = async (options: SetupOptions = {}) => {
  const app = await makeApp(options.grants)
  const oidc: OidcProvider = makeOidcProvider({ issuer: OIDC_ISSUER, alg: options.alg ?? "RS256" })
  const issuer = makeIssuerLink()
  const audit: Array<ExchangeEvent> = []
  const bindings: BrokerBindings = {
    BROKER_CACHE: brokerBindings.BROKER_CACHE,
    ISSUER: issuer.binding,
    BROKER_APP_ID: app.appId,
    BROKER_PRIVATE_KEY: app.privatePem,
    BROKER_ISSUER_URL: ISSUER_URL,
    BROKER_AUDIENCE: AUDIENCE,
    BROKER_OIDC_ISSUERS: JSON.stringify([OIDC_ISSUER]),
    BROKER_POLICIES: JSON.stringify(options.policies?.(app.installations) ?? []),
    BROKER_CACHE_SECRET: CACHE_SECRET,
    ...options.vars,
    ...options.bindings
  }
  const deps: BrokerDependencies = {
    oidcFetch: oidc.fetch as typeof globalThis.fetch,
    // Policy events too (`event` tells them apart); exchange events are what most tests read.
    audit: (event) => void audit.push(event as ExchangeEvent),
    ...options.deps
  }
  const build = () => makeHandler(bindings, deps)
  let broker = build()
  return {
    app,
    oidc,
    issuer,
    audit,
    bindings,
    /** Sends a request to the broker (as a service binding named `service`, when given). */
    fetch: (request: Request, service?: string) => broker.handler(request, { service }),
    /** Another broker for the same app, issuer link and KV, with some vars changed. */
    variant: (vars: SetupOptions["vars"]) => {
      const other = makeHandler({ ...bindings, ...vars }, deps)
      return (request: Request) => other.handler(request)
    },
    /** Replaces the broker with a new instance over the same bindings: another isolate. */
    fresh: () => {
      broker = build()
    },
    /** A token for `sub` from the test OIDC provider, for this broker's audience. */
    idToken: (sub: string, extra: Parameters<OidcProvider["issue"]>[0] extends infer O ? Partial<O> : never = {}) =>
      oidc.issue({ sub, aud: AUDIENCE, ...extra })
  }
}

/** A token-exchange request, as a form unless `json`. */
export const tokenRequest = (
  params: Record<string, string | undefined>,
  options: { readonly json?: boolean; readonly headers?: Record<string, string> } = {}
): Request => {
  const defined = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined)) as Record<
    string,
    string
  >
  return new Request("https://broker.test/token", {
    method: "POST",
    headers: {
      "content-type": options.json ? "application/json" : "application/x-www-form-urlencoded",
      ...options.headers
    },
    body: options.json ? JSON.stringify(defined) : new URLSearchParams(defined).toString()
  })
}

/** The form of an RFC 8693 exchange of `subjectToken` for `installationId`. */
export const exchangeParams = (subjectToken: string | undefined, installationId: string, scope?: string) => ({
  grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
  subject_token: subjectToken,
  subject_token_type: subjectToken === undefined ? undefined : "urn:ietf:params:oauth:token-type:id_token",
  resource: installationId,
  scope
})

/** Every key and value of the broker's KV namespace, as text. */
export const dumpBrokerKv = async (): Promise<ReadonlyArray<{ name: string; value: string }>> => {
  const out: Array<{ name: string; value: string }> = []
  let cursor: string | undefined
  do {
    const page = await brokerBindings.BROKER_CACHE.list(cursor === undefined ? {} : { cursor })
    for (const key of page.keys)
      out.push({ name: key.name, value: (await brokerBindings.BROKER_CACHE.get(key.name)) ?? "" })
    cursor = page.list_complete ? undefined : page.cursor
  } while (cursor !== undefined)
  return out
}

/** A policy for one OIDC subject. */
export const subjectPolicy = (
  name: string,
  sub: string,
  installations: ReadonlyArray<string> | "*",
  permissions: Permissions,
  list = false
) => ({ name, identity: { issuer: OIDC_ISSUER, sub }, installations, permissions, list })
