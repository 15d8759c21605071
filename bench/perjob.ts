/**
 * S7, the cost per job: single-chunk no-op jobs through the Promise facade (as a web handler submits them)
 * and through BullMQ on the local Redis, side by side.
 *
 * - end to end: `jobs` jobs submitted one at a time by `callers` callers (each awaits its `submitJob` /
 *   `queue.add` before the next), `callers` jobs running at once, until every job completed;
 * - `submitBatch` (BullMQ: `addBulk`) of `jobs` jobs: until stored, and until completed;
 * - the time from a submit to the job's first chunk starting, one job at a time (p50, p99);
 * - `listJobs` in a store that holds `jobs` jobs: the first page, a page deep in it, and by state.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import Database from "better-sqlite3"
import { Queue, Worker } from "bullmq"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { encodeCursor } from "../src/internal/cursor.js"
import type { JobId } from "../src/Job.js"
import type { PromiseJobManager, PromiseWorker } from "../src/promise.js"
import { createJobManager } from "../src/promise.js"

export type Store = "memory" | { readonly sqlite: string } | { readonly postgres: string }

const connection = { host: "127.0.0.1", port: 6379 }
const oneChunk = { chunks: { start: 0, end: 0, size: 1 } }
const noop = () => new Promise<void>((resolve) => setImmediate(resolve))
const sleep = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, millis))

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!
}

/** The jobs of a listing, whether `listJobs` resolves with an array or with a page. */
const jobsOf = (result: unknown): ReadonlyArray<{ readonly id: string }> =>
  Array.isArray(result) ? result : (result as { readonly jobs: ReadonlyArray<{ readonly id: string }> }).jobs

/** Waits until the manager has no job `pending` or `running`. */
const drained = async (manager: PromiseJobManager) => {
  while (jobsOf(await manager.listJobs({ state: ["pending", "running"], limit: 1 })).length > 0) await sleep(2)
}

const open = (store: Store, worker: PromiseWorker, maxConcurrentJobs: number) =>
  createJobManager({ worker, concurrency: 1, maxConcurrentJobs, store, shutdownGracePeriod: 0 })

export interface EndToEnd {
  readonly jobsPerSecond: number
  /** Mean time a caller waited for one `submitJob` / `queue.add`. */
  readonly submitMillis: number
}

/** Runs `submit` from `callers` callers until `jobs` were submitted; returns the mean wait per submit. */
const submitFrom = async (jobs: number, callers: number, submit: () => Promise<unknown>): Promise<number> => {
  let submitted = 0
  let waited = 0
  const caller = async () => {
    while (submitted < jobs) {
      submitted++
      const started = performance.now()
      await submit()
      waited += performance.now() - started
    }
  }
  await Promise.all(Array.from({ length: callers }, caller))
  return waited / jobs
}

/** A no-op worker that counts its chunks, and resolves `all` once `count` of them ran. */
const countingWorker = (count: number) => {
  let ran = 0
  let done = () => {}
  const all = new Promise<void>((resolve) => (done = resolve))
  const worker: PromiseWorker = () => {
    if (++ran === count) done()
    return noop()
  }
  return { worker, all }
}

export const endToEnd = async (store: Store, jobs: number, callers: number): Promise<EndToEnd> => {
  const counting = countingWorker(jobs)
  await using manager = await open(store, counting.worker, callers)
  const started = performance.now()
  const submitMillis = await submitFrom(jobs, callers, () => manager.submitJob(oneChunk))
  // Every chunk ran; then the last jobs' ends are stored.
  await counting.all
  await drained(manager)
  return { jobsPerSecond: jobs / ((performance.now() - started) / 1000), submitMillis }
}

