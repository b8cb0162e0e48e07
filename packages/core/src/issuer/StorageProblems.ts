/**
 * What the registry's outcomes mean on the wire (SPEC §6), in one place: every backend (memory,
 * D1, SQLite, Postgres) reports the same {@link RegistryFailure}, and the issuer answers each with
 * the same problem, whichever backend it runs on.
 */
import * as Effect from "effect/Effect"
import { MAX_KEYS_PER_APP } from "../api/Apps.js"
import {
  AppNotFound,
  Conflict,
  InstallationNotFound,
  InvalidPublicKey,
  NotFound,
  Unavailable
} from "../api/Problems.js"
import {
  type AlreadyInstalled,
  type AppMissing,
  type InstallationMissing,
  isRegistryFailure,
  type KeyExists,
  type KeyLimitReached,
  type KeyMissing,
  type NameTaken,
  type RegistryFailure,
  type StorageUnavailable
} from "./Registry.js"

/** The problem each registry failure is answered with. */
export type ProblemOf<E> = E extends StorageUnavailable
  ? Unavailable
  : E extends AppMissing
    ? AppNotFound
    : E extends InstallationMissing
      ? InstallationNotFound
      : E extends KeyMissing
        ? NotFound
        : E extends NameTaken | KeyExists | AlreadyInstalled
          ? Conflict
          : E extends KeyLimitReached
            ? InvalidPublicKey
            : E

/** The SPEC §6 problem of one registry failure. */
export const toProblem = (failure: RegistryFailure): ProblemOf<RegistryFailure> => {
  switch (failure._tag) {
    case "StorageUnavailable":
      return new Unavailable({ detail: "The registry is unavailable; retry shortly", retryAfter: 1 })
    case "AppMissing":
      return new AppNotFound({ detail: "No such app" })
    case "InstallationMissing":
      return new InstallationNotFound({ detail: "No such installation" })
    case "KeyMissing":
      return new NotFound({ detail: "No such key" })
    case "NameTaken":
      return new Conflict({ detail: `An app named "${failure.name}" already exists` })
    case "KeyExists":
      return new Conflict({ detail: "The app already has this key (the same fingerprint)" })
    case "AlreadyInstalled":
      return new Conflict({ detail: "The app is already installed in that organization" })
    case "KeyLimitReached":
      return new InvalidPublicKey({ detail: `An app may have at most ${MAX_KEYS_PER_APP} keys; delete one first` })
  }
}

/** `effect` with its registry failures answered as their problems; other failures pass through. */
export const asProblems = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, ProblemOf<E>, R> =>
  Effect.mapError(effect, (e) => (isRegistryFailure(e) ? toProblem(e) : e) as ProblemOf<E>)

/** A service whose every operation answers its registry failures as their problems. */
export type Answering<S> = {
  readonly [K in keyof S]: S[K] extends (...args: infer P) => Effect.Effect<infer A, infer E, infer R>
    ? (...args: P) => Effect.Effect<A, ProblemOf<E>, R>
    : S[K]
}

/**
 * `service` (the registry, or a service over it) as the handlers use it: every operation's registry
 * failures answered as their problems ({@link toProblem}), so no handler maps one itself.
 */
export const answering = <S extends object>(service: S): Answering<S> => {
  const out: Record<string, unknown> = {}
  for (const [name, member] of Object.entries(service)) {
    out[name] =
      typeof member === "function"
        ? (...args: Array<unknown>) => asProblems((member as (...a: Array<unknown>) => Effect.Effect<unknown>)(...args))
        : member
  }
  return out as Answering<S>
}
