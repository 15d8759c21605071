/**
 * `effect-jobs serve`: the dashboard and HTTP API of a store, until Ctrl+C. The server's modules are loaded
 * only when it starts, so that the other commands start quickly.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { hostname } from "node:os"
import { describeError } from "../../JobError.js"
import { storeLayer } from "../store.js"
import type { Command } from "./command.js"
import { CommandFailed, integerValue, stringValue, UsageError } from "./command.js"
import { storeLabel, storeOf, storeOptions } from "./store.js"
import { isLoopback } from "../loopback.js"

export const serve: Command = {
  name: "serve",
  summary: "serve the web dashboard and the HTTP API of the store",
  options: {
    host: { type: "string", value: "HOST", description: "the address to listen on (default 127.0.0.1)" },
    port: { type: "string", value: "N", description: "the port to listen on (default 8080; 0 picks a free one)" },
    token: {
      type: "string",
      value: "T",
      description: "every /api request needs Authorization: Bearer T (default: $EFFECT_JOBS_TOKEN)"
    },
    ...storeOptions
  },
  notes: [
    "Without a token the dashboard listens on a loopback address only; any other --host needs --token.",
    "The page asks for the token once; http://HOST:PORT/?token=T opens it without asking.",
    "The API is described at /api/openapi.json. Ctrl+C stops the server."
  ],
  run: (input) =>
    Effect.gen(function*() {
      const host = stringValue(input, "host") ?? "127.0.0.1"
      const port = yield* integerValue(input, "port", { min: 0, max: 65_535, fallback: 8080 })
      const token = stringValue(input, "token") ?? process.env["EFFECT_JOBS_TOKEN"]
      if (token === "") return yield* new UsageError({ subject: "--token", problem: "must not be empty" })
      if (token === undefined && !isLoopback(host)) {
        return yield* new UsageError({
          subject: "--host",
          problem: `listening on ${host} needs --token T (without a token the dashboard listens on 127.0.0.1 only)`
        })
      }
      const store = yield* storeOf(input)
      const [Dashboard, HttpServer] = yield* Effect.promise(() =>
        Promise.all([import("../../Dashboard.js"), import("@effect/platform/HttpServer")])
      )
      const server = Dashboard.layerNode({ host, port, ...(token === undefined ? {} : { token }) }).pipe(
        Layer.provide(storeLayer(store, { create: false }))
      )
      yield* Effect.gen(function*() {
        const address = (yield* HttpServer.HttpServer).address
        const bound = address._tag === "TcpAddress" ? address.port : port
        const shown = host === "0.0.0.0" || host === "::" ? hostname() : host.includes(":") ? `[${host}]` : host
        const url = `http://${shown}:${bound}/`
        yield* Console.log(`effect-jobs dashboard of ${storeLabel(store)}: ${url}`)
        yield* Console.log(
          token === undefined
            ? `No --token: listening on ${host} only; anyone who can log in to this machine can use it.`
            : `Open ${url}?token=${encodeURIComponent(token)} (the page keeps the token for this tab).`
        )
        yield* Console.log(`API: ${url}api/openapi.json. Ctrl+C stops.`)
        return yield* Effect.never
      }).pipe(
        Effect.provide(server),
        Effect.catchTag("ServeError", (error) =>
          new CommandFailed({ message: `cannot listen on ${host}:${port}: ${describeError(error.cause)}` })),
        // Ctrl+C is the way to stop a server: a clean exit.
        Effect.onInterrupt(() => Effect.sync(() => (process.exitCode = 0)))
      )
    })
}
