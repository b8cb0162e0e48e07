/** Test fixtures for core's own tests (testkit depends on core, so core cannot use it). */
import { toPem } from "../src/Der.js"

/** A fresh RS256 key pair and its SPKI PEM. */
export const rsaKeyPair = async (bits = 2048) => {
  const pair = (await crypto.subtle.generateKey(
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ["sign", "verify"]
  )) as CryptoKeyPair
  const spki = new Uint8Array((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer)
  const pkcs8 = new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer)
  return { ...pair, publicPem: toPem("PUBLIC KEY", spki), privatePem: toPem("PRIVATE KEY", pkcs8) }
}
