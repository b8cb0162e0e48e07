/**
 * A typed client of the operator API (SPEC §5) for operators' scripts and for tests, derived from
 * the same `HttpApi` definition the issuer serves — nothing about the API is written twice.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { IcrAppsApi } from "../api/Api.js"

/** Options of the operator client. */
export interface AdminClientOptions {
  readonly baseUrl: string
  readonly adminToken: Redacted.Redacted<string> | string
}

/** Builds the operator client over an `HttpClient`: `client.createApp({ payload })`, `client.getApp({ path })`, … */
export const make = (options: AdminClientOptions) =>
  Effect.gen(function* () {
    const token = Redacted.isRedacted(options.adminToken) ? options.adminToken : Redacted.make(options.adminToken)
    const httpClient = (yield* HttpClient.HttpClient).pipe(
      HttpClient.mapRequest(HttpClientRequest.bearerToken(Redacted.value(token)))
    )
    const api = yield* HttpApiClient.makeWith(IcrAppsApi, { httpClient, baseUrl: options.baseUrl.replace(/\/+$/, "") })
    return api.admin
  })

/** The operator client. */
export class AdminClient extends Context.Tag("@icr-apps/core/AdminClient")<
  AdminClient,
  Effect.Effect.Success<ReturnType<typeof make>>
>() {}

/** The operator client as a layer over `fetch`. */
export const layer = (options: AdminClientOptions): Layer.Layer<AdminClient> =>
  Layer.effect(AdminClient, make(options)).pipe(Layer.provide(FetchHttpClient.layer))
