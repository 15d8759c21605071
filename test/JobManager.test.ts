import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type { ChunkContext } from "../src/ChunkWorker.js"
import { ChunkWorker } from "../src/ChunkWorker.js"
import * as ChunkWorkerModule from "../src/ChunkWorker.js"
import type { Chunk as JobChunk, JobId } from "../src/Job.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import { JobRepository } from "../src/JobRepository.js"
import * as JobRepositoryModule from "../src/JobRepository.js"
import type { Recorder } from "./util.js"
import { makeRecorder, recordingWorker, settle, startedIds } from "./util.js"

const frames = (chunks: number) => ({ name: "render", chunks: { start: 0, end: chunks - 1, size: 1 } })

const withManager = <A, E>(
  recorder: Recorder,
  behaviour: (chunk: JobChunk, context: ChunkContext) => Effect.Effect<unknown, unknown>,
  options: JobManagerModule.ManagerOptions,
  body: Effect.Effect<A, E, JobManager | JobRepository>
) =>
  body.pipe(
    Effect.provide(
      JobManagerModule.layer(options).pipe(
        Layer.provideMerge(JobRepositoryModule.layerMemory),
        Layer.provide(Layer.succeed(ChunkWorker, recordingWorker(recorder, behaviour)))
      )
    )
  )

const sleep = (millis: number) => () => Effect.sleep(Duration.millis(millis))

