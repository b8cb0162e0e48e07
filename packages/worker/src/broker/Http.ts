/**
 * The broker's HTTP edge: the rules of SPEC §1 shared with the issuer (`@icr-apps/core/edge/Edge`:
 * security and no-store headers, the request id, the body and `Authorization` caps, a problem
 * document for every failure, the final newline), configured as SPEC §8 says the broker differs —
 * no `x-icr-api-version`, an over-long credential is 400 `invalid_request` (RFC 6749 style) — and
 * with the token endpoint's form bodies (RFC 8693) taken beside JSON.
 */
import type { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import { allowedMethodsIn, routesOf } from "@icr-apps/core/api/Routes"
import { MAX_BODY_BYTES } from "@icr-apps/core/edge/Body"
import { MAX_AUTHORIZATION_LENGTH, makeEdge, problemEncoder } from "@icr-apps/core/edge/Edge"
import { RequestId } from "@icr-apps/core/edge/RequestId"
import { BrokerApi } from "./Api.js"
import { InvalidRequest, Problems } from "./Problems.js"

export { MAX_AUTHORIZATION_LENGTH, MAX_BODY_BYTES, RequestId }

/** The methods the broker serves at a path, from its API definition. */
export const allowedMethods = allowedMethodsIn(routesOf(BrokerApi))

/** A decode failure of the router: every member of a token request is a string. */
const decodeFailure = (e: HttpApiDecodeError) => {
  const issue = e.issues[0]
  const where = issue === undefined || issue.path.length === 0 ? "request" : issue.path.map(String).join(".")
  // The operator's policy document (`{ "policies": [...] }`, strict); every other body is a token request.
  if (issue?._tag === "Unexpected") return new InvalidRequest({ detail: `${where.slice(0, 64)}: is not a member` })
  if (issue?._tag === "Missing") return new InvalidRequest({ detail: `${where.slice(0, 64)}: is missing` })
  return new InvalidRequest({ detail: `${where.slice(0, 64)}: must be a string` })
}

/** SPEC §1 as the broker applies it (SPEC §8). */
export const brokerEdge = makeEdge({
  name: "broker",
  // Token answers must not be stored (RFC 6749 §5.1): `Cache-Control: no-store` is on every
  // answer already; `Pragma: no-cache` is for HTTP/1.0 caches.
  headers: { pragma: "no-cache" },
  overlongCredential: () => new InvalidRequest({ detail: "The Authorization header is too long" }),
  bodies: "json-or-form",
  allowedMethods,
  decodeFailure,
  encode: problemEncoder(Problems)
})
