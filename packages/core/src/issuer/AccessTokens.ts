/**
 * Minting, authenticating, describing and revoking access tokens (SPEC §2, §4). A token is
 * `crs_` + 48 hex: 4 naming the shard that stores it (`Shards`; 0000 on one database), then 44 from
 * the {@link Entropy} service (176 bits); only its SHA-256 digest is stored. A token is
 * honoured only while its installation still exists, belongs to its app, and is not suspended,
 * and while the token epochs it was minted under (its app's, its installation's) are still
 * current: checked against the registry on every use, so every kill switch acts on the next
 * request, for good (SPEC §5).
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { toHex } from "../internal/der.js"
import { sha256, sha256Hex } from "../internal/digest.js"
import { canonical, exceeding, isWithin, type Permissions } from "../api/Permissions.js"
import { InstallationSuspended, InvalidToken, PermissionsExceedGrant } from "../api/Problems.js"
import { accessTokenPattern, StoredToken } from "../api/Tokens.js"
import { secretOn, shardOfSecret } from "./Shards.js"
import { Entropy } from "./Entropy.js"
import {
  type InstallationRecord,
  InstallationMissing,
  installationOfApp,
  Registry,
  StorageUnavailable,
  type TokenStanding
} from "./Registry.js"

/** How long tokens live. */
export interface TokenLifetimes {
  /** App tokens: 1 hour by default (SPEC §4). */
  readonly appTokenSeconds: number
  /** Installation tokens: 2 hours by default (SPEC §4). */
  readonly installationTokenSeconds: number
}

/** The lifetimes of SPEC §4. */
export const defaultLifetimes: TokenLifetimes = { appTokenSeconds: 3600, installationTokenSeconds: 7200 }

/** A freshly minted token: the secret (redacted) and what was stored for it. */
/** What a token is minted with: its record but for its id and times. */
type TokenFields = Omit<StoredToken, "id" | "createdAt" | "expiresAt">

/** A presented token found live: its digest, its record, and the shard its secret names. */
export interface Authenticated {
  readonly digest: string
  readonly token: StoredToken
  readonly shard: number | undefined
}

export interface MintedToken {
  readonly secret: Redacted.Redacted<string>
  readonly record: StoredToken
}

/** SHA-256 of a token secret, lower-case hex: the only form in which a token is stored. */
export const digestOf: (secret: string) => Effect.Effect<string> = sha256Hex

/** How {@link digestOf} is made (`crypto.subtle`), for a server to put a synchronous one of the same answer in. */
export { sha256 } from "../internal/digest.js"

/** The access-token service of the issuer. */
export class AccessTokens extends Context.Tag("@icr-apps/core/AccessTokens")<
  AccessTokens,
  {
    /**
     * Mints an app token carrying the app's declared permissions, narrowed to `requested` when given
     * (SPEC §4), and its token epoch, as the JWT check just read them (a kill switch that lands after
     * that read ends the token on its first use).
     */
    readonly mintAppToken: (
      appId: string,
      declared: Permissions,
      appEpoch: number,
      requested?: Permissions | undefined
    ) => Effect.Effect<MintedToken, PermissionsExceedGrant | StorageUnavailable>
    /**
     * Mints an installation token, narrowed to `requested` when given. `appEpoch` is the app's token
     * epoch as read with the keys that verified the JWT: a key deleted after that check (while this
     * mint is in flight) still ends the token.
     */
    readonly mintInstallationToken: (
      appId: string,
      installationId: string,
      requested: Permissions | undefined,
      appEpoch: number,
      /** The installation as already read with the JWT's keys (saves a round trip); read here when absent. */
      prefetched?: Option.Option<InstallationRecord> | undefined
    ) => Effect.Effect<
      MintedToken,
      InstallationMissing | InstallationSuspended | PermissionsExceedGrant | StorageUnavailable
    >
    /**
     * {@link mintInstallationToken} at `now` (epoch ms) as a promise, when the registry writes as
     * promises (`Registry.putTokenNow`), with the installation as the JWT check read it: a mint on
     * the direct path then costs no fiber. It resolves to what `mintInstallationToken` succeeds or
     * fails with (it rejects only on a defect).
     */
    readonly mintInstallationTokenNow?:
      | ((
          appId: string,
          installationId: string,
          requested: Permissions | undefined,
          appEpoch: number,
          prefetched: Option.Option<InstallationRecord>,
          now: number
        ) => Promise<
          MintedToken | InstallationMissing | InstallationSuspended | PermissionsExceedGrant | StorageUnavailable
        >)
      | undefined
    /** Finds the live record of a presented secret, or fails with `InvalidToken`. */
    readonly authenticate: (secret: string) => Effect.Effect<Authenticated, InvalidToken | StorageUnavailable>
    /**
     * {@link authenticate} as a promise, `now` being its clock (epoch ms), when the registry reads a
     * token's standing as one (`Registry.findTokenNow`): a token use on the direct path then costs
     * no fiber. It settles to what `authenticate` succeeds or fails with (it rejects only on a defect).
     */
    readonly authenticateNow?:
      | ((
          secret: string,
          now: () => number
        ) => Promise<Either.Either<Authenticated, InvalidToken | StorageUnavailable>>)
      | undefined
    /**
     * Revokes a token: every later use fails, in every location (the registry is the one source).
     * `shard`: the one its secret names, as {@link authenticate} told it.
     */
    readonly revoke: (digest: string, shard?: number | undefined) => Effect.Effect<void, StorageUnavailable>
  }
