/**
 * Chunk streams in the executor: `executeStream` / `executeIterable` pull lazily with backpressure, stop pulling
 * at once on interruption, refuse duplicate ids, and report an unknown total until the stream ends.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { ChunkWorker } from "../src/ChunkWorker.js"
import type { Chunk, JobId } from "../src/Job.js"
import { validateSpec } from "../src/Job.js"
import { InvalidJobSpec, InvalidOption, JobFailed } from "../src/JobError.js"
import * as JobExecutor from "../src/JobExecutor.js"
import { makeRecorder, recordingWorker, settle, startedIds } from "./util.js"

const jobId = "job_stream" as JobId

/** An endless stream (or one of `count` chunks) that emits one chunk per pull and counts the pulls. */
const countingStream = (count = Number.POSITIVE_INFINITY) => {
  const source = { pulls: 0, closed: false }
  const stream = Stream.repeatEffectOption(
    Effect.suspend(() =>
      source.pulls >= count
        ? Effect.fail(Option.none())
        : Effect.sync((): Chunk => ({ id: source.pulls, payload: { n: source.pulls++ } }))
    )
  ).pipe(Stream.ensuring(Effect.sync(() => (source.closed = true))))
  return { source, stream }
}

const sleepWorker = (millis: number) => () => Effect.sleep(Duration.millis(millis))

