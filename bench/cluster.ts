/**
 * S6 cluster: runner processes on this machine joined over a fresh PostgreSQL database per measurement.
 *
 * - `throughput <chunks> <ms> <runners>`: a job of `chunks` chunks of `ms` milliseconds (0: one setImmediate)
 *   over `runners` runner processes of capacity 8, 16 chunks of the job in flight; prints
 *   `{"seconds":…}` from submit to the stored `completed`. `runners` 0: one process, no cluster (a
 *   `JobManager` on the same PostgreSQL store with the worker in process), the baseline.
 * - `runner <json>`: one runner (started by the above).
 *
 * Not yet part of `npm run bench` (the S6 row group): run it by hand, e.g.
 * `node --import tsx bench/cluster.ts throughput 2000 20 3`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import { type ChildProcessByStdio, spawn } from "node:child_process"
import type { Readable } from "node:stream"
import { setTimeout as sleep } from "node:timers/promises"
import * as ChunkWorker from "../src/ChunkWorker.js"
import * as Cluster from "../src/Cluster.js"
import type { JobStatus } from "../src/Job.js"
import * as JobClient from "../src/JobClient.js"
import * as JobManager from "../src/JobManager.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import { pgUrl } from "./postgres.js"

const inFlight = 16

const worker = (ms: number, onStart?: () => void) =>
  ChunkWorker.layerPromise(async (_chunk, { signal }) => {
    onStart?.()
    if (ms === 0) return new Promise<void>((resolve) => setImmediate(resolve))
    await sleep(ms, undefined, { signal })
  })

const admin = (statement: string): Promise<void> =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(
      Effect.asVoid,
      Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl) }))
    )
  )

/** A fresh database for `use`, dropped afterwards. */
const withDatabase = async <A>(use: (url: string) => Promise<A>): Promise<A> => {
  const name = `bench_cluster_${process.pid}_${Math.random().toString(36).slice(2, 8)}`
  await admin(`CREATE DATABASE ${name}`)
  const url = new URL(pgUrl)
  url.pathname = `/${name}`
  try {
    return await use(url.toString())
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  }
}

type Runner = ChildProcessByStdio<null, Readable, null>

interface RunnerOptions {
  readonly pg: string
  readonly capacity: number
  readonly ms: number
  /** Chunks of one job in flight (the owner's manager). */
  readonly concurrency: number
  /** Print `start` for each chunk started. */
  readonly report: boolean
}

/** Starts runner processes and waits until they joined and shared out the shards. */
const startRunners = async (
  count: number,
  options: RunnerOptions,
  onLine: (line: string) => void = () => {}
): Promise<ReadonlyArray<Runner>> => {
  const compiled = import.meta.filename.endsWith(".js")
  let ready = 0
  let allReady: () => void = () => {}
  const joined = new Promise<void>((resolve) => (allReady = resolve))
  const runners = Array.from({ length: count }, () => {
    const child = spawn(
      process.execPath,
      [...(compiled ? [] : ["--import", "tsx"]), import.meta.filename, "runner", JSON.stringify(options)],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    let pending = ""
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      pending += text
      const lines = pending.split("\n")
      pending = lines.pop()!
      for (const line of lines) {
        if (line === "ready" && ++ready === count) allReady()
        onLine(line)
      }
    })
    return child
  })
  await joined
  await sleep(2_500)
  return runners
}

const stopRunners = async (runners: ReadonlyArray<Runner>) => {
  await Promise.all(runners.map((runner) =>
    new Promise<void>((resolve) => {
      if (runner.exitCode !== null) return resolve()
      runner.once("exit", () => resolve())
      runner.kill("SIGKILL")
    })
  ))
}

const isOver = (status: JobStatus) => status.state !== "pending" && status.state !== "running"

const throughput = (chunks: number, ms: number, runnerCount: number) =>
  withDatabase(async (pg) => {
    const spec = { chunks: { start: 0, end: chunks - 1, size: 1 } }
    if (runnerCount === 0) {
      const runtime = ManagedRuntime.make(
        JobManager.layer({ concurrency: inFlight }).pipe(
          Layer.provide(SqlJobRepository.layerPg({ url: pg })),
          Layer.provide(worker(ms))
        )
      )
      const manager = await runtime.runPromise(JobManager.JobManager)
      const started = performance.now()
      await runtime.runPromise(manager.runJob(spec))
      const seconds = (performance.now() - started) / 1000
      await runtime.dispose()
      return { seconds }
    }
    const runners = await startRunners(runnerCount, { pg, capacity: 8, ms, concurrency: inFlight, report: false })
    const runtime = ManagedRuntime.make(SqlJobRepository.layerPg({ url: pg }))
    try {
      const client = await runtime.runPromise(JobClient.make({ pollInterval: 20 }))
      const started = performance.now()
      const job = await runtime.runPromise(Cluster.submitJob(spec))
      for (;;) {
        const status = await runtime.runPromise(client.getJob(job.id))
        if (isOver(status)) {
          if (status.state !== "completed") throw new Error(`the job ${status.state}: ${status.error}`)
          break
        }
        await sleep(20)
      }
      return { seconds: (performance.now() - started) / 1000 }
    } finally {
      await runtime.dispose()
      await stopRunners(runners)
    }
  })

const runner = (options: RunnerOptions) =>
  ManagedRuntime.make(
    Cluster.layer({ postgres: options.pg, capacity: options.capacity, manager: { concurrency: options.concurrency } })
      .pipe(Layer.provide(worker(options.ms, options.report ? () => process.stdout.write("start\n") : undefined)))
  ).runtime().then(() => process.stdout.write("ready\n"))

const [mode, ...args] = process.argv.slice(2)
if (mode === "runner") await runner(JSON.parse(args[0]!))
else if (mode === "throughput") console.log(JSON.stringify(await throughput(Number(args[0]), Number(args[1]), Number(args[2]))))
