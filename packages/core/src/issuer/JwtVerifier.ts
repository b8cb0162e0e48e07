/**
 * Verifies App JWTs (SPEC §2). Everything an attacker controls is checked against an allow-list
 * before any key is touched; nothing is ever fetched because a header said so; the keys come from
 * the registry on every request, so deleting a key takes effect on the next one.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { compactVerify, importSPKI } from "jose"
import type { Permissions } from "../api/Permissions.js"
import { InvalidJwt, type JwtFailureReason } from "../api/Problems.js"
import { fromBase64Url } from "../internal/der.js"
import { JWS_ALG } from "../internal/rsa.js"
import { type AppRecord, type InstallationRecord, type KeyRecord, Registry, StorageUnavailable } from "./Registry.js"

/** Allowed clock skew, in seconds. */
export const SKEW_SECONDS = 60
/** The longest lifetime (`exp - iat`, and `exp - now`) the issuer accepts, in seconds: 10 minutes plus skew. */
export const MAX_ACCEPTED_LIFETIME_SECONDS = 660
/** The longest App JWT accepted, in characters. */
export const MAX_JWT_LENGTH = 4096
/** The header members a JWT may carry; anything else is refused, `jku`/`x5u`/`jwk`/`crit` included. */
export const ALLOWED_HEADER_MEMBERS: ReadonlySet<string> = new Set(["alg", "typ", "kid"])

/** Who a verified JWT speaks for. */
export interface VerifiedJwt {
  readonly appId: string
  readonly keyId: string
  /** The app's declared permissions, as read for this verification (so callers need not read them again). */
  readonly permissions: Permissions
  /** The app's token epoch, read with its keys (an app token minted now carries it). */
  readonly tokenEpoch: number
  /** The installation asked for with the JWT (read in the same round trip as the keys), if one was. */
  readonly installation?: Option.Option<InstallationRecord> | undefined
}

/** Verifies App JWTs against the registry's active keys. */
export class JwtVerifier extends Context.Tag("@icr-apps/core/JwtVerifier")<
  JwtVerifier,
  {
    /**
     * Verifies `jwt`. With `installationId`, that installation is read in the same round trip as
     * the app's keys and handed back (a mint needs both).
     */
    readonly verify: (
      jwt: string,
      installationId?: string
    ) => Effect.Effect<VerifiedJwt, InvalidJwt | StorageUnavailable>
    /**
     * {@link verify} of a JWT for a mint at `now` (epoch ms) as a promise, when the registry reads
     * as promises (`Registry.getAppWithInstallationNow`): a mint on the direct path then costs no
     * fiber. It resolves to what `verify` succeeds or fails with (it rejects only on a defect).
     */
    readonly verifyNow?:
      | ((jwt: string, installationId: string, now: number) => Promise<VerifiedJwt | InvalidJwt | StorageUnavailable>)
      | undefined
  }
>() {}

const decodeJsonSegment = (segment: string): Record<string, unknown> | undefined => {
  const bytes = fromBase64Url(segment)
  if (bytes === undefined) return undefined
  try {
    const value: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes))
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

/** Reads a NumericDate claim: missing, not a finite number, or fine. */
const numericClaim = (payload: Record<string, unknown>, name: string) => {
  const value = payload[name]
  if (value === undefined || value === null) return { missing: true as const }
  return typeof value === "number" && Number.isFinite(value) ? { value } : { malformed: true as const }
}

/**
 * A public key nobody holds the private half of: an unknown app's JWT is verified against it, so
 * an unknown app costs what a known app with a wrong signature costs (SPEC §2: indistinguishable
 * in timing too).
 */
