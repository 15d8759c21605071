/**
 * Streamed jobs in a manager: a spec names a stream source (`chunks: { source, payload }`) registered in the
 * manager's `sources`. The stream is pulled lazily, duplicate ids and unknown sources are refused by name, an
 * endless stream runs until cancelled, and a paused job resumes by running again only the chunks pulled and
 * not completed, then the stream made again, less the chunks already pulled.
 */
import { describe, expect, it } from "vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { Chunk, JobStatus, Json } from "../src/Job.js"
import * as JobManager from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Redacted from "effect/Redacted"
import { createJobManager, executeJob } from "../src/promise.js"
import { drain, GatedWorker } from "./contract/managerCases.js"
import { countedChunks } from "./support/countedChunks.js"

const rejection = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => undefined, (error) => error)

/** A source of `count` chunks (endless without one) that counts what it yields and each time it is made. */
const countingSource = () => {
  const state = { made: 0, yielded: 0, finished: 0 }
  const lines = (payload: Json | undefined): AsyncIterable<Chunk> => {
    state.made++
    return countedChunks(state, (payload as { readonly count?: number } | undefined)?.count)
  }
  return { state, lines }
}

const until = async (condition: () => boolean | Promise<boolean>, what: string) => {
  const deadline = Date.now() + 5_000
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

describe("JobManager: streamed jobs", () => {
  it("runs every chunk of a named source; the total is absent until the stream ends, then set", async () => {
    const { lines, state } = countingSource()
    const seen: Array<number> = []
    const statuses: Array<JobStatus> = []
    await using manager = await createJobManager({
      worker: async (chunk) => {
        seen.push(chunk.id)
      },
      concurrency: 3,
      watchInterval: 0,
      sources: { lines }
    })
    const id = await manager.submitJob({ name: "manifest", chunks: { source: "lines", payload: { count: 40 } } })
    for await (const status of manager.watchJob(id)) statuses.push(status)
    const last = statuses.at(-1)!
    expect(last).toMatchObject({ state: "completed", totalChunks: 40, completedChunks: 40, progress: 100 })
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, index) => index))
    // While the stream was read: counts of what is done, no total, progress 0.
    const streaming = statuses.filter((status) => status.totalChunks === undefined)
    expect(streaming.length).toBeGreaterThan(0)
    expect(streaming.every((status) => status.progress === 0)).toBe(true)
    expect(state).toEqual({ made: 1, yielded: 40, finished: 1 })
    const page = await manager.listChunks(id, { limit: 1000 })
    expect(page.chunks.map((chunk) => [chunk.id, chunk.state])).toEqual(
      Array.from({ length: 40 }, (_, index) => [index, "completed"])
    )
  })

  it("refuses an unknown source by name, and a stream given directly, storing nothing", async () => {
    const { lines, state } = countingSource()
    await using manager = await createJobManager({ worker: async () => {}, sources: { lines } })
    const unknown = await rejection(manager.submitJob({ chunks: { source: "pages", payload: null } }))
    expect(unknown).toMatchObject({ _tag: "InvalidJobSpec", path: ["chunks", "source"] })
    expect((unknown as Error).message).toContain(`no source named "pages" (known: lines)`)
    const direct = await rejection(manager.submitJob({ chunks: lines({ count: 3 }) } as never))
    expect(direct).toMatchObject({ _tag: "InvalidJobSpec", path: ["chunks"] })
    expect((direct as Error).message).toContain("register a function that makes it in the manager's `sources`")
    expect(await manager.listJobs()).toEqual({ jobs: [] })
    // Without a manager there is no source to make the stream.
    const alone = await rejection(executeJob({ chunks: { source: "lines" } }, { worker: async () => {} }))
    expect(alone).toMatchObject({ _tag: "InvalidJobSpec", path: ["chunks", "source"] })
    await drain()
    expect(state.yielded).toBe(0)
  })

  it("runs a streamed job's chunks at the spec's own concurrency, not the manager's", async () => {
    const { lines } = countingSource()
    let inFlight = 0
    let peak = 0
    await using manager = await createJobManager({
      worker: async () => {
        peak = Math.max(peak, ++inFlight)
        await new Promise((resolve) => setTimeout(resolve, 5))
        inFlight--
      },
      concurrency: 2,
      sources: { lines }
    })
    const status = await manager.runJob({ chunks: { source: "lines", payload: { count: 30 } }, concurrency: 5 })
    expect(status).toMatchObject({ state: "completed", completedChunks: 30 })
    expect(peak).toBe(5)
  })

  it("pulls lazily: the source is never more than concurrency + prefetch ahead of the settled chunks", async () => {
    const concurrency = 3
    let settled = 0
    let maxAhead = 0
    let yielded = 0
    await using manager = await createJobManager({
      worker: () =>
        new Promise((resolve) =>
          setTimeout(() => {
            settled++
            resolve(undefined)
          }, 1)
        ),
      concurrency,
      sources: {
        lines: async function*() {
          for (let id = 0; id < 150; id++) {
            yielded++
            maxAhead = Math.max(maxAhead, yielded - settled)
            yield { id, payload: null }
          }
        }
      }
    })
    const status = await manager.runJob({ chunks: { source: "lines" } })
    expect(status).toMatchObject({ state: "completed", totalChunks: 150, completedChunks: 150 })
    // The manager pulls `concurrency` ahead (its prefetch), plus one element held while it waits for room.
    expect(maxAhead).toBeLessThanOrEqual(2 * concurrency + 1)
    expect(maxAhead).toBeGreaterThan(concurrency)
  })

  it("a duplicate id fails the job with an error naming it; the chunks in flight are aborted", async () => {
    const worker = new GatedWorker()
    await using manager = await createJobManager({
      worker: worker.run,
      concurrency: 2,
      sources: {
        twice: async function*() {
          yield { id: 7, payload: null }
          yield { id: 8, payload: null }
          await worker.startedAtLeast(2)
          yield { id: 7, payload: "again" }
        }
      }
    })
    const status = await manager.runJob({ chunks: { source: "twice" } })
    expect(status.state).toBe("failed")
    expect(status.error).toContain("duplicate chunk id 7")
    expect(worker.aborted.sort()).toEqual([7, 8])
  })

  it("an endless stream runs until cancelled: the pulling stops and the source is closed", async () => {
    const { lines, state } = countingSource()
    const worker = new GatedWorker()
    await using manager = await createJobManager({ worker: worker.run, concurrency: 2, sources: { lines } })
    const id = await manager.submitJob({ chunks: { source: "lines" } })
    await worker.startedAtLeast(2)
    worker.release(0)
    worker.release(1)
    await worker.startedAtLeast(4)
    const cancelled = await manager.cancelJob(id)
    expect(cancelled).toMatchObject({ state: "cancelled", completedChunks: 2 })
    expect(cancelled.totalChunks).toBeUndefined()
    const pulled = state.yielded
    expect(worker.aborted.sort()).toEqual([2, 3])
    await drain()
    await new Promise((resolve) => setTimeout(resolve, 20))
    // At most the element of the pending next() the cancel abandoned (a Promise cannot be stopped), then none.
    const settled = state.yielded
    expect(settled - pulled).toBeLessThanOrEqual(1)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(state.yielded).toBe(settled)
    expect(worker.started).toHaveLength(4)
    await until(() => state.finished === 1, "the source to be closed")
  })

  it("a paused job resumes: the chunks pulled and not completed run again, then the stream made again, less those pulled", async () => {
    const { lines, state } = countingSource()
    const worker = new GatedWorker()
    await using manager = await createJobManager({ worker: worker.run, concurrency: 2, sources: { lines } })
    const id = await manager.submitJob({ chunks: { source: "lines", payload: { count: 8 } } })
    await worker.startedAtLeast(2)
    worker.release(0)
    await worker.startedAtLeast(3)
    // Chunk 0 completed; 1 and 2 are in flight; 3 and 4 are pulled ahead (prefetch 2).
    await until(() => state.yielded >= 5, "the prefetch")
    const paused = await manager.pauseJob(id)
    expect(paused).toMatchObject({ state: "paused", completedChunks: 1 })
    const pulledBefore = state.yielded
    await manager.resumeJob(id)
    await until(() => worker.started.length >= 5, "the resumed run")
    // The resumed run starts with the chunks pulled before and not completed, in id order.
    expect(worker.started.slice(3, 5).map((chunk) => chunk.chunkId)).toEqual([1, 2])
    for (let chunkId = 1; chunkId < 8; chunkId++) {
      await until(() => worker.started.some((chunk, index) => index >= 3 && chunk.chunkId === chunkId), `chunk ${chunkId}`)
      worker.release(chunkId)
    }
    const status = await manager.waitForJob(id)
    expect(status).toMatchObject({ state: "completed", totalChunks: 8, completedChunks: 8 })
    const runs = new Map<number, number>()
    for (const chunk of worker.started) runs.set(chunk.chunkId, (runs.get(chunk.chunkId) ?? 0) + 1)
    // Chunk 0 completed before the pause: it never ran again.
    expect(runs.get(0)).toBe(1)
    expect([...runs.keys()].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    // The stream was made again and read from its start (8 more elements), the pulled ones skipped.
    expect(state.made).toBe(2)
    expect(state.yielded).toBe(pulledBefore + 8)
  })

  it("a job paused after its stream ended resumes with its recorded total: a percent policy counts every chunk", async () => {
    const { lines, state } = countingSource()
    const failing = new Set([5, 12, 20, 27])
    const held = new Set([38, 39])
    let releaseLast: () => void = () => {}
    let resumed = false
    const totals: Array<number | undefined> = []
    await using manager = await createJobManager({
      // Four chunks fail for good (within the 10 of 40 tolerated); 37 waits for the stream's end; 38 and 39
      // hold until the pause interrupts them.
      worker: (chunk, { signal }) =>
        failing.has(chunk.id)
          ? Promise.reject(new Error(`chunk ${chunk.id} broke`))
          : resumed
          ? Promise.resolve()
          : chunk.id === 37
          ? new Promise<void>((resolve) => (releaseLast = resolve))
          : held.has(chunk.id)
          ? new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }))
          : Promise.resolve(),
      concurrency: 4,
      retry: { attempts: 1 },
      failurePolicy: { maxFailedPercent: 25 },
      sources: { lines }
    })
    const id = await manager.submitJob({ chunks: { source: "lines", payload: { count: 40 } } })
    await until(() => state.finished === 1, "the stream's end")
    // Chunk 37 settles after the end: the total is recorded, while 38 and 39 are still in flight.
    releaseLast()
    await until(async () => {
      const status = await manager.getJob(id)
      return status?.totalChunks === 40 && status.completedChunks === 34 && status.failedChunks === 4
    }, "the recorded total")
    await manager.pauseJob(id)
    resumed = true
    await manager.resumeJob(id)
    for await (const status of manager.watchJob(id)) totals.push(status.totalChunks)
    const status = await manager.waitForJob(id)
    // Run again: the 4 failed chunks and the 2 interrupted ones, judged against 40 chunks (10 tolerated), not 6.
    expect(status).toMatchObject({ state: "completed", totalChunks: 40, completedChunks: 36, failedChunks: 4 })
    expect(totals.every((total) => total === 40)).toBe(true)
  })

  it("Effect: a source may return a Stream; a job whose source the manager lacks fails, naming it", async () => {
    const numbers = (payload: Json | undefined) =>
      Stream.map(Stream.range(1, (payload as { readonly count: number }).count), (id): Chunk => ({ id, payload: id }))
    const repository = Layer.succeed(JobRepository.JobRepository, Effect.runSync(JobRepository.makeMemory))
    const worker = ChunkWorker.layer((chunk) => Effect.succeed(chunk.payload))
    const first = ManagedRuntime.make(
      JobManager.layer({ sources: { numbers } }).pipe(Layer.provide(repository), Layer.provide(worker))
    )
    const status = await first.runPromise(Effect.flatMap(JobManager.JobManager, (manager) =>
      manager.runJob({ chunks: { source: "numbers", payload: { count: 5 } } })))
    expect(status).toMatchObject({ state: "completed", totalChunks: 5, completedChunks: 5 })
    const results = await first.runPromise(Effect.flatMap(JobManager.JobManager, (manager) =>
      manager.listChunks(status.id, { state: "completed" })))
    expect(results.chunks.map((chunk) => chunk.result)).toEqual([1, 2, 3, 4, 5])
    // A job stored by a manager with the source, run by one without it (as after a restart without it).
    const stored = await first.runPromise(Effect.gen(function*() {
      const manager = yield* JobManager.JobManager
      const id = yield* manager.submitJob({ chunks: { source: "numbers", payload: { count: 5 } } })
      return yield* manager.pauseJob(id)
    }))
    await first.dispose()
    const second = ManagedRuntime.make(JobManager.layer().pipe(Layer.provide(repository), Layer.provide(worker)))
    try {
      const failed = await second.runPromise(Effect.gen(function*() {
        const manager = yield* JobManager.JobManager
        yield* manager.resumeJob(stored.id)
        return yield* manager.awaitJob(stored.id)
      }))
      expect(failed.state).toBe("failed")
      expect(failed.error).toContain(`this manager has no source named "numbers"`)
    } finally {
      await second.dispose()
    }
  })
})

