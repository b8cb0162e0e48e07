#!/usr/bin/env node
/**
 * icr-apps: the SDK from a terminal. Node only (it reads and writes files); everything it does goes
 * through the SDK, so it retries, learns clock skew and redacts secrets the same way.
 *
 *   icr-apps keygen [--out DIR]
 *   icr-apps jwt           --app-id ID --key FILE
 *   icr-apps token         --app-id ID --key FILE --installation ID [--permissions JSON] [--base-url URL]
 *   icr-apps installations --app-id ID --key FILE [--json] [--base-url URL]
 *
 * ICR_APP_ID, ICR_PRIVATE_KEY (the PEM itself) or ICR_PRIVATE_KEY_FILE, and ICR_BASE_URL stand in
 * for the flags.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "node:util"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { AppJwt } from "../src/AppJwt.js"
import { DEFAULT_BASE_URL, IcrAppsClient } from "../src/Client.js"
import { toPem } from "../src/Der.js"
import { Installation } from "../src/Domain/Installations.js"
import { Permissions } from "../src/Domain/Permissions.js"
import { codeOf, type Problem, Problems } from "../src/Domain/Problems.js"
import { InstallationAccessToken } from "../src/Domain/Tokens.js"
import * as IcrApps from "../src/IcrApps.js"

const usage = `usage:
  icr-apps keygen [--out DIR]                     RSA-2048 key pair: app.pem (PKCS#8), app.pub.pem (SPKI)
  icr-apps jwt --app-id ID --key FILE             print an App JWT
  icr-apps token --app-id ID --key FILE --installation ID [--permissions JSON]
                                                  mint an installation token (JSON)
  icr-apps installations --app-id ID --key FILE [--json]
                                                  list every installation (table, or JSON lines)
common: --base-url URL (default ${DEFAULT_BASE_URL}); env ICR_APP_ID, ICR_PRIVATE_KEY(_FILE), ICR_BASE_URL`

class UsageError extends Error {}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "app-id": { type: "string" },
    key: { type: "string" },
    "base-url": { type: "string" },
    installation: { type: "string" },
    permissions: { type: "string" },
    out: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" }
  }
})

const keygen = async (dir: string) => {
  const pair = (await crypto.subtle.generateKey(
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ["sign", "verify"]
  )) as CryptoKeyPair
  const privatePath = join(dir, "app.pem")
  const publicPath = join(dir, "app.pub.pem")
  if (existsSync(privatePath)) throw new UsageError(`${privatePath} exists; refusing to overwrite a private key`)
  const pkcs8 = new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer)
  const spki = new Uint8Array((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer)
  writeFileSync(privatePath, toPem("PRIVATE KEY", pkcs8), { mode: 0o600 })
  writeFileSync(publicPath, toPem("PUBLIC KEY", spki))
  console.log(`wrote ${privatePath} (private, PKCS#8, mode 600) and ${publicPath} (public, SPKI)`)
}

const sdkConfig = (): IcrApps.IcrAppsConfig => {
  const appId = values["app-id"] ?? process.env.ICR_APP_ID
  if (!appId) throw new UsageError("--app-id (or ICR_APP_ID) is required")
  const keyFile = values.key ?? process.env.ICR_PRIVATE_KEY_FILE
  const privateKey = keyFile ? readFileSync(keyFile, "utf8") : process.env.ICR_PRIVATE_KEY
  if (!privateKey) throw new UsageError("--key FILE (or ICR_PRIVATE_KEY / ICR_PRIVATE_KEY_FILE) is required")
  return {
    appId,
    privateKey: Redacted.make(privateKey),
    baseUrl: values["base-url"] ?? process.env.ICR_BASE_URL ?? DEFAULT_BASE_URL
  }
}

const program = (command: string) =>
  Effect.gen(function* () {
    switch (command) {
      case "jwt": {
        const jwt = yield* AppJwt
        console.log(Redacted.value(yield* jwt.get))
        return
      }
      case "token": {
        const id = values.installation
        if (!id) return yield* Effect.die(new UsageError("--installation ID is required"))
        const permissions = values.permissions
          ? yield* Schema.decodeUnknown(Schema.parseJson(Permissions))(values.permissions).pipe(
              Effect.orDieWith(() => new UsageError("--permissions must be a JSON object of permission levels"))
            )
          : undefined
        const client = yield* IcrAppsClient
        const token = yield* client.createInstallationAccessToken(id, { permissions })
        console.log(JSON.stringify(Schema.encodeSync(InstallationAccessToken)(token), null, 2))
        return
      }
      case "installations": {
        const client = yield* IcrAppsClient
        const encode = Schema.encodeSync(Installation)
        if (values.json) {
          yield* Stream.runForEach(client.installations(), (i) =>
            Effect.sync(() => console.log(JSON.stringify(encode(i))))
          )
          return
        }
        const rows = Array.from(yield* Stream.runCollect(client.installations()), (i) => {
          const e = encode(i)
          return [
            e.id,
            e.organizationId,
            e.createdAt,
            Object.entries(e.permissions)
              .map(([k, v]) => `${k}:${v}`)
              .join(",")
          ]
        })
        const header = ["ID", "ORGANIZATION", "CREATED", "PERMISSIONS"]
        const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)))
        for (const row of [header, ...rows])
          console.log(
            row
              .map((cell, c) => cell.padEnd(widths[c]!))
              .join("  ")
              .trimEnd()
          )
        console.error(`${rows.length} installation(s)`)
        return
      }
      default:
        return yield* Effect.die(new UsageError(`unknown command "${command}"`))
    }
  })

const main = async () => {
  const command = positionals[0]
  if (values.help || command === undefined) {
    console.log(usage)
    return 0
  }
  if (command === "keygen") {
    await keygen(values.out ?? ".")
    return 0
  }
  const exit = await Effect.runPromiseExit(Effect.provide(program(command), IcrApps.layer(sdkConfig())))
  if (exit._tag === "Success") return 0
  const failure =
    exit.cause._tag === "Fail" ? exit.cause.error : exit.cause._tag === "Die" ? exit.cause.defect : undefined
  if (failure instanceof UsageError) throw failure
  const tag = (failure as { _tag?: string } | undefined)?._tag
  const code = tag !== undefined && tag in Problems ? ` (${codeOf(failure as Problem).code})` : ""
  console.error(`icr-apps: ${tag ?? "error"}${code}: ${failure instanceof Error ? failure.message : "failed"}`)
  return 1
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`icr-apps: ${error instanceof Error ? error.message : String(error)}`)
    if (error instanceof UsageError) console.error(usage)
    process.exit(2)
  }
)
