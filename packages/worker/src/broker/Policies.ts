/**
 * Trust policies (SPEC §8): which caller may get tokens for which installations, with at most
 * which permissions, and whether it may list installations. Deny by default: a caller no policy
 * names gets nothing, and a request beyond its policy is refused, never cut down.
 *
 * `BROKER_POLICIES` is decoded here, one policy at a time, so that every bad policy gets its own
 * error naming the path of its first problem (`BROKER_POLICIES[2] "deploy": identity.sub: …`).
 */
import {
  canonical,
  exceeding,
  type Permissions,
  Permissions as PermissionsSchema
} from "@icr-apps/core/api/Permissions"
import { Uuid } from "@icr-apps/core/api/Primitives"
import * as Arr from "effect/Array"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { RE2JS } from "re2js"

const NonEmpty = Schema.String.pipe(Schema.minLength(1, { message: () => "must not be empty" }))

/** The longest pattern accepted. */
const MAX_PATTERN_LENGTH = 1024

/** Compiled patterns, by source: each policy's patterns are compiled once, when first decoded. */
const compiledPatterns = new Map<string, RE2JS>()

/**
 * A pattern in RE2 syntax, compiled fully anchored (as octo-sts's `subject_pattern` and
 * `claim_pattern`): it must match the whole value, `repo:acme/.*` never matches `xrepo:acme/x`.
 * RE2 runs in time linear in the value, whatever the pattern: no catastrophic backtracking.
 */
export const compilePattern = (source: string): RE2JS | undefined => {
  const known = compiledPatterns.get(source)
  if (known !== undefined) return known
  let compiled: RE2JS
  try {
    // The source alone first: it must be a pattern by itself, not one that closes the group around it.
    RE2JS.compile(source)
    compiled = RE2JS.compile(`^(?:${source})$`)
  } catch {
    return undefined
  }
  if (compiledPatterns.size >= 10_000) compiledPatterns.clear()
  compiledPatterns.set(source, compiled)
  return compiled
}

const Pattern = NonEmpty.pipe(
  Schema.maxLength(MAX_PATTERN_LENGTH, { message: () => `must be at most ${MAX_PATTERN_LENGTH} characters` }),
  Schema.filter((source) => compilePattern(source) !== undefined || "is not a valid RE2 pattern")
)

/**
 * A caller identified by an OIDC issuer and any of: its exact `sub`, a pattern its `sub` matches,
 * exact values of some claims, patterns some claims match. Every one given must hold.
 */
const OidcIdentity = Schema.Struct({
  issuer: NonEmpty,
  sub: Schema.optional(NonEmpty),
  subjectPattern: Schema.optional(Pattern),
  claims: Schema.optional(
    Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Number, Schema.Boolean) }).pipe(
      Schema.filter((claims) => Object.keys(claims).length > 0 || "must name at least one claim")
    )
  ),
  claimPatterns: Schema.optional(
    Schema.Record({ key: Schema.String, value: Pattern }).pipe(
      Schema.filter((claims) => Object.keys(claims).length > 0 || "must name at least one claim")
    )
  )
})
/** A caller that comes over a service binding whose `props.service` is this name. */
const ServiceIdentity = Schema.Struct({ service: NonEmpty })

/** Who a policy is for. */
export type Identity = typeof OidcIdentity.Type | typeof ServiceIdentity.Type

const Installations = Schema.NonEmptyArray(Uuid)

