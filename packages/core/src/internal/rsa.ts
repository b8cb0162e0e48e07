/** The one signature algorithm of App JWTs (SPEC §2), as jose names it and as WebCrypto does. */

/** The JWS `alg` of every App JWT. */
export const JWS_ALG = "RS256"

/** RS256 as a WebCrypto algorithm (RSASSA-PKCS1-v1_5 with SHA-256). */
export const RS256 = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as const
