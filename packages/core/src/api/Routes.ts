/**
 * Every endpoint of an API definition as a group, a name, a method and a path: what a server answers
 * 405 and `Allow` from, which of the issuer's routers a path belongs to, and what the testkit names
 * logged requests and aims faults by. Derived from the `HttpApi` definition, never written twice.
 */
import type * as HttpApi from "@effect/platform/HttpApi"
import type * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { type AdminGroup, type AppsGroup, IcrAppsApi, type SystemGroup } from "./Api.js"

/** The name of an endpoint (`createInstallationAccessToken`, `listInstallations`, …). */
export type RouteName = HttpApiEndpoint.HttpApiEndpoint.Name<
  HttpApiGroup.HttpApiGroup.Endpoints<typeof AppsGroup | typeof AdminGroup | typeof SystemGroup>
>

/** The name of a group of the ICR Apps API (`apps`, `admin`, `system`). */
export type GroupName = HttpApiGroup.HttpApiGroup.Name<typeof AppsGroup | typeof AdminGroup | typeof SystemGroup>

/** One endpoint: its group, name, method, path (as declared: `/app/installations/:installationId`) and pattern. */
export interface Route<Group extends string = GroupName, Name extends string = RouteName> {
  readonly group: Group
  readonly name: Name
  readonly method: string
  readonly path: `/${string}`
  /** The path as a pattern, a parameter matching one segment; matched case-insensitively, as routers match paths. */
  readonly pattern: RegExp
}

const escaped = (segment: string) => segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * Every route of `api`, a literal path (`/app/installations/token`) before a pattern that also
 * matches it.
 */
export const routesOf = <Group extends string = string, Name extends string = string>(
  api: HttpApi.HttpApi.Any
): ReadonlyArray<Route<Group, Name>> =>
  Object.values((api as unknown as HttpApi.HttpApi.AnyWithProps).groups)
    .flatMap((group) =>
      Object.entries(group.endpoints).map(([name, endpoint]) => ({
        group: group.identifier as Group,
        name: name as Name,
        method: endpoint.method as string,
        path: endpoint.path,
        pattern: new RegExp(
          `^${endpoint.path
            .split("/")
            .map((segment: string) => (segment.startsWith(":") ? "[^/]+" : escaped(segment)))
            .join("/")}/?$`,
          "i"
        )
      }))
    )
    .sort((a, b) => a.pattern.source.split("[^/]+").length - b.pattern.source.split("[^/]+").length)

/** The methods `routes` serve at `pathname`, `HEAD` wherever `GET` is (empty when the path is unknown). */
export const allowedMethodsIn =
  (routes: ReadonlyArray<Route<string, string>>) =>
  (pathname: string): ReadonlyArray<string> => {
    const methods = new Set<string>()
    for (const route of routes) if (route.pattern.test(pathname)) methods.add(route.method)
    if (methods.has("GET")) methods.add("HEAD")
    return [...methods].sort()
  }

/** Every route of the ICR Apps API. */
export const routes: ReadonlyArray<Route> = routesOf<GroupName, RouteName>(IcrAppsApi)

/** The route a request reaches, if any. */
export const routeOf = (method: string, pathname: string): Route | undefined =>
  routes.find((r) => r.method === method && r.pattern.test(pathname))

/** The methods the API serves at `pathname` (empty when the path is unknown). */
export const allowedMethods: (pathname: string) => ReadonlyArray<string> = allowedMethodsIn(routes)
