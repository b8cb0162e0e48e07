/**
 * Randomness, as a service: token secrets and ids come from here, so tests can seed it (the
 * testkit's `Entropy.layerSeeded`) and production uses the platform CSPRNG.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** A source of random bytes and UUIDs. */
export class Entropy extends Context.Tag("@icr-apps/core/Entropy")<
  Entropy,
  {
    /** `n` random bytes. */
    readonly bytes: (n: number) => Effect.Effect<Uint8Array>
    /** A random (v4) UUID, lower-case. */
    readonly uuid: Effect.Effect<string>
    /**
     * {@link bytes} and {@link uuid} at once, without an effect to run: given by a source that
     * needs nothing else (the platform's), for the issuer's direct path. A source without them (the
     * testkit's seeded one) is run through the effects.
     */
    readonly bytesNow?: ((n: number) => Uint8Array) | undefined
    readonly uuidNow?: (() => string) | undefined
  }
>() {}

const platformBytes = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n))
const platformUuid = (): string => crypto.randomUUID()

/** The platform CSPRNG. */
export const layer: Layer.Layer<Entropy> = Layer.succeed(Entropy, {
  bytes: (n) => Effect.sync(() => platformBytes(n)),
  uuid: Effect.sync(platformUuid),
  bytesNow: platformBytes,
  uuidNow: platformUuid
})
