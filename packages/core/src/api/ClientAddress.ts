/**
 * Client addresses as SPEC §1 limits them (and §8's broker): an IPv4 address as itself, an IPv6
 * address by its /64. Shared by the issuer and the broker, so both group addresses alike.
 */

const ipv4 = (text: string): Array<number> | undefined => {
  const parts = text.split(".")
  if (parts.length !== 4 || !parts.every((p) => /^[0-9]{1,3}$/.test(p))) return undefined
  const octets = parts.map(Number)
  return octets.every((o) => o <= 255) ? octets : undefined
}

/** The eight 16-bit groups of an IPv6 address (`::`, an IPv4 tail, zone and brackets allowed). */
const ipv6 = (text: string): Array<number> | undefined => {
  const bare = text.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "")
  const halves = bare.split("::")
  if (halves.length > 2) return undefined
  const groupsOf = (half: string): Array<number> | undefined => {
    if (half === "") return []
    const out: Array<number> = []
    const pieces = half.split(":")
    for (const [i, piece] of pieces.entries()) {
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = ipv4(piece)
        if (v4 === undefined) return undefined
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
      } else if (/^[0-9a-f]{1,4}$/i.test(piece)) out.push(Number.parseInt(piece, 16))
      else return undefined
    }
    return out
  }
  const head = groupsOf(halves[0]!)
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : []
  if (head === undefined || tail === undefined) return undefined
  if (halves.length === 1) return head.length === 8 ? head : undefined
  const missing = 8 - head.length - tail.length
  return missing >= 1 ? [...head, ...new Array<number>(missing).fill(0), ...tail] : undefined
}

/**
 * An address without the port some proxies append to it in `x-forwarded-for` (`192.0.2.1:51234`,
 * `[2001:db8::1]:443`): a client picks a fresh source port per connection, so a port must never make
 * a key of its own. A bare IPv6 address (`2001:db8::443`) has no port; anything else is left as is.
 */
const withoutPort = (text: string): string => {
  const v4 = /^([0-9.]+):([0-9]{1,5})$/.exec(text)
  if (v4 !== null && Number(v4[2]) <= 65535) return v4[1]!
  const v6 = /^(\[[^\]]+\]):([0-9]{1,5})$/.exec(text)
  if (v6 !== null && Number(v6[2]) <= 65535) return v6[1]!
  return text
}

/**
 * The key a client address is limited under: an IPv4 address as itself (an IPv4-mapped IPv6
 * address too), an IPv6 address by its /64 — the block one subscriber is usually given, so
 * rotating through it does not escape the limit. Anything unparseable is its own key.
 */
export const addressKey = (address: string): string => {
  const text = withoutPort(address.trim().toLowerCase())
  const v4 = ipv4(text)
  if (v4 !== undefined) return `ip4:${v4.join(".")}`
  const v6 = ipv6(text)
  if (v6 === undefined) return `addr:${text.slice(0, 64)}`
  if (v6.slice(0, 5).every((g) => g === 0) && v6[5] === 0xffff) {
    return `ip4:${[v6[6]! >> 8, v6[6]! & 255, v6[7]! >> 8, v6[7]! & 255].join(".")}`
  }
  return `ip6:${v6
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`
}