>() {}

/** Builds the service over a registry and entropy, with the given lifetimes. */
export const make = (lifetimes: TokenLifetimes = defaultLifetimes) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const entropy = yield* Entropy

    /** A token's record and secret, from its fields, the time and the randomness drawn for it. */
    const minted = (fields: TokenFields, lifetimeSeconds: number, bytes: Uint8Array, id: string, now: number) => {
      // Built from trusted values: no constructor validation (it recompiles a parser per call).
      const record = new StoredToken({ ...fields, id, createdAt: now, expiresAt: now + lifetimeSeconds * 1000 }, true)
      // The secret names the shard that stores it (Shards.ts): 4 hex digits, then 44 random ones.
      return { secret: secretOn(registry.tokenShard(record), toHex(bytes)), record }
    }
    const mint = (fields: TokenFields, lifetimeSeconds: number) =>
      Effect.gen(function* () {
        const bytes = yield* entropy.bytes(24)
        const now = yield* Clock.currentTimeMillis
        const { secret, record } = minted(fields, lifetimeSeconds, bytes, yield* entropy.uuid, now)
        yield* registry.putToken(yield* digestOf(secret), record)
        return { secret: Redacted.make(secret), record }
      })

    const invalid = (detail: string) => new InvalidToken({ detail })
    const { bytesNow, uuidNow } = entropy
    const findTokenNow = registry.findTokenNow
    const putTokenNow = registry.putTokenNow

    /** A found token's standing at `now`, as `authenticate` answers it. */
    const judged = (
      found: Option.Option<TokenStanding>,
      now: number,
      digest: string,
      shard: number | undefined
    ): Either.Either<Authenticated, InvalidToken> => {
      if (Option.isNone(found)) return Either.left(invalid("The access token is unknown, expired or revoked"))
      const refused = refusal(found.value, now)
      return refused === undefined
        ? Either.right({ digest, token: found.value.token, shard })
        : Either.left(invalid(refused))
    }

    /**
     * What a mint may carry (SPEC §4): the grant, or `requested` when given and within it. An empty
     * request never reaches here from the wire (it is 422 there); here it would mean a token with
     * no permission, never the full grant.
     */
    const narrowed = (
      requested: Permissions | undefined,
      granted: Permissions,
      whose: string
    ): Either.Either<Permissions, PermissionsExceedGrant> => {
      if (requested === undefined) return Either.right(granted)
      const over = exceeding(requested, granted)
      return over.length === 0
        ? Either.right(requested)
        : Either.left(
            new PermissionsExceedGrant({
              detail: `Requested permissions exceed ${whose}: ${over.join(", ")}`,
              permissions: over
            })
          )
    }

    /** What an installation token minted now carries, or why the installation refuses it (SPEC §4). */
    const installationTokenFields = (
      appId: string,
      installationId: string,
      requested: Permissions | undefined,
      appEpoch: number,
      installation: InstallationRecord
    ): Either.Either<TokenFields, InstallationSuspended | PermissionsExceedGrant> => {
      if (installation.suspendedAt !== null) {
        return Either.left(new InstallationSuspended({ detail: "The installation is suspended" }))
      }
      return Either.map(narrowed(requested, installation.permissions, "the installation's grant"), (wanted) => ({
        kind: "installation" as const,
        appId,
        installationId,
        organizationId: installation.organizationId,
        permissions: canonical(wanted),
        // The app's epoch from the JWT check and the installation's as read here: a kill switch
        // after either read ends the token (the lower of the two app epochs, should they differ).
        appEpoch: Math.min(appEpoch, installation.appTokenEpoch),
        installationEpoch: installation.tokenEpoch
      }))
    }

    return AccessTokens.of({
      mintAppToken: (appId, declared, appEpoch, requested) =>
        Effect.flatMap(narrowed(requested, declared, "the app's declared permissions"), (permissions) =>
          mint(
            { kind: "app", appId, permissions: canonical(permissions), appEpoch, installationEpoch: 0 },
            lifetimes.appTokenSeconds
          )
        ),
      mintInstallationToken: (appId, installationId, requested, appEpoch, prefetched) =>
        Effect.gen(function* () {
          const installation =
            prefetched === undefined
              ? yield* installationOfApp(registry, appId, installationId)
              : Option.isSome(prefetched) && prefetched.value.appId === appId
                ? prefetched.value
                : yield* new InstallationMissing()
          const fields = yield* installationTokenFields(appId, installationId, requested, appEpoch, installation)
          return yield* mint(fields, lifetimes.installationTokenSeconds)
        }),
      mintInstallationTokenNow:
        putTokenNow === undefined
          ? undefined
          : async (appId, installationId, requested, appEpoch, prefetched, now) => {
              if (Option.isNone(prefetched) || prefetched.value.appId !== appId) return new InstallationMissing()
              const fields = installationTokenFields(appId, installationId, requested, appEpoch, prefetched.value)
              if (Either.isLeft(fields)) return fields.left
              const bytes = bytesNow === undefined ? Effect.runSync(entropy.bytes(24)) : bytesNow(24)
              const id = uuidNow === undefined ? Effect.runSync(entropy.uuid) : uuidNow()
              const { secret, record } = minted(fields.right, lifetimes.installationTokenSeconds, bytes, id, now)
              const hex = sha256.hex(secret)
              try {
                await putTokenNow(typeof hex === "string" ? hex : await hex, record)
              } catch (e) {
                if (e instanceof StorageUnavailable) return e
                throw e
              }
              return { secret: Redacted.make(secret), record }
            },
      authenticate: (secret) => {
        if (!accessTokenPattern.test(secret)) return Effect.fail(invalid(NOT_A_TOKEN))
        const shard = shardOfSecret(secret)
        return Effect.flatMap(digestOf(secret), (digest) =>
          Effect.flatMap(registry.findToken(digest, shard), (found) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => judged(found, now, digest, shard))
          )
        )
      },
      authenticateNow:
        findTokenNow === undefined
          ? undefined
          : async (secret, now) => {
              if (!accessTokenPattern.test(secret)) return Either.left(invalid(NOT_A_TOKEN))
              const shard = shardOfSecret(secret)
              const hex = sha256.hex(secret)
              const digest = typeof hex === "string" ? hex : await hex
              let found: Option.Option<TokenStanding>
              try {
                found = await findTokenNow(digest, shard)
              } catch (e) {
                if (e instanceof StorageUnavailable) return Either.left(e)
                throw e
              }
              // The time after the read, as `authenticate` reads its clock.
              return judged(found, now(), digest, shard)
            },
      revoke: (digest, shard) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => registry.revokeToken(digest, now, shard))
    })
  })

