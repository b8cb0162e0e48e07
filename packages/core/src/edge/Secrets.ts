/**
 * Comparing secrets (operator tokens) without leaking where they differ: one piece for the issuer
 * and the broker.
 */

/** Whether two secrets are equal, in time independent of their content and length: SHA-256 of both, compared in full. */
export const secretsEqual = async (a: string, b: string): Promise<boolean> => {
  const encoder = new TextEncoder()
  const [da, db] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b))
  ])
  const x = new Uint8Array(da)
  const y = new Uint8Array(db)
  let diff = 0
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!
  return diff === 0
}
