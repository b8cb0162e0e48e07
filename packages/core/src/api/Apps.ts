/**
 * Apps and their public keys, as the operator API shows them (SPEC §5).
 */
import * as Schema from "effect/Schema"
import { pageFields } from "./Paging.js"
import { Permissions } from "./Permissions.js"
import { AppId, AppName, Timestamp, Uuid } from "./Primitives.js"

/** The most public keys an app may have at once (SPEC §5). */
export const MAX_KEYS_PER_APP = 25

/** One of an app's public keys; `fingerprint` is `SHA256:` + base64 of SHA-256 over its SPKI DER. */
export class AppKey extends Schema.Class<AppKey>("AppKey")(
  {
    id: Uuid,
    fingerprint: Schema.String.pipe(Schema.pattern(/^SHA256:[A-Za-z0-9+/]{43}=$/)),
    createdAt: Timestamp
  },
  { description: "A public key of an app" }
) {}

/** An app, with its declared permissions and active keys. */
export class App extends Schema.Class<App>("App")(
  {
    id: AppId,
    appNameId: AppName,
    permissions: Permissions,
    createdAt: Timestamp,
    updatedAt: Timestamp,
    keys: Schema.Array(AppKey)
  },
  { description: "An app" }
) {}

/** One page of apps, in creation order (SPEC §5); the `Link` header carries `next`/`prev`. */
export class AppPage extends Schema.Class<AppPage>("AppPage")(
  { items: Schema.Array(App), ...pageFields },
  { description: "A page of apps" }
) {}

/** An RSA public key as a JWK object (only the members that matter are typed). */
export const PublicJwk = Schema.Struct(
  {
    kty: Schema.String,
    n: Schema.optionalWith(Schema.String, { exact: true }),
    e: Schema.optionalWith(Schema.String, { exact: true })
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations({ identifier: "PublicJwk" })

/** A public key: SPKI PEM, PKCS#1 PEM, or an RSA JWK object. */
export const PublicKeyInput = Schema.Union(
  Schema.String.pipe(Schema.maxLength(8192)).annotations({
    description: "SPKI PEM (BEGIN PUBLIC KEY) or PKCS#1 PEM (BEGIN RSA PUBLIC KEY)"
  }),
  PublicJwk
).annotations({ identifier: "PublicKeyInput" })
/** A public key: SPKI PEM, PKCS#1 PEM, or an RSA JWK object. */
export type PublicKeyInput = typeof PublicKeyInput.Type

/** Body of `POST /admin/apps`. */
export const CreateAppRequest = Schema.Struct({
  name: AppName,
  permissions: Permissions,
  publicKey: PublicKeyInput
}).annotations({ identifier: "CreateAppRequest", parseOptions: { onExcessProperty: "error" } })
/** Body of `POST /admin/apps`. */
export type CreateAppRequest = typeof CreateAppRequest.Type

/** Body of `POST /admin/apps/{appId}/keys`. */
export const AddAppKeyRequest = Schema.Struct({
  publicKey: PublicKeyInput
}).annotations({ identifier: "AddAppKeyRequest", parseOptions: { onExcessProperty: "error" } })
/** Body of `POST /admin/apps/{appId}/keys`. */
export type AddAppKeyRequest = typeof AddAppKeyRequest.Type
