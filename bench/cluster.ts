/**
 * S6 cluster: runner processes on this machine joined over a fresh PostgreSQL database per cluster size,
 * against the single-process manager on the same store and BullMQ workers in 3 processes on the local Redis.
 *
 * `node bench/cluster.ts s6 <json>` (what `npm run bench` runs, in its own process) prints one JSON object:
 * - `throughput`: for each of the single process (`runners: 0`) and 1, 2, 3 runner processes, the seconds
 *   from submit to the stored `completed` of a job of `chunks` chunks of 0 ms (one setImmediate) and of
 *   20 ms, 16 chunks of the job in flight, runners of capacity 16 (so that one runner alone could run them);
 * - `cancel`: on the largest cluster (3 runners), `cancels` times: a job with 16 chunks in flight on the runners, cancelled from
 *   this process with a `JobClient` (as the CLI does); the latency of `cancelJob` (until `cancelled` is
 *   returned) and how long after it returned the last in-flight chunk's signal fired on its runner;
 * - `failover`: on the largest cluster (3 runners, at least 2 needed), kill -9 of a runner that runs chunks but does not own the job: the time until
 *   its first lost chunk starts again elsewhere; then kill -9 of the job's owner: the time until another
 *   runner owns the job (stored);
 * - `bullmq`: the same chunks as one flow (a parent and `chunks` children), 3 worker processes of
 *   concurrency 6, 5 and 5 (16 in flight): the seconds from `FlowProducer.add` to the parent's completion.
 *
 * `runner <json>`: one runner (started by the above); the BullMQ workers are bench/bullmq-flow-worker.ts.
 */
import * as ShardId from "@effect/cluster/ShardId"
import { Sharding } from "@effect/cluster/Sharding"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { type ChildProcessByStdio, spawn } from "node:child_process"
import { extname, join } from "node:path"
import type { Readable } from "node:stream"
import { setTimeout as sleep } from "node:timers/promises"
import * as ChunkWorker from "../src/ChunkWorker.js"
import * as Cluster from "../src/Cluster.js"
import type { JobSpecInput, JobStatus } from "../src/Job.js"
import * as JobClient from "../src/JobClient.js"
import * as JobManager from "../src/JobManager.js"
import type { JobRepository } from "../src/JobRepository.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import { bullFlow, bullFlowCleanup } from "./bullmq.js"
import { createPgDatabase, dropPgDatabase } from "./postgres.js"

/** Chunks of one job in flight, everywhere. */
const inFlight = 16
const runnerCapacity = 16
const shardsPerGroup = 300

export interface S6Options {
  readonly chunks: number
  /** Cluster sizes to measure the throughput on (the single process is always measured); cancel and failover on the largest. */
  readonly runners: ReadonlyArray<number>
  /** Runs of each job on the largest cluster, alternating with BullMQ. */
  readonly repetitions: number
  readonly cancels: number
  readonly failover: boolean
  readonly bullmq: boolean
}

/** What `s6` prints (times in seconds, latencies in milliseconds). */
export interface S6Result {
  readonly chunks: number
  /** The cluster size of `cancel` and `failover`. */
  readonly largest: number
  readonly throughput: ReadonlyArray<{ readonly runners: number; readonly ms: number; readonly seconds: number }>
  readonly cancel?: {
    readonly runs: number
    readonly median: number
    readonly p99: number
    readonly toFirstSignal: number
    readonly signalSpread: number
    readonly afterLastSignal: number
    readonly afterLastSignalMin: number
    readonly startedAfter: number
  }
  readonly failover?: { readonly runnerKill: number; readonly lost: number; readonly ownerKill: number; readonly completed: boolean }
  readonly bullmq?: ReadonlyArray<{ readonly ms: number; readonly seconds: number }>
}

/** A chunk's payload: sleep `ms` (0: one setImmediate); `r`: report start, end and abort on stdout. */
interface Payload {
  readonly ms: number
  readonly r?: 1
}

interface ChunkEvent {
  readonly e: "start" | "end" | "abort"
  readonly j: string
  readonly c: number
  readonly pid: number
  readonly t: number
}

const chunkWork = (report: (event: Omit<ChunkEvent, "pid" | "t">) => void) =>
  ChunkWorker.layerPromise(async (chunk, { jobId, signal }) => {
    const payload = chunk.payload as unknown as Payload
    if (payload.r === 1) {
      report({ e: "start", j: jobId, c: chunk.id })
      signal.addEventListener("abort", () => report({ e: "abort", j: jobId, c: chunk.id }), { once: true })
    }
    if (payload.ms === 0) await new Promise<void>((resolve) => setImmediate(resolve))
    else await sleep(payload.ms, undefined, { signal })
    if (payload.r === 1) report({ e: "end", j: jobId, c: chunk.id })
  })

