/**
 * The audit trail (SPEC §5): one structured event for every mint, revocation, kill-switch event
 * and operator change, whatever its outcome. An event names who did what to which app,
 * installation, key or token, under which request id — and never carries a secret: no token,
 * JWT, key material or ADMIN_TOKEN has a field to go in.
 *
 * The worker writes each event as one JSON line on the console (`layerConsole`), which Workers
 * Logs and Logpush collect; tests capture them in memory (`layerMemory`).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

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
  "app.tokens_revoked"
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
  /** Who acted: an app (by its JWT), the operator (by ADMIN_TOKEN), or a token (on itself). */
  actor: Schema.Literal("app", "operator", "token"),
  outcome: Schema.Literal("success", "failure"),
  /** For a failure: its SPEC §6 code. */
  code: Schema.optionalWith(Schema.String, { exact: true })
}).annotations({ identifier: "AuditEvent" })
/** One audit event. */
export type AuditEvent = typeof AuditEvent.Type

/** Where audit events go. */
export class AuditLog extends Context.Tag("@icr-apps/core/AuditLog")<
  AuditLog,
  {
    /** Records one event; never fails (an audit sink that fails must not fail the request). */
    readonly emit: (event: AuditEvent) => Effect.Effect<void>
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
  ...(event.code !== undefined ? { code: event.code } : {})
})

/** One JSON line per event on `console.log`, tagged `"audit": true` so a log query can pick them out. */
export const toConsole: AuditLog["Type"] = {
  emit: (event) =>
    Effect.sync(() => {
      console.log(JSON.stringify({ audit: true, ...fieldsOf(event) }))
    })
}

/** {@link toConsole} as a layer. */
export const layerConsole: Layer.Layer<AuditLog> = Layer.succeed(AuditLog, toConsole)

/** Events appended to `sink`, for tests to assert on. */
export const layerMemory = (sink: Array<AuditEvent>): Layer.Layer<AuditLog> =>
  Layer.succeed(AuditLog, {
    emit: (event) =>
      Effect.sync(() => {
        sink.push(fieldsOf(event))
      })
  })

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
