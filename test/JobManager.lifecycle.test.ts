import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import type { ChunkContext } from "../src/ChunkWorker.js"
import { ChunkWorker } from "../src/ChunkWorker.js"
import type { Chunk, JobId } from "../src/Job.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import { JobRepository } from "../src/JobRepository.js"
import * as JobRepositoryModule from "../src/JobRepository.js"
import { RangeSet } from "../src/internal/rangeSet.js"
import type { Recorder } from "./util.js"
import { makeRecorder, recordingWorker, settle, startedIds } from "./util.js"

type Behaviour = (chunk: Chunk, context: ChunkContext) => Effect.Effect<unknown, unknown>

const frames = (chunks: number) => ({ chunks: { start: 0, end: chunks - 1, size: 1 } })
const sleep = (millis: number): Behaviour => () => Effect.sleep(Duration.millis(millis))

/** Builds a manager on `repository` in its own scope, so a test can run several and stop one. */
const startManager = (
  repository: JobRepository["Type"],
  recorder: Recorder,
  behaviour: Behaviour,
  options: JobManagerModule.ManagerOptions = {}
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      JobManagerModule.layer(options).pipe(
        Layer.provide(Layer.succeed(JobRepository, repository)),
        Layer.provide(Layer.succeed(ChunkWorker, recordingWorker(recorder, behaviour)))
      ),
      scope
    )
    return { manager: Context.get(context, JobManager), scope }
  })

/** A memory store that claims to be durable: it outlives the managers built on it in a test. */
const sharedStore = Effect.map(JobRepositoryModule.makeMemory, (repository) => ({ ...repository, durable: true }))

describe("JobManager: pause, resume, retry", () => {
  it.effect("pause interrupts a running job and stores paused; resume runs only the chunks not yet completed", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const repository = yield* JobRepositoryModule.makeMemory
      const { manager } = yield* startManager(repository, recorder, sleep(100), { concurrency: 2 })
      const id = yield* manager.submitJob(frames(6))
      yield* TestClock.adjust(Duration.millis(150))
      const paused = yield* manager.pauseJob(id)
      expect(paused).toMatchObject({ state: "paused", completedChunks: 2 })
      expect(paused.owner).toBeUndefined()
      expect(recorder.aborted.sort()).toEqual([2, 3])
      yield* TestClock.adjust(Duration.seconds(10))
      expect(recorder.started).toHaveLength(4)
      expect([...(yield* repository.getCheckpoint(id)).values()]).toEqual([0, 1])

      const resumed = yield* manager.resumeJob(id)
      expect(resumed.state).toBe("pending")
      yield* TestClock.adjust(Duration.millis(200))
      const done = yield* manager.awaitJob(id)
      expect(done).toMatchObject({ state: "completed", completedChunks: 6, progress: 100 })
      expect(startedIds(recorder).slice(4).sort()).toEqual([2, 3, 4, 5])
    }))

  it.effect("a cancel racing a pause wins: the job ends cancelled, never paused", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const repository = yield* JobRepositoryModule.makeMemory
      const { manager } = yield* startManager(repository, recorder, sleep(1000), { concurrency: 2 })
      const id = yield* manager.submitJob(frames(4))
      yield* settle
      const [paused, cancelled] = yield* Effect.all([manager.pauseJob(id), manager.cancelJob(id)], {
        concurrency: "unbounded"
      })
      expect(cancelled.state).toBe("cancelled")
      expect(["paused", "cancelled"]).toContain(paused.state)
      expect((yield* manager.getJob(id)).state).toBe("cancelled")
      yield* TestClock.adjust(Duration.seconds(10))
      expect((yield* manager.getJob(id)).state).toBe("cancelled")
      expect(recorder.started).toHaveLength(2)
    }))

  it.effect("a pending job can be held (paused) and a paused job can be cancelled", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const repository = yield* JobRepositoryModule.makeMemory
      const { manager } = yield* startManager(repository, recorder, sleep(100), { maxConcurrentJobs: 1 })
      const first = yield* manager.submitJob(frames(1))
      const second = yield* manager.submitJob({ chunks: [{ id: 7, payload: null }] })
      expect((yield* manager.pauseJob(second)).state).toBe("paused")
      yield* TestClock.adjust(Duration.seconds(1))
      expect((yield* manager.getJob(first)).state).toBe("completed")
      expect(startedIds(recorder)).toEqual([0])
      expect((yield* manager.cancelJob(second)).state).toBe("cancelled")
      expect((yield* manager.resumeJob(second)).state).toBe("cancelled")
      expect((yield* manager.pauseJob(first)).state).toBe("completed")
    }))

  it.effect("retryJob re-drives a failed job as a new job running only the chunks that failed or never ran", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      let broken = true
      const repository = yield* JobRepositoryModule.makeMemory
      const { manager } = yield* startManager(
        repository,
        recorder,
        (chunk) => chunk.id === 3 && broken ? Effect.fail("disk full") : Effect.void,
        { concurrency: 1, retry: { attempts: 1 } }
      )
      const failed = yield* manager.runJob(frames(6))
      expect(failed).toMatchObject({ state: "failed", completedChunks: 3, failedChunks: 1 })
      expect(startedIds(recorder)).toEqual([0, 1, 2, 3])
      const error = yield* Effect.flip(manager.retryJob(yield* manager.submitJob(frames(1))))
      expect(error._tag).toBe("InvalidJobState")

      broken = false
      const retry = yield* manager.retryJob(failed.id)
      expect(retry).toMatchObject({ retryOf: failed.id, completedChunks: 3, totalChunks: 6 })
      const done = yield* manager.awaitJob(retry.id)
      expect(done).toMatchObject({ state: "completed", completedChunks: 6 })
      expect(startedIds(recorder).slice(5)).toEqual([3, 4, 5])
      expect((yield* manager.getJob(failed.id)).state).toBe("failed")
    }))
})

