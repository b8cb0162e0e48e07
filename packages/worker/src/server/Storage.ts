/**
 * The issuer's storage over a server's database: the `Registry` of SPEC §3–§5 on SQL.
 *
 * Until `SqlRegistry` (core, the rules written once over the SQL seam) lands, this is the registry
 * in memory, so that the server's plumbing (configuration, drivers, migrations, runtimes, shutdown)
 * is built and tested end to end; the one line below then becomes `SqlRegistry.layer(driver)`.
 */
import { layerMemory, type Registry } from "@icr-apps/core/issuer/Registry"
import type * as Layer from "effect/Layer"
import type { ServerSqlDriver } from "../sql/ServerSql.js"

/** The registry over `driver`. */
export const registryLayer = (_driver: ServerSqlDriver): Layer.Layer<Registry> => layerMemory