describe("JobExecutor.executeStream", () => {
  it.effect("runs every chunk of a finite stream once and reports its total once it has ended", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const { source, stream } = countingStream(25)
      const totals: Array<number | undefined> = []
      const fiber = yield* JobExecutor.executeStream(stream, {
        jobId,
        concurrency: 3,
        onChunkSettled: (event) => Effect.sync(() => totals.push(event.totalChunks))
      }).pipe(Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(10))), Effect.fork)
      yield* TestClock.adjust(Duration.seconds(10))
      const summary = yield* Fiber.join(fiber)
      expect(summary).toEqual({ totalChunks: 25, completedChunks: 25, failedChunks: 0, skippedChunks: 0, ended: true })
      expect(startedIds(recorder).sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, i) => i))
      expect(recorder.maxInFlight).toBe(3)
      // Unknown while the stream had chunks left; known once it had ended.
      expect(totals[0]).toBeUndefined()
      expect(totals.at(-1)).toBe(25)
      expect(source.closed).toBe(true)
    }))

  it.effect("a stream that hands over many chunks at once runs each exactly once", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      // Stream.range emits its elements in Effect chunks of up to 4,096: all 1,000 arrive in one pull.
      const stream = Stream.map(Stream.range(0, 999), (id): Chunk => ({ id, payload: null }))
      const summary = yield* JobExecutor.executeStream(stream, { jobId, concurrency: 3 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, () => Effect.void))
      )
      expect(summary).toMatchObject({ totalChunks: 1000, completedChunks: 1000, ended: true })
      expect(startedIds(recorder).sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    }))

  it.effect("a streamed chunk's result and attempts reach onChunkSettled as an array's do", () =>
    Effect.gen(function*() {
      const events: Array<JobExecutor.StreamChunkSettled> = []
      let calls = 0
      yield* JobExecutor.executeStream(countingStream(3).stream, {
        jobId,
        concurrency: 1,
        retry: { attempts: 2, initialDelay: 0 },
        onChunkSettled: (event) => Effect.sync(() => events.push(event))
      }).pipe(Effect.provideService(
        ChunkWorker,
        recordingWorker(makeRecorder(), (chunk) =>
          chunk.id === 1 && calls++ === 0 ? Effect.fail("flaky") : Effect.succeed({ rendered: chunk.id }))
      ))
      expect(events.map(({ attempts, chunkId, result }) => ({ chunkId, attempts, result }))).toEqual([
        { chunkId: 0, attempts: 1, result: { rendered: 0 } },
        { chunkId: 1, attempts: 2, result: { rendered: 1 } },
        { chunkId: 2, attempts: 1, result: { rendered: 2 } }
      ])
    }))

  it.effect("pulls lazily: never more than concurrency + prefetch chunks ahead of the settled ones", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const { source, stream } = countingStream()
      const concurrency = 4
      const prefetch = 2
      const fiber = yield* JobExecutor.executeStream(stream, { jobId, concurrency, prefetch }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, (chunk) => Effect.sleep(Duration.millis(10 + (chunk.id % 7))))),
        Effect.fork
      )
      yield* settle
      expect(recorder.started).toHaveLength(concurrency)
      expect(source.pulls).toBe(concurrency + prefetch)
      for (let step = 0; step < 200; step++) {
        yield* TestClock.adjust(Duration.millis(1))
        expect(source.pulls - recorder.finished.length).toBeLessThanOrEqual(concurrency + prefetch)
      }
      expect(recorder.finished.length).toBeGreaterThan(50)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("prefetch 0 pulls a chunk only when a worker loop is free for it", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const { source, stream } = countingStream()
      const fiber = yield* JobExecutor.executeStream(stream, { jobId, concurrency: 3, prefetch: 0 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(100))),
        Effect.fork
      )
      yield* settle
      expect(source.pulls).toBe(3)
      yield* TestClock.adjust(Duration.millis(100))
      yield* settle
      expect(recorder.finished).toHaveLength(3)
      expect(source.pulls).toBe(6)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("an endless stream runs until interrupted; interruption stops the pulling at once and aborts the chunks in flight", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const { source, stream } = countingStream()
      const fiber = yield* JobExecutor.executeStream(stream, { jobId, concurrency: 2 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(10))),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.seconds(1))
      expect(recorder.finished.length).toBeGreaterThanOrEqual(150)
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      const pulled = source.pulls
      expect(recorder.aborted).toHaveLength(2)
      expect(source.closed).toBe(true)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* settle
      expect(source.pulls).toBe(pulled)
      expect(recorder.inFlight).toBe(0)
    }))

  it.effect("interruption during a pull that never ends returns at once and closes the stream", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      let closed = false
      const stream = Stream.concat(
        Stream.make<Array<Chunk>>({ id: 0, payload: null }),
        Stream.fromEffect(Effect.never as Effect.Effect<Chunk>)
      ).pipe(Stream.ensuring(Effect.sync(() => (closed = true))))
      const fiber = yield* JobExecutor.executeStream(stream, { jobId, concurrency: 2 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(10))),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.millis(10))
      expect(recorder.finished).toEqual([0])
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(closed).toBe(true)
    }))

  it.effect("a duplicate id fails with InvalidJobSpec naming it, and the chunks in flight are aborted", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const stream = Stream.concat(
        Stream.make<Array<Chunk>>({ id: 0, payload: null }, { id: 1, payload: null }, { id: 2, payload: null }),
        Stream.fromEffect(Effect.as(Effect.sleep(Duration.millis(5)), { id: 1, payload: "again" } as Chunk))
      )
      const fiber = yield* JobExecutor.executeStream(stream, { jobId, concurrency: 2 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(100))),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.millis(5))
      const exit = yield* Fiber.await(fiber)
      expect(exit).toStrictEqual(Exit.fail(new InvalidJobSpec({
        path: ["chunks", 3, "id"],
        detail: "duplicate chunk id 1: the ids of a job's chunks must be unique"
      })))
      expect(recorder.aborted.sort()).toEqual([0, 1])
      expect(recorder.finished).toEqual([])
    }))

  it.effect("an element that is not a chunk fails with InvalidJobSpec naming its path", () =>
    Effect.gen(function*() {
      const bad = [
        [{ id: -1, payload: null }, ["chunks", 1, "id"]],
        [{ id: 1 }, ["chunks", 1, "payload"]],
        [{ id: 1, payload: null, extra: true }, ["chunks", 1, "extra"]],
        [{ id: 1, payload: () => 1 }, ["chunks", 1, "payload"]]
      ] as const
      for (const [element, path] of bad) {
        const failure = yield* Effect.flip(JobExecutor.executeStream(
          Stream.make({ id: 0, payload: null }, element as unknown as Chunk),
          { jobId }
        ).pipe(Effect.provideService(ChunkWorker, recordingWorker(makeRecorder(), () => Effect.void))))
        expect(failure).toBeInstanceOf(InvalidJobSpec)
        expect((failure as InvalidJobSpec).path).toEqual(path)
      }
    }))

  it.effect("the stream's error fails the execution with that error", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const stream = Stream.concat(
        Stream.make<Array<Chunk>>({ id: 0, payload: null }),
        Stream.fromEffect(Effect.zipRight(Effect.sleep(Duration.millis(5)), Effect.fail("listing failed" as const)))
      )
      const fiber = yield* JobExecutor.executeStream(stream, { jobId }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(100))),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.millis(5))
      const exit = yield* Fiber.await(fiber)
      expect(exit).toStrictEqual(Exit.fail("listing failed"))
      expect(recorder.aborted).toEqual([0])
    }))

  it.effect("maxFailedPercent is judged on the stream's total once it is known", () =>
    Effect.gen(function*() {
      const failing = () => recordingWorker(makeRecorder(), (chunk) => chunk.id < 2 ? Effect.fail("bad") : Effect.void)
      const within = yield* JobExecutor.executeStream(countingStream(10).stream, {
        jobId,
        retry: { attempts: 1 },
        failurePolicy: { maxFailedPercent: 20 }
      }).pipe(Effect.provideService(ChunkWorker, failing()))
      expect(within).toEqual({ totalChunks: 10, completedChunks: 8, failedChunks: 2, skippedChunks: 0, ended: true })
      const error = yield* Effect.flip(JobExecutor.executeStream(countingStream(10).stream, {
        jobId,
        retry: { attempts: 1 },
        failurePolicy: { maxFailedPercent: 10 }
      }).pipe(Effect.provideService(ChunkWorker, failing())))
      expect(error).toBeInstanceOf(JobFailed)
      expect(error).toMatchObject({ failedChunks: 2, totalChunks: 10 })
    }))

  it.effect("an empty stream completes with no chunks; a bad prefetch or maxResultBytes fails before the stream is pulled", () =>
    Effect.gen(function*() {
      const worker = recordingWorker(makeRecorder(), () => Effect.void)
      const summary = yield* JobExecutor.executeStream(Stream.empty, { jobId }).pipe(Effect.provideService(ChunkWorker, worker))
      expect(summary).toEqual({ totalChunks: 0, completedChunks: 0, failedChunks: 0, skippedChunks: 0, ended: true })
      const { source, stream } = countingStream()
      const error = yield* Effect.flip(
        JobExecutor.executeStream(stream, { jobId, prefetch: -1 }).pipe(Effect.provideService(ChunkWorker, worker))
      )
      expect(error).toBeInstanceOf(InvalidOption)
      expect((error as InvalidOption).path).toEqual(["prefetch"])
      expect(source.pulls).toBe(0)
      // Every execution option is checked for a stream as for a spec, maxResultBytes included.
      const tooSmall = yield* Effect.flip(
        JobExecutor.executeStream(stream, { jobId, maxResultBytes: 0 }).pipe(Effect.provideService(ChunkWorker, worker))
      )
      expect(tooSmall).toBeInstanceOf(InvalidOption)
      expect((tooSmall as InvalidOption).path).toEqual(["maxResultBytes"])
      expect(source.pulls).toBe(0)
    }))

  it.effect("skips the ids in `skip`, counting them as completed", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const summary = yield* JobExecutor.executeStream(countingStream(10).stream, {
        jobId,
        skip: new Set([0, 1, 2, 7])
      }).pipe(Effect.provideService(ChunkWorker, recordingWorker(recorder, () => Effect.void)))
      expect(summary).toEqual({ totalChunks: 10, completedChunks: 10, failedChunks: 0, skippedChunks: 4, ended: true })
      expect(startedIds(recorder).sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 8, 9])
    }))
})

