/** The server on Bun: `Bun.serve`, whose `stop(false)` lets requests in flight finish. */
import {
  BODY_DEADLINE_MS,
  type Handler,
  internalError,
  type Listen,
  peerAddress,
  serveWithBodyDeadline
} from "./Listen.js"

/** Serves `handler` with `Bun.serve`, a request body given at most `bodyMs` to arrive. */
export const listenWith =
  ({ bodyMs }: { readonly bodyMs: number }): Listen =>
  async (handler: Handler, { host, port }) => {
    const server = Bun.serve({
      hostname: host,
      port,
      development: false,
      error: () => internalError(),
      // The peer is asked of the request Bun made (before it is wrapped). Bun's own deadline is an
      // idle one (10 s), which a byte now and then defeats: the body gets a deadline of its own.
      fetch: (request, server) => {
        const remoteAddress = peerAddress(server.requestIP(request)?.address)
        return serveWithBodyDeadline(handler, request, { remoteAddress }, bodyMs)
      }
    })
    return { port: server.port, close: () => server.stop(false) }
  }

/** Serves `handler` with `Bun.serve`, under {@link BODY_DEADLINE_MS}. */
export const listen: Listen = listenWith({ bodyMs: BODY_DEADLINE_MS })
