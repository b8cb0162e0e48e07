/**
 * Pages of any ICR list endpoint (SPEC §10): the items of a page (a JSON array, or an object's
 * `items`), and where the next page is — `Link: rel="next"` (RFC 8288), else a `nextCursor` member
 * sent back as `?cursor=`. A page with neither, or with no items, is the last.
 */

/** The longest `Link` header read (8 KiB); a longer one names no next page. */
export const MAX_LINK_LENGTH = 8192

/** The target of the first `rel="next"` link of a `Link` header, if any. */
export const nextLink = (link: string | undefined | null): string | undefined => {
  // A Link header longer than any page needs is ignored: its regex scan must stay linear and short.
  if (link === undefined || link === null || link.length > MAX_LINK_LENGTH) return undefined
  // Each link-value: <uri-reference> followed by parameters; split on commas outside <…>.
  for (const match of link.matchAll(/<([^>]*)>((?:\s*;\s*[^;,]+)*)/g)) {
    const params = match[2] ?? ""
    if (/;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.test(params)) {
      const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.exec(params)!
      const values = (rel[1] ?? rel[2] ?? "").toLowerCase().split(/\s+/)
      if (values.includes("next")) return match[1]
    }
  }
  return undefined
}

/** A page of a list endpoint: its items, and its `nextCursor` when it names one. */
export interface Page<A = unknown> {
  readonly items: ReadonlyArray<A>
  readonly nextCursor: string | undefined
}

/** The items and cursor of a list answer: a bare array, or `{ items, nextCursor? }`. */
export const pageOf = (body: unknown): Page => {
  if (Array.isArray(body)) return { items: body, nextCursor: undefined }
  if (typeof body === "object" && body !== null) {
    const { items, nextCursor } = body as { items?: unknown; nextCursor?: unknown }
    return {
      items: Array.isArray(items) ? items : [],
      nextCursor: typeof nextCursor === "string" && nextCursor !== "" ? nextCursor : undefined
    }
  }
  return { items: [], nextCursor: undefined }
}

/**
 * Where the page after `url` is: its `Link: rel="next"` target (resolved against `url`), else `url`
 * with `cursor` set to the body's `nextCursor` (and any `page` dropped: the two never go together,
 * SPEC §4). `undefined` on the last page.
 */
export const nextPageUrl = (url: string, link: string | undefined | null, page: Page): string | undefined => {
  if (page.items.length === 0) return undefined
  const linked = nextLink(link)
  if (linked !== undefined) return new URL(linked, url).href
  if (page.nextCursor === undefined) return undefined
  const next = new URL(url)
  next.searchParams.delete("page")
  next.searchParams.set("cursor", page.nextCursor)
  return next.href
}
