/** The server on Deno: `Deno.serve`, whose `shutdown()` is already graceful. */
import { type Handler, internalError, type Listen, peerAddress } from "./Listen.js"

/** Serves `handler` with `Deno.serve`. */
export const listen: Listen = async (handler: Handler, { host, port }) => {
  const server = Deno.serve({
    hostname: host,
    port,
    onListen: () => {},
    onError: () => internalError(),
    handler: (request, info) => handler(request, { remoteAddress: peerAddress(info.remoteAddr.hostname) })
  })
  return { port: server.addr.port, close: () => server.shutdown() }
}
