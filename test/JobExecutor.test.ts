import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { ChunkWorker } from "../src/ChunkWorker.js"
import * as ChunkWorkerModule from "../src/ChunkWorker.js"
import type { JobId, JobSpec } from "../src/Job.js"
import { ChunkFailed, ChunkTimeout, JobFailed, NonRetryable } from "../src/JobError.js"
import * as JobExecutor from "../src/JobExecutor.js"
import { makeRecorder, recordingWorker, settle, startedIds } from "./util.js"

const jobId = "job_test" as JobId
const range = (chunks: number, size = 1): JobSpec => ({ chunks: { start: 0, end: chunks * size - 1, size } })
const sleepWorker = (millis: number) => () => Effect.sleep(Duration.millis(millis))

describe("JobExecutor", () => {
  it.effect("runs every chunk once and never more than `concurrency` at a time", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const fiber = yield* JobExecutor.execute(range(50), { jobId, concurrency: 7 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(10))),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.seconds(10))
      const summary = yield* Fiber.join(fiber)
      expect(summary).toEqual({ totalChunks: 50, completedChunks: 50, failedChunks: 0, skippedChunks: 0 })
      expect(recorder.maxInFlight).toBe(7)
      expect(startedIds(recorder).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i))
    }))

  it.effect("a spec's own concurrency is used instead of the options'", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const fiber = yield* JobExecutor.execute({ ...range(30), concurrency: 3 }, { jobId, concurrency: 7 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(10))),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.seconds(10))
      expect((yield* Fiber.join(fiber)).completedChunks).toBe(30)
      expect(recorder.maxInFlight).toBe(3)
    }))

  it.effect("expands a range plan into inclusive frame ranges", () =>
    Effect.gen(function*() {
      const payloads: Array<unknown> = []
      yield* JobExecutor.execute({ chunks: { start: 0, end: 239, size: 24 } }, { jobId, concurrency: 1 }).pipe(
        Effect.provideService(ChunkWorker, ChunkWorkerModule.make((chunk) => Effect.sync(() => payloads.push(chunk.payload))))
      )
      expect(payloads).toHaveLength(10)
      expect(payloads[0]).toEqual({ start: 0, end: 23 })
      expect(payloads[9]).toEqual({ start: 216, end: 239 })
      const uneven: Array<unknown> = []
      yield* JobExecutor.execute({ chunks: { start: 10, end: 20, size: 4 } }, { jobId, concurrency: 1 }).pipe(
        Effect.provideService(ChunkWorker, ChunkWorkerModule.make((chunk) => Effect.sync(() => uneven.push(chunk.payload))))
      )
      expect(uneven).toEqual([{ start: 10, end: 13 }, { start: 14, end: 17 }, { start: 18, end: 20 }])
    }))

  it.effect("pulls chunks lazily: no chunk is made before a worker fiber is free for it", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const fiber = yield* JobExecutor.execute(range(1_000_000), { jobId, concurrency: 4 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(1000))),
        Effect.fork
      )
      yield* settle
      expect(recorder.started).toHaveLength(4)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* settle
      expect(recorder.started).toHaveLength(8)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("retries with exponential backoff and passes the attempt number", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const worker = recordingWorker(recorder, (_chunk, context) =>
        context.attempt < 4 ? Effect.fail(new Error(`boom ${context.attempt}`)) : Effect.void)
      const fiber = yield* JobExecutor.execute(range(1), {
        jobId,
        retry: { attempts: 4, initialDelay: "100 millis", factor: 3, jitter: false }
      }).pipe(Effect.provideService(ChunkWorker, worker), Effect.fork)
      yield* settle
      expect(recorder.started.map((s) => s.attempt)).toEqual([1])
      yield* TestClock.adjust(Duration.millis(99))
      expect(recorder.started.map((s) => s.attempt)).toEqual([1])
      yield* TestClock.adjust(Duration.millis(1))
      expect(recorder.started.map((s) => s.attempt)).toEqual([1, 2])
      yield* TestClock.adjust(Duration.millis(299))
      expect(recorder.started.map((s) => s.attempt)).toEqual([1, 2])
      yield* TestClock.adjust(Duration.millis(1))
      expect(recorder.started.map((s) => s.attempt)).toEqual([1, 2, 3])
      yield* TestClock.adjust(Duration.millis(900))
      const summary = yield* Fiber.join(fiber)
      expect(recorder.started.map((s) => s.attempt)).toEqual([1, 2, 3, 4])
      expect(summary.completedChunks).toBe(1)
    }))

  it.effect("jitter keeps each delay within 0.8..1.2 of the nominal one and caps it at maxDelay", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const worker = recordingWorker(recorder, () => Effect.fail("flaky"))
      const fiber = yield* JobExecutor.execute(range(1), {
        jobId,
        retry: { attempts: 3, initialDelay: 1000, factor: 10, maxDelay: 5000 }
      }).pipe(Effect.provideService(ChunkWorker, worker), Effect.fork)
      yield* settle
      yield* TestClock.adjust(Duration.millis(799))
      expect(recorder.started).toHaveLength(1)
      yield* TestClock.adjust(Duration.millis(401))
      expect(recorder.started).toHaveLength(2)
      // nominal 10 s is capped at 5 s, jitter included
      yield* TestClock.adjust(Duration.millis(5000))
      expect(recorder.started).toHaveLength(3)
      const exit = yield* Fiber.await(fiber)
      expect(exit).toStrictEqual(Exit.fail(new ChunkFailed({ chunkId: 0, attempts: 3, cause: "flaky" })))
    }))

  it.effect("a NonRetryable error or one the policy does not retry fails the chunk at once", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const worker = recordingWorker(recorder, () => Effect.fail(new NonRetryable({ cause: "bad frame" })))
      const exit = yield* JobExecutor.execute(range(1), { jobId, retry: { attempts: 5 } }).pipe(
        Effect.provideService(ChunkWorker, worker),
        Effect.exit
      )
      expect(exit).toStrictEqual(Exit.fail(new ChunkFailed({ chunkId: 0, attempts: 1, cause: "bad frame" })))
      const second = makeRecorder()
      const exit2 = yield* JobExecutor.execute(range(1), {
        jobId,
        retry: { attempts: 5, isRetryable: (error) => error !== "fatal" }
      }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(second, () => Effect.fail("fatal"))),
        Effect.exit
      )
      expect(exit2).toStrictEqual(Exit.fail(new ChunkFailed({ chunkId: 0, attempts: 1, cause: "fatal" })))
      expect(second.started).toHaveLength(1)
    }))

  it.effect("a chunk timeout interrupts the attempt (its signal fires) and retries it", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const worker = recordingWorker(recorder, (_chunk, context) =>
        context.attempt === 1 ? Effect.never : Effect.sleep(Duration.millis(10)))
      const fiber = yield* JobExecutor.execute(range(1), {
        jobId,
        chunkTimeout: "1 second",
        retry: { initialDelay: 0, jitter: false }
      }).pipe(Effect.provideService(ChunkWorker, worker), Effect.fork)
      yield* settle
      yield* TestClock.adjust(Duration.millis(999))
      expect(recorder.aborted).toEqual([])
      yield* TestClock.adjust(Duration.millis(1))
      expect(recorder.aborted).toEqual([0])
      yield* TestClock.adjust(Duration.millis(10))
      const summary = yield* Fiber.join(fiber)
      expect(summary.completedChunks).toBe(1)
      expect(recorder.started.map((s) => s.attempt)).toEqual([1, 2])
    }))

  it.effect("a chunk that always times out fails with ChunkTimeout as the cause", () =>
    Effect.gen(function*() {
      const worker = recordingWorker(makeRecorder(), () => Effect.never)
      const fiber = yield* JobExecutor.execute(range(1), {
        jobId,
        chunkTimeout: 50,
        retry: { attempts: 2, initialDelay: 0 }
      }).pipe(Effect.provideService(ChunkWorker, worker), Effect.fork)
      yield* TestClock.adjust(Duration.millis(200))
      const exit = yield* Fiber.await(fiber)
      expect(exit).toStrictEqual(Exit.fail(
        new ChunkFailed({ chunkId: 0, attempts: 2, cause: new ChunkTimeout({ chunkId: 0, timeoutMillis: 50 }) })
      ))
    }))

  it.effect("fail-fast: the first chunk out of attempts fails the job and interrupts the others in flight", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const worker = recordingWorker(recorder, (chunk) =>
        chunk.id === 2 ? Effect.zipRight(Effect.sleep(Duration.millis(5)), Effect.fail("bad")) : Effect.never)
      const fiber = yield* JobExecutor.execute(range(100), { jobId, concurrency: 4, retry: { attempts: 1 } }).pipe(
        Effect.provideService(ChunkWorker, worker),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.millis(5))
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error).toStrictEqual(new ChunkFailed({ chunkId: 2, attempts: 1, cause: "bad" }))
      expect(startedIds(recorder)).toEqual([0, 1, 2, 3])
      expect(recorder.aborted.sort()).toEqual([0, 1, 3])
      expect(recorder.inFlight).toBe(0)
    }))

  it.effect("tolerance: up to N failed chunks complete the job with the failures counted; one more fails it", () =>
    Effect.gen(function*() {
      const failEven = ChunkWorkerModule.make((chunk) => chunk.id % 2 === 0 ? Effect.fail("even") : Effect.void)
      const summary = yield* JobExecutor.execute(range(10), {
        jobId,
        retry: { attempts: 1 },
        failurePolicy: { maxFailedChunks: 5 }
      }).pipe(Effect.provideService(ChunkWorker, failEven))
      expect(summary).toEqual({ totalChunks: 10, completedChunks: 5, failedChunks: 5, skippedChunks: 0 })

      const exit = yield* JobExecutor.execute(range(10), {
        jobId,
        concurrency: 1,
        retry: { attempts: 1 },
        failurePolicy: { maxFailedChunks: 4 }
      }).pipe(Effect.provideService(ChunkWorker, failEven), Effect.exit)
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        expect(error).toBeInstanceOf(JobFailed)
        expect((error as JobFailed).failedChunks).toBe(5)
      }

      const percent = yield* JobExecutor.execute(range(10), {
        jobId,
        retry: { attempts: 1 },
        failurePolicy: { maxFailedPercent: 40 }
      }).pipe(Effect.provideService(ChunkWorker, failEven), Effect.exit)
      expect(Exit.isFailure(percent)).toBe(true)
    }))

  it.effect("skips chunks already completed and counts them as completed", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const summary = yield* JobExecutor.execute(range(10), { jobId, skip: new Set([0, 3, 4, 9]) }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, () => Effect.void))
      )
      expect(startedIds(recorder).sort((a, b) => a - b)).toEqual([1, 2, 5, 6, 7, 8])
      expect(summary).toEqual({ totalChunks: 10, completedChunks: 10, failedChunks: 0, skippedChunks: 4 })
    }))

  it.effect("reports progress counts after each chunk", () =>
    Effect.gen(function*() {
      const events: Array<JobExecutor.ChunkSettled> = []
      yield* JobExecutor.execute(range(3), {
        jobId,
        concurrency: 1,
        retry: { attempts: 1 },
        failurePolicy: { maxFailedChunks: 1 },
        onChunkSettled: (event) => Effect.sync(() => events.push(event))
      }).pipe(
        Effect.provideService(ChunkWorker, ChunkWorkerModule.make((chunk) => chunk.id === 1 ? Effect.fail("x") : Effect.void))
      )
      const times = { startedAt: 0, finishedAt: 0 }
      expect(events).toEqual([
        { chunkId: 0, outcome: "completed", completedChunks: 1, failedChunks: 0, totalChunks: 3, attempts: 1, result: undefined, error: undefined, ...times },
        { chunkId: 1, outcome: "failed", completedChunks: 1, failedChunks: 1, totalChunks: 3, attempts: 1, result: undefined, error: "x", ...times },
        { chunkId: 2, outcome: "completed", completedChunks: 2, failedChunks: 1, totalChunks: 3, attempts: 1, result: undefined, error: undefined, ...times }
      ])
    }))

  it.effect("interruption stops pulling, fires in-flight signals, and no chunk starts afterwards", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const fiber = yield* JobExecutor.execute(range(100), { jobId, concurrency: 5 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(100))),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.millis(250))
      const startedBefore = recorder.started.length
      expect(startedBefore).toBe(15)
      yield* Fiber.interrupt(fiber)
      expect(recorder.aborted.sort((a, b) => a - b)).toEqual([10, 11, 12, 13, 14])
      yield* TestClock.adjust(Duration.seconds(100))
      expect(recorder.started).toHaveLength(startedBefore)
      expect(recorder.inFlight).toBe(0)
    }))

  it.effect("a Promise worker gets a signal that fires when its chunk is interrupted", () =>
    Effect.gen(function*() {
      const signals: Array<AbortSignal> = []
      const worker = ChunkWorkerModule.fromPromise((_chunk, { signal }) => {
        signals.push(signal)
        return new Promise(() => {})
      })
      const fiber = yield* JobExecutor.execute(range(3), { jobId, concurrency: 3 }).pipe(
        Effect.provideService(ChunkWorker, worker),
        Effect.fork
      )
      yield* settle
      expect(signals.map((s) => s.aborted)).toEqual([false, false, false])
      yield* Fiber.interrupt(fiber)
      expect(signals.map((s) => s.aborted)).toEqual([true, true, true])
    }))

  it.effect("a Promise worker's timeout fires on the Effect clock, aborts its signal and retries the chunk", () =>
    Effect.gen(function*() {
      const signals: Array<{ readonly chunkId: number; readonly attempt: number; readonly signal: AbortSignal }> = []
      const worker = ChunkWorkerModule.fromPromise((chunk, { attempt, signal }) => {
        signals.push({ chunkId: chunk.id, attempt, signal })
        // The first attempt of chunk 1 hangs; everything else succeeds at once.
        return chunk.id === 1 && attempt === 1 ? new Promise(() => {}) : Promise.resolve()
      })
      const fiber = yield* JobExecutor.execute(range(3), {
        jobId,
        concurrency: 2,
        chunkTimeout: "1 second",
        retry: { initialDelay: 0, jitter: false }
      }).pipe(Effect.provideService(ChunkWorker, worker), Effect.fork)
      yield* settle
      const hanging = signals.find((s) => s.chunkId === 1 && s.attempt === 1)!
      yield* TestClock.adjust(Duration.millis(999))
      expect(hanging.signal.aborted).toBe(false)
      expect(signals.filter((s) => s.chunkId === 1)).toHaveLength(1)
      yield* TestClock.adjust(Duration.millis(1))
      expect(hanging.signal.aborted).toBe(true)
      const summary = yield* Fiber.join(fiber)
      expect(summary.completedChunks).toBe(3)
      expect(signals.filter((s) => s.chunkId === 1).map((s) => s.attempt)).toEqual([1, 2])
      expect(signals.filter((s) => s.signal.aborted)).toHaveLength(1)
    }))

  it.effect("a Promise worker that always hangs fails with ChunkTimeout after its attempts", () =>
    Effect.gen(function*() {
      const worker = ChunkWorkerModule.fromPromise(() => new Promise(() => {}))
      const fiber = yield* JobExecutor.execute(range(1), {
        jobId,
        chunkTimeout: 50,
        retry: { attempts: 2, initialDelay: 0 }
      }).pipe(Effect.provideService(ChunkWorker, worker), Effect.fork)
      yield* TestClock.adjust(Duration.millis(100))
      const exit = yield* Fiber.await(fiber)
      expect(exit).toStrictEqual(Exit.fail(
        new ChunkFailed({ chunkId: 0, attempts: 2, cause: new ChunkTimeout({ chunkId: 0, timeoutMillis: 50 }) })
      ))
    }))

  it.effect("rejects bad options with the option's path and runs nothing", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const run = (options: Partial<JobExecutor.ExecuteOptions>) =>
        JobExecutor.execute(range(3), { jobId, ...options } as JobExecutor.ExecuteOptions).pipe(
          Effect.provideService(ChunkWorker, recordingWorker(recorder, () => Effect.void)),
          Effect.flip
        )
      const zero = yield* run({ concurrency: 0 })
      expect(zero._tag).toBe("InvalidOption")
      expect(zero.message).toContain("concurrency")
      const attempts = yield* run({ retry: { attempts: 1.5 } })
      expect(attempts.message).toContain("retry.attempts")
      const timeout = yield* run({ chunkTimeout: "soon" as never })
      expect(timeout.message).toContain("chunkTimeout")
      const negative = yield* run({ chunkTimeout: -5 })
      expect(negative.message).toContain("chunkTimeout")
      expect(recorder.started).toHaveLength(0)
    }))
})
