/**
 * The audit trail (SPEC §5): one structured event for every mint, revocation, kill-switch event
 * and operator change, whatever its outcome. An event names who did what to which app,
 * installation, key or token, under which request id — and never carries a secret: no token,
 * JWT, key material or ADMIN_TOKEN has a field to go in.
 *
 * The worker writes each event as one JSON line on the console (`layerConsole`), which Workers
 * Logs and Logpush collect; tests capture them in memory (`layerMemory`).
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { addressKey } from "../api/ClientAddress.js"
import { codeOf, isProblem } from "../api/Problems.js"
import { RequestId } from "../edge/RequestId.js"

/** What an audited action did. */
export const AuditAction = Schema.Literal(
  // Tokens: minted (POST /app/accessTokens, POST /app/installations/{id}/accessTokens), revoked by their holder.
  "app_token.mint",
  "installation_token.mint",
  "token.revoke",
  // Operator changes (SPEC §5).
  "app.create",
  "app.key_add",
  "app.key_delete",
  "installation.create",
  "installation.update",
  "installation.delete",
  // Kill switches: an epoch bumped, ending every token minted before it. An installation's by a suspension,
  // a change of permissions or its revokeTokens; an app's by a key deletion or its revokeTokens.
  "installation.tokens_revoked",
  "app.tokens_revoked",
  // A failed operator authentication: a credential sent to /admin/* that is not the ADMIN_TOKEN (SPEC §5).
  "operator.authenticate"
).annotations({ identifier: "AuditAction" })
/** What an audited action did. */
export type AuditAction = typeof AuditAction.Type

/** One audit event: one JSON line in the worker's log. */
export const AuditEvent = Schema.Struct({
  /** When, RFC 3339 UTC with milliseconds. */
  time: Schema.String,
  action: AuditAction,
  /** The `x-request-id` of the request that caused it (several events may share one). */
  requestId: Schema.String,
  appId: Schema.optionalWith(Schema.String, { exact: true }),
  installationId: Schema.optionalWith(Schema.String, { exact: true }),
  /** A token's id (never the token). */
  tokenId: Schema.optionalWith(Schema.String, { exact: true }),
  /** A key's id (never the key). */
  keyId: Schema.optionalWith(Schema.String, { exact: true }),
  /**
   * Who acted: an app (by its JWT), the operator (by ADMIN_TOKEN), a token (on itself), or a caller
   * that failed to authenticate (`unauthenticated`: a wrong operator token).
   */
  actor: Schema.Literal("app", "operator", "token", "unauthenticated"),
  outcome: Schema.Literal("success", "failure"),
  /** For a failure: its SPEC §6 code. */
  code: Schema.optionalWith(Schema.String, { exact: true }),
  /** The client address the request was counted against (failed authentications), when the issuer knows one. */
  clientAddress: Schema.optionalWith(Schema.String, { exact: true }),
  /**
   * How many events like this one, from the same address, were not recorded since the last one
   * that was (failed authentications are audited at most once per address per second; beyond the
   * addresses tracked, once per second for all the others together, and the count is theirs).
   */
  suppressed: Schema.optionalWith(Schema.Int, { exact: true })
}).annotations({ identifier: "AuditEvent" })
/** One audit event. */
export type AuditEvent = typeof AuditEvent.Type

/** Where audit events go. */
export class AuditLog extends Context.Tag("@icr-apps/core/AuditLog")<
  AuditLog,
  {
    /** Records one event; never fails (an audit sink that fails must not fail the request). */
    readonly emit: (event: AuditEvent) => Effect.Effect<void>
    /**
     * Records one event at once, as {@link emit} would, without an effect to run: given by a sink
     * that never waits (the console, memory), for the issuer's direct path. A sink without it is
     * run through {@link emit}.
     */
    readonly emitNow?: ((event: AuditEvent) => void) | undefined
  }
>() {}