const spec = (chunks: number, payload: Payload): JobSpecInput => ({
  chunks: Array.from({ length: chunks }, (_, id) => ({ id, payload: { ...payload } }))
})

const isOver = (status: JobStatus) => status.state !== "pending" && status.state !== "running"

const quantile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * q) - 1))]!
}

/** Spawns the bench script `file` (this one by default) with `args`; its stdout lines go to `onLine`. */
const spawnScript = (args: ReadonlyArray<string>, onLine: (line: string) => void, file = import.meta.filename) => {
  const compiled = import.meta.filename.endsWith(".js")
  const child = spawn(
    process.execPath,
    [...(compiled ? [] : ["--import", "tsx"]), file, ...args],
    { stdio: ["ignore", "pipe", "inherit"] }
  )
  let pending = ""
  child.stdout.setEncoding("utf8").on("data", (text: string) => {
    pending += text
    const lines = pending.split("\n")
    pending = lines.pop()!
    for (const line of lines) onLine(line)
  })
  return child
}

type Child = ChildProcessByStdio<null, Readable, null>

const killAll = (children: ReadonlyArray<Child>) =>
  Promise.all(children.map((child) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once("exit", () => resolve())
      child.kill("SIGKILL")
    })
  ))

const waitFor = async (what: string, check: () => boolean, timeoutMillis = 60_000): Promise<void> => {
  const deadline = Date.now() + timeoutMillis
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`S6: timed out waiting for ${what}`)
    await sleep(10)
  }
}

// --- A cluster of runner processes, followed from here ---

interface ClusterUnderTest {
  readonly runners: ReadonlyArray<Child>
  readonly events: Array<ChunkEvent>
  readonly client: JobClient.JobClient
  readonly run: <A>(effect: Effect.Effect<A, unknown, JobRepository>) => Promise<A>
  readonly submit: (spec: JobSpecInput) => Promise<JobStatus>
  readonly until: (id: string, done: (status: JobStatus) => boolean, timeoutMillis?: number) => Promise<JobStatus>
  readonly close: () => Promise<void>
}

/** Starts `count` runners on the database `pg` and waits until they share out every shard. */
const startCluster = async (pg: string, count: number): Promise<ClusterUnderTest> => {
  const events: Array<ChunkEvent> = []
  const shards = new Map<Child, number>()
  const runners: Array<Child> = []
  for (let i = 0; i < count; i++) {
    const child: Child = spawnScript(["runner", JSON.stringify({ pg })], (line) => {
      if (!line.startsWith("{")) return // the cluster's own log lines
      const message = JSON.parse(line) as { readonly shards?: number } | ChunkEvent
      if ("shards" in message) shards.set(child, message.shards!)
      else events.push(message as ChunkEvent)
    })
    runners.push(child)
  }
  const runtime = ManagedRuntime.make(SqlJobRepository.layerPg({ url: pg }))
  const close = async () => {
    await killAll(runners)
    await runtime.dispose()
  }
  try {
    await waitFor(
      "the runners to share out the shards",
      () => runners.every((runner) => (shards.get(runner) ?? 0) > 0) &&
        [...shards.values()].reduce((sum, held) => sum + held, 0) === shardsPerGroup,
      180_000
    )
    const client = await runtime.runPromise(JobClient.make())
    const run: ClusterUnderTest["run"] = (effect) => runtime.runPromise(effect)
    const until: ClusterUnderTest["until"] = async (id, done, timeoutMillis = 120_000) => {
      const deadline = Date.now() + timeoutMillis
      for (;;) {
        const status = await run(client.getJob(id))
        if (done(status)) return status
        if (Date.now() > deadline) throw new Error(`S6: job ${id} still ${status.state} after ${timeoutMillis} ms`)
        await sleep(10)
      }
    }
    return { runners, events, client, run, submit: (spec) => run(Cluster.submitJob(spec)), until, close }
  } catch (error) {
    await close()
    throw error
  }
}

/** Seconds from submit to the stored `completed`. */
const timeJob = async (cluster: ClusterUnderTest, chunks: number, ms: number): Promise<number> => {
  const started = performance.now()
  const job = await cluster.submit(spec(chunks, { ms }))
  const done = await cluster.until(job.id, isOver)
  if (done.state !== "completed") throw new Error(`S6: the job ended ${done.state}: ${done.error}`)
  return (performance.now() - started) / 1000
}

const singleProcess = async (pg: string, chunks: number, ms: number): Promise<number> => {
  const runtime = ManagedRuntime.make(
    JobManager.layer({ concurrency: inFlight }).pipe(
      Layer.provide(SqlJobRepository.layerPg({ url: pg })),
      Layer.provide(chunkWork(() => {}))
    )
  )
  try {
    const manager = await runtime.runPromise(JobManager.JobManager)
    await runtime.runPromise(manager.runJob(spec(Math.min(chunks, 100), { ms: 0 }))) // warm-up
    const started = performance.now()
    await runtime.runPromise(manager.runJob(spec(chunks, { ms })))
    return (performance.now() - started) / 1000
  } finally {
    await runtime.dispose()
  }
}