const PolicyFields = Schema.Struct({
  name: NonEmpty,
  identity: Schema.Unknown,
  installations: Schema.Unknown,
  permissions: PermissionsSchema.pipe(
    Schema.filter((p) => Object.keys(p).length > 0 || "must grant at least one permission")
  ),
  list: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  app: Schema.optional(NonEmpty),
  allowAnySubject: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/** One trust policy, decoded. */
export interface Policy {
  readonly name: string
  readonly identity: Identity
  /** Lower-case installation ids, or every installation. */
  readonly installations: "*" | ReadonlyArray<string>
  /** The most a token may carry (never empty: an empty grant would mean "everything" to the issuer). */
  readonly permissions: Permissions
  /** Whether `GET /installations` is allowed. */
  readonly list: boolean
  /** The app whose identity mints for this policy, when the broker holds several (default: BROKER_APP_ID). */
  readonly app?: string | undefined
  /** Whether its `subjectPattern` may match any subject (said explicitly; see {@link matchesAnySubject}). */
  readonly allowAnySubject: boolean
}

/**
 * Subjects no real identity has: a pattern that matches one of them (`.*`, `.+`, `(?s).*`, `[^/]*`,
 * `(repo:x)?`, …) would let every identity the issuer vouches for through — every repository on
 * GitHub, say — which is refused unless the policy says `"allowAnySubject": true`.
 */
const IMPROBABLE_SUBJECTS = ["", "x", "Zq9~ !#%&*+,;<=>@[]^`{|}$()?.-_:/"]

/** Whether a pattern matches a subject no real identity has (and so, in effect, any subject). */
export const matchesAnySubject = (source: string): boolean => {
  const compiled = compilePattern(source)
  return compiled !== undefined && IMPROBABLE_SUBJECTS.some((s) => compiled.matches(s))
}

const strict = { errors: "first", onExcessProperty: "error" } as const

/** The first issue of a parse error as `path: message`. */
const firstIssue = (error: ParseResult.ParseError, prefix: ReadonlyArray<PropertyKey> = []): string => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  const path = [...prefix, ...(issue?.path ?? [])].map(String).join(".")
  const message = (issue?.message ?? "is invalid").replace(/\s+/g, " ").slice(0, 200)
  return path === "" ? message : `${path}: ${message}`
}

const IDENTITY_FORMS = "identity: must be { issuer, sub | subjectPattern | claims | claimPatterns } or { service }"

const decodeIdentity = (input: unknown): Either.Either<Identity, string> => {
  if (!isObject(input)) return Either.left(IDENTITY_FORMS)
  const matchers = ["sub", "subjectPattern", "claims", "claimPatterns"].filter((k) => k in input)
  const schema = "service" in input ? ServiceIdentity : matchers.length > 0 ? OidcIdentity : undefined
  if (schema === undefined) return Either.left(IDENTITY_FORMS)
  if ("sub" in input && "subjectPattern" in input)
    return Either.left("identity: sub and subjectPattern cannot both be given")
  return Either.mapLeft(Schema.decodeUnknownEither(schema as Schema.Schema<Identity, unknown>)(input, strict), (e) =>
    firstIssue(e, ["identity"])
  )
}

const isObject = (input: unknown): input is object =>
  input !== null && typeof input === "object" && !Array.isArray(input)

const decodeInstallations = (input: unknown): Either.Either<"*" | ReadonlyArray<string>, string> => {
  if (input === "*") return Either.right("*")
  if (!Array.isArray(input) || input.length === 0)
    return Either.left('installations: must be "*" or a non-empty array of installation ids')
  return Either.mapLeft(Schema.decodeUnknownEither(Installations)(input, strict), (e) =>
    firstIssue(e, ["installations"])
  )
}

/** Decodes one policy, or says what is wrong with it (its first problem, with its path). */
export const decodePolicy = (input: unknown): Either.Either<Policy, string> =>
  Either.gen(function* () {
    if (!isObject(input)) return yield* Either.left("must be a JSON object")
    const fields = yield* Either.mapLeft(Schema.decodeUnknownEither(PolicyFields)(input, strict), (e) => firstIssue(e))
    const identity = yield* decodeIdentity(fields.identity)
    const installations = yield* decodeInstallations(fields.installations)
    if ("subjectPattern" in identity && identity.subjectPattern !== undefined && !fields.allowAnySubject)
      if (matchesAnySubject(identity.subjectPattern))
        return yield* Either.left(
          'identity.subjectPattern: matches any subject; narrow it, or say "allowAnySubject": true'
        )
    return { ...fields, identity, installations, permissions: canonical(fields.permissions) }
  })

/** What `BROKER_POLICIES` decoded to: the policies, or one error per bad policy (and per conflict). */
export const decodePolicies = (
  json: string | undefined,
  trustedIssuers: ReadonlyArray<string>,
  apps?: ReadonlyArray<string>
): Either.Either<ReadonlyArray<Policy>, ReadonlyArray<string>> => {
  if (json === undefined || json.trim() === "") return Either.left(["BROKER_POLICIES is not set"])
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch {
    return Either.left(["BROKER_POLICIES is not valid JSON"])
  }
  if (!Array.isArray(parsed)) return Either.left(["BROKER_POLICIES must be a JSON array of policies"])
  return decodePolicyArray(parsed, trustedIssuers, "BROKER_POLICIES", apps)
}

/**
 * Decodes an array of policies (BROKER_POLICIES, or a document put through the operator API), one
 * error per bad policy, each labelled `<label>[i] "name"` and naming the path of its first problem.
 */
export const decodePolicyArray = (
  parsed: ReadonlyArray<unknown>,
  trustedIssuers: ReadonlyArray<string>,
  label: string,
  apps?: ReadonlyArray<string>
): Either.Either<ReadonlyArray<Policy>, ReadonlyArray<string>> => {
  const errors: Array<string> = []
  const policies: Array<Policy> = []
  const names = new Set<string>()
  parsed.forEach((input, index) => {
    const rawName = (input as { name?: unknown } | null)?.name
    const where = `${label}[${index}]${typeof rawName === "string" ? ` ${JSON.stringify(rawName.slice(0, 64))}` : ""}`
    const decoded = decodePolicy(input)
    if (Either.isLeft(decoded)) {
      errors.push(`${where}: ${decoded.left}`)
      return
    }
    const policy = decoded.right
    if (names.has(policy.name)) errors.push(`${where}: name: another policy is already called that`)
    names.add(policy.name)
    if ("issuer" in policy.identity && !trustedIssuers.includes(policy.identity.issuer))
      errors.push(`${where}: identity.issuer: not one of BROKER_OIDC_ISSUERS`)
    if (policy.app !== undefined && apps !== undefined && !apps.includes(policy.app))
      errors.push(`${where}: app: not one of the broker's apps (BROKER_APP_ID, BROKER_APPS)`)
    policies.push(policy)
  })
  return errors.length > 0 ? Either.left(errors) : Either.right(policies)
}

/** A caller the broker has authenticated. */
export type Caller =
  | {
      readonly kind: "oidc"
      readonly issuer: string
      readonly sub: string
      /** Every claim of the verified identity token. */
      readonly claims: Readonly<Record<string, unknown>>
    }
  | { readonly kind: "service"; readonly service: string }

/** A stable key for a caller (rate limits, audit). */
export const callerKey = (caller: Caller): string =>
  caller.kind === "service" ? `service:${caller.service}` : `oidc:${caller.issuer}#${caller.sub}`

/** Whether a policy is for this caller. */
export const names = (identity: Identity, caller: Caller): boolean => {
  if ("service" in identity) return caller.kind === "service" && caller.service === identity.service
  if (caller.kind !== "oidc" || caller.issuer !== identity.issuer) return false
  if (identity.sub !== undefined && caller.sub !== identity.sub) return false
  if (identity.subjectPattern !== undefined && compilePattern(identity.subjectPattern)?.matches(caller.sub) !== true)
    return false
  if (
    identity.claims !== undefined &&
    !Object.entries(identity.claims).every(([name, value]) => caller.claims[name] === value)
  )
    return false
  if (identity.claimPatterns !== undefined)
    return Object.entries(identity.claimPatterns).every(([name, pattern]) => {
      const value = caller.claims[name]
      // Ids are numbers in some providers' tokens and strings in others': a pattern sees the decimal text.
      const text =
        typeof value === "string"
          ? value
          : typeof value === "number" && Number.isFinite(value)
            ? String(value)
            : undefined
      return text !== undefined && compilePattern(pattern)?.matches(text) === true
    })
  return true
}

/** Whether a policy reaches an installation (lower-case id). */
export const reaches = (policy: Policy, installationId: string): boolean =>
  policy.installations === "*" || policy.installations.includes(installationId)

/** Why a request was refused: nobody's policy, not this installation, or more than allowed. */
export type Refusal =
  | { readonly _tag: "NoPolicy" }
  | { readonly _tag: "NotReachable" }
  | { readonly _tag: "BeyondPolicy"; readonly exceeding: ReadonlyArray<string> }

/** What a request gets: the policy that allows it and the permissions of the token. */
export interface Grant {
  readonly policy: Policy
  readonly permissions: Permissions
}

/**
 * Decides a token request. The first policy, in document order, that names the caller, reaches
 * the installation and covers the request wins; without `requested`, the token gets that
 * policy's permissions. A request beyond every such policy is refused, not narrowed.
 */
export const decide = (
  policies: ReadonlyArray<Policy>,
  caller: Caller,
  installationId: string,
  requested: Permissions | undefined
): Either.Either<Grant, Refusal> => {
  const mine = policies.filter((p) => names(p.identity, caller))
  if (mine.length === 0) return Either.left({ _tag: "NoPolicy" })
  const reaching = mine.filter((p) => reaches(p, installationId))
  if (reaching.length === 0) return Either.left({ _tag: "NotReachable" })
  if (requested === undefined) return Either.right({ policy: reaching[0]!, permissions: reaching[0]!.permissions })
  const covering = reaching.find((p) => exceeding(requested, p.permissions).length === 0)
  if (covering !== undefined) return Either.right({ policy: covering, permissions: canonical(requested) })
  // Name what the closest policy lacks: the one that leaves the fewest permissions uncovered.
  const lacks = Arr.map(reaching, (p) => exceeding(requested, p.permissions))
  const fewest = lacks.reduce((a, b) => (b.length < a.length ? b : a))
  return Either.left({ _tag: "BeyondPolicy", exceeding: fewest })
}

/** The policies that let this caller list installations. */
export const listing = (policies: ReadonlyArray<Policy>, caller: Caller): ReadonlyArray<Policy> =>
  policies.filter((p) => p.list && names(p.identity, caller))

/** Parses `scope`: space-separated `name:LEVEL`, each name once. */
export const parseScope = (scope: string): Either.Either<Permissions, string> => {
  const tokens = scope.split(" ").filter((t) => t !== "")
  if (tokens.length === 0) return Either.left("scope is empty; omit it to get the policy's permissions")
  const grant: Record<string, string> = {}
  for (const token of tokens) {
    const match = /^([a-z_]{1,64}):([A-Z]{1,16})$/.exec(token)
    if (match === null) return Either.left(`scope: "${token.slice(0, 80)}" is not name:LEVEL`)
    if (match[1]! in grant) return Either.left(`scope: ${match[1]} is named twice`)
    grant[match[1]!] = match[2]!
  }
  return Either.mapLeft(Schema.decodeUnknownEither(PermissionsSchema)(grant, strict), (e) => `scope: ${firstIssue(e)}`)
}

/** A grant as a `scope` string, in catalog order. */
export const formatScope = (permissions: Permissions): string =>
  Object.entries(canonical(permissions))
    .map(([name, level]) => `${name}:${level}`)
    .join(" ")
