import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as AccessTokens from "../../src/issuer/AccessTokens.js"
import { layerSeeded } from "../../../testkit/src/Entropy.js"
import * as Registry from "../../src/issuer/Registry.js"

/** What a refused token's failure says (the registry's own failures say only their tag). */
const detailOf = (failure: { readonly _tag: string; readonly detail?: string }): string =>
  failure.detail ?? failure._tag

const T0 = 1_700_000_000_000

interface Put {
  readonly digest: string
  readonly value: string
}

/** The memory registry, recording every `putToken` so tests can see exactly what reached storage. */
const recordingRegistry = (puts: Array<Put>) =>
  Layer.effect(
    Registry.Registry,
    Effect.map(Registry.Registry, (inner) => ({
      ...inner,
      putToken: (digest: string, token: Parameters<typeof inner.putToken>[1]) =>
        Effect.zipRight(
          Effect.sync(() => puts.push({ digest, value: JSON.stringify(token) })),
          inner.putToken(digest, token)
        )
    }))
  ).pipe(Layer.provide(Registry.layerMemory))

const make = (lifetimes = AccessTokens.defaultLifetimes, puts: Array<Put> = []) =>
  AccessTokens.layer(lifetimes).pipe(Layer.provideMerge(Layer.mergeAll(recordingRegistry(puts), layerSeeded(42))))

const seedInstallation = Effect.gen(function* () {
  yield* TestClock.setTime(T0)
  const registry = yield* Registry.Registry
  const app = yield* registry.createApp(
    {
      name: "app1",
      permissions: { organization_info: "VIEW", organization_inventory: "WRITE" },
      createdAt: T0,
      updatedAt: T0
    },
    { id: "11111111-1111-4111-8111-111111111111", fingerprint: "SHA256:x", spki: "", createdAt: T0 }
  )
  const installation = yield* registry.createInstallation({
    id: "22222222-2222-4222-8222-222222222222",
    appId: app.id,
    organizationId: "33333333-3333-4333-8333-333333333333",
    permissions: { organization_info: "VIEW", organization_inventory: "REQUEST" },
    createdAt: T0,
    updatedAt: T0,
    suspendedAt: null
  })
  return { app, installation, tokens: yield* AccessTokens.AccessTokens, registry }
})

