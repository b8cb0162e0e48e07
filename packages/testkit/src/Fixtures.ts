/**
 * FIXTURE KEYS — FOR TESTS ONLY. These RSA-2048 private keys are published in this package's
 * source, so anyone can sign with them: never register them with a real issuer, never use them
 * outside tests. They exist so a test (and `FakeIssuer.layer`) can skip generating an RSA key
 * (~100–200 ms each); `generateAppKeyPair()` makes a fresh one whenever a test needs its own.
 */
import { type AppKeyPair, fromPkcs8 } from "./Keys.js"

/** PKCS#8 DER of the fixture keys, base64 (TEST ONLY: see the module comment). */
const TEST_ONLY_PKCS8 = [
  "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCfPdRHLFK2OhV4zDIhxTxs47EFAegT29lwom7rQ9Uj6W+j" +
    "mphnNiDCgf7LU7JiBtc+rLrjnJC7CLEnBCFlAJwo6mmzr+iAj2AzTiZgqgoG+Tju0U8QGzfq8+C3f8+gLbZUBpnLfgOaiiLC" +
    "QW+NGT4YqmVmvx4sMFbtaMJQ0o5ZFKNTP9msffpNJ9cEZaF+9BBlWaxyJEbBsxK2aRnOgG1c/EC0345ExWLAhninHzPR5G/m" +
    "xcxqa/w9/b95xMgqL1StuXtCbG7qSfFIQ9UzyZRuTFy6KKxtM15yyZVYUzMGO+XvR2drC238itdscubASORwitavqQwNSxcH" +
    "GTf8WjglAgMBAAECggEACtzGWraIy9ppdYyETO5t4UWk4SEQqi4ghoDmDRFa/DCjx2a3x66XDH2emlMSw4IQ87sHopge/Usp" +
    "/m3XM1MX0+itni69LuvY1ZcaohRnS7N7cTsA6CnbJiFNrma/DH+hxNiQbCOj7kpG9bZN/DOBG2CgOyKFVeFURKyVOLssL6JP" +
    "lIbErxsGmyxVDG7vgmbAlNLnOaoM1SWJm5F1TP/3D4WwipojBfi6breOc4vQmka91Q/LA7vyGqh/36gIY/J3/hQzGCE3qVUA" +
    "TPMFswi933cEuH7RLw2GAXj12NFHhJ3+wNI2sQX4YSiT2GqMHGL3S/fjMp2ZJ2ho7uz5V4FWEQKBgQDfO+GY4kGf+RgUuGRZ" +
    "qo+f877ttPkdYBeCaMvcRaJR1ViURYxPNoi2F1haLKdocKSzXyRBA7Dxknb/iPEfBETRh7S7xA/HAbroqIxXT9FTkaoHqvyn" +
    "hFKvu76EWJu7rzmkruVTXRHo3CbWFouDryA/VlEoU7KBb3dZHnu6D3kHTQKBgQC2nWdnQAuF3dB4H9rqstlft95fEziXHfUU" +
    "8ylYTt9Ofuu8rmQ/IqMnhkc4RSPAJp6IAEebSmMXzmT2Ro6KQVM5N7PEMvSls2/RKpBt0xvZM5/x9m5+JUeVQuJynlwyQaYC" +
    "cW6PrLO4bY6GExUjvIvfmgdWFg4XHTU2+YrHoCn4OQKBgCC9m5zcsltQIWQIl08/YMlI6pvaix7v1QLfc+ben6v46oD0oluL" +
    "2Ak860xueC8tNjrInXybmfwUSze3UgYGjkFc8fkIDHhXnJ46+jpkDoN/PbzaKyw2kBoOIycuB8lDLeUlcaUEZXgNsfR8YgHy" +
    "UXx4oHaVr/yj6JE9k0/6rPmRAoGAeGvp8UNhleBFBcHz6csQ3zbv1ABn0/c0U6FaBVrVlPzLVXwmrR+ZOYop0uh8/8w3xHVy" +
    "wuvV1rALEgBLJM6ZI+UgjWQQwmhGd0c7QMDy31NUyQl5qYPJ5ZramzzkjVuPLpNAlkwLo7XTQ4S37v35uvTmm5Ulq4ZePidm" +
    "pedvZbkCgYEAi3b1GOhigIius3d8Bnf6vMbtXI2l8gXD08otBRm2f45WrCAjRX+AeCA3nCoYd0X5ivA27ZM8oqZxGtTPQ/mt" +
    "B3K5vHYKm+IIqwKSkrBvORinv8z15ASS+9FOIbf+KFMKMmXa8VJKR3SqqRKDLMXRj6/I5vESkdnZ2/2pBYoLEAQ=",
  "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCYx+9c7eJt85sBtTsl93Xo+gwpyNlYn5GmABk2YL5yxxIO" +
    "WvVRHXeU/ZWEmEEJsKAGCTq+KQZxTgtZ9485ZR52ZgXuD9uOhMywDRw9reORNjktCgc2o4u3clPddP3cI8q+xPdn7TkjMwFI" +
    "HOfvCEjVht5JaLBF9CvwLdNuZjdGAhLRj1lT0EVBGipI+etY7GOc3bTRQW55JPr+UtDJZgbahs1+rPmFthotJdW4/JGO8kDZ" +
    "vOorZD5nx7psrCs23p6w6pHZqpsP3Q5eV5jGfORRr3KJhxyQV8+NqgYuJALjw9RVrhFegL2oLb5qxDeDtYFB+JfON3SIIqfZ" +
    "2h/y/epzAgMBAAECggEAB44zpyvYe8mFS+NThoAjY58iBNr67KgPgt8UYB0OrgxsNyuGYDmN1V9pCoKhDMKgV0wTjJ3oxKew" +
    "ZgWZHqSCiiZneqtsFzM4ECjF0cMMsvy0fSa2zpvt5+eOgDAt8boPZ7nD5m7T2YrHMHLFgYuuVmjyCz1TIlJ97cXGY/pIF30l" +
    "L2KhDhwuYEiF7fLv9tzgPFceX1apxowsP0sx/sO0p+vWIkDOFU8BWI8uXcHCSKKUxTu7HqaXbI1JnaBWOcMC2kuxSpdYVNMK" +
    "kp5y1y8WOnF/hT/VTVfOxfncEJp+e7ZUjXilh8BoNat/8U0SPBY0880L2S1kxXZiDVAFw2zAuQKBgQDOBNRNC+A1bVfuKHXe" +
    "0ZD0OvNiZzM8AySa5bpAnGtojryluFYaN7f3H25KSK5GOOgHPlDnUPqmIrm8JaQSmNU5ZEipO/GpX3GDB+PJjcvD4F2o77t1" +
    "1JDBDZKFtsInJnfhgNhHviOMeTF7BhMyZV4CM3nZDoNIo3mFCKVywpU3FQKBgQC92Kwp19XMppXn43f4e0jdeYE2LfFbhJ5J" +
    "3RVDKmVgelqKgK1CMElIIiIa9vhuYCk8OnbN+uY7XlqE9XDYjOCrGbicXsw5KO0h1iya4ackRWx9AJwiz0dnJFY3DMiJLkOi" +
    "R4KIvu/0b4qhU2Rb/iinQskFgSBPXsOObEDVrLH9ZwKBgAaZKv+IuNadOOq8ywGm7qCT3sWxDngGlb6MSwnUuK/xmmMoY0GV" +
    "tUOp8wtYBpTjL7NDsK2n708w34gCIJ4j3PhomNcqv1OwZd9PemEzNGqCnh1SCEv+0eANAjtcHh3I4qALU2IA2fyeyRHqoOTF" +
    "UFx7r5RfHZ9O9Q5ot3vUdZj9AoGAXYRNEnOSirQIpejEIS/Bre97ec/Z06YZPvNb1PEebQ74aL+IGVGl15WQzU2ZBO3zggqe" +
    "mUqdfOM2ncY1p0aGKWKLMOP1n7aMUR2qbUT4y4IzNcRGJVOLrcAVhBqU8hZLFLY7E9dSZktHs75bcoFZT0MzuLVp0A8zL4Yd" +
    "zeO67cMCgYAFGBQxpY74N3wahl/dqz+c6aY0nY/i6r0RiQ4z9Cn/GbbDHSYCI9K3LiT9XxXw2WRTRJaG3nTmeA/U0X0ymzpH" +
    "eGFD4kxUVYyQmkmD3ms2gglabQf9Enwig54SmF+s5HI4qzox5axvhmtPtoLH7B8raPRFFMeGS0qWY+ygeM9HDg=="
] as const

const cache = new Map<number, Promise<AppKeyPair>>()

/**
 * Fixture key pair `n` (0 or 1), in every format — TEST ONLY: the private key is public knowledge.
 * Key 0 is the one `FakeIssuer.layer()` registers for its app; key 1 is a second, unrelated key
 * (the wrong-key case, a second app).
 */
export const testOnlyKeyPair = (n: 0 | 1 = 0): Promise<AppKeyPair> => {
  let pair = cache.get(n)
  if (pair === undefined) {
    pair = fromPkcs8(TEST_ONLY_PKCS8[n])
    cache.set(n, pair)
  }
  return pair
}
