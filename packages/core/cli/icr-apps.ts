#!/usr/bin/env node
/**
 * icr-apps: the SDK from a terminal (Node; it reads and writes files). The commands themselves are
 * the SDK's (`@icr-apps/core/sdk/Cli`); this file parses arguments, reads the key file and prints.
 *
 *   icr-apps keygen [--out DIR]
 *   icr-apps jwt           --app-id ID --key FILE
 *   icr-apps token         --app-id ID --key FILE --base-url URL --installation ID [--permissions JSON]
 *   icr-apps installations --app-id ID --key FILE --base-url URL [--json]
 *   icr-apps exchange      --broker URL --audience AUD --installation ID [--scope S] [--token-file FILE]
 *                          [--fresh] [--github-output]
 *   icr-apps --version
 *
 * ICR_APP_ID, ICR_PRIVATE_KEY (the PEM itself) or ICR_PRIVATE_KEY_FILE, and ICR_BASE_URL stand in
 * for the flags. Standard output carries only the result; standard error says what failed (with the
 * problem's `code` and, for a refused JWT, its `reason`), and with --verbose which base URL is called.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { parseArgs } from "node:util"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import { codeOf, isProblem } from "../src/api/Problems.js"
import * as Cli from "../src/sdk/Cli.js"
import * as AppJwt from "../src/sdk/AppJwt.js"
import * as IcrApps from "../src/sdk/IcrApps.js"
import { actionsIdToken, BrokerExchangeError, exchangeAtBroker } from "../src/sdk/BrokerExchange.js"
import { generateAppKeyPair } from "../src/sdk/Keys.js"

const usage = `usage:
  icr-apps keygen [--out DIR]                     RSA-2048 key pair: app.pem (PKCS#8), app.pub.pem (SPKI)
  icr-apps jwt --app-id ID --key FILE             print an App JWT
  icr-apps token --app-id ID --key FILE --installation ID [--permissions JSON]
                                                  mint an installation token (JSON)
  icr-apps installations --app-id ID --key FILE [--json]
                                                  list every installation (table, or JSON lines)
  icr-apps exchange --broker URL --audience AUD --installation ID [--scope "name:LEVEL …"] [--token-file FILE] [--fresh]
                                                  [--github-output]
                                                  an installation token from a broker, for this workload's
                                                  identity token: GitHub Actions' (ACTIONS_ID_TOKEN_REQUEST_URL/
                                                  _TOKEN) or a file (a Kubernetes projected token); printed
                                                  alone on standard output (masked in the Actions log), or with
                                                  --github-output written as the step output "token"; holds no
                                                  app key
token and installations: --base-url URL (required; the local issuer of npm start is http://127.0.0.1:8787)
  --verbose                                       say on standard error which base URL is called
  --version                                       print the version
environment: ICR_APP_ID, ICR_PRIVATE_KEY (PEM) or ICR_PRIVATE_KEY_FILE, ICR_BASE_URL stand in for the flags`

/** This package's version, from its package.json (beside `cli/` in the sources, two levels up from `dist/cli/`). */
const version = (): string => {
  for (const path of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8")) as {
        name?: string
        version?: string
      }
      if (pkg.name === "@icr-apps/core" && typeof pkg.version === "string") return pkg.version
    } catch {}
  }
  return "unknown"
}

/** Node's parseArgs errors, said briefly (its own text suggests `--` tricks that do not apply here). */
const parse = () => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        "app-id": { type: "string" },
        key: { type: "string" },
        "base-url": { type: "string" },
        installation: { type: "string" },
        permissions: { type: "string" },
        out: { type: "string" },
        json: { type: "boolean" },
        verbose: { type: "boolean", short: "v" },
        version: { type: "boolean" },
        broker: { type: "string" },
        audience: { type: "string" },
        scope: { type: "string" },
        "token-file": { type: "string" },
        fresh: { type: "boolean" },
        "github-output": { type: "boolean" },
        help: { type: "boolean", short: "h" }
      }
    })
  } catch (e) {
    const code = (e as { code?: string }).code
    const option = /'(-[^']*)'/.exec((e as Error).message)?.[1]
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") throw new Cli.UsageError(`unknown option ${option ?? ""}`.trim())
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE")
      throw new Cli.UsageError(`option ${option ?? ""} needs a value`.replace("  ", " "))
    throw new Cli.UsageError("cannot read the arguments")
  }
}

const readKey = (file: string): string => {
  try {
    return readFileSync(file, "utf8")
  } catch (e) {
    throw new Cli.UsageError(`cannot read the key file ${file}: ${(e as NodeJS.ErrnoException).code ?? "unreadable"}`)
  }
}

const keygen = async (dir: string) => {
  const privatePath = join(dir, "app.pem")
  const publicPath = join(dir, "app.pub.pem")
  if (existsSync(privatePath))
    throw new Error(
      `${privatePath} exists; refusing to overwrite a private key (move it away, or run keygen in another folder)`
    )
  const pair = await generateAppKeyPair()
  writeFileSync(privatePath, pair.privatePem, { mode: 0o600 })
  writeFileSync(publicPath, pair.publicPem)
  console.log(`wrote ${privatePath} (private, PKCS#8, mode 600) and ${publicPath} (public, SPKI)`)
  console.log("keep app.pem out of version control (add *.pem to .gitignore)")
}

