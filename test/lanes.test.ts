/**
 * The lanes of a Promise worker: chunks run in a plain Promise loop, and the fiber takes over only to wait,
 * to retry or fail a chunk, and to end. These cases are the edges of that loop.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as TestClock from "effect/TestClock"
import { ChunkWorker } from "../src/ChunkWorker.js"
import * as ChunkWorkerModule from "../src/ChunkWorker.js"
import type { Chunk, JobId, JobSpec } from "../src/Job.js"
import type { ChunkContext } from "../src/ChunkWorker.js"
import { ChunkFailed, ChunkTimeout } from "../src/JobError.js"
import * as JobExecutor from "../src/JobExecutor.js"
import { createJobManager, executeJob } from "../src/promise.js"
import { settle } from "./util.js"

const jobId = "job_lanes" as JobId
const range = (chunks: number): JobSpec => ({ chunks: { start: 0, end: chunks - 1, size: 1 } })
const promiseWorker = (run: (chunk: Chunk, context: ChunkContext) => PromiseLike<unknown>) =>
  Effect.provideService(ChunkWorker, ChunkWorkerModule.fromPromise(run))

/** A Promise that the test settles. */
const pending = () => {
  let resolve: (value: unknown) => void = () => {}
  const promise = new Promise<unknown>((done) => (resolve = done))
  return { promise, resolve }
}

/**
 * Three chunks whose events each reach the reporter alone, from the lanes' publisher (not from a lane): chunk 1
 * settles once chunk 0 was reported, chunk 2 once chunk 1 was (a little later). The second report throws.
 */
const secondReportThrows = () => {
  const first = pending()
  const second = pending()
  let reports = 0
  const report = (): void => {
    reports++
    if (reports === 1) first.resolve(undefined)
    if (reports === 2) {
      setTimeout(() => second.resolve(undefined), 20)
      throw new Error("report failed")
    }
  }
  const run = (chunk: Chunk): Promise<unknown> =>
    chunk.id === 0 ? Promise.resolve() : chunk.id === 1 ? first.promise : second.promise
  return { report, run }
}