describe("a spec whose chunks are a stream", () => {
  it.effect("is refused by validateSpec (what a manager stores is JSON), naming the chunks", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(validateSpec({ chunks: Stream.make({ id: 0, payload: null }) }))
      expect(error).toBeInstanceOf(InvalidJobSpec)
      expect(error.path).toEqual(["chunks"])
      expect(error.detail).toContain("JobExecutor.executeStream")
    }))
})

describe("JobExecutor.executeIterable", () => {
  it.effect("runs a sync generator's chunks lazily and closes it when interrupted", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const state = { yielded: 0, closed: false }
      function* chunks(): Generator<Chunk> {
        try {
          for (let id = 0;; id++) {
            state.yielded++
            yield { id, payload: null }
          }
        } finally {
          state.closed = true
        }
      }
      const fiber = yield* JobExecutor.executeIterable(chunks(), { jobId, concurrency: 2, prefetch: 1 }).pipe(
        Effect.provideService(ChunkWorker, recordingWorker(recorder, sleepWorker(10))),
        Effect.fork
      )
      yield* settle
      expect(state.yielded).toBe(3)
      yield* TestClock.adjust(Duration.millis(100))
      expect(state.yielded - recorder.finished.length).toBeLessThanOrEqual(3)
      yield* Fiber.interrupt(fiber)
      expect(state.closed).toBe(true)
    }))
})
