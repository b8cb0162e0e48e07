/**
 * The request id of SPEC §1: the caller's own `x-request-id` when it is sane, else a fresh UUID;
 * echoed on the response and written to every audit line of the request.
 */
import * as Context from "effect/Context"

/** The id of the request being served (the `x-request-id` it is answered with); empty outside a request. */
export class RequestId extends Context.Reference<RequestId>()("@icr-apps/core/edge/RequestId", {
  defaultValue: (): string => ""
}) {}

const sanePattern = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * What a credential looks like in a request id: an access token, a JWT — by its encoded `{"` header,
 * or by its shape (three base64url segments, the first two at least 10 characters: an identity token
 * whose header is spelt otherwise) — or a GitHub token (`ghp_`, `ghs_`, …, `github_pat_`).
 */
const credentialLike = /crs_|^eyJ|^[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*$|gh[pousr]_|github_pat_/i

/**
 * The caller's `x-request-id` when it is sane, else a fresh UUID. One that looks like a credential
 * is replaced too: the id is echoed in the response and written to every audit line.
 */
export const requestIdOf = (given: string | null | undefined): string =>
  given != null && sanePattern.test(given) && !credentialLike.test(given) ? given : crypto.randomUUID()
