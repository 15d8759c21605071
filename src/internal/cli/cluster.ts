/**
 * `effect-jobs runner` and `effect-jobs submit`: cluster mode from the command line. The cluster's modules
 * are loaded only when one of these commands runs, so that the other commands start quickly.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { readFile } from "node:fs/promises"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import * as ChunkWorker from "../../ChunkWorker.js"
import type { Chunk, JobSpecInput } from "../../Job.js"
import { describeError } from "../../JobError.js"
import { importCluster } from "../optionalPeer.js"
import * as JobManager from "../../JobManager.js"
import type { Command, Input } from "./command.js"
import { CommandFailed, integerValue, stringValue, UsageError } from "./command.js"
import { watch } from "./jobs.js"
import { printJson } from "./output.js"
import { repositoryOf, storeOf } from "./store.js"

const pgOption = {
  type: "string",
  value: "URL",
  description: "the cluster's PostgreSQL database, e.g. postgres://user@host:5432/db (required)"
} as const

/** The `--pg` URL, required. */
const pgOf = (input: Input): Effect.Effect<string, UsageError> =>
  stringValue(input, "pg") === undefined
    ? Effect.fail(new UsageError({ subject: "--pg", problem: "required: the cluster's PostgreSQL URL" }))
    : Effect.flatMap(storeOf(input), (store) =>
      typeof store === "string"
        ? Effect.succeed(store)
        : Effect.fail(new UsageError({ subject: "--db", problem: "a cluster needs PostgreSQL (--pg URL)" })))

type PromiseWorker = (
  chunk: Chunk,
  context: { readonly signal: AbortSignal; readonly attempt: number; readonly jobId: string }
) => PromiseLike<unknown>

/** The default export of the module at `path`, which must be a function. */
const loadWorker = (path: string): Effect.Effect<PromiseWorker, UsageError> =>
  Effect.flatMap(
    Effect.tryPromise({
      try: () => import(pathToFileURL(resolve(path)).href) as Promise<{ readonly default?: unknown }>,
      catch: (error) => new UsageError({ subject: "--worker", problem: `cannot load ${path}: ${describeError(error)}` })
    }),
    (module) =>
      typeof module.default === "function"
        ? Effect.succeed(module.default as PromiseWorker)
        : Effect.fail(
          new UsageError({
            subject: "--worker",
            problem: `${path} has no default export function (chunk, { signal, attempt, jobId }) => Promise`
          })
        )
  )

export const runner: Command = {
  name: "runner",
  summary: "run a cluster runner: it runs chunks with a worker module and owns jobs, until Ctrl+C",
  options: {
    pg: pgOption,
    worker: {
      type: "string",
      value: "FILE",
      description: "a module whose default export runs one chunk: (chunk, { signal, attempt, jobId }) => Promise (required)"
    },
    concurrency: { type: "string", value: "N", description: "chunks this runner runs at once (1 to 10000, default 4)" },
    "job-concurrency": {
      type: "string",
      value: "N",
      description: "chunks of one job in flight across the cluster, for the jobs this runner owns (default 4)"
    },
    host: { type: "string", value: "HOST", description: "the address other runners reach this one at (default 127.0.0.1)" },
    port: { type: "string", value: "N", description: "the port to listen on (default: a free one)" }
  },
  notes: [
    "Every runner of a cluster shares one PostgreSQL database; jobs submitted with effect-jobs submit (or by any " +
    "runner) spread their chunks over the runners with free capacity. Ctrl+C or SIGTERM leaves the cluster " +
    "gracefully: running chunks may finish (5 s), the jobs owned here are handed to another runner."
  ],
  run: (input) =>
    Effect.gen(function*() {
      const postgres = yield* pgOf(input)
      const workerPath = stringValue(input, "worker")
      if (workerPath === undefined) {
        return yield* new UsageError({ subject: "--worker", problem: "required: the module that runs a chunk" })
      }
      const capacity = yield* integerValue(input, "concurrency", { min: 1, max: 10_000, fallback: 4 })
      const jobConcurrency = yield* integerValue(input, "job-concurrency", { min: 1, max: 10_000, fallback: 4 })
      const port = stringValue(input, "port") === undefined
        ? undefined
        : yield* integerValue(input, "port", { min: 1, max: 65_535, fallback: 0 })
      const host = stringValue(input, "host")
      const run = yield* loadWorker(workerPath)
      const Cluster = yield* importCluster(() => import("../../Cluster.js"))
      const layer = Cluster.layer({
        postgres,
        capacity,
        ...(host === undefined ? {} : { host }),
        ...(port === undefined ? {} : { port }),
        manager: { concurrency: jobConcurrency }
      }).pipe(Layer.provide(ChunkWorker.layerPromise(run)))
      yield* Effect.gen(function*() {
        const manager = yield* JobManager.JobManager
        yield* Console.log(`effect-jobs runner ${manager.owner}: running up to ${capacity} chunks at once. Ctrl+C leaves.`)
        return yield* Effect.never
      }).pipe(
        Effect.provide(layer),
        Effect.catchTag("ClusterStartError", (error) => new CommandFailed({ message: error.message })),
        // Ctrl+C is the way to leave: a clean exit.
        Effect.onInterrupt(() => Effect.sync(() => (process.exitCode = 0)))
      )
    })
}

export const submit: Command = {
  name: "submit",
  summary: "submit a job to a cluster (a runner takes it), and optionally follow it",
  options: {
    pg: pgOption,
    spec: { type: "string", value: "FILE", description: "the job spec, a JSON file (as in the API) (required)" },
    concurrency: {
      type: "string",
      value: "N",
      description: "chunks of this job in flight across the cluster (1 to 10000; default: the spec's, else the owner's)"
    },
    wait: { type: "boolean", description: "follow the job with a progress line until it ends" },
    json: { type: "boolean", description: "print one JSON object per line" }
  },
  notes: ["With --wait: exits with 0 when the job completed, 1 when it failed or was cancelled."],
  run: (input) =>
    Effect.gen(function*() {
      yield* pgOf(input)
      const file = stringValue(input, "spec")
      if (file === undefined) return yield* new UsageError({ subject: "--spec", problem: "required: a job spec JSON file" })
      const spec = yield* Effect.tryPromise({
        // Any JSON: submitJob validates it and names what is wrong.
        try: async () => JSON.parse(await readFile(file, "utf8")) as JobSpecInput,
        catch: (error) => new UsageError({ subject: "--spec", problem: `cannot read ${file} as JSON: ${describeError(error)}` })
      })
      const concurrency = stringValue(input, "concurrency") === undefined
        ? undefined
        : yield* integerValue(input, "concurrency", { min: 1, max: 10_000, fallback: 0 })
      const Cluster = yield* importCluster(() => import("../../Cluster.js"))
      const status = yield* Cluster.submitJob(concurrency === undefined ? spec : { ...spec, concurrency }).pipe(
        Effect.catchTag("InvalidJobSpec", (error) => new UsageError({ subject: "--spec", problem: error.message })),
        Effect.provide(yield* repositoryOf(input))
      )
      yield* input.values["json"] === true ? printJson(status) : Console.log(`${status.id} ${status.state}`)
      if (input.values["wait"] === true) {
        yield* watch.run({ values: { pg: input.values["pg"], json: input.values["json"] }, positionals: [status.id] })
      }
    })
}