describe("AccessTokens", () => {
  it.effect("mints crs_ + 48 hex from the Entropy service and stores only its SHA-256 digest", () => {
    const puts: Array<Put> = []
    return Effect.gen(function* () {
      const { app, tokens } = yield* seedInstallation
      const minted = yield* tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch)
      const secret = Redacted.value(minted.secret)
      expect(secret).toMatch(/^crs_[0-9a-f]{48}$/)
      expect(puts).toHaveLength(1)
      expect(puts[0]!.digest).toBe(yield* AccessTokens.digestOf(secret))
      expect(puts[0]!.digest).toMatch(/^[0-9a-f]{64}$/)
      expect(puts[0]!.value.includes(secret.slice(4))).toBe(false)
      expect(minted.record.expiresAt - minted.record.createdAt).toBe(3600_000)
      expect(String(minted.secret)).not.toContain("crs_")
    }).pipe(Effect.provide(make(AccessTokens.defaultLifetimes, puts)))
  })
  it.effect("the same seed mints the same tokens (the generator is the service's, not Math.random)", () =>
    Effect.gen(function* () {
      const first = yield* Effect.provide(
        Effect.flatMap(seedInstallation, ({ app, tokens }) =>
          tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch)
        ),
        make()
      )
      const second = yield* Effect.provide(
        Effect.flatMap(seedInstallation, ({ app, tokens }) =>
          tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch)
        ),
        make()
      )
      expect(Redacted.value(first.secret)).toBe(Redacted.value(second.secret))
    })
  )
  it.effect("expires a token at its own expiresAt, however short its lifetime", () =>
    Effect.gen(function* () {
      const { app, tokens } = yield* seedInstallation
      const minted = yield* tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch)
      yield* TestClock.adjust("9 seconds")
      expect((yield* tokens.authenticate(Redacted.value(minted.secret))).token.id).toBe(minted.record.id)
      yield* TestClock.adjust("1 second")
      const failure = yield* Effect.flip(tokens.authenticate(Redacted.value(minted.secret)))
      expect(detailOf(failure)).toBe("The access token has expired")
    }).pipe(Effect.provide(make({ appTokenSeconds: 10, installationTokenSeconds: 10 })))
  )
  it.effect("installation tokens live 2 h, narrow, and refuse what exceeds the grant", () =>
    Effect.gen(function* () {
      const { app, installation, tokens } = yield* seedInstallation
      const full = yield* tokens.mintInstallationToken(app.id, installation.id, undefined, app.tokenEpoch)
      expect(full.record.permissions).toEqual({ organization_info: "VIEW", organization_inventory: "REQUEST" })
      expect(full.record.expiresAt - full.record.createdAt).toBe(7200_000)
      const narrowed = yield* tokens.mintInstallationToken(
        app.id,
        installation.id,
        { organization_inventory: "VIEW" },
        app.tokenEpoch
      )
      expect(narrowed.record.permissions).toEqual({ organization_inventory: "VIEW" })
      const over = yield* Effect.flip(
        tokens.mintInstallationToken(app.id, installation.id, { organization_inventory: "WRITE" }, app.tokenEpoch)
      )
      expect(over._tag).toBe("PermissionsExceedGrant")
      const other = yield* Effect.flip(tokens.mintInstallationToken("999", installation.id, undefined, app.tokenEpoch))
      expect(other._tag).toBe("InstallationMissing")
    }).pipe(Effect.provide(make()))
  )
  it.effect("authenticate checks the installation on every use: suspension and uninstall act at once", () =>
    Effect.gen(function* () {
      const { app, installation, tokens, registry } = yield* seedInstallation
      const secret = Redacted.value(
        (yield* tokens.mintInstallationToken(app.id, installation.id, undefined, app.tokenEpoch)).secret
      )
      expect((yield* tokens.authenticate(secret)).token.installationId).toBe(installation.id)
      yield* registry.updateInstallation(installation.id, { suspendedAt: T0, updatedAt: T0 })
      expect(detailOf(yield* Effect.flip(tokens.authenticate(secret)))).toMatch(/suspended/)
      yield* registry.updateInstallation(installation.id, { suspendedAt: null, updatedAt: T0 })
      // Kill switches are final (SPEC §5): unsuspending revives nothing.
      expect(detailOf(yield* Effect.flip(tokens.authenticate(secret)))).toMatch(/kill switch/)
      const fresh = Redacted.value(
        (yield* tokens.mintInstallationToken(app.id, installation.id, undefined, app.tokenEpoch)).secret
      )
      expect((yield* tokens.authenticate(fresh)).token.installationEpoch).toBe(1)
      yield* registry.deleteInstallation(installation.id)
      expect(detailOf(yield* Effect.flip(tokens.authenticate(fresh)))).toMatch(/no longer exists/)
    }).pipe(Effect.provide(make()))
  )
  it.effect("a token carries the epochs it was minted under and ends when either moves on", () =>
    Effect.gen(function* () {
      const { app, installation, tokens, registry } = yield* seedInstallation
      const mintBoth = Effect.all([
        Effect.map(tokens.mintAppToken(app.id, app.permissions, 0), (m) => Redacted.value(m.secret)),
        Effect.map(tokens.mintInstallationToken(app.id, installation.id, undefined, app.tokenEpoch), (m) =>
          Redacted.value(m.secret)
        )
      ])
      const [appToken, installationToken] = yield* mintBoth
      expect((yield* tokens.authenticate(installationToken)).token).toMatchObject({ appEpoch: 0, installationEpoch: 0 })
      // The installation's epoch: its tokens end, the app's token does not.
      yield* registry.revokeInstallationTokens(installation.id)
      expect((yield* Effect.flip(tokens.authenticate(installationToken)))._tag).toBe("InvalidToken")
      expect((yield* tokens.authenticate(appToken)).token.kind).toBe("app")
      // The app's epoch: every token of the app ends, app and installation tokens alike.
      const [, again] = yield* mintBoth
      yield* registry.revokeAppTokens(app.id)
      expect((yield* Effect.flip(tokens.authenticate(appToken)))._tag).toBe("InvalidToken")
      expect((yield* Effect.flip(tokens.authenticate(again)))._tag).toBe("InvalidToken")
      // A token minted under an epoch read just before a bump (the race of a mint with a kill switch): ended too.
      const stale = Redacted.value((yield* tokens.mintAppToken(app.id, app.permissions, 0)).secret)
      expect(detailOf(yield* Effect.flip(tokens.authenticate(stale)))).toMatch(/kill switch/)
      const current = (yield* registry.getApp(app.id)).pipe(Option.getOrThrow).tokenEpoch
      expect(current).toBe(1)
      const fresh = Redacted.value((yield* tokens.mintAppToken(app.id, app.permissions, current)).secret)
      expect((yield* tokens.authenticate(fresh)).token.appEpoch).toBe(1)
      // The same race for an installation token: the JWT was checked under epoch 0, a key deletion
      // (epoch 1) landed before the installation was read; the token must not outlive it.
      const raced = yield* tokens.mintInstallationToken(app.id, installation.id, undefined, 0)
      expect(raced.record.appEpoch).toBe(0)
      expect(detailOf(yield* Effect.flip(tokens.authenticate(Redacted.value(raced.secret))))).toMatch(/kill switch/)
    }).pipe(Effect.provide(make()))
  )
  it.effect("revoke marks the token revoked in the registry: refused from the next use on, for good", () =>
    Effect.gen(function* () {
      const { app, tokens, registry } = yield* seedInstallation
      const secret = Redacted.value((yield* tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch)).secret)
      const { digest } = yield* tokens.authenticate(secret)
      yield* tokens.revoke(digest)
      const standing = Option.getOrThrow(yield* registry.findToken(digest))
      expect(standing.revoked).toBe(true)
      expect(detailOf(yield* Effect.flip(tokens.authenticate(secret)))).toBe(
        "The access token is unknown, expired or revoked"
      )
      // Revoking again changes nothing; a digest nobody minted is ignored.
      yield* tokens.revoke(digest)
      yield* tokens.revoke("0".repeat(64))
      expect((yield* Effect.flip(tokens.authenticate(secret)))._tag).toBe("InvalidToken")
    }).pipe(Effect.provide(make()))
  )
})

describe("Registry.layerMemory: token records", () => {
  it.effect("prunes records that expired before a new mint, and keeps the live and revoked ones", () =>
    Effect.gen(function* () {
      const { app, tokens, registry } = yield* seedInstallation
      const mint = Effect.flatMap(tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch), (m) =>
        tokens.authenticate(Redacted.value(m.secret))
      )
      const early = yield* mint
      yield* TestClock.adjust("30 minutes")
      const revoked = yield* mint
      yield* tokens.revoke(revoked.digest)
      yield* TestClock.adjust("31 minutes")
      // `early` expired a minute ago (1 h lifetime): the next mint prunes it; `revoked` stays until it expires.
      expect(Option.isSome(yield* registry.findToken(early.digest))).toBe(true)
      yield* mint
      expect(Option.isNone(yield* registry.findToken(early.digest))).toBe(true)
      expect(Option.getOrThrow(yield* registry.findToken(revoked.digest)).revoked).toBe(true)
    }).pipe(Effect.provide(make()))
  )
})
