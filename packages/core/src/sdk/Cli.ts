/**
 * The library half of the `icr-apps` command: its configuration (flags over the SDK's own
 * environment variables) and its commands, as Effects over the SDK's services. The bin
 * (`cli/icr-apps.ts`) only parses arguments, reads files and prints; everything it does goes
 * through the SDK, so it retries, learns clock skew and redacts secrets the same way.
 */
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Installation } from "../api/Installations.js"
import { Permissions } from "../api/Permissions.js"
import { InstallationAccessToken } from "../api/Tokens.js"
import { AppJwt } from "./AppJwt.js"
import { checkBaseUrl, IcrAppsClient } from "./Client.js"
import * as IcrApps from "./IcrApps.js"

/** A mistake in how the command was called (exit status 2, with the usage). */
export class UsageError extends Error {
  override readonly name = "UsageError"
}

/** The flags the commands read; each stands in for one of the SDK's environment variables. */
export interface CliFlags {
  readonly appId?: string | undefined
  /** The PEM text of the private key (the bin reads `--key FILE` into it). */
  readonly privateKey?: string | undefined
  readonly baseUrl?: string | undefined
}

/**
 * The SDK's configuration for the CLI: {@link IcrApps.config} read from the flags first, then the
 * environment. Unlike a library, the CLI never defaults the base URL: calling production by
 * accident from a terminal is worse than a usage error.
 */
export const config = (
  flags: CliFlags,
  options: {
    /** Whether the command calls the API (`jwt` only signs, and needs no base URL). Default true. */
    readonly baseUrl?: boolean
  } = {}
): Effect.Effect<IcrApps.IcrAppsConfig, UsageError> => {
  const required = options.baseUrl === false ? REQUIRED.filter(([name]) => name !== "ICR_BASE_URL") : REQUIRED
  const given = new Map<string, string>()
  if (flags.appId) given.set("ICR_APP_ID", flags.appId)
  if (flags.privateKey) given.set("ICR_PRIVATE_KEY", flags.privateKey)
  if (flags.baseUrl) given.set("ICR_BASE_URL", flags.baseUrl)
  const provider = ConfigProvider.fromMap(given).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
  return Effect.withConfigProvider(
    Effect.gen(function* () {
      const missing: Array<string> = []
      for (const [name, flag] of required) {
        const value = yield* Effect.orElseSucceed(Config.option(Config.nonEmptyString(name)), () => Option.none())
        if (Option.isNone(value)) missing.push(`${flag} (or ${name})`)
      }
      if (missing.length > 0) return yield* Effect.fail(new UsageError(`${missing.join(", ")} required`))
      const config = yield* Effect.mapError(IcrApps.config, (e) => new UsageError(e.message))
      if (options.baseUrl !== false) {
        yield* Effect.mapError(checkBaseUrl(config.baseUrl ?? ""), (e) => new UsageError(`--base-url: ${e.message}`))
      }
      return config
    }),
    provider
  )
}

const REQUIRED = [
  ["ICR_APP_ID", "--app-id ID"],
  ["ICR_PRIVATE_KEY", "--key FILE"],
  ["ICR_BASE_URL", "--base-url URL"]
] as const

/** What a command prints, line by line. */
export type Print = (line: string) => Effect.Effect<void>

/** `jwt`: prints an App JWT. */
export const jwt = (print: Print) =>
  Effect.flatMap(AppJwt, (j) => Effect.flatMap(j.get, (t) => print(Redacted.value(t))))

/** `token`: mints an installation token (narrowed to `permissions`, a JSON object, when given) and prints it as JSON. */
export const token = (print: Print, installationId: string | undefined, permissions: string | undefined) =>
  Effect.gen(function* () {
    if (!installationId) return yield* Effect.fail(new UsageError("--installation ID is required"))
    const narrowed =
      permissions === undefined
        ? undefined
        : yield* Schema.decodeUnknown(Schema.parseJson(Permissions))(permissions).pipe(
            Effect.mapError(() => new UsageError("--permissions must be a JSON object of permission levels"))
          )
    const client = yield* IcrAppsClient
    const minted = yield* client.createInstallationAccessToken(installationId, { permissions: narrowed })
    yield* print(JSON.stringify(Schema.encodeSync(InstallationAccessToken)(minted), null, 2))
  })

/** `installations`: every installation, as a table or (with `json`) one JSON object per line. */
export const installations = (print: Print, options: { readonly json: boolean }) =>
  Effect.gen(function* () {
    const client = yield* IcrAppsClient
    const encode = Schema.encodeSync(Installation)
    if (options.json) {
      return yield* Stream.runForEach(client.installations(), (i) => print(JSON.stringify(encode(i))))
    }
    const rows = Array.from(yield* Stream.runCollect(client.installations()), (i) => {
      const e = encode(i)
      const permissions = Object.entries(e.permissions).map(([k, v]) => `${k}:${v}`)
      return [e.id, e.organizationId, e.createdAt, permissions.join(",")]
    })
    const header = ["ID", "ORGANIZATION", "CREATED", "PERMISSIONS"]
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)))
    for (const row of [header, ...rows]) {
      yield* print(
        row
          .map((cell, c) => cell.padEnd(widths[c]!))
          .join("  ")
          .trimEnd()
      )
    }
    return rows.length
  })