/** Only the fields an event may carry, in a fixed order: nothing else reaches the log, whatever the caller passed. */
const fieldsOf = (event: AuditEvent): AuditEvent => ({
  time: event.time,
  action: event.action,
  requestId: event.requestId,
  ...(event.appId !== undefined ? { appId: event.appId } : {}),
  ...(event.installationId !== undefined ? { installationId: event.installationId } : {}),
  ...(event.tokenId !== undefined ? { tokenId: event.tokenId } : {}),
  ...(event.keyId !== undefined ? { keyId: event.keyId } : {}),
  actor: event.actor,
  outcome: event.outcome,
  ...(event.code !== undefined ? { code: event.code } : {}),
  ...(event.clientAddress !== undefined ? { clientAddress: event.clientAddress } : {}),
  ...(event.suppressed !== undefined ? { suppressed: event.suppressed } : {})
})

/** A sink that records each event at once with `write`: its effect and its `emitNow` are that. */
const writing = (write: (event: AuditEvent) => void): AuditLog["Type"] => ({
  emit: (event) => Effect.sync(() => write(event)),
  emitNow: write
})

/** One JSON line per event on `console.log`, tagged `"audit": true` so a log query can pick them out. */
export const toConsole: AuditLog["Type"] = writing((event) => {
  console.log(JSON.stringify({ audit: true, ...fieldsOf(event) }))
})

/** {@link toConsole} as a layer. */
export const layerConsole: Layer.Layer<AuditLog> = Layer.succeed(AuditLog, toConsole)

/** Events appended to `sink`, for tests to assert on. */
export const layerMemory = (sink: Array<AuditEvent>): Layer.Layer<AuditLog> =>
  Layer.succeed(
    AuditLog,
    writing((event) => {
      sink.push(fieldsOf(event))
    })
  )

/** Reads the audit events back out of log lines (`layerConsole`'s), skipping every other line. */
export const fromLogLines = (lines: ReadonlyArray<string>): ReadonlyArray<AuditEvent> =>
  lines.flatMap((line) => {
    try {
      const parsed: unknown = JSON.parse(line)
      if (typeof parsed !== "object" || parsed === null || (parsed as { audit?: unknown }).audit !== true) return []
      const { audit: _, ...event } = parsed as Record<string, unknown>
      return [Schema.decodeUnknownSync(AuditEvent)(event)]
    } catch {
      return []
    }
  })

/** What an audit event says besides its time, request id, outcome and code. */
export type AuditFields = Omit<AuditEvent, "time" | "requestId" | "outcome" | "code">

/** The SPEC §6 code a failed request answers with (`internal` for a defect); none when it was only interrupted. */
const failureCode = <E>(cause: Cause.Cause<E>): string | undefined => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return codeOfFailure(failure.value)
  return Cause.isInterruptedOnly(cause) ? undefined : "internal"
}

/** The audit trail as the handlers use it: one event per call, stamped with the time and the request id. */
export interface AuditTrail {
  /** Records a success that needs no effect of its own (a kill switch a change caused). */
  readonly success: (fields: AuditFields) => Effect.Effect<void>
  /**
   * Runs `effect` and records its outcome under `fields`, plus what `onSuccess` reads off a
   * success (an id the effect made); a failure is recorded with its SPEC §6 code.
   */
  readonly audited: <A, E, R>(
    fields: AuditFields,
    effect: Effect.Effect<A, E, R>,
    onSuccess?: (a: A) => Partial<AuditFields>
  ) => Effect.Effect<A, E, R>
}

/** The event of an outcome under `fields`, at `now` (epoch ms), in request `requestId`. */
export const eventOf = (
  fields: AuditFields,
  requestId: string,
  now: number,
  outcome: "success" | "failure",
  code?: string
): AuditEvent => ({
  time: new Date(now).toISOString(),
  requestId,
  ...fields,
  outcome,
  ...(code !== undefined ? { code } : {})
})

