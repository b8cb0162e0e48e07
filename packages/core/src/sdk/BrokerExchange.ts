/**
 * Getting an installation token from a broker (SPEC §8) where a workload runs: its identity token
 * from GitHub Actions' OIDC request variables or from a file (a Kubernetes projected
 * service-account token), exchanged at the broker's `/token` (RFC 8693). What `icr-apps exchange`
 * does; web-standard (`fetch`), so it runs wherever the SDK does.
 */

/** Why an exchange did not produce a token: `code` is the broker's (or `transport`, `usage`). */
export class BrokerExchangeError extends Error {
  override readonly name = "BrokerExchangeError"
  constructor(
    readonly code: string,
    message: string
  ) {
    super(message)
  }
}

/** The RFC 8693 parameters the broker takes. */
export interface BrokerExchangeOptions {
  /** The broker's base URL. */
  readonly broker: string
  /** The installation: its id, `urn:icr:installation:<id>` or its `accessTokensUrl`. */
  readonly installation: string
  /** Space-separated `name:LEVEL`; absent = the policy's permissions. */
  readonly scope?: string | undefined
  /** The workload's identity token. */
  readonly subjectToken: string
  /** Ask for a freshly minted token (`Cache-Control: no-cache`). */
  readonly fresh?: boolean | undefined
}

/** The broker's answer. */
export interface BrokerToken {
  readonly accessToken: string
  readonly expiresIn: number
  readonly scope: string
}

/**
 * An identity token for `audience` from GitHub Actions (`ACTIONS_ID_TOKEN_REQUEST_URL` and
 * `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, present when the job has `permissions: id-token: write`).
 */
export const actionsIdToken = async (
  env: Readonly<Record<string, string | undefined>>,
  audience: string,
  fetch: typeof globalThis.fetch = globalThis.fetch
): Promise<string> => {
  const url = env.ACTIONS_ID_TOKEN_REQUEST_URL
  const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN
  if (!url || !bearer)
    throw new BrokerExchangeError(
      "usage",
      "no identity token: give --token-file, or run in GitHub Actions with permissions: id-token: write"
    )
  const request = new URL(url)
  request.searchParams.set("audience", audience)
  let response: Response
  try {
    response = await fetch(request, { headers: { authorization: `Bearer ${bearer}`, accept: "application/json" } })
  } catch {
    throw new BrokerExchangeError("transport", "GitHub's OIDC token endpoint could not be reached")
  }
  const body = (await response.json().catch(() => undefined)) as { value?: unknown } | undefined
  if (!response.ok || typeof body?.value !== "string")
    throw new BrokerExchangeError("identity_token", `GitHub's OIDC token endpoint answered ${response.status}`)
  return body.value
}

/** Hosts on this machine, where plain `http:` is acceptable (the identity token never crosses a network). */
const isLoopback = (hostname: string): boolean =>
  hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)

/**
 * The broker's `/token` URL: `https:`, or `http:` on a loopback host only (the identity token is a
 * bearer credential; on plain HTTP anyone on the path could replay it).
 */
const tokenUrl = (broker: string): URL => {
  let url: URL
  try {
    url = new URL(`${broker.replace(/\/+$/, "")}/token`)
  } catch {
    throw new BrokerExchangeError("usage", "--broker must be an absolute https:// URL")
  }
  if (url.protocol === "https:" || (url.protocol === "http:" && isLoopback(url.hostname))) return url
  throw new BrokerExchangeError(
    "usage",
    "--broker must be an https:// URL (http:// only for localhost, 127.0.0.1 or [::1])"
  )
}

/**
 * Exchanges an identity token at the broker for an installation token. Redirects are not followed:
 * a 307 or 308 would post the identity token again, to wherever `Location` names.
 */
export const exchangeAtBroker = async (
  options: BrokerExchangeOptions,
  fetch: typeof globalThis.fetch = globalThis.fetch
): Promise<BrokerToken> => {
  const url = tokenUrl(options.broker)
  const form = new URLSearchParams({
    grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
    subject_token: options.subjectToken,
    subject_token_type: "urn:ietf:params:oauth:token-type:id_token",
    resource: options.installation
  })
  if (options.scope !== undefined && options.scope !== "") form.set("scope", options.scope)
  let response: Response
  try {
    response = await fetch(url, {
      method: "POST",
      redirect: "manual",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        accept: "application/json",
        ...(options.fresh === true ? { "cache-control": "no-cache" } : {})
      },
      body: form
    })
  } catch {
    throw new BrokerExchangeError("transport", `the broker at ${url.origin} could not be reached`)
  }
  if (response.type === "opaqueredirect" || (response.status >= 300 && response.status < 400))
    throw new BrokerExchangeError(
      "redirect",
      `the broker at ${url.origin} answered with a redirect (${response.status}); give its final URL as --broker`
    )
  const body = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined
  if (response.status === 200 && typeof body?.access_token === "string")
    return {
      accessToken: body.access_token,
      expiresIn: typeof body.expires_in === "number" ? body.expires_in : 0,
      scope: typeof body.scope === "string" ? body.scope : ""
    }
  const code = typeof body?.code === "string" ? body.code : typeof body?.error === "string" ? body.error : "error"
  const detail = typeof body?.detail === "string" ? body.detail : `HTTP ${response.status}`
  throw new BrokerExchangeError(code, `${response.status} ${code}: ${detail}`)
}