let databases = 0
const withDatabase = async <A>(use: (url: string) => Promise<A>): Promise<A> => {
  const name = `bench_s6_${process.pid}_${databases++}`
  const url = await createPgDatabase(name)
  try {
    return await use(url)
  } finally {
    await dropPgDatabase(name)
  }
}

/** The chunks of `job` started and not ended nor aborted on `pid` at `at`. */
const inFlightOn = (events: ReadonlyArray<ChunkEvent>, job: string, pid: number | undefined, at = Date.now()) => {
  const running = new Set<number>()
  for (const event of events) {
    if (event.j !== job || event.t > at || (pid !== undefined && event.pid !== pid)) continue
    if (event.e === "start") running.add(event.c)
    else running.delete(event.c)
  }
  return running
}

const ownerPid = (status: JobStatus): number => Number(status.owner?.split(":")[1])

/**
 * Cancels `runs` jobs with 16 chunks in flight; besides the latency of `cancelJob`, where it goes: until the
 * first chunk's signal fired on a runner (the owner saw the request and interrupted the job), the spread of
 * the signals over the runners, and from the last signal until `cancelJob` returned (`cancelled` stored and
 * seen by this process).
 */
const cancelLatency = async (cluster: ClusterUnderTest, runs: number) => {
  const latencies: Array<number> = []
  const toFirstSignal: Array<number> = []
  const signalSpread: Array<number> = []
  const afterLastSignal: Array<number> = []
  let startedAfter = 0
  for (let run = 0; run < runs; run++) {
    const job = await cluster.submit(spec(inFlight * 3, { ms: 60_000, r: 1 }))
    await waitFor("16 chunks in flight", () => inFlightOn(cluster.events, job.id, undefined).size >= inFlight)
    const running = cluster.events.filter((event) => event.j === job.id && event.e === "start")
    const calledAt = Date.now()
    const before = performance.now()
    const status = await cluster.run(cluster.client.cancelJob(job.id))
    latencies.push(performance.now() - before)
    const returnedAt = Date.now()
    if (status.state !== "cancelled") throw new Error(`S6: cancelJob returned ${status.state}`)
    const aborted = (event: ChunkEvent) =>
      cluster.events.find((other) => other.j === job.id && other.e === "abort" && other.c === event.c && other.pid === event.pid)
    await waitFor("every in-flight chunk's signal", () => running.every((event) => aborted(event) !== undefined), 10_000)
    const signals = running.map((event) => aborted(event)!.t)
    toFirstSignal.push(Math.min(...signals) - calledAt)
    signalSpread.push(Math.max(...signals) - Math.min(...signals))
    afterLastSignal.push(returnedAt - Math.max(...signals))
    await sleep(200)
    startedAfter += cluster.events.filter((event) => event.j === job.id && event.e === "start" && event.t > returnedAt).length
  }
  return {
    runs,
    median: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    toFirstSignal: quantile(toFirstSignal, 0.5),
    signalSpread: quantile(signalSpread, 0.5),
    afterLastSignal: quantile(afterLastSignal, 0.5),
    /** Negative when a signal fired after `cancelJob` returned. */
    afterLastSignalMin: Math.min(...afterLastSignal),
    startedAfter
  }
}

const failover = async (cluster: ClusterUnderTest) => {
  // kill -9 of a runner that runs chunks of the job and does not own it.
  const job = await cluster.submit(spec(1_000, { ms: 100, r: 1 }))
  const running = await cluster.until(job.id, (status) => status.state === "running" && status.owner !== undefined)
  const victim = cluster.runners.find((runner) => runner.pid !== ownerPid(running))!
  await waitFor("the victim to run chunks", () => inFlightOn(cluster.events, job.id, victim.pid).size >= 2)
  await sleep(300)
  victim.kill("SIGKILL")
  const killedAt = Date.now()
  const lost = inFlightOn(cluster.events, job.id, victim.pid, killedAt)
  const rerun = () =>
    cluster.events.find((event) => event.j === job.id && event.e === "start" && event.t > killedAt && lost.has(event.c))
  await waitFor("a lost chunk to run again", () => rerun() !== undefined, 60_000)
  const runnerKill = rerun()!.t - killedAt
  await cluster.until(job.id, isOver)
  // kill -9 of the owner of a running job.
  const second = await cluster.submit(spec(1_000, { ms: 100, r: 1 }))
  const owned = await cluster.until(second.id, (status) => status.state === "running" && status.owner !== undefined)
  await waitFor("chunks to end", () => cluster.events.filter((event) => event.j === second.id && event.e === "end").length >= 16)
  process.kill(ownerPid(owned), "SIGKILL")
  const ownerKilledAt = performance.now()
  await cluster.until(second.id, (status) => status.owner !== owned.owner, 60_000)
  const ownerKill = performance.now() - ownerKilledAt
  const done = await cluster.until(second.id, isOver)
  return { runnerKill, lost: lost.size, ownerKill, completed: done.state === "completed" }
}

