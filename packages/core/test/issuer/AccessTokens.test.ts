import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { StoredToken } from "../../src/api/Tokens.js"
import * as TestClock from "effect/TestClock"
import * as AccessTokens from "../../src/issuer/AccessTokens.js"
import { layerSeeded } from "../../../testkit/src/Entropy.js"
import * as Registry from "../../src/issuer/Registry.js"
import * as TokenStore from "../../src/issuer/TokenStore.js"

const T0 = 1_700_000_000_000

/** Records every `put` so tests can see exactly what reached storage. */
const recordingStore = (puts: Array<{ digest: string; ttl: number; value: string }>) =>
  Layer.effect(
    TokenStore.TokenStore,
    Effect.map(TokenStore.TokenStore, (inner) => ({
      ...inner,
      put: (digest: string, token: Parameters<typeof inner.put>[1], ttl: number) =>
        Effect.zipRight(
          Effect.sync(() => puts.push({ digest, ttl, value: JSON.stringify(token) })),
          inner.put(digest, token, ttl)
        )
    }))
  ).pipe(Layer.provide(TokenStore.layerMemory))

const make = (
  lifetimes = AccessTokens.defaultLifetimes,
  puts: Array<{ digest: string; ttl: number; value: string }> = []
) =>
  AccessTokens.layer(lifetimes).pipe(
    Layer.provideMerge(Layer.mergeAll(recordingStore(puts), Registry.layerMemory, layerSeeded(42)))
  )

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
    const puts: Array<{ digest: string; ttl: number; value: string }> = []
    return Effect.gen(function* () {
      const { app, tokens } = yield* seedInstallation
      const minted = yield* tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch)
      const secret = Redacted.value(minted.secret)
      expect(secret).toMatch(/^crs_[0-9a-f]{48}$/)
      expect(puts).toHaveLength(1)
      expect(puts[0]!.digest).toBe(yield* AccessTokens.digestOf(secret))
      expect(puts[0]!.digest).toMatch(/^[0-9a-f]{64}$/)
      expect(puts[0]!.value.includes(secret.slice(4))).toBe(false)
      expect(puts[0]!.ttl).toBe(3600)
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
  it.effect("never asks storage for a TTL under KV's 60 s floor, and still expires the token on time", () => {
    const puts: Array<{ digest: string; ttl: number; value: string }> = []
    return Effect.gen(function* () {
      const { app, tokens } = yield* seedInstallation
      const minted = yield* tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch)
      expect(puts[0]!.ttl).toBe(60)
      yield* TestClock.adjust("9 seconds")
      expect((yield* tokens.authenticate(Redacted.value(minted.secret))).token.id).toBe(minted.record.id)
      yield* TestClock.adjust("1 second")
      const failure = yield* Effect.flip(tokens.authenticate(Redacted.value(minted.secret)))
      expect(failure._tag).toBe("InvalidToken")
    }).pipe(Effect.provide(make({ appTokenSeconds: 10, installationTokenSeconds: 10 }, puts)))
  })
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
      expect(other._tag).toBe("InstallationNotFound")
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
      expect((yield* Effect.flip(tokens.authenticate(secret))).detail).toMatch(/suspended/)
      yield* registry.updateInstallation(installation.id, { suspendedAt: null, updatedAt: T0 })
      // Kill switches are final (SPEC §5): unsuspending revives nothing.
      expect((yield* Effect.flip(tokens.authenticate(secret))).detail).toMatch(/kill switch/)
      const fresh = Redacted.value(
        (yield* tokens.mintInstallationToken(app.id, installation.id, undefined, app.tokenEpoch)).secret
      )
      expect((yield* tokens.authenticate(fresh)).token.installationEpoch).toBe(1)
      yield* registry.deleteInstallation(installation.id)
      expect((yield* Effect.flip(tokens.authenticate(fresh))).detail).toMatch(/no longer exists/)
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
      expect((yield* Effect.flip(tokens.authenticate(stale))).detail).toMatch(/kill switch/)
      const current = (yield* registry.getApp(app.id)).pipe(Option.getOrThrow).tokenEpoch
      expect(current).toBe(1)
      const fresh = Redacted.value((yield* tokens.mintAppToken(app.id, app.permissions, current)).secret)
      expect((yield* tokens.authenticate(fresh)).token.appEpoch).toBe(1)
      // The same race for an installation token: the JWT was checked under epoch 0, a key deletion
      // (epoch 1) landed before the installation was read; the token must not outlive it.
      const raced = yield* tokens.mintInstallationToken(app.id, installation.id, undefined, 0)
      expect(raced.record.appEpoch).toBe(0)
      expect((yield* Effect.flip(tokens.authenticate(Redacted.value(raced.secret)))).detail).toMatch(/kill switch/)
    }).pipe(Effect.provide(make()))
  )
  it.effect("a record stored before epochs existed reads as epoch 0: valid until the first kill switch", () =>
    Effect.gen(function* () {
      const { app, installation, tokens, registry } = yield* seedInstallation
      const store = yield* TokenStore.TokenStore
      const minted = yield* tokens.mintInstallationToken(app.id, installation.id, undefined, app.tokenEpoch)
      const secret = Redacted.value(minted.secret)
      const { digest } = yield* tokens.authenticate(secret)
      const { appEpoch: _a, installationEpoch: _i, ...older } = Schema.encodeSync(StoredToken)(minted.record)
      yield* store.put(digest, Schema.decodeUnknownSync(StoredToken)(older), 3600)
      expect((yield* tokens.authenticate(secret)).token).toMatchObject({ appEpoch: 0, installationEpoch: 0 })
      yield* registry.updateInstallation(installation.id, { permissions: { organization_info: "VIEW" }, updatedAt: T0 })
      expect((yield* Effect.flip(tokens.authenticate(secret)))._tag).toBe("InvalidToken")
    }).pipe(Effect.provide(make()))
  )
  it.effect("revoke records the revocation in the registry and forgets the digest", () =>
    Effect.gen(function* () {
      const { app, tokens } = yield* seedInstallation
      const store = yield* TokenStore.TokenStore
      const secret = Redacted.value((yield* tokens.mintAppToken(app.id, app.permissions, app.tokenEpoch)).secret)
      const { digest, token } = yield* tokens.authenticate(secret)
      yield* tokens.revoke(digest, token)
      expect(Option.isNone(yield* store.get(digest))).toBe(true)
      expect((yield* Effect.flip(tokens.authenticate(secret)))._tag).toBe("InvalidToken")
      // A store that still serves the record (KV in another location, before propagation): still refused.
      yield* store.put(digest, token, 3600)
      expect((yield* Effect.flip(tokens.authenticate(secret)))._tag).toBe("InvalidToken")
    }).pipe(Effect.provide(make()))
  )
})

describe("TokenStore.layerMemory obeys KV's rules", () => {
  it.effect("refuses a TTL under 60 s, as KV does", () =>
    Effect.gen(function* () {
      const store = yield* TokenStore.TokenStore
      const exit = yield* Effect.exit(store.put("d", {} as never, 59))
      expect(exit._tag).toBe("Failure")
    }).pipe(Effect.provide(TokenStore.layerMemory))
  )
  it.effect("expires entries by Clock", () =>
    Effect.gen(function* () {
      const store = yield* TokenStore.TokenStore
      yield* store.put("d", { id: "x" } as never, 60)
      yield* TestClock.adjust("59 seconds")
      expect(Option.isSome(yield* store.get("d"))).toBe(true)
      yield* TestClock.adjust("1 second")
      expect(Option.isNone(yield* store.get("d"))).toBe(true)
    }).pipe(Effect.provide(TokenStore.layerMemory))
  )
})
