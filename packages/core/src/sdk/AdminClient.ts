/**
 * A typed client of the operator API (SPEC §5) for operators' scripts and for tests, derived from
 * the same `HttpApi` definition the issuer serves — nothing about the API is written twice.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { IcrAppsApi } from "../api/Api.js"

/** Options of the operator client. */
export interface AdminClientOptions {
  readonly baseUrl: string
  readonly adminToken: Redacted.Redacted<string> | string
  /** The `fetch` to send with (default `globalThis.fetch`). */
  readonly fetch?: typeof globalThis.fetch | undefined
}

/** An endpoint function of the derived client, with its (all-optional) `headers` argument made optional too. */
type WithoutHeaders<F> = F extends (request: infer R) => Effect.Effect<infer A, infer E, infer Req>
  ? {} extends Omit<R, "headers" | "withResponse">
    ? (request?: Omit<R, "headers" | "withResponse">) => Effect.Effect<Plain<A>, E, Req>
    : (request: Omit<R, "headers" | "withResponse">) => Effect.Effect<Plain<A>, E, Req>
  : F

/** The decoded body alone (the derived client can also answer `[body, response]`, which this client never asks for). */
type Plain<A> = Exclude<A, readonly [unknown, HttpClientResponse.HttpClientResponse]>

/** The operator endpoints of the derived client, callable without `headers: {}`. */
export type AdminEndpoints<Api> = { readonly [K in keyof Api]: WithoutHeaders<Api[K]> }

/** Builds the operator client over an `HttpClient`: `client.createApp({ payload })`, `client.getApp({ path })`, … */
export const make = (options: AdminClientOptions) =>
  Effect.gen(function* () {
    const token = Redacted.isRedacted(options.adminToken) ? options.adminToken : Redacted.make(options.adminToken)
    const httpClient = (yield* HttpClient.HttpClient).pipe(
      HttpClient.mapRequest(HttpClientRequest.bearerToken(Redacted.value(token)))
    )
    const api = yield* HttpApiClient.makeWith(IcrAppsApi, { httpClient, baseUrl: options.baseUrl.replace(/\/+$/, "") })
    const admin = api.admin as unknown as Record<string, (request: Record<string, unknown>) => unknown>
    // Every endpoint declares only an optional version header, so `{}` is always a valid one.
    return Object.fromEntries(
      Object.entries(admin).map(([name, call]) => [
        name,
        (request: Record<string, unknown> = {}) => call({ headers: {}, ...request })
      ])
    ) as unknown as AdminEndpoints<typeof api.admin>
  })

/** The operator client. */
export class AdminClient extends Context.Tag("@icr-apps/core/AdminClient")<
  AdminClient,
  Effect.Effect.Success<ReturnType<typeof make>>
>() {
  /** The operator client as a layer over `fetch` (the module's `layer`, on the tag as the README shows it). */
  static readonly layer = (options: AdminClientOptions): Layer.Layer<AdminClient> => layer(options)
}

/** The operator client as a layer over `fetch`. */
export const layer = (options: AdminClientOptions): Layer.Layer<AdminClient> =>
  Layer.effect(AdminClient, make(options)).pipe(
    Layer.provide(
      options.fetch === undefined
        ? FetchHttpClient.layer
        : FetchHttpClient.layer.pipe(Layer.provide(Layer.succeed(FetchHttpClient.Fetch, options.fetch)))
    )
  )