describe("Promise-worker lanes", () => {
  it.effect("a worker that throws synchronously fails that attempt: it is retried, and the others run on", () =>
    Effect.gen(function*() {
      const calls: Array<string> = []
      const summary = yield* JobExecutor.execute(range(4), {
        jobId,
        concurrency: 2,
        retry: { attempts: 2, initialDelay: 0 }
      }).pipe(promiseWorker((chunk, { attempt }) => {
        calls.push(`${chunk.id}/${attempt}`)
        if (chunk.id === 1 && attempt === 1) throw new Error("bad input")
        return Promise.resolve()
      }))
      expect(summary).toEqual({ totalChunks: 4, completedChunks: 4, failedChunks: 0, skippedChunks: 0 })
      expect(calls.filter((call) => call.startsWith("1/"))).toEqual(["1/1", "1/2"])
      expect(calls).toHaveLength(5)

      const exit = yield* JobExecutor.execute(range(2), { jobId, concurrency: 1, retry: { attempts: 1 } }).pipe(
        promiseWorker(() => {
          throw new Error("always")
        }),
        Effect.exit
      )
      expect(exit).toStrictEqual(Exit.fail(new ChunkFailed({ chunkId: 0, attempts: 1, cause: new Error("always") })))
    }))

  it.effect("a worker that returns a plain value (no Promise) has it taken as the result, as `await` would", () =>
    Effect.gen(function*() {
      const events: Array<JobExecutor.ChunkSettled> = []
      const plain = ((chunk: Chunk) => chunk.id === 0 ? { frames: 24 } : undefined) as unknown as (
        chunk: Chunk
      ) => PromiseLike<unknown>
      const summary = yield* JobExecutor.execute(range(3), {
        jobId,
        concurrency: 1,
        onChunkSettled: (event) => Effect.sync(() => events.push(event))
      }).pipe(promiseWorker(plain))
      expect(summary.completedChunks).toBe(3)
      expect(events.map((event) => [event.chunkId, event.outcome, event.result])).toEqual([
        [0, "completed", { frames: 24 }],
        [1, "completed", undefined],
        [2, "completed", undefined]
      ])
    }))

  it.live("a worker that settles synchronously runs 20,000 chunks in a loop, without deepening the stack", () =>
    Effect.gen(function*() {
      let calls = 0
      const instant = (() => {
        calls++
        return undefined
      }) as unknown as () => PromiseLike<unknown>
      const summary = yield* JobExecutor.execute(range(20_000), { jobId, concurrency: 2 }).pipe(promiseWorker(instant))
      expect(summary.completedChunks).toBe(20_000)
      expect(calls).toBe(20_000)
    }))

  it.effect("a worker that resolves after its timeout fired: the attempt counts as timed out, the late value is ignored", () =>
    Effect.gen(function*() {
      const attempts: Array<{ readonly signal: AbortSignal; readonly resolve: (value: unknown) => void }> = []
      const events: Array<JobExecutor.ChunkSettled> = []
      const fiber = yield* JobExecutor.execute(range(1), {
        jobId,
        chunkTimeout: "1 second",
        retry: { attempts: 1 },
        failurePolicy: { maxFailedChunks: 1 },
        onChunkSettled: (event) => Effect.sync(() => events.push(event))
      }).pipe(
        promiseWorker((_chunk, { signal }) => {
          const late = pending()
          attempts.push({ signal, resolve: late.resolve })
          return late.promise
        }),
        Effect.fork
      )
      yield* settle
      yield* TestClock.adjust(Duration.seconds(1))
      const summary = yield* Fiber.join(fiber)
      expect(summary).toEqual({ totalChunks: 1, completedChunks: 0, failedChunks: 1, skippedChunks: 0 })
      expect(attempts).toHaveLength(1)
      expect(attempts[0]!.signal.aborted).toBe(true)
      attempts[0]!.resolve({ late: true })
      yield* settle
      expect(events.map((event) => [event.outcome, event.error])).toEqual([
        ["failed", new ChunkTimeout({ chunkId: 0, timeoutMillis: 1000 }).message]
      ])
    }))

  it.effect("a worker that ignores its signal: interruption still returns, its signal fired, nothing starts after", () =>
    Effect.gen(function*() {
      const started: Array<{ readonly id: number; readonly signal: AbortSignal; readonly resolve: (v: unknown) => void }> = []
      const events: Array<JobExecutor.ChunkSettled> = []
      const fiber = yield* JobExecutor.execute(range(10), {
        jobId,
        concurrency: 2,
        onChunkSettled: (event) => Effect.sync(() => events.push(event))
      }).pipe(
        promiseWorker((chunk, { signal }) => {
          const never = pending() // settles only when the test says so, whatever the signal
          started.push({ id: chunk.id, signal, resolve: never.resolve })
          return never.promise
        }),
        Effect.fork
      )
      yield* settle
      expect(started.map((s) => s.id)).toEqual([0, 1])
      yield* Fiber.interrupt(fiber)
      expect(started.map((s) => s.signal.aborted)).toEqual([true, true])
      for (const chunk of started) chunk.resolve(undefined)
      yield* settle
      expect(started).toHaveLength(2)
      expect(events).toEqual([])
    }))

  it.effect("an interruption requested during a worker's call: that chunk's signal fires, and no next chunk starts", () =>
    Effect.gen(function*() {
      const started: Array<{ readonly id: number; readonly signal: AbortSignal }> = []
      const events: Array<JobExecutor.ChunkSettled> = []
      let interruptNow = () => {}
      const fiber = yield* JobExecutor.execute(range(10), {
        jobId,
        concurrency: 1,
        onChunkSettled: (event) => Effect.sync(() => events.push(event))
      }).pipe(
        promiseWorker((chunk, { signal }) => {
          started.push({ id: chunk.id, signal })
          // Chunk 3's call asks for the interruption before it returns its Promise (which never settles).
          if (chunk.id !== 3) return Promise.resolve()
          interruptNow()
          return new Promise(() => {})
        }),
        Effect.fork
      )
      interruptNow = () => fiber.unsafeInterruptAsFork(FiberId.none)
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      yield* settle
      expect(started.map((s) => s.id)).toEqual([0, 1, 2, 3])
      // (A settled attempt's signal may serve its lane's next attempt: only the one in flight is looked at.)
      expect(started[3]!.signal.aborted).toBe(true)
      // The chunks that completed before the interruption are handed over; chunk 3 is not.
      expect(events.map((event) => event.chunkId)).toEqual([0, 1, 2])
    }))

  it.effect("fail-fast: the first chunk out of attempts interrupts the sibling lanes (their signals fire)", () =>
    Effect.gen(function*() {
      const started: Array<{ readonly id: number; readonly signal: AbortSignal }> = []
      const failNow = pending()
      const fiber = yield* JobExecutor.execute(range(20), { jobId, concurrency: 4, retry: { attempts: 1 } }).pipe(
        promiseWorker((chunk, { signal }) => {
          started.push({ id: chunk.id, signal })
          return chunk.id === 0 ? failNow.promise.then(() => Promise.reject(new Error("disk full"))) : new Promise(() => {})
        }),
        Effect.fork
      )
      yield* settle
      expect(started.map((s) => s.id)).toEqual([0, 1, 2, 3])
      failNow.resolve(undefined)
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error).toStrictEqual(new ChunkFailed({ chunkId: 0, attempts: 1, cause: new Error("disk full") }))
      expect(started.map((s) => [s.id, s.signal.aborted])).toEqual([[0, false], [1, true], [2, true], [3, true]])
      yield* settle
      expect(started).toHaveLength(4)
    }))

  it.live("exactly `concurrency` chunks are in flight at the peak; every chunk runs once; counts never go back", () =>
    Effect.gen(function*() {
      let inFlight = 0
      let peak = 0
      const runs = new Map<number, number>()
      const batches: Array<ReadonlyArray<JobExecutor.ChunkSettled>> = []
      const summary = yield* JobExecutor.execute(range(2_000), {
        jobId,
        concurrency: 8,
        chunkTimeout: "1 minute",
        onChunksSettled: (events) => Effect.sync(() => batches.push(events))
      }).pipe(promiseWorker((chunk) => {
        runs.set(chunk.id, (runs.get(chunk.id) ?? 0) + 1)
        peak = Math.max(peak, ++inFlight)
        return new Promise<void>((resolve) =>
          setImmediate(() => {
            inFlight--
            resolve()
          })
        )
      }))
      expect(summary.completedChunks).toBe(2_000)
      expect(peak).toBe(8)
      expect(runs.size).toBe(2_000)
      expect([...runs.values()].every((count) => count === 1)).toBe(true)
      const counts = batches.flat().map((event) => event.completedChunks)
      expect(counts).toEqual(Array.from({ length: 2_000 }, (_, i) => i + 1))
      // Handed over in batches, not one call per chunk.
      expect(batches.length).toBeLessThan(2_000)
    }))

  it.live("a chunk's event is handed over while the next chunk of its lane still runs", () =>
    Effect.gen(function*() {
      const handed = yield* Deferred.make<ReadonlyArray<number>>()
      const second = pending()
      const fiber = yield* JobExecutor.execute(range(2), {
        jobId,
        concurrency: 1,
        onChunksSettled: (events) => Deferred.succeed(handed, events.map((event) => event.chunkId))
      }).pipe(
        promiseWorker((chunk) => chunk.id === 0 ? Promise.resolve() : second.promise),
        Effect.fork
      )
      // Chunk 1 runs until the test resolves it: chunk 0's event must not wait for it.
      expect(yield* Deferred.await(handed)).toEqual([0])
      second.resolve(undefined)
      expect((yield* Fiber.join(fiber)).completedChunks).toBe(2)
    }))

  it("a pause loses no settled chunk: its batch reaches the checkpoint, and after resume only the aborted chunks run again", async () => {
    const concurrency = 8
    const runs = new Map<number, number>()
    let paused = false
    let settled = 0
    let resolvePauseAt: () => void = () => {}
    const pauseAt = new Promise<void>((resolve) => (resolvePauseAt = resolve))
    const manager = await createJobManager({
      worker: (chunk) => {
        runs.set(chunk.id, (runs.get(chunk.id) ?? 0) + 1)
        return new Promise<void>((resolve) =>
          setImmediate(() => {
            if (!paused && ++settled === 3_000) resolvePauseAt()
            resolve()
          })
        )
      },
      concurrency
    })
    try {
      const id = await manager.submitJob({ chunks: { start: 0, end: 9_999, size: 1 } })
      await pauseAt
      paused = true
      const status = await manager.pauseJob(id)
      expect(status.state).toBe("paused")
      // Thousands settled within the last batch window: all of them are in the stored counts.
      expect(status.completedChunks).toBeGreaterThanOrEqual(3_000)
      await manager.resumeJob(id)
      const done = await manager.waitForJob(id)
      expect(done).toMatchObject({ state: "completed", completedChunks: 10_000 })
      expect(runs.size).toBe(10_000)
      const ranTwice = [...runs.values()].filter((count) => count > 1).length
      expect(ranTwice).toBeLessThanOrEqual(concurrency)
    } finally {
      await manager.close()
    }
  })

  it.live("a report that dies in the publisher ends the execution with that defect", () =>
    Effect.gen(function*() {
      const { report, run } = secondReportThrows()
      const exit = yield* JobExecutor.execute(range(3), {
        jobId,
        concurrency: 1,
        onChunksSettled: () => Effect.sync(report)
      }).pipe(promiseWorker(run), Effect.exit)
      expect(exit).toStrictEqual(Exit.die(new Error("report failed")))
    }))

  it("executeJob rejects with the error onProgress threw, instead of resolving", async () => {
    const { report, run } = secondReportThrows()
    await expect(executeJob(range(3), { worker: run, concurrency: 1, onProgress: report })).rejects.toThrow(
      "report failed"
    )
  })

  it.live("with a lane per chunk, a settled chunk is reported while another still runs", () =>
    Effect.gen(function*() {
      // Three chunks, three lanes (no publisher): chunk 2 ends only once chunks 0 and 1 were reported.
      const gate = pending()
      const reported: Array<number> = []
      const summary = yield* JobExecutor.execute(range(3), {
        jobId,
        concurrency: 3,
        onChunkSettled: (event) =>
          Effect.sync(() => {
            reported.push(event.chunkId)
            if (reported.length === 2) gate.resolve(undefined)
          })
      }).pipe(promiseWorker((chunk) => chunk.id === 2 ? gate.promise : Promise.resolve()))
      expect(reported).toEqual([0, 1, 2])
      expect(summary.completedChunks).toBe(3)
    }).pipe(Effect.timeout(Duration.seconds(5))))
})