const DUMMY_KEY: KeyRecord = {
  id: "00000000-0000-0000-0000-000000000000",
  appId: "",
  fingerprint: "dummy",
  spki: "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4U6Xhrqib9GiJ6VPsTfWbQ2T1Jivc0qw041ipY2joRqHo62+81Pmt/DNJjfnFaUsnFdbv6CoWIn0mmCyVPniGGy/msEV60REnNRAKQRh/5XurzKAareVP5fz0xQt+isSQs/Ath4ZqlliiYcFibgKA0BHBCVgAioLTmYgeCujFPuxYOnhJ1lh+CdFtZdu+THH04ju9cseZ+oKVt181LaEb7N8zFtMjitntnXtXBdfTYuZNpSF01wZYymlkCWbOLMqkuwuJusEPYtLuoU9YEGJiU6OS3GG6D6o3Pf9Lb9WBZjSjYtdVeRswPTnpxZC5Fvqakh1B8q4MbsZS7drtUEtpQIDAQAB",
  createdAt: 0,
  notBefore: null
}

/** The most imported keys kept per isolate (an app has at most 25; this bounds many apps). */
const KEY_CACHE_SIZE = 1024

/** What a verification reads: the app (with its keys) its `iss` names, and the installation asked for. */
interface ReadForJwt {
  readonly app: Option.Option<AppRecord>
  readonly installation?: Option.Option<InstallationRecord> | undefined
}

/** What the claims of a JWT say, once its header and claims passed every check that needs no key. */
interface ParsedJwt {
  readonly appId: string
  readonly kid: string | undefined
  readonly iat: number
  readonly exp: number
  readonly signatureBytes: number
}

/**
 * Every check of SPEC §2 that needs neither a key nor the clock, in order: the length, the three
 * canonical base64url segments, the header allow-list, RS256, `typ`, `kid`, `iss`, numeric `iat`/`exp`.
 */
const parse = (jwt: string): ParsedJwt | InvalidJwt => {
  const refuse = (reason: JwtFailureReason, detail: string) => new InvalidJwt({ reason, detail }, true)
  if (jwt.length > MAX_JWT_LENGTH) return refuse("malformed", `App JWTs are limited to ${MAX_JWT_LENGTH} characters`)
  const parts = jwt.split(".")
  if (parts.length !== 3) return refuse("malformed", "An App JWT has three dot-separated parts")
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string]
  const header = decodeJsonSegment(headerPart)
  if (header === undefined) return refuse("malformed", "The JWT header is not base64url JSON")
  for (const name of ["jku", "x5u", "jwk", "x5c", "crit"]) {
    if (name in header) return refuse("malformed", `The "${name}" JWT header is not accepted`)
  }
  const unexpected = Object.keys(header).filter((k) => !ALLOWED_HEADER_MEMBERS.has(k))
  if (unexpected.length > 0) {
    return refuse("malformed", `Unexpected JWT header member(s): ${unexpected.slice(0, 5).join(", ").slice(0, 100)}`)
  }
  if (header.alg !== "RS256") return refuse("unsupported_algorithm", "App JWTs must be signed with RS256")
  if (header.typ !== undefined && (typeof header.typ !== "string" || header.typ.toUpperCase() !== "JWT")) {
    return refuse("malformed", 'The JWT "typ" header must be "JWT"')
  }
  const kid = header.kid
  if (kid !== undefined && (typeof kid !== "string" || kid.length === 0 || kid.length > 128)) {
    return refuse("malformed", 'The JWT "kid" header must be a short string')
  }
  const payload = decodeJsonSegment(payloadPart)
  if (payload === undefined) return refuse("malformed", "The JWT payload is not base64url JSON")

  const iss = payload.iss
  if (iss === undefined || iss === null) return refuse("missing_claim", 'The JWT has no "iss" claim')
  const appId =
    typeof iss === "string"
      ? iss
      : typeof iss === "number" && Number.isSafeInteger(iss) && iss >= 0
        ? String(iss)
        : undefined
  if (appId === undefined || appId.length === 0 || appId.length > 64) {
    return refuse("malformed", 'The "iss" claim must be the app id (a string or an integer)')
  }
  const iat = numericClaim(payload, "iat")
  const exp = numericClaim(payload, "exp")
  if ("missing" in iat) return refuse("missing_claim", 'The JWT has no "iat" claim')
  if ("missing" in exp) return refuse("missing_claim", 'The JWT has no "exp" claim')
  if ("malformed" in iat) return refuse("malformed", 'The "iat" claim must be a number of seconds')
  if ("malformed" in exp) return refuse("malformed", 'The "exp" claim must be a number of seconds')
  const signature = fromBase64Url(signaturePart)
  return {
    appId,
    kid,
    iat: iat.value,
    exp: exp.value,
    // Checked after the times, as always: a missing signature is refused as a bad one.
    signatureBytes: signature === undefined ? 0 : signature.byteLength
  }
}

