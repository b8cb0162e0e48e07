/** The server on Bun: `Bun.serve`, whose `stop(false)` lets requests in flight finish. */
import { type Handler, internalError, type Listen, peerAddress } from "./Listen.js"

/** Serves `handler` with `Bun.serve`. */
export const listen: Listen = async (handler: Handler, { host, port }) => {
  const server = Bun.serve({
    hostname: host,
    port,
    development: false,
    error: () => internalError(),
    fetch: (request, server) => handler(request, { remoteAddress: peerAddress(server.requestIP(request)?.address) })
  })
  return { port: server.port, close: () => server.stop(false) }
}