/** The SPEC §6 code of a request's failure: its problem's, `internal` for anything else. */
export const codeOfFailure = (failure: unknown): string => (isProblem(failure) ? codeOf(failure).code : "internal")

/** The {@link AuditTrail} over a log. */
export const auditTrail = (log: AuditLog["Type"]): AuditTrail => {
  const emit = (fields: AuditFields, outcome: "success" | "failure", code?: string) =>
    Effect.clockWith((clock) =>
      Effect.flatMap(RequestId, (requestId) =>
        log.emit(eventOf(fields, requestId, clock.unsafeCurrentTimeMillis(), outcome, code))
      )
    )
  return {
    success: (fields) => emit(fields, "success"),
    audited: (fields, effect, onSuccess = () => ({})) =>
      Effect.onExit(effect, (exit) => {
        if (Exit.isSuccess(exit)) return emit({ ...fields, ...onSuccess(exit.value) }, "success")
        const code = failureCode(exit.cause)
        return code === undefined ? Effect.void : emit(fields, "failure", code)
      })
  }
}

/** The shortest time between two audited failures from one address: one per second. */
export const FAILURE_AUDIT_INTERVAL_MILLIS = 1000

/** How many addresses {@link failedAuthentications} keeps apart; failures from any others share one budget. */
export const MAX_FAILURE_ADDRESSES = 10_000

/** The budget shared by the addresses beyond {@link MAX_FAILURE_ADDRESSES} (no address key looks like it). */
const UNTRACKED = "*"

/**
 * Audits failed authentications without letting whoever sends them flood the log (SPEC §5): at most
 * one event per client address (IPv6 by /64, as rate limits count them) per
 * {@link FAILURE_AUDIT_INTERVAL_MILLIS}; the failures not recorded in between are counted, and the
 * next event from that address says how many (`suppressed`). Requests with no known address share
 * one budget, and so do addresses beyond the `maxAddresses` tracked (a scan from a whole IPv6 /48 is
 * 65,536 addresses): memory, the work per request and the events per second stay bounded however
 * many addresses fail. Quiet addresses are forgotten, at most once per interval. In memory, per
 * isolate or process (like the in-memory rate limiter): N isolates write at most N events per address
 * per second. Driven by `Clock`. The event never holds the credential.
 */
export const failedAuthentications = (log: AuditLog["Type"], maxAddresses: number = MAX_FAILURE_ADDRESSES) => {
  const last = new Map<string, { at: number; suppressed: number }>()
  let swept = Number.NEGATIVE_INFINITY
  return (fields: Pick<AuditEvent, "action">, code: string, clientAddress: string | undefined): Effect.Effect<void> =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      let key = clientAddress === undefined ? "" : addressKey(clientAddress)
      if (!last.has(key) && last.size >= maxAddresses) {
        // Full: forget those with nothing left to report, and after an hour those with a count no
        // event will carry — once per interval, never a sweep per request.
        if (now - swept >= FAILURE_AUDIT_INTERVAL_MILLIS) {
          swept = now
          for (const [k, v] of last) {
            const age = now - v.at
            if ((age >= FAILURE_AUDIT_INTERVAL_MILLIS && v.suppressed === 0) || age >= 3_600_000) last.delete(k)
          }
        }
        if (last.size >= maxAddresses) key = UNTRACKED
      }
      const seen = last.get(key)
      if (seen !== undefined && now - seen.at < FAILURE_AUDIT_INTERVAL_MILLIS) {
        seen.suppressed++
        return Effect.void
      }
      last.set(key, { at: now, suppressed: 0 })
      return Effect.flatMap(RequestId, (requestId) =>
        log.emit({
          time: new Date(now).toISOString(),
          action: fields.action,
          requestId,
          actor: "unauthenticated",
          outcome: "failure",
          code,
          ...(clientAddress !== undefined ? { clientAddress } : {}),
          ...(seen !== undefined && seen.suppressed > 0 ? { suppressed: seen.suppressed } : {})
        })
      )
    })
}
