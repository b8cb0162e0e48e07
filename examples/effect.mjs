// The SDK as Effect layers: `IcrApps.layer` provides `InstallationTokens` and `IcrAppsClient`; every
// failure is a tagged error in the error channel.
// ICR_APP_ID, ICR_PRIVATE_KEY (the PEM) or ICR_PRIVATE_KEY_FILE, ICR_BASE_URL, ICR_INSTALLATION_ID.
import { readFileSync } from "node:fs"
import process from "node:process"
import { IcrApps, IcrAppsClient, InstallationTokens, Problems } from "@icr-apps/core"
import { Chunk, DateTime, Effect, Redacted, Stream } from "effect"

const env = process.env
// What the example needs, said before anything runs (an unset variable would otherwise reach the SDK as undefined).
const unset = ["ICR_APP_ID", "ICR_BASE_URL", "ICR_INSTALLATION_ID"].filter((name) => !env[name])
if (!env.ICR_PRIVATE_KEY && !env.ICR_PRIVATE_KEY_FILE) unset.push("ICR_PRIVATE_KEY or ICR_PRIVATE_KEY_FILE")
if (unset.length > 0) {
  console.error(
    `set ${unset.join(", ")} (the walk-through's try-it.env has the ids; ICR_BASE_URL=http://127.0.0.1:8787)`
  )
  process.exit(2)
}

const program = Effect.gen(function* () {
  const tokens = yield* InstallationTokens
  const token = yield* tokens.get(env.ICR_INSTALLATION_ID) // minted once, reused, refreshed 5 min before expiry
  const client = yield* IcrAppsClient
  const installations = yield* Stream.runCollect(client.installations()) // every page
  const value = Redacted.value(token.token)
  yield* Effect.log(`token ${value.slice(0, 4)}… valid until ${DateTime.formatIso(token.expiresAt)}`)
  return `installations: ${Chunk.toReadonlyArray(installations).map((i) => i.id)}`
})

const privateKey = env.ICR_PRIVATE_KEY || readFileSync(env.ICR_PRIVATE_KEY_FILE, "utf8")

program.pipe(
  Effect.provide(IcrApps.layer({ appId: env.ICR_APP_ID, privateKey, baseUrl: env.ICR_BASE_URL })),
  Effect.match({
    onSuccess: (summary) => console.log(summary),
    onFailure: (e) => {
      // A tagged error: `_tag` (InvalidJwt, TransportError, …); API problems map to their SPEC §6 `code`.
      const code = Problems.isProblem(e) ? Problems.codeOf(e).code : undefined
      console.error(`failed: ${JSON.stringify({ _tag: e._tag, code, reason: e.reason })} ${e.message}`)
      process.exitCode = 1
    }
  }),
  Effect.runPromise
)
