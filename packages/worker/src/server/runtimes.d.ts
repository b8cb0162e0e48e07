/**
 * The little of Deno's and Bun's own APIs the server entries and SQLite drivers use, declared here
 * rather than through `@types/bun` / Deno's lib (which redeclare the DOM and Node globals the rest of
 * this package is checked against). Each is used only on its own runtime.
 */

declare namespace Deno {
  interface NetAddr {
    readonly transport: "tcp" | "udp"
    readonly hostname: string
    readonly port: number
  }
  interface ServeHandlerInfo {
    readonly remoteAddr: NetAddr
  }
  interface HttpServer {
    readonly addr: NetAddr
    readonly finished: Promise<void>
    /** Stops accepting connections and resolves once every request in flight is answered. */
    shutdown(): Promise<void>
  }
  interface ServeOptions {
    readonly port?: number
    readonly hostname?: string
    readonly onListen?: (addr: NetAddr) => void
    readonly onError?: (error: unknown) => Response | Promise<Response>
    readonly handler: (request: Request, info: ServeHandlerInfo) => Response | Promise<Response>
  }
  function serve(options: ServeOptions): HttpServer
  const version: { readonly deno: string }
}

declare namespace Bun {
  interface SocketAddress {
    readonly address: string
    readonly port: number
    readonly family: "IPv4" | "IPv6"
  }
  interface Server {
    readonly port: number
    readonly hostname: string
    requestIP(request: Request): SocketAddress | null
    /** Stops listening; with `false`, lets requests in flight finish (resolves once they have). */
    stop(closeActiveConnections?: boolean): Promise<void>
  }
  interface ServeOptions {
    readonly port?: number
    readonly hostname?: string
    readonly development?: boolean
    readonly maxRequestBodySize?: number
    readonly fetch: (request: Request, server: Server) => Response | Promise<Response>
    readonly error?: (error: Error) => Response | Promise<Response>
  }
  function serve(options: ServeOptions): Server
  const version: string
}

declare module "bun:sqlite" {
  interface Statement {
    readonly columnNames: ReadonlyArray<string>
    all(...params: ReadonlyArray<unknown>): Array<unknown>
    get(...params: ReadonlyArray<unknown>): unknown
    run(...params: ReadonlyArray<unknown>): { changes: number; lastInsertRowid: number | bigint }
  }
  export class Database {
    constructor(filename: string, options?: { create?: boolean; readwrite?: boolean; strict?: boolean })
    prepare(sql: string): Statement
    exec(sql: string): unknown
    close(): void
  }
}

declare module "node:sqlite" {
  interface StatementSync {
    columns(): ReadonlyArray<{ readonly name: string }>
    all(...params: ReadonlyArray<unknown>): Array<unknown>
    get(...params: ReadonlyArray<unknown>): unknown
    run(...params: ReadonlyArray<unknown>): { changes: number | bigint; lastInsertRowid: number | bigint }
  }
  export class DatabaseSync {
    constructor(path: string)
    prepare(sql: string): StatementSync
    exec(sql: string): void
    close(): void
  }
}