/** A BullMQ queue with a worker of concurrency `concurrency` whose jobs call `onJob`; `close` removes all. */
const bullmq = async (concurrency: number, onJob: () => void = () => {}) => {
  const name = `effect-jobs-s7-${process.pid}-${Date.now()}`
  const queue = new Queue(name, { connection })
  let completed = 0
  let waiting: { readonly count: number; readonly resolve: () => void } | undefined
  const worker = new Worker(name, () => {
    onJob()
    return noop()
  }, { connection, concurrency })
  worker.on("completed", () => {
    completed++
    if (waiting !== undefined && completed >= waiting.count) waiting.resolve()
  })
  await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()])
  return {
    queue,
    completed: (count: number) =>
      completed >= count ? Promise.resolve() : new Promise<void>((resolve) => (waiting = { count, resolve })),
    close: async () => {
      await worker.close()
      await queue.obliterate({ force: true })
      await queue.close()
    }
  }
}
const bullOptions = { removeOnComplete: true, removeOnFail: true } as const

export const bullEndToEnd = async (jobs: number, callers: number): Promise<EndToEnd> => {
  const bull = await bullmq(callers)
  try {
    const started = performance.now()
    const submitMillis = await submitFrom(jobs, callers, () => bull.queue.add("job", {}, bullOptions))
    await bull.completed(jobs)
    return { jobsPerSecond: jobs / ((performance.now() - started) / 1000), submitMillis }
  } finally {
    await bull.close()
  }
}

export interface Batch {
  readonly storedPerSecond: number
  readonly completedPerSecond: number
}

export const batch = async (store: Store, jobs: number, running: number): Promise<Batch> => {
  const counting = countingWorker(jobs)
  await using manager = await open(store, counting.worker, running)
  const specs = Array.from({ length: jobs }, () => oneChunk)
  const started = performance.now()
  await manager.submitBatch(specs)
  const stored = performance.now()
  await counting.all
  await drained(manager)
  return {
    storedPerSecond: jobs / ((stored - started) / 1000),
    completedPerSecond: jobs / ((performance.now() - started) / 1000)
  }
}

export const bullBatch = async (jobs: number, running: number): Promise<Batch> => {
  const bull = await bullmq(running)
  try {
    const specs = Array.from({ length: jobs }, () => ({ name: "job", data: {}, opts: bullOptions }))
    const started = performance.now()
    await bull.queue.addBulk(specs)
    const stored = performance.now()
    await bull.completed(jobs)
    return {
      storedPerSecond: jobs / ((stored - started) / 1000),
      completedPerSecond: jobs / ((performance.now() - started) / 1000)
    }
  } finally {
    await bull.close()
  }
}

export interface Latency {
  readonly p50: number
  readonly p99: number
}