const s6 = async (options: S6Options) => {
  const throughput: Array<{ readonly runners: number; readonly ms: number; readonly seconds: number }> = []
  const results: Record<string, unknown> = {
    chunks: options.chunks,
    inFlight,
    runnerCapacity,
    largest: Math.max(0, ...options.runners),
    throughput
  }
  await withDatabase(async (pg) => {
    for (const ms of [0, 20]) throughput.push({ runners: 0, ms, seconds: await singleProcess(pg, options.chunks, ms) })
  })
  // Cancel and failover are measured on the largest cluster, and BullMQ alternates with it (same load).
  const largest = Math.max(0, ...options.runners)
  const bull = options.bullmq ? await startBullmq() : undefined
  const bullmq: Array<{ readonly ms: number; readonly seconds: number }> = []
  try {
    for (const count of options.runners) {
      await withDatabase(async (pg) => {
        const cluster = await startCluster(pg, count)
        try {
          await timeJob(cluster, Math.min(options.chunks, 200), 0) // warm-up: the owner learns the runners
          const repetitions = count === largest ? options.repetitions : 1
          for (let repetition = 0; repetition < repetitions; repetition++) {
            for (const ms of [0, 20]) {
              const contenders = [
                async () => throughput.push({ runners: count, ms, seconds: await timeJob(cluster, options.chunks, ms) }),
                ...(bull !== undefined && count === largest
                  ? [async () => bullmq.push({ ms, seconds: await bullFlow(bull.queue, options.chunks, ms) })]
                  : [])
              ]
              for (const run of repetition % 2 === 0 ? contenders : contenders.reverse()) await run()
            }
          }
          if (count === largest && options.cancels > 0) results["cancel"] = await cancelLatency(cluster, options.cancels)
          if (count === largest && options.failover) results["failover"] = await failover(cluster)
        } finally {
          await cluster.close()
        }
      })
    }
    if (bull !== undefined && largest === 0) {
      for (const ms of [0, 20]) bullmq.push({ ms, seconds: await bullFlow(bull.queue, options.chunks, ms) })
    }
  } finally {
    await bull?.stop()
  }
  if (bull !== undefined) results["bullmq"] = bullmq
  return results
}

// --- BullMQ: 3 worker processes, one flow per job ---

/** Starts the BullMQ worker processes (concurrency 6, 5 and 5: 16 in flight) and a warm-up flow. */
const startBullmq = async () => {
  const queue = `effect-jobs-s6-${process.pid}-${Date.now()}`
  let ready = 0
  const workers = [6, 5, 5].map((concurrency, index) =>
    spawnScript([JSON.stringify({ queue, concurrency, parent: index === 0 })], (line) => {
      if (line === "ready") ready++
    }, join(import.meta.dirname, `bullmq-flow-worker${extname(import.meta.filename)}`))
  )
  const stop = async () => {
    await killAll(workers)
    await bullFlowCleanup(queue)
  }
  try {
    await waitFor("the BullMQ workers", () => ready === workers.length)
    await bullFlow(queue, 200, 0) // warm-up
    return { queue, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

// --- Child processes ---

const runner = async (options: { readonly pg: string }) => {
  const write = (message: object) => process.stdout.write(`${JSON.stringify(message)}\n`)
  const layer = Cluster.layer({
    postgres: options.pg,
    capacity: runnerCapacity,
    shardsPerGroup,
    manager: { concurrency: inFlight }
  }).pipe(
    Layer.provide(chunkWork((event) => write({ ...event, pid: process.pid, t: Date.now() }))),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
  )
  const runtime = ManagedRuntime.make(layer)
  await runtime.runPromise(Effect.gen(function*() {
    const sharding = yield* Sharding
    const ids = Array.from({ length: shardsPerGroup }, (_, i) => ShardId.make("default", i + 1))
    let held = -1
    for (;;) {
      const now = ids.filter((shard) => sharding.hasShardId(shard)).length
      if (now !== held) write({ shards: (held = now) })
      yield* Effect.sleep(100)
    }
  }))
}

const [mode, argument] = process.argv.slice(2)
if (mode === "runner") await runner(JSON.parse(argument!))
else if (mode === "s6") console.log(JSON.stringify(await s6(JSON.parse(argument!) as S6Options)))
