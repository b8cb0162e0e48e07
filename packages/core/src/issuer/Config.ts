/**
 * How an issuer is configured ({@link IssuerOptions}), and the configuration its handlers read
 * ({@link IssuerConfig}): the operator token, the public origin.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { TokenLifetimes } from "./AccessTokens.js"
import type { ClientAddressOf } from "./Http.js"

/**
 * The shortest ADMIN_TOKEN that enables the operator API (SPEC §5). A shorter one counts as not
 * configured: `/admin` answers 403 `admin_disabled` and the issuer logs why, never the token.
 */
export const MIN_ADMIN_TOKEN_LENGTH = 32

/** How an issuer is configured. */
export interface IssuerOptions {
  /**
   * The operator token; when absent, or shorter than {@link MIN_ADMIN_TOKEN_LENGTH} characters,
   * every `/admin` route answers 403 `admin_disabled`.
   */
  readonly adminToken?: Redacted.Redacted<string> | undefined
  /** Token lifetimes (1 h app, 2 h installation by default). */
  readonly lifetimes?: TokenLifetimes | undefined
  /** The public origin used in `accessTokensUrl`, when the request's own origin is not it (a proxy). */
  readonly publicBaseUrl?: string | undefined
  /**
   * Which address a request's address budget counts against (SPEC §1, §9); by default
   * Cloudflare's `cf-connecting-ip` (`cloudflareClientAddress`). A server off Cloudflare passes
   * `clientAddressFrom(TRUST_PROXY)`, so no client-sent header counts unless trusted.
   */
  readonly clientAddress?: ClientAddressOf | undefined
}

/** The issuer's configuration, as its handlers and middlewares read it. */
export class IssuerConfig extends Context.Tag("@icr-apps/core/Issuer/IssuerConfig")<
  IssuerConfig,
  {
    readonly adminToken: Option.Option<Redacted.Redacted<string>>
    readonly publicBaseUrl: Option.Option<string>
  }
>() {}

/**
 * The issuer's configuration from its options. An ADMIN_TOKEN too short to resist guessing
 * leaves the operator API off, and says so in the log once (its length is not logged either).
 */
export const makeConfig = (options: IssuerOptions): Effect.Effect<IssuerConfig["Type"]> => {
  const given = Option.fromNullable(options.adminToken)
  const usable = Option.filter(given, (token) => Redacted.value(token).length >= MIN_ADMIN_TOKEN_LENGTH)
  const config = { adminToken: usable, publicBaseUrl: Option.fromNullable(options.publicBaseUrl) }
  return Option.isSome(given) && Option.isNone(usable)
    ? Effect.as(
        Effect.logWarning(
          `ADMIN_TOKEN is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters, so it counts as not configured: ` +
            "every /admin route answers 403 admin_disabled. Set a longer one (e.g. 48 random hex characters)."
        ),
        config
      )
    : Effect.succeed(config)
}

/** The origin URLs in answers are built on (`accessTokensUrl`, `Link`, OpenAPI): the configured one, else the request's. */
export const originOf = Effect.gen(function* () {
  const config = yield* IssuerConfig
  if (Option.isSome(config.publicBaseUrl)) return config.publicBaseUrl.value.replace(/\/+$/, "")
  const request = yield* HttpServerRequest.HttpServerRequest
  const source = request.source
  const url = source instanceof Request ? source.url : request.originalUrl
  try {
    return new URL(url).origin
  } catch {
    const host = request.headers.host ?? "localhost"
    return `http://${host}`
  }
})