describe("JobManager: a failed streamed job re-driven", () => {
  it("retryJob makes the stream again: the completed chunks are skipped, the failed one and the rest run", async () => {
    const { lines, state } = countingSource()
    const runs = new Map<number, number>()
    await using manager = await createJobManager({
      worker: async (chunk) => {
        const run = (runs.get(chunk.id) ?? 0) + 1
        runs.set(chunk.id, run)
        if (chunk.id === 3 && run === 1) throw new Error("chunk 3 broke")
      },
      concurrency: 1,
      retry: { attempts: 1 },
      sources: { lines }
    })
    const failed = await manager.runJob({ chunks: { source: "lines", payload: { count: 6 } } })
    expect(failed).toMatchObject({ state: "failed", completedChunks: 3 })
    expect(failed.totalChunks).toBeUndefined()
    const retried = await manager.retryJob(failed.id)
    const status = await manager.waitForJob(retried.id)
    expect(status).toMatchObject({ state: "completed", totalChunks: 6, completedChunks: 6, retryOf: failed.id })
    expect([...runs.entries()].sort((a, b) => a[0] - b[0])).toEqual([[0, 1], [1, 1], [2, 1], [3, 2], [4, 1], [5, 1]])
    expect(state.made).toBe(2)
  })
})

describe("JobManager: a streamed job on PostgreSQL", () => {
  const url = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"

  it("paused by one manager, resumed by another on the same store: only the chunks not completed run again", async () => {
    const schema = `ej_stream_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`
    const { lines, state } = countingSource()
    const worker = new GatedWorker()
    const managerOn = () =>
      ManagedRuntime.make(
        JobManager.layer({ concurrency: 2, sources: { lines } }).pipe(
          Layer.provide(SqlJobRepository.layerPg({ url, schema, flushInterval: "20 millis" })),
          Layer.provide(ChunkWorker.layerPromise(worker.run))
        )
      )
    const inManager = <A, E>(runtime: ReturnType<typeof managerOn>, body: (manager: JobManager.JobManager["Type"]) => Effect.Effect<A, E>) =>
      runtime.runPromise(Effect.flatMap(JobManager.JobManager, body))
    try {
      const first = managerOn()
      const id = await inManager(first, (manager) => manager.submitJob({ chunks: { source: "lines", payload: { count: 6 } } }))
      await worker.startedAtLeast(2)
      worker.release(0)
      await worker.startedAtLeast(3)
      const paused = await inManager(first, (manager) => manager.pauseJob(id))
      expect(paused).toMatchObject({ state: "paused", completedChunks: 1 })
      await first.dispose()

      const second = managerOn()
      try {
        await inManager(second, (manager) => manager.resumeJob(id))
        await until(() => worker.started.length >= 5, "the resumed run")
        // Chunks 1 and 2 were in flight at the pause: the resumed run starts with them, read from the store.
        expect(worker.started.slice(3, 5).map((chunk) => chunk.chunkId)).toEqual([1, 2])
        for (let chunkId = 1; chunkId < 6; chunkId++) {
          await until(() => worker.started.some((chunk, index) => index >= 3 && chunk.chunkId === chunkId), `chunk ${chunkId}`)
          worker.release(chunkId)
        }
        const status = await inManager(second, (manager) => manager.awaitJob(id))
        expect(status).toMatchObject({ state: "completed", totalChunks: 6, completedChunks: 6 })
        expect(worker.started.filter((chunk) => chunk.chunkId === 0)).toHaveLength(1)
        expect(state.made).toBe(2)
      } finally {
        await second.dispose()
      }
    } finally {
      await Effect.runPromise(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).pipe(
          Effect.provide(PgClient.layer({ url: Redacted.make(url) }))
        )
      )
    }
  }, 30_000)
})
