/**
 * Dashboards over stores with jobs running, for the API and browser tests: the memory store with a manager
 * in this process, or an SQLite store whose jobs run in another process (`test/fixtures/runner.ts`). The
 * server listens on 127.0.0.1 and a free port.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Dashboard from "../../src/Dashboard.js"
import type { JobSpecInput } from "../../src/Job.js"
import * as JobManager from "../../src/JobManager.js"
import { JobRepository } from "../../src/JobRepository.js"
import * as JobRepositoryModule from "../../src/JobRepository.js"
import * as SqlJobRepository from "../../src/SqlJobRepository.js"
import { fixtureManagerOptions, fixtureWorker } from "../fixtures/fixtureJobs.js"
import type { TsxProcess } from "./tsxProcess.js"
import { exitCode, startTsx } from "./tsxProcess.js"

export interface Served {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** The ids of the submitted jobs, in the order of their specs. */
  readonly ids: ReadonlyArray<string>
  /** The process that runs the jobs, when it is not this one. */
  readonly runner: TsxProcess | undefined
  /** The SQLite file, when there is one. */
  readonly file: string | undefined
  readonly close: () => Promise<void>
}

/** Options of the dashboard in tests: quick updates, an owner gone after 3 s of silence. */
export const testOptions = { port: 0, watchInterval: 100, staleAfter: 3_000 } as const

const addressOf = Effect.map(HttpServer.HttpServer, (server) =>
  server.address._tag === "TcpAddress" ? `http://127.0.0.1:${server.address.port}` : "")

/** A dashboard over the memory store, whose jobs a manager in this process runs. */
export const serveMemory = async (
  specs: ReadonlyArray<JobSpecInput>,
  options: Dashboard.NodeOptions = testOptions
): Promise<Served> => {
  const repository = await Effect.runPromise(JobRepositoryModule.makeMemory)
  const store = Layer.succeed(JobRepository, repository)
  const runtime = ManagedRuntime.make(Layer.mergeAll(
    JobManager.layer(fixtureManagerOptions).pipe(Layer.provide(store), Layer.provide(fixtureWorker)),
    Dashboard.layerNode(options).pipe(Layer.provide(store))
  ))
  const [url, ids] = await runtime.runPromise(Effect.all([
    addressOf,
    Effect.flatMap(JobManager.JobManager, (manager) => Effect.forEach(specs, manager.submitJob))
  ]))
  return { url, ids, runner: undefined, file: undefined, close: () => runtime.dispose() }
}

/** A dashboard over an SQLite store whose jobs run in another process. */
export const serveSqlite = async (
  specs: ReadonlyArray<unknown>,
  options: Dashboard.NodeOptions = testOptions
): Promise<Served> => {
  const dir = mkdtempSync(join(tmpdir(), "effect-jobs-dashboard-"))
  const file = join(dir, "jobs.db")
  const runner = startTsx("test/fixtures/runner.ts", [file, JSON.stringify(specs)])
  const ids = await new Promise<ReadonlyArray<string>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the runner printed no ids:\n${runner.stderr()}`)), 20_000)
    runner.child.stdout.on("data", () => {
      const line = runner.stdout().split("\n").find((text) => text.startsWith("{\"ids\""))
      if (line === undefined) return
      clearTimeout(timer)
      resolve((JSON.parse(line) as { readonly ids: ReadonlyArray<string> }).ids)
    })
  })
  const runtime = ManagedRuntime.make(
    Dashboard.layerNode(options).pipe(Layer.provide(SqlJobRepository.layerSqlite({ filename: file, create: false })))
  )
  const url = await runtime.runPromise(addressOf)
  return {
    url,
    ids,
    runner,
    file,
    close: async () => {
      await runtime.dispose()
      if (runner.child.exitCode === null && runner.child.signalCode === null) {
        runner.child.kill("SIGTERM")
        await exitCode(runner)
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** The JSON messages of a Server-Sent Events response, read until `enough` holds or the stream ends. */
export const readEvents = async <A>(
  response: Response,
  enough: (events: ReadonlyArray<A>) => boolean = () => false,
  timeoutMillis = 15_000
): Promise<{ readonly events: ReadonlyArray<A>; readonly ended: boolean }> => {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
  const events: Array<A> = []
  let buffer = ""
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    void reader.cancel()
  }, timeoutMillis)
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (timedOut) throw new Error(`the events did not come within ${timeoutMillis} ms: ${JSON.stringify(events)}`)
      if (done) return { events, ended: true }
      buffer += value
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        for (const line of block.split("\n")) {
          if (line.startsWith("data: ")) events.push(JSON.parse(line.slice(6)) as A)
        }
      }
      if (enough(events)) {
        await reader.cancel()
        return { events, ended: false }
      }
    }
  } finally {
    clearTimeout(timer)
  }
}