/** `icr-apps exchange`: the workload's identity token, exchanged at the broker; the token on stdout. */
const exchange = async (values: {
  readonly broker?: string | undefined
  readonly audience?: string | undefined
  readonly installation?: string | undefined
  readonly scope?: string | undefined
  readonly "token-file"?: string | undefined
  readonly fresh?: boolean | undefined
  readonly "github-output"?: boolean | undefined
}): Promise<number> => {
  const missing = (["broker", "installation"] as const).filter((k) => !values[k]).map((k) => `--${k}`)
  if (!values["token-file"] && !values.audience) missing.push("--audience (or --token-file)")
  if (missing.length > 0) throw new Cli.UsageError(`${missing.join(", ")} required`)
  if (values["github-output"] === true && !process.env.GITHUB_OUTPUT)
    throw new Cli.UsageError("--github-output needs GITHUB_OUTPUT (set in a GitHub Actions step)")
  try {
    const subjectToken = values["token-file"]
      ? readFileSync(values["token-file"], "utf8").trim()
      : await actionsIdToken(process.env, values.audience!)
    const token = await exchangeAtBroker({
      broker: values.broker!,
      installation: values.installation!,
      scope: values.scope,
      subjectToken,
      fresh: values.fresh
    })
    // In GitHub Actions, the token never shows in the log, whatever prints it later. The runner reads
    // workflow commands on standard error too; on standard output the line would be captured along
    // with the token by TOKEN=$(icr-apps exchange …), unmasked, and the variable spoiled.
    if (process.env.GITHUB_ACTIONS === "true") console.error(`::add-mask::${token.accessToken}`)
    if (values["github-output"] === true) {
      appendFileSync(process.env.GITHUB_OUTPUT!, `token=${token.accessToken}\n`)
    } else console.log(token.accessToken)
    console.error(`icr-apps: ${token.scope} for ${token.expiresIn} s`)
    return 0
  } catch (e) {
    if (e instanceof BrokerExchangeError) {
      if (e.code === "usage") throw new Cli.UsageError(e.message)
      console.error(`icr-apps: ${e.message}`)
      return 1
    }
    if ((e as NodeJS.ErrnoException).code !== undefined)
      throw new Cli.UsageError(`cannot read the token file: ${(e as NodeJS.ErrnoException).code}`)
    throw e
  }
}

const print: Cli.Print = (line) => Effect.sync(() => console.log(line))

const main = async (): Promise<number> => {
  const { values, positionals } = parse()
  const command = positionals[0]
  if (values.version) {
    console.log(version())
    return 0
  }
  if (values.help || command === undefined) {
    console.log(usage)
    return 0
  }
  if (command === "keygen") {
    await keygen(resolve(values.out ?? "."))
    return 0
  }
  if (command === "exchange") return exchange(values)
  const keyFile = values.key ?? process.env.ICR_PRIVATE_KEY_FILE
  const commands: Record<string, () => Effect.Effect<void, unknown, IcrApps.IcrAppsServices>> = {
    jwt: () => Cli.jwt(print),
    token: () => Cli.token(print, values.installation, values.permissions),
    installations: () =>
      Effect.flatMap(Cli.installations(print, { json: values.json === true }), (n) =>
        n === undefined ? Effect.void : Effect.sync(() => console.error(`${n} installation(s)`))
      )
  }
  const run = commands[command]
  if (run === undefined) throw new Cli.UsageError(`unknown command "${command}"`)
  // `jwt` only signs: it needs no base URL, and calls nothing.
  const callsApi = command !== "jwt"
  let baseUrl: string | undefined
  const program = Effect.gen(function* () {
    const config = yield* Cli.config(
      { appId: values["app-id"], privateKey: keyFile ? readKey(keyFile) : undefined, baseUrl: values["base-url"] },
      { baseUrl: callsApi }
    )
    if (callsApi) baseUrl = config.baseUrl
    if (values.verbose && callsApi) console.error(`icr-apps: ${config.baseUrl}`)
    return yield* Effect.provide(
      run(),
      callsApi
        ? IcrApps.layer(config)
        : (AppJwt.layer(config) as Layer.Layer<IcrApps.IcrAppsServices, AppJwt.InvalidPrivateKey>)
    )
  })
  const exit = await Effect.runPromiseExit(program)
  if (Exit.isSuccess(exit)) return 0
  const failure = Cause.squash(exit.cause)
  if (failure instanceof Cli.UsageError) throw failure
  console.error(
    `icr-apps: ${describeFailure(failure)}${baseUrl !== undefined && isProblem(failure) ? ` (from ${baseUrl})` : ""}`
  )
  return 1
}

/** A failure in one line: its tag, the problem's SPEC §6 `code` and, for a refused JWT, its `reason`; then the message. */
const describeFailure = (failure: unknown): string => {
  const tag = (failure as { _tag?: string } | undefined)?._tag ?? "error"
  const reason = (failure as { reason?: unknown }).reason
  const fields = isProblem(failure)
    ? [`code ${codeOf(failure).code}`, ...(typeof reason === "string" ? [`reason ${reason}`] : [])]
    : []
  const message = failure instanceof Error ? failure.message : "failed"
  return `${tag}${fields.length > 0 ? ` (${fields.join(", ")})` : ""}: ${message}`
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`icr-apps: ${error instanceof Error ? error.message : String(error)}`)
    if (error instanceof Cli.UsageError) console.error(usage)
    process.exit(2)
  }
)
