import worker, { type WorkerEnv } from "../src/index.js"

type IncomingRequest = Parameters<typeof worker.fetch>[0]

/** A caller of the issuer Worker with these bindings: one request with a bearer credential and an optional JSON body. */
export const callWorker =
  (env: WorkerEnv) =>
  (method: string, path: string, token: string, body?: unknown): Promise<Response> =>
    worker.fetch(
      new Request(`http://icr.test${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      }) as IncomingRequest,
      env
    )
