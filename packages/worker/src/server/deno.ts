/** The server on Deno: `Deno.serve`, whose `shutdown()` is already graceful. */
import {
  BODY_DEADLINE_MS,
  type Handler,
  internalError,
  type Listen,
  peerAddress,
  serveWithBodyDeadline
} from "./Listen.js"

/** Serves `handler` with `Deno.serve`, a request body given at most `bodyMs` to arrive. */
export const listenWith =
  ({ bodyMs }: { readonly bodyMs: number }): Listen =>
  async (handler: Handler, { host, port }) => {
    const server = Deno.serve({
      hostname: host,
      port,
      onListen: () => {},
      onError: () => internalError(),
      // Deno.serve has no deadline of its own: a body that stops coming would hold the handler forever.
      handler: (request, info) =>
        serveWithBodyDeadline(handler, request, { remoteAddress: peerAddress(info.remoteAddr.hostname) }, bodyMs)
    })
    return { port: server.addr.port, close: () => server.shutdown() }
  }

/** Serves `handler` with `Deno.serve`, under {@link BODY_DEADLINE_MS}. */
export const listen: Listen = listenWith({ bodyMs: BODY_DEADLINE_MS })
