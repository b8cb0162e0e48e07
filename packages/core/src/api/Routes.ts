/**
 * Every endpoint of the one API definition as a name, a method and a path pattern: what the
 * issuer answers 405 and `Allow` from, and what the testkit names logged requests and aims faults by.
 */
import type * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { type AdminGroup, type AppsGroup, IcrAppsApi, type SystemGroup } from "./Api.js"

/** The name of an endpoint (`createInstallationAccessToken`, `listInstallations`, …). */
export type RouteName = HttpApiEndpoint.HttpApiEndpoint.Name<
  HttpApiGroup.HttpApiGroup.Endpoints<typeof AppsGroup | typeof AdminGroup | typeof SystemGroup>
>

/** One endpoint: its name, method and path pattern. */
export interface Route {
  readonly name: RouteName
  readonly method: string
  readonly pattern: RegExp
}

/**
 * Every route, a literal path (`/app/installations/token`) before a pattern that also matches it.
 * Matched case-insensitively, as the router matches paths.
 */
export const routes: ReadonlyArray<Route> = Object.values(IcrAppsApi.groups)
  .flatMap((group) =>
    Object.entries(group.endpoints).map(([name, endpoint]) => ({
      name: name as RouteName,
      method: endpoint.method as string,
      pattern: new RegExp(
        `^${endpoint.path
          .split("/")
          .map((segment: string) =>
            segment.startsWith(":") ? "[^/]+" : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
          )
          .join("/")}/?$`,
        "i"
      )
    }))
  )
  .sort((a, b) => a.pattern.source.split("[^/]+").length - b.pattern.source.split("[^/]+").length)

/** The route a request reaches, if any. */
export const routeOf = (method: string, pathname: string): Route | undefined =>
  routes.find((r) => r.method === method && r.pattern.test(pathname))

/** The methods the API serves at `pathname` (empty when the path is unknown). */
export const allowedMethods = (pathname: string): ReadonlyArray<string> => {
  const methods = new Set<string>()
  for (const route of routes) if (route.pattern.test(pathname)) methods.add(route.method)
  if (methods.has("GET")) methods.add("HEAD")
  return [...methods].sort()
}