const NOT_A_TOKEN = "That is not an access token"

const endedDetail =
  "The access token was ended by a kill switch since it was minted (a suspension, a change of permissions, " +
  "a key deletion or a revocation by the operator)"

/** Why a stored token is refused at `now`, or `undefined` when it is honoured (SPEC §4, §5). */
const refusal = ({ appTokenEpoch, installation, revoked, token }: TokenStanding, now: number): string | undefined => {
  // A record not yet pruned may have expired: the record's own expiry is authoritative.
  if (token.expiresAt <= now) return "The access token has expired"
  if (revoked) return "The access token is unknown, expired or revoked"
  if (token.kind === "installation") {
    if (Option.isNone(installation) || installation.value.appId !== token.appId) {
      return "The installation behind this token no longer exists"
    }
    const current = installation.value
    if (current.suspendedAt !== null) return "The installation behind this token is suspended"
    if (!isWithin(token.permissions, current.permissions)) {
      return "The installation's permissions were reduced after this token was minted"
    }
    if (current.tokenEpoch !== token.installationEpoch || current.appTokenEpoch !== token.appEpoch) return endedDetail
    return undefined
  }
  if (Option.isNone(appTokenEpoch)) return "The app behind this token no longer exists"
  return appTokenEpoch.value === token.appEpoch ? undefined : endedDetail
}

/** The service with the given lifetimes. */
export const layer = (
  lifetimes: TokenLifetimes = defaultLifetimes
): Layer.Layer<AccessTokens, never, Registry | Entropy> => Layer.effect(AccessTokens, make(lifetimes))
