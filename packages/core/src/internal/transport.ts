/**
 * Telling transport failures apart on every runtime: Node wraps the system error (`ECONNREFUSED`,
 * `ENOTFOUND`) in `fetch failed`, Deno and Bun say it in words or their own codes.
 */

/** Why a request got no answer. */
export type TransportFailure = "refused" | "unresolvable" | "timeout" | "tls" | "network"

/** Every code and message along an error's cause chain (fetch wraps the system error, sometimes twice). */
export const causeChain = (error: unknown): Array<string> => {
  const out: Array<string> = []
  const seen = new Set<unknown>()
  const visit = (e: unknown, depth: number) => {
    if (e === null || e === undefined || depth > 5 || seen.has(e)) return
    seen.add(e)
    if (typeof e === "string") return void out.push(e)
    if (typeof e !== "object") return
    const { code, message, cause, errors } = e as {
      code?: unknown
      message?: unknown
      cause?: unknown
      errors?: unknown
    }
    if (typeof code === "string") out.push(code)
    if (typeof message === "string" && message !== "") out.push(message)
    visit(cause, depth + 1)
    if (Array.isArray(errors)) for (const inner of errors) visit(inner, depth + 1)
  }
  visit(error, 0)
  return out
}

/** What kind of transport failure a chain of codes and messages describes, on Node, Deno, Bun and Workers. */
export const classify = (chain: ReadonlyArray<string>): TransportFailure => {
  const text = chain.join(" | ")
  if (/ECONNREFUSED|ConnectionRefused|connection refused/i.test(text)) return "refused"
  if (/ENOTFOUND|EAI_AGAIN|EAI_NONAME|getaddrinfo|dns error|failed to lookup|name resolution|not known/i.test(text))
    return "unresolvable"
  if (/ETIMEDOUT|TIMEOUT|timed out/i.test(text)) return "timeout"
  if (/CERT|TLS|SSL|certificate/i.test(text)) return "tls"
  return "network"
}

/** Credentials and JWT-shaped strings in text quoted from elsewhere (a custom `fetch`'s error), replaced. */
export const redactSecrets = (text: string): string =>
  text
    .replace(/\bBearer\s+\S+/gi, "Bearer [redacted]")
    .replace(/\bcrs_[0-9a-f]+/gi, "crs_[redacted]")
    .replace(/\beyJ[\w-]*\.[\w-]+\.[\w-]*/g, "[redacted JWT]")
