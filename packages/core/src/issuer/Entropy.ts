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
  }
>() {}

/** The platform CSPRNG. */
export const layer: Layer.Layer<Entropy> = Layer.succeed(Entropy, {
  bytes: (n) => Effect.sync(() => crypto.getRandomValues(new Uint8Array(n))),
  uuid: Effect.sync(() => crypto.randomUUID())
})