/** The time rules of SPEC §2 at `now` (seconds), with 60 s of skew. */
const refusedAt = ({ iat, exp }: ParsedJwt, now: number): InvalidJwt | undefined => {
  const refuse = (reason: JwtFailureReason, detail: string) => new InvalidJwt({ reason, detail }, true)
  if (iat > now + SKEW_SECONDS) return refuse("iat_in_future", 'The "iat" claim is in the future')
  if (exp <= now) return refuse("expired", "The JWT has expired")
  if (exp > now + MAX_ACCEPTED_LIFETIME_SECONDS) {
    return refuse("exp_too_far", 'The "exp" claim is more than 10 minutes in the future')
  }
  if (exp <= iat) return refuse("malformed", 'The "exp" claim must be after "iat"')
  if (exp - iat > MAX_ACCEPTED_LIFETIME_SECONDS) return refuse("exp_too_far", "The JWT lives longer than 10 minutes")
  return undefined
}

/**
 * One answer for an unknown app, an unknown `kid` and a wrong signature (SPEC §2: indistinguishable),
 * worded so that whoever reads it checks both likely causes: the app id in `iss`, and the key.
 */
export const UNKNOWN_APP_OR_WRONG_KEY =
  "Unknown app or wrong key: the JWT's signature does not verify against any active key of the app its \"iss\" names; check the app id and that the app's private key is the one registered"

const badSignature = () => new InvalidJwt({ reason: "invalid_signature", detail: UNKNOWN_APP_OR_WRONG_KEY })

/**
 * The verifier over a registry: reads the app's keys on every verification (so deleting a key takes
 * effect on the next one) and caches their imports by fingerprint.
 */