/** Submit -> first chunk started, one job at a time, after `samples / 10` untimed ones. */
export const firstChunk = async (store: Store, samples: number): Promise<Latency> => {
  let onStart = () => {}
  await using manager = await open(store, () => {
    onStart()
    return noop()
  }, 1)
  const latencies: Array<number> = []
  const warmUp = Math.ceil(samples / 10)
  for (let i = 0; i < warmUp + samples; i++) {
    const chunkStarted = new Promise<void>((resolve) => (onStart = resolve))
    const started = performance.now()
    const id = await manager.submitJob(oneChunk)
    await chunkStarted
    if (i >= warmUp) latencies.push(performance.now() - started)
    await manager.waitForJob(id)
  }
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

export const bullFirstChunk = async (samples: number): Promise<Latency> => {
  let onStart = () => {}
  const bull = await bullmq(1, () => onStart())
  try {
    const latencies: Array<number> = []
    const warmUp = Math.ceil(samples / 10)
    for (let i = 0; i < warmUp + samples; i++) {
      const chunkStarted = new Promise<void>((resolve) => (onStart = resolve))
      const started = performance.now()
      await bull.queue.add("job", {}, bullOptions)
      await chunkStarted
      if (i >= warmUp) latencies.push(performance.now() - started)
      await bull.completed(i + 1)
    }
    return { p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
  } finally {
    await bull.close()
  }
}

export interface ListTimes {
  readonly first: number
  readonly deep: number
  readonly byState: number
  readonly byStates: number
}

const base = 1_700_000_000_000
const stateSql = `CASE i % 10 WHEN 2 THEN 'failed' WHEN 5 THEN 'cancelled' ELSE 'completed' END`
const idOf = (i: number) => `job_${String(i).padStart(8, "0")}` as JobId

/** Fills an SQLite store (already created) with `jobs` finished jobs. */
export const fillSqlite = (filename: string, jobs: number) => {
  const raw = new Database(filename)
  raw.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${jobs})
    INSERT INTO effect_jobs (id, state, total_chunks, completed_chunks, created_at, updated_at, finished_at)
    SELECT printf('job_%08d', i), ${stateSql}, 1, 1, ${base} + i, ${base} + i, ${base} + i FROM n`)
  raw.close()
}

/** Fills a PostgreSQL store (already created, in the connection's schema) with `jobs` finished jobs. */
export const fillPg = (url: string, jobs: number): Promise<void> =>
  Effect.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(
      sql.unsafe(`INSERT INTO effect_jobs (id, state, total_chunks, completed_chunks, created_at, updated_at, finished_at)
        SELECT 'job_' || lpad(i::text, 8, '0'), ${stateSql}, 1, 1, ${base} + i, ${base} + i, ${base} + i
        FROM generate_series(1, ${jobs}) AS i`),
      sql.unsafe(`ANALYZE effect_jobs`)
    )).pipe(Effect.asVoid, Effect.provide(PgClient.layer({ url: Redacted.make(url) })), Effect.scoped))

/**
 * Median milliseconds of `listJobs` (a page of 50) over `runs` runs each: the first page, a page half-way
 * down, the first page of one state and of two. `fill(jobs)` fills the store once it is created.
 */
export const listPages = async (store: Store, jobs: number, runs: number, fill: () => Promise<void>): Promise<ListTimes> => {
  await using manager = await open(store, noop, 1)
  await fill()
  const time = async (query: Parameters<PromiseJobManager["listJobs"]>[0]) => {
    const times: Array<number> = []
    for (let run = 0; run < runs; run++) {
      const started = performance.now()
      const listed = jobsOf(await manager.listJobs(query))
      times.push(performance.now() - started)
      if (listed.length !== 50) throw new Error(`listJobs returned ${listed.length} jobs, expected 50`)
    }
    return percentile(times, 50)
  }
  const middle = Math.floor(jobs / 2)
  return {
    first: await time({}),
    deep: await time({ cursor: encodeCursor({ createdAt: base + middle, id: idOf(middle) }) }),
    byState: await time({ state: "failed" }),
    byStates: await time({ state: ["failed", "cancelled"] })
  }
}

/** Fills a memory store: `jobs` jobs in one batch, all but one left `pending` behind a job that never ends. */
export const memoryListPages = async (jobs: number, runs: number): Promise<ListTimes> => {
  const never: PromiseWorker = (_chunk, { signal }) =>
    new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)))
  await using manager = await open("memory", never, 1)
  const ids = await manager.submitBatch(Array.from({ length: jobs }, () => oneChunk))
  const middle = await manager.getJob(ids[Math.floor(jobs / 2)]!)
  const time = async (query: Parameters<PromiseJobManager["listJobs"]>[0]) => {
    const times: Array<number> = []
    for (let run = 0; run < runs; run++) {
      const started = performance.now()
      await manager.listJobs(query)
      times.push(performance.now() - started)
    }
    return percentile(times, 50)
  }
  const deepCursor = encodeCursor({ createdAt: middle!.createdAt.getTime(), id: middle!.id })
  return {
    first: await time({}),
    deep: await time({ cursor: deepCursor }),
    byState: await time({ state: "running" }),
    byStates: await time({ state: ["running", "paused"] })
  }
}