describe("JobManager", () => {
  it.effect("runs a submitted job to completion and stores the final counts", () => {
    const recorder = makeRecorder()
    return withManager(recorder, sleep(10), { concurrency: 2 }, Effect.gen(function*() {
      const manager = yield* JobManager
      const id = yield* manager.submitJob(frames(6))
      const pending = yield* manager.getJob(id)
      expect(pending.state).toBe("running")
      yield* TestClock.adjust(Duration.millis(30))
      const status = yield* manager.awaitJob(id)
      expect(status.state).toBe("completed")
      expect(status.name).toBe("render")
      expect([status.totalChunks, status.completedChunks, status.failedChunks, status.progress]).toEqual([6, 6, 0, 100])
      expect(status.startedAt).toBeInstanceOf(Date)
      expect(status.finishedAt?.getTime()).toBe(30)
      expect(yield* manager.getJob(id)).toEqual(status)
    }))
  })

  it.effect("listJobs returns the jobs of the repository, newest first, filtered by state", () => {
    const recorder = makeRecorder()
    return withManager(recorder, () => Effect.never, { maxConcurrentJobs: 1 }, Effect.gen(function*() {
      const manager = yield* JobManager
      const first = yield* manager.submitJob(frames(1))
      yield* TestClock.adjust(1)
      const second = yield* manager.submitJob(frames(1))
      yield* TestClock.adjust(1)
      const third = yield* manager.submitJob(frames(1))
      yield* manager.cancelJob(third)
      const all = yield* manager.listJobs()
      expect(all.jobs.map((job) => [job.id, job.state])).toEqual([
        [third, "cancelled"],
        [second, "pending"],
        [first, "running"]
      ])
      const waiting = yield* manager.listJobs({ state: ["pending", "running"] })
      expect(waiting.jobs.map((job) => job.id)).toEqual([second, first])
      const page1 = yield* manager.listJobs({ limit: 2 })
      expect(page1.jobs.map((job) => job.id)).toEqual([third, second])
      const page2 = yield* manager.listJobs({ limit: 2, cursor: page1.nextCursor })
      expect(page2.jobs.map((job) => job.id)).toEqual([first])
      expect(page2.nextCursor).toBeUndefined()
      const bad = yield* Effect.flip(manager.listJobs({ state: "done" } as never))
      expect(bad._tag).toBe("InvalidOption")
      expect(bad.message).toContain("state")
    }))
  })

  it.effect("an invalid spec is rejected with the path of the problem and nothing is stored", () => {
    const recorder = makeRecorder()
    return withManager(recorder, () => Effect.void, {}, Effect.gen(function*() {
      const manager = yield* JobManager
      const cases: Array<[unknown, string]> = [
        [{ chunks: [{ id: 0, payload: 1 }, { id: 0, payload: 2 }] }, "chunks[1].id"],
        [{ chunks: [{ id: -1, payload: null }] }, "chunks[0].id"],
        [{ chunks: { start: 10, end: 0, size: 5 } }, "chunks.end"],
        [{ chunks: { start: 0, end: 10, size: 0 } }, "chunks.size"],
        [{ name: 42, chunks: [] }, "name"],
        [{ chunks: [{ id: 0, payload: () => 1 }] }, "chunks[0].payload"],
        [{ chunks: [], extra: true }, "extra"],
        [{ chunks: [], concurrency: 0 }, "concurrency"],
        [null, "(root)"]
      ]
      for (const [spec, path] of cases) {
        const error = yield* Effect.flip(manager.submitJob(spec as never))
        expect(error._tag).toBe("InvalidJobSpec")
        expect(error.message).toContain(`at ${path}:`)
      }
      expect((yield* manager.listJobs()).jobs).toEqual([])
      expect(recorder.started).toEqual([])
    }))
  })

  it.effect("cancelJob on a running job interrupts its chunks, stores cancelled, and no chunk starts afterwards", () => {
    const recorder = makeRecorder()
    return withManager(recorder, sleep(100), { concurrency: 3 }, Effect.gen(function*() {
      const manager = yield* JobManager
      const id = yield* manager.submitJob(frames(30))
      yield* TestClock.adjust(Duration.millis(150))
      expect(recorder.started).toHaveLength(6)
      const status = yield* manager.cancelJob(id)
      expect(status.state).toBe("cancelled")
      expect(status.completedChunks).toBe(3)
      expect(recorder.aborted.sort((a, b) => a - b)).toEqual([3, 4, 5])
      expect(recorder.inFlight).toBe(0)
      yield* TestClock.adjust(Duration.seconds(10))
      expect(recorder.started).toHaveLength(6)
      expect((yield* manager.getJob(id)).state).toBe("cancelled")
      expect(yield* manager.awaitJob(id)).toEqual(status)
    }))
  })

  it.effect("cancelJob on a pending job stores cancelled and the job never starts", () => {
    const recorder = makeRecorder()
    return withManager(recorder, sleep(100), { maxConcurrentJobs: 1 }, Effect.gen(function*() {
      const manager = yield* JobManager
      const first = yield* manager.submitJob({ chunks: [{ id: 1, payload: "a" }] })
      const second = yield* manager.submitJob({ chunks: [{ id: 2, payload: "b" }] })
      expect((yield* manager.getJob(second)).state).toBe("pending")
      const cancelled = yield* manager.cancelJob(second)
      expect(cancelled.state).toBe("cancelled")
      expect(cancelled.startedAt).toBeUndefined()
      yield* TestClock.adjust(Duration.seconds(1))
      expect((yield* manager.getJob(first)).state).toBe("completed")
      expect(startedIds(recorder)).toEqual([1])
    }))
  })

  it.effect("cancelJob on a terminal job is a no-op returning the unchanged status; twice is once", () => {
    const recorder = makeRecorder()
    return withManager(
      recorder,
      (chunk) => chunk.id === 99 ? Effect.fail(new Error("corrupt frame")) : Effect.void,
      { retry: { attempts: 1 } },
      Effect.gen(function*() {
        const manager = yield* JobManager
        const done = yield* manager.runJob({ chunks: [{ id: 1, payload: null }] })
        const failed = yield* manager.runJob({ chunks: [{ id: 99, payload: null }] })
        expect(done.state).toBe("completed")
        expect(failed.state).toBe("failed")
        expect(failed.error).toBe("chunk 99 failed after 1 attempt: corrupt frame")
        expect(failed.failedChunks).toBe(1)
        yield* TestClock.adjust(Duration.seconds(5))
        expect(yield* manager.cancelJob(done.id)).toEqual(done)
        expect(yield* manager.cancelJob(failed.id)).toEqual(failed)

        const running = yield* manager.submitJob({ chunks: [{ id: 5, payload: null }] })
        void running
        const never = yield* manager.submitJob({ chunks: { start: 0, end: 0, size: 1 } })
        const first = yield* manager.cancelJob(never)
        const second = yield* manager.cancelJob(never)
        expect(second).toEqual(first)
      })
    )
  })

  it.effect("cancelJob of an unknown or malformed id fails with JobNotFound", () => {
    const recorder = makeRecorder()
    return withManager(recorder, () => Effect.void, {}, Effect.gen(function*() {
      const manager = yield* JobManager
      const unknown = yield* Effect.flip(manager.cancelJob("job_nope"))
      expect(unknown._tag).toBe("JobNotFound")
      const malformed = yield* Effect.flip(manager.cancelJob("../../etc/passwd"))
      expect(malformed._tag).toBe("JobNotFound")
      expect((yield* Effect.flip(manager.getJob("job_nope")))._tag).toBe("JobNotFound")
      expect((yield* Effect.flip(manager.awaitJob("job_nope")))._tag).toBe("JobNotFound")
    }))
  })

  it.effect("cancel racing completion leaves exactly one terminal state that never changes", () => {
    const recorder = makeRecorder()
    return Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      yield* withManager(recorder, () => Deferred.await(gate), {}, Effect.gen(function*() {
        const manager = yield* JobManager
        const id = yield* manager.submitJob(frames(1))
        yield* settle
        yield* Deferred.succeed(gate, undefined)
        const returned = yield* manager.cancelJob(id)
        const final = yield* manager.awaitJob(id)
        expect(["completed", "cancelled"]).toContain(final.state)
        expect(returned.state).toBe(final.state)
        yield* TestClock.adjust(Duration.seconds(1))
        expect(yield* manager.getJob(id)).toEqual(final)
      }))
    })
  })

  it.effect("maxConcurrentJobs: the others wait as pending and start in submission order", () => {
    const recorder = makeRecorder()
    return withManager(recorder, sleep(100), { maxConcurrentJobs: 2, concurrency: 1 }, Effect.gen(function*() {
      const manager = yield* JobManager
      const ids: Array<JobId> = []
      for (let index = 0; index < 5; index++) {
        ids.push(yield* manager.submitJob({ chunks: [{ id: index, payload: null }] }))
      }
      const states = () => Effect.forEach(ids, (id) => Effect.map(manager.getJob(id), (job) => job.state))
      expect(yield* states()).toEqual(["running", "running", "pending", "pending", "pending"])
      yield* TestClock.adjust(Duration.millis(100))
      expect(yield* states()).toEqual(["completed", "completed", "running", "running", "pending"])
      yield* TestClock.adjust(Duration.millis(200))
      expect(yield* states()).toEqual(["completed", "completed", "completed", "completed", "completed"])
      expect(startedIds(recorder)).toEqual([0, 1, 2, 3, 4])
      expect(recorder.maxInFlight).toBe(2)
    }))
  })

  it.effect("watchJob streams the status changes and ends with the terminal one", () => {
    const recorder = makeRecorder()
    return withManager(recorder, sleep(10), { concurrency: 1, watchInterval: 0 }, Effect.gen(function*() {
      const manager = yield* JobManager
      const id = yield* manager.submitJob(frames(4))
      const watcher = yield* Stream.runCollect(manager.watchJob(id)).pipe(Effect.fork)
      yield* settle
      yield* TestClock.adjust(Duration.millis(40))
      const statuses = Chunk.toReadonlyArray(yield* Fiber.join(watcher))
      // A watcher may skip intermediate statuses, never the first or the terminal one.
      expect(statuses[0]?.state).toBe("running")
      expect(statuses.map((status) => status.state).slice(0, -1).every((state) => state === "running")).toBe(true)
      expect(statuses.at(-1)).toMatchObject({ state: "completed", completedChunks: 4, progress: 100 })
      const counts = statuses.map((status) => status.completedChunks)
      expect(counts).toEqual([...counts].sort((a, b) => a - b))
      expect(statuses.length).toBeGreaterThanOrEqual(4)
      const after = Chunk.toReadonlyArray(yield* Stream.runCollect(manager.watchJob(id)))
      expect(after.map((status) => status.state)).toEqual(["completed"])
    }))
  })

  it.effect("watchJob sends at most one status per watchInterval, and the terminal one at once", () => {
    const recorder = makeRecorder()
    return withManager(recorder, sleep(1), { concurrency: 1, watchInterval: 50 }, Effect.gen(function*() {
      const manager = yield* JobManager
      const id = yield* manager.submitJob(frames(70))
      const received: Array<readonly [number, number]> = []
      const watcher = yield* manager.watchJob(id).pipe(
        Stream.runForEach((status) =>
          Effect.map(Clock.currentTimeMillis, (now) => void received.push([now, status.completedChunks]))
        ),
        Effect.fork
      )
      yield* settle
      yield* TestClock.adjust(Duration.millis(100))
      yield* Fiber.join(watcher)
      // 70 chunks of 1 ms: statuses at 0 and 50 ms, then the terminal one as the job ends at 70 ms.
      expect(received.map(([at]) => at)).toEqual([0, 50, 70])
      expect(received.at(-1)).toEqual([70, 70])
      expect((yield* manager.getJob(id)).state).toBe("completed")
    }))
  })

  it.effect("interrupting runJob's caller cancels the job", () => {
    const recorder = makeRecorder()
    return withManager(recorder, sleep(1000), {}, Effect.gen(function*() {
      const manager = yield* JobManager
      const caller = yield* manager.runJob(frames(2)).pipe(Effect.fork)
      yield* settle
      expect(recorder.started).toHaveLength(2)
      yield* Fiber.interrupt(caller)
      const [job] = (yield* manager.listJobs()).jobs
      expect(job?.state).toBe("cancelled")
      expect(recorder.aborted.sort()).toEqual([0, 1])
    }))
  })

  it.effect("a job run with no cancellation behaves as before: every chunk runs once", () => {
    const recorder = makeRecorder()
    return withManager(recorder, sleep(3), { concurrency: 4 }, Effect.gen(function*() {
      const manager = yield* JobManager
      const fiber = yield* manager.runJob(frames(40)).pipe(Effect.fork)
      yield* TestClock.adjust(Duration.seconds(1))
      const status = yield* Fiber.join(fiber)
      expect(status.state).toBe("completed")
      expect(startedIds(recorder).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i))
      expect(recorder.aborted).toEqual([])
    }))
  })

  it.effect("closing the layer's scope interrupts running jobs and leaves no fiber behind", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        JobManagerModule.layer({ maxConcurrentJobs: 1 }).pipe(
          Layer.provideMerge(JobRepositoryModule.layerMemory),
          Layer.provide(Layer.succeed(ChunkWorker, recordingWorker(recorder, () => Effect.never)))
        ),
        scope
      )
      const manager = Context.get(context, JobManager)
      const repository = Context.get(context, JobRepository)
      const running = yield* manager.submitJob(frames(2))
      const waiting = yield* manager.submitJob(frames(2))
      yield* settle
      yield* Scope.close(scope, Exit.void)
      expect(recorder.aborted.sort()).toEqual([0, 1])
      expect(recorder.inFlight).toBe(0)
      expect(Option.map(yield* repository.get(running), (s) => s.state)).toEqual(Option.some("cancelled"))
      expect(Option.map(yield* repository.get(waiting), (s) => s.state)).toEqual(Option.some("pending"))
      yield* TestClock.adjust(Duration.seconds(1))
      expect(recorder.started).toHaveLength(2)
    }))

  it.effect("rejects bad manager options with a message naming the option", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.provide(
          JobManager,
          JobManagerModule.layer({ maxConcurrentJobs: 0 }).pipe(
            Layer.provide(JobRepositoryModule.layerMemory),
            Layer.provide(Layer.succeed(ChunkWorker, recordingWorker(makeRecorder(), () => Effect.void)))
          )
        )
      )
      expect(error._tag).toBe("InvalidOption")
      expect(error.message).toContain("maxConcurrentJobs")
    }))

  it.effect("a job's fiber starts from the manager's fiber refs, not from those of the job that ended before it", () => {
    // With one slot, each job is dispatched from the end of the one before: it must not inherit what that one set.
    const marker = FiberRef.unsafeMake("unset")
    const seen: Array<string> = []
    return Effect.gen(function*() {
      const manager = yield* JobManager
      for (let index = 0; index < 3; index++) yield* manager.submitJob(frames(1))
      yield* TestClock.adjust(Duration.millis(10))
      const page = yield* manager.listJobs({ state: "completed" })
      expect(page.jobs.length).toBe(3)
      expect(seen).toEqual(["unset", "unset", "unset"])
    }).pipe(
      Effect.provide(
        JobManagerModule.layer({ maxConcurrentJobs: 1 }).pipe(
          Layer.provideMerge(JobRepositoryModule.layerMemory),
          Layer.provide(Layer.succeed(
            ChunkWorker,
            ChunkWorkerModule.make(() =>
              Effect.flatMap(FiberRef.get(marker), (value) => {
                seen.push(value)
                // Still running when the next jobs are submitted: they wait for its slot.
                return Effect.zipRight(FiberRef.set(marker, "set by a job"), Effect.sleep(Duration.millis(1)))
              })
            )
          ))
        )
      )
    )
  })
})
