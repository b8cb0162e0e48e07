/**
 * Paging (SPEC §4, and §5's listings): `?limit=&page=` offset pages, and the keyset `cursor`
 * extension of `GET /app/installations`, whose cursors name a position in the one listing order,
 * `createdAt` ascending then `id`.
 */
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { InvalidRequest } from "./Problems.js"

/** The default and bounds of `?limit=` (SPEC §4). */
export const PAGE_LIMIT = { default: 10, min: 1, max: 100 } as const

/** A position in the listing order: an item's `createdAt` (epoch ms) and `id`. */
export interface CursorPosition {
  readonly createdAt: number
  readonly id: string
}

/** Cursors are short; anything longer is refused before it is decoded. */
const MAX_CURSOR_LENGTH = 128
const cursorText = /^(0|[1-9][0-9]{0,15})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/

/**
 * The cursor that resumes a listing just after `position`: base64url (no padding) of
 * `<createdAt>.<id>`. Opaque to clients; they only hand back what a page's `nextCursor` gave them.
 */
export const encodeCursor = (position: CursorPosition): string =>
  Encoding.encodeBase64Url(`${position.createdAt}.${position.id}`)

/**
 * The position a cursor names. Strict: only the exact spelling {@link encodeCursor} writes is
 * accepted (no padding, no other alphabet, no upper-case id), so a cursor has one form and a
 * mangled one is refused rather than guessed at.
 */
export const decodeCursor = (cursor: string): Option.Option<CursorPosition> => {
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    return Option.none()
  }
  const text = Either.getOrUndefined(Encoding.decodeBase64UrlString(cursor))
  const match = text === undefined ? null : cursorText.exec(text)
  if (match === null) return Option.none()
  const position = { createdAt: Number(match[1]), id: match[2]! }
  return Number.isSafeInteger(position.createdAt) && encodeCursor(position) === cursor
    ? Option.some(position)
    : Option.none()
}

/**
 * A non-negative integer carried as a query-string value. The description sits on the string side:
 * that is the side OpenAPI documents (the query string), so it is what a reader sees.
 */
const queryInt = (description: string) =>
  Schema.String.pipe(
    Schema.pattern(/^(0|[1-9][0-9]{0,15})$/, { description, message: () => "must be a non-negative integer" }),
    Schema.compose(Schema.NumberFromString)
  )

/** `?limit=`: 1..100, default 10. */
export const LimitParam = Schema.optionalWith(
  queryInt("Items per page, an integer from 1 to 100 (default 10)").pipe(
    Schema.between(PAGE_LIMIT.min, PAGE_LIMIT.max)
  ),
  { exact: true }
)

/** `?page=`: zero-based, default 0. */
export const PageParam = Schema.optionalWith(
  queryInt("Zero-based page number, an integer (default 0)").pipe(Schema.between(0, Number.MAX_SAFE_INTEGER)),
  { exact: true }
)

/** `?cursor=`: a previous page's `nextCursor`, never built by hand. */
export const CursorParam = Schema.optionalWith(
  Schema.String.pipe(
    Schema.pattern(/^[A-Za-z0-9_-]+$/, { message: () => "must be a nextCursor from an earlier page" }),
    Schema.maxLength(MAX_CURSOR_LENGTH, { message: () => "must be a nextCursor from an earlier page" }),
    // `jsonSchema: {}`: documented as the string it is, with the words below (not the length limit's name).
    Schema.filter((s) => Option.isSome(decodeCursor(s)) || "must be a nextCursor from an earlier page", {
      jsonSchema: {}
    })
  ).annotations({
    title: "cursor",
    description:
      "Keyset cursor: the `nextCursor` of the previous page. Start a walk with neither `cursor` nor `page`, " +
      "then follow `nextCursor` until a page has none. Not with `page`."
  }),
  { exact: true }
)

/** `?limit=&page=` of a listing that pages by offset only (SPEC §5). */
export const PageQuery = Schema.Struct({ limit: LimitParam, page: PageParam })
/** `?limit=&page=`. */
export type PageQuery = typeof PageQuery.Type

/** A request for a page by number. */
export interface OffsetRequest {
  readonly _tag: "Offset"
  readonly limit: number
  readonly page: number
}

/** A request for the page just after a cursor's position. */
export interface CursorRequest {
  readonly _tag: "Cursor"
  readonly limit: number
  readonly after: CursorPosition
}

/** What a listing was asked for, with the defaults of SPEC §4 applied. */
export type PageRequest = OffsetRequest | CursorRequest

/** Reads `?limit=&page=` with the defaults of SPEC §4 (limit 10, page 0). */
export const offsetRequest = (query: {
  readonly limit?: number | undefined
  readonly page?: number | undefined
}): OffsetRequest => ({ _tag: "Offset", limit: query.limit ?? PAGE_LIMIT.default, page: query.page ?? 0 })

/**
 * Reads `?limit=&page=&cursor=` (decoded by the query schemas): a request with neither `page` nor
 * `cursor` is page 0, which is also where a cursor walk starts. `cursor` with `page` is refused.
 */
export const pageRequest = (query: {
  readonly limit?: number | undefined
  readonly page?: number | undefined
  readonly cursor?: string | undefined
}): Either.Either<PageRequest, InvalidRequest> => {
  if (query.cursor === undefined) return Either.right(offsetRequest(query))
  if (query.page !== undefined) {
    return Either.left(new InvalidRequest({ detail: "Send either cursor or page, not both" }))
  }
  const limit = query.limit ?? PAGE_LIMIT.default
  return Option.match(decodeCursor(query.cursor), {
    onNone: () => Either.left(new InvalidRequest({ detail: "cursor: must be a nextCursor from an earlier page" })),
    onSome: (after): Either.Either<PageRequest, InvalidRequest> => Either.right({ _tag: "Cursor", limit, after })
  })
}

/** The fields every page body carries besides its items (SPEC §4). */
export const pageFields = {
  page: Schema.Int.pipe(Schema.nonNegative()),
  limit: Schema.Int.pipe(Schema.between(PAGE_LIMIT.min, PAGE_LIMIT.max)),
  total: Schema.Int.pipe(Schema.nonNegative())
}