describe("JobManager: ownership across managers sharing a store", () => {
  it.effect("a cancel from another manager reaches the owner, which interrupts the job and stores cancelled", () =>
    Effect.gen(function*() {
      const ownerRecorder = makeRecorder()
      const repository = yield* JobRepositoryModule.makeMemory
      const { manager: owner } = yield* startManager(repository, ownerRecorder, sleep(1000), { concurrency: 2 })
      const { manager: other } = yield* startManager(repository, makeRecorder(), sleep(1000))
      const id = yield* owner.submitJob(frames(10))
      yield* settle
      expect((yield* other.getJob(id)).owner).toBe(owner.owner)
      const cancelling = yield* Effect.fork(other.cancelJob(id))
      yield* TestClock.adjust(Duration.millis(500))
      const cancelled = yield* Fiber.join(cancelling)
      expect(cancelled.state).toBe("cancelled")
      expect(ownerRecorder.aborted.sort()).toEqual([0, 1])
      yield* TestClock.adjust(Duration.seconds(10))
      expect(ownerRecorder.started).toHaveLength(2)
    }))

  it.effect("a pause from another manager reaches the owner", () =>
    Effect.gen(function*() {
      const repository = yield* JobRepositoryModule.makeMemory
      const { manager: owner } = yield* startManager(repository, makeRecorder(), sleep(1000))
      const { manager: other } = yield* startManager(repository, makeRecorder(), sleep(1000))
      const id = yield* owner.submitJob(frames(4))
      yield* settle
      const pausing = yield* Effect.fork(other.pauseJob(id))
      yield* TestClock.adjust(Duration.millis(500))
      expect((yield* Fiber.join(pausing)).state).toBe("paused")
    }))

  it.effect("jobs of a manager that stopped heartbeating are claimed and resumed from their checkpoint", () =>
    Effect.gen(function*() {
      const repository = yield* sharedStore
      // A job left `running` by a process that died: owner without heartbeat, chunks 0..4 checkpointed.
      const id = "job_orphan" as JobId
      yield* repository.create({
        id,
        spec: frames(8),
        totalChunks: 8,
        owner: "dead-host:1:x",
        completed: RangeSet.parse("0-4")!
      })
      yield* repository.transition(id, ["pending"], "running", { owner: "dead-host:1:x" })
      const recorder = makeRecorder()
      const { manager } = yield* startManager(repository, recorder, sleep(10), { concurrency: 4 })
      yield* TestClock.adjust(Duration.millis(20))
      const done = yield* manager.awaitJob(id)
      expect(done).toMatchObject({ state: "completed", completedChunks: 8, owner: manager.owner })
      expect(startedIds(recorder).sort()).toEqual([5, 6, 7])
    }))

  it.effect("a live owner's jobs are not claimed by another manager; after it shuts down they are resumed", () =>
    Effect.gen(function*() {
      const repository = yield* sharedStore
      const { manager: first, scope } = yield* startManager(repository, makeRecorder(), () => Effect.never)
      const id = yield* first.submitJob(frames(1))
      const recorder = makeRecorder()
      const { manager: second } = yield* startManager(repository, recorder, () => Effect.void)
      yield* TestClock.adjust(Duration.seconds(20))
      expect((yield* second.getJob(id)).owner).toBe(first.owner)
      expect(recorder.started).toEqual([])
      const closing = yield* Scope.close(scope, Exit.void).pipe(Effect.fork)
      yield* TestClock.adjust(Duration.seconds(20))
      yield* Fiber.join(closing)
      const done = yield* second.awaitJob(id)
      expect(done.state).toBe("completed")
      expect(done.owner).toBe(second.owner)
    }))

  it.effect("graceful shutdown with a durable store drains chunks in flight and leaves the job resumable", () =>
    Effect.gen(function*() {
      const repository = yield* sharedStore
      const recorder = makeRecorder()
      const { manager, scope } = yield* startManager(repository, recorder, sleep(100), {
        concurrency: 2,
        shutdownGracePeriod: 1_000
      })
      const id = yield* manager.submitJob(frames(10))
      yield* TestClock.adjust(Duration.millis(150))
      expect(recorder.started).toHaveLength(4)
      const closing = yield* Scope.close(scope, Exit.void).pipe(Effect.fork)
      yield* TestClock.adjust(Duration.millis(50))
      yield* Fiber.join(closing)
      // The two chunks in flight finished and were recorded; none started after the shutdown began.
      expect(recorder.aborted).toEqual([])
      expect(recorder.started).toHaveLength(4)
      const left = Option.getOrThrow(yield* repository.get(id))
      expect(left).toMatchObject({ state: "pending", completedChunks: 4 })
      expect(left.owner).toBeUndefined()
      expect([...(yield* repository.getCheckpoint(id)).values()]).toEqual([0, 1, 2, 3])

      const next = makeRecorder()
      const { manager: successor } = yield* startManager(repository, next, sleep(100), { concurrency: 2 })
      yield* TestClock.adjust(Duration.seconds(1))
      expect((yield* successor.awaitJob(id)).state).toBe("completed")
      expect(startedIds(next).sort((a, b) => a - b)).toEqual([4, 5, 6, 7, 8, 9])
    }))

  it.effect("cancelling a job whose owner stopped heartbeating applies at once", () =>
    Effect.gen(function*() {
      const repository = yield* sharedStore
      const id = "job_stuck" as JobId
      yield* repository.create({ id, spec: frames(2), totalChunks: 2, owner: "hung:1:y" })
      yield* repository.transition(id, ["pending"], "running", { owner: "hung:1:y" })
      yield* repository.heartbeat("hung:1:y")
      const { manager } = yield* startManager(repository, makeRecorder(), () => Effect.never, { staleAfter: 5_000 })
      // At 5.5 s the owner is stale (last seen at 0) but not yet claimed (the next recovery runs at 10 s).
      yield* TestClock.adjust(Duration.millis(5_500))
      expect((yield* manager.getJob(id)).owner).toBe("hung:1:y")
      const status = yield* manager.cancelJob(id)
      expect(status.state).toBe("cancelled")
    }))
})
