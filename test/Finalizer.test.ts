import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { ChunkWorker } from "../src/ChunkWorker.js"
import type { FinalizeContext, Finalizer } from "../src/Finalizer.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import { makeRecorder, recordingWorker, settle } from "./util.js"

const frames = (chunks: number) => ({ chunks: { start: 0, end: chunks - 1, size: 1 } })

const withFinalizer = <A, E>(
  finalizer: Finalizer,
  failChunk: number | undefined,
  body: Effect.Effect<A, E, JobManager>
) =>
  body.pipe(
    Effect.provide(
      JobManagerModule.layer({ concurrency: 2, retry: { attempts: 1 }, finalizers: { stitch: finalizer } }).pipe(
        Layer.provide(JobRepository.layerMemory),
        Layer.provide(Layer.succeed(
          ChunkWorker,
          recordingWorker(makeRecorder(), (chunk) =>
            chunk.id === failChunk
              ? Effect.fail("bad frame")
              : Effect.sleep(Duration.millis(10)))
        ))
      )
    )
  )

describe("finalize step", () => {
  it.effect("runs once after every chunk succeeded, shown as the finalizing phase", () => {
    const calls: Array<FinalizeContext> = []
    const finalizer: Finalizer = (context) =>
      Effect.zipRight(Effect.sync(() => calls.push(context)), Effect.sleep(Duration.millis(100)))
    return withFinalizer(finalizer, undefined, Effect.gen(function*() {
      const manager = yield* JobManager
      const id = yield* manager.submitJob({ ...frames(4), finalize: { name: "stitch", payload: { output: "out.mp4" } } })
      yield* TestClock.adjust(Duration.millis(20))
      expect(calls).toHaveLength(1)
      expect(calls[0]).toMatchObject({ jobId: id, payload: { output: "out.mp4" }, completedChunks: 4, failedChunks: 0 })
      const during = yield* manager.getJob(id)
      expect(during).toMatchObject({ state: "running", phase: "finalizing", progress: 100 })
      yield* TestClock.adjust(Duration.millis(100))
      const done = yield* manager.awaitJob(id)
      expect(done.state).toBe("completed")
      expect(done.phase).toBeUndefined()
      expect(calls).toHaveLength(1)
    }))
  })

  it.effect("its failure fails the job", () =>
    withFinalizer(() => Effect.fail(new Error("ffmpeg concat exited with 1")), undefined, Effect.gen(function*() {
      const manager = yield* JobManager
      const fiber = yield* Effect.fork(manager.runJob({ ...frames(2), finalize: { name: "stitch" } }))
      yield* TestClock.adjust(Duration.millis(10))
      const status = yield* Fiber.join(fiber)
      expect(status.state).toBe("failed")
      expect(status.error).toBe("finalize step \"stitch\" failed: ffmpeg concat exited with 1")
    })))

  it.effect("is interrupted by a cancel (its signal fires) and the job is cancelled", () => {
    const signals: Array<AbortSignal> = []
    const finalizer: Finalizer = (context) => Effect.zipRight(Effect.sync(() => signals.push(context.signal)), Effect.never)
    return withFinalizer(finalizer, undefined, Effect.gen(function*() {
      const manager = yield* JobManager
      const id = yield* manager.submitJob({ ...frames(2), finalize: { name: "stitch" } })
      yield* TestClock.adjust(Duration.millis(10))
      yield* settle
      expect(signals).toHaveLength(1)
      const status = yield* manager.cancelJob(id)
      expect(status.state).toBe("cancelled")
      expect(signals[0]?.aborted).toBe(true)
    }))
  })

  it.effect("is skipped when a chunk fails the job or the job is cancelled", () => {
    let calls = 0
    const finalizer: Finalizer = () => Effect.sync(() => calls++)
    return withFinalizer(finalizer, 1, Effect.gen(function*() {
      const manager = yield* JobManager
      const failed = yield* Effect.fork(manager.runJob({ ...frames(3), finalize: { name: "stitch" } }))
      yield* TestClock.adjust(Duration.millis(30))
      expect((yield* Fiber.join(failed)).state).toBe("failed")
      const id = yield* manager.submitJob({ chunks: [{ id: 5, payload: null }], finalize: { name: "stitch" } })
      expect((yield* manager.cancelJob(id)).state).toBe("cancelled")
      yield* TestClock.adjust(Duration.seconds(1))
      expect(calls).toBe(0)
    }))
  })

  it.effect("a spec naming an unknown finalizer is rejected and nothing is stored", () =>
    withFinalizer(() => Effect.void, undefined, Effect.gen(function*() {
      const manager = yield* JobManager
      for (const name of ["concat", "constructor"]) {
        const error = yield* Effect.flip(manager.submitJob({ ...frames(1), finalize: { name } }))
        expect(error).toMatchObject({ _tag: "InvalidJobSpec", path: ["finalize", "name"] })
        expect(error.message).toContain("known: stitch")
      }
      expect((yield* manager.listJobs()).jobs).toEqual([])
    })))
})