export const make = (registry: Registry["Type"]): JwtVerifier["Type"] => {
  const imported = new Map<string, Promise<CryptoKey>>()
  const importKey = (key: KeyRecord): Promise<CryptoKey> => {
    let hit = imported.get(key.fingerprint)
    if (hit !== undefined) {
      imported.delete(key.fingerprint)
    } else {
      hit = importSPKI(`-----BEGIN PUBLIC KEY-----\n${key.spki}\n-----END PUBLIC KEY-----`, JWS_ALG)
      hit.catch(() => imported.delete(key.fingerprint))
    }
    imported.set(key.fingerprint, hit)
    if (imported.size > KEY_CACHE_SIZE) imported.delete(imported.keys().next().value!)
    return hit
  }
  /** jose verifies the compact JWS (after our own checks); any refusal of it is a bad signature. */
  const check = (cryptoKey: CryptoKey, jwt: string): Promise<boolean> =>
    compactVerify(jwt, cryptoKey, { algorithms: [JWS_ALG] }).then(
      () => true,
      () => false
    )
  /** One verification whose answer is ignored: what a refusal costs when no key of the app was tried. */
  const dummyVerification = async (jwt: string) => {
    await check(await importKey(DUMMY_KEY), jwt)
  }
  /**
   * The first of `keys` that verifies `jwt`. A key is tried only when it could have made the
   * signature (its modulus is as long as the signature); when none could, a dummy verification
   * costs what a real one would.
   */
  const verifyWithAny = async (keys: ReadonlyArray<KeyRecord>, jwt: string, signatureBytes: number) => {
    let tried = 0
    for (const key of keys) {
      const cryptoKey = await importKey(key)
      if ((cryptoKey.algorithm as { readonly modulusLength?: number }).modulusLength !== signatureBytes * 8) continue
      tried++
      if (await check(cryptoKey, jwt)) return key
    }
    if (tried === 0) await dummyVerification(jwt)
    return undefined
  }

  /** The checks before any read (SPEC §2): the JWT's form, its times at `nowSeconds`, a signature. */
  const checked = (jwt: string, nowSeconds: number): ParsedJwt | InvalidJwt => {
    const parsed = parse(jwt)
    if (parsed instanceof InvalidJwt) return parsed
    const refused = refusedAt(parsed, nowSeconds)
    if (refused !== undefined) return refused
    if (parsed.signatureBytes === 0) {
      return new InvalidJwt({ reason: "invalid_signature", detail: "The JWT signature is missing or not base64url" })
    }
    return parsed
  }

  /** What the app's keys (as read) say of a checked JWT: who it speaks for, or a bad signature. */
  const decided = async (
    parsed: ParsedJwt,
    jwt: string,
    { app, installation }: ReadForJwt
  ): Promise<VerifiedJwt | InvalidJwt> => {
    if (Option.isNone(app)) {
      await dummyVerification(jwt)
      return badSignature()
    }
    // By kid (a key id, matched case-insensitively like every id, or a fingerprint), else every
    // active key — each key once, however often it was registered. A key registered again after
    // a deletion never verifies a JWT issued before that deletion (SPEC §4).
    const { appId, kid } = parsed
    const wanted = kid?.toLowerCase()
    const issuedAt = parsed.iat * 1000
    const seen = new Set<string>()
    const candidates = app.value.keys.filter(
      (k) =>
        (kid === undefined || k.id.toLowerCase() === wanted || k.fingerprint === kid) &&
        (k.notBefore === null || issuedAt > k.notBefore) &&
        !seen.has(k.fingerprint) &&
        seen.add(k.fingerprint) !== undefined
    )
    const key = await verifyWithAny(candidates, jwt, parsed.signatureBytes)
    return key === undefined
      ? badSignature()
      : {
          appId,
          keyId: key.id,
          permissions: app.value.permissions,
          tokenEpoch: app.value.tokenEpoch,
          installation
        }
  }

  const verify = (jwt: string, installationId?: string): Effect.Effect<VerifiedJwt, InvalidJwt | StorageUnavailable> =>
    Effect.clockWith((clock) => {
      const parsed = checked(jwt, Math.floor(clock.unsafeCurrentTimeMillis() / 1000))
      if (parsed instanceof InvalidJwt) return Effect.fail(parsed)
      const { appId } = parsed
      const read: Effect.Effect<ReadForJwt, StorageUnavailable> =
        installationId === undefined
          ? Effect.map(registry.getApp(appId), (app) => ({ app }))
          : registry.getAppWithInstallation(appId, installationId)
      return Effect.flatMap(read, (found) =>
        Effect.flatMap(
          Effect.promise(() => decided(parsed, jwt, found)),
          (verified): Effect.Effect<VerifiedJwt, InvalidJwt> =>
            verified instanceof InvalidJwt ? Effect.fail(verified) : Effect.succeed(verified)
        )
      )
    })

  const readNow = registry.getAppWithInstallationNow
  const verifyNow =
    readNow === undefined
      ? undefined
      : async (
          jwt: string,
          installationId: string,
          now: number
        ): Promise<VerifiedJwt | InvalidJwt | StorageUnavailable> => {
          const parsed = checked(jwt, Math.floor(now / 1000))
          if (parsed instanceof InvalidJwt) return parsed
          let found: ReadForJwt
          try {
            found = await readNow(parsed.appId, installationId)
          } catch (e) {
            if (e instanceof StorageUnavailable) return e
            throw e
          }
          return decided(parsed, jwt, found)
        }
  return { verify, verifyNow }
}

/** The live verifier: reads keys from the {@link Registry}, caches their imports by fingerprint. */
export const layer: Layer.Layer<JwtVerifier, never, Registry> = Layer.effect(JwtVerifier, Effect.map(Registry, make))
