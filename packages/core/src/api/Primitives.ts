/**
 * Primitive wire types shared by every schema of the ICR Apps API (SPEC §1).
 */
import * as DateTime from "effect/DateTime"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/** The one API version this implementation serves (SPEC §1). */
export const API_VERSION = "2023-06-16" as const

const uuidPattern = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

/**
 * A UUID: matched case-insensitively on input, always lower-case once decoded (SPEC §1).
 * Any version is accepted, since ids minted elsewhere (v1, v7, …) must still be addressable.
 */
export const Uuid = Schema.String.pipe(
  Schema.pattern(uuidPattern, {
    message: () => "must be a UUID",
    jsonSchema: { format: "uuid" }
  }),
  Schema.compose(Schema.Lowercase),
  Schema.annotations({
    identifier: "Uuid",
    description: "A UUID, lower-case on output and matched case-insensitively on input",
    examples: ["123e4567-e89b-12d3-a456-426614174000"]
  })
)

const rfc3339Utc = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/

/**
 * An RFC 3339 UTC timestamp (`2022-01-01T00:00:00Z`, milliseconds allowed) decoded as a
 * `DateTime.Utc`. Encoded without a fractional part when it is zero, as in the seed's examples.
 */
export const Timestamp = Schema.transformOrFail(
  Schema.String.pipe(
    Schema.pattern(rfc3339Utc, {
      message: () => "must be an RFC 3339 UTC timestamp",
      jsonSchema: { format: "date-time" }
    })
  ),
  Schema.DateTimeUtcFromSelf,
  {
    strict: true,
    decode: (text, _, ast) => {
      const ms = Date.parse(text)
      return Number.isNaN(ms)
        ? ParseResult.fail(new ParseResult.Type(ast, text, "must be a real date and time"))
        : ParseResult.succeed(DateTime.unsafeMake(ms))
    },
    encode: (dateTime) => ParseResult.succeed(DateTime.formatIso(dateTime).replace(/\.000Z$/, "Z"))
  }
).annotations({
  identifier: "Timestamp",
  description: "RFC 3339 UTC timestamp",
  examples: [DateTime.unsafeMake("2022-01-01T00:00:00Z")]
})

/** The opaque identifier of an app (the `iss` of its JWTs). */
export const AppId = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(64),
  Schema.pattern(/^[A-Za-z0-9._-]+$/),
  Schema.annotations({ identifier: "AppId", description: "Opaque app identifier", examples: ["67890"] })
)

/** An app's slug name (`appNameId`), unique per issuer (SPEC §5). */
export const AppName = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9][a-z0-9-]{0,38}$/, {
    message: () => "must match ^[a-z0-9][a-z0-9-]{0,38}$"
  }),
  Schema.annotations({ identifier: "AppName", examples: ["app1"] })
)
