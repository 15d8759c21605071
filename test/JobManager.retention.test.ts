/**
 * Deleting jobs, pruning them, and the manager's retention sweep; re-driving a failed job from a client.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { ChunkWorker } from "../src/ChunkWorker.js"
import type { JobId, JobStatus } from "../src/Job.js"
import * as JobClient from "../src/JobClient.js"
import { RepositoryError } from "../src/JobError.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import { JobRepository } from "../src/JobRepository.js"
import * as JobRepositoryModule from "../src/JobRepository.js"
import { createJobManager } from "../src/promise.js"
import { makeRecorder, recordingWorker, settle } from "./util.js"

const frames = (chunks: number) => ({ chunks: { start: 0, end: chunks - 1, size: 1 } })

/** A manager on `repository` whose worker sleeps 100 ms per chunk, or fails chunks named `fail`. */
const startManager = (repository: JobRepository["Type"], options: JobManagerModule.ManagerOptions = {}) =>
  Effect.map(
    Layer.build(
      JobManagerModule.layer(options).pipe(
        Layer.provide(Layer.succeed(JobRepository, repository)),
        Layer.provide(Layer.succeed(
          ChunkWorker,
          recordingWorker(makeRecorder(), (chunk) => chunk.payload === "fail" ? Effect.fail("broken") : Effect.sleep(100))
        ))
      )
    ),
    (context) => Context.get(context, JobManager)
  )

/** Runs a job of one chunk to `state` and returns its status. */
const finished = (manager: JobManager["Type"], state: "completed" | "failed" | "cancelled") =>
  Effect.gen(function*() {
    const id = yield* manager.submitJob({ chunks: [{ id: 0, payload: state === "failed" ? "fail" : null }] })
    if (state === "cancelled") return yield* manager.cancelJob(id)
    yield* TestClock.adjust(Duration.millis(100))
    return yield* manager.awaitJob(id)
  })

const ids = (manager: JobManager["Type"]) =>
  Effect.map(manager.listJobs({ limit: 100 }), (page) => page.jobs.map((status) => status.id).sort())

describe("JobManager.deleteJob", () => {
  it.scoped("deletes a finished job; refuses one that has not ended, which keeps running", () =>
    Effect.gen(function*() {
      const repository = yield* JobRepositoryModule.makeMemory
      const manager = yield* startManager(repository, { concurrency: 1, retry: { attempts: 1 } })
      const done = yield* finished(manager, "completed")
      const deleted = yield* manager.deleteJob(done.id)
      expect(deleted).toMatchObject({ id: done.id, state: "completed" })
      expect(yield* Effect.flip(manager.getJob(done.id))).toMatchObject({ _tag: "JobNotFound", jobId: done.id })
      expect(yield* Effect.flip(manager.deleteJob(done.id))).toMatchObject({ _tag: "JobNotFound" })
      expect(yield* Effect.flip(manager.deleteJob("not an id"))).toMatchObject({ _tag: "JobNotFound", jobId: "not an id" })

      const running = yield* manager.submitJob(frames(3))
      yield* settle
      const refused = yield* Effect.flip(manager.deleteJob(running))
      expect(refused).toMatchObject({ _tag: "InvalidJobState", jobId: running, state: "running", operation: "delete" })
      expect(refused.message).toBe(
        `cannot delete job ${running}: it is running; only a completed, failed or cancelled job can be deleted (cancel it first)`
      )
      yield* TestClock.adjust(Duration.millis(300))
      expect((yield* manager.awaitJob(running)).state).toBe("completed")
      expect((yield* manager.deleteJob(running)).state).toBe("completed")
    }))
})

describe("JobManager.pruneJobs", () => {
  it.scoped("deletes the finished jobs of the given states that finished longer ago than olderThan", () =>
    Effect.gen(function*() {
      const repository = yield* JobRepositoryModule.makeMemory
      const manager = yield* startManager(repository, { concurrency: 1, retry: { attempts: 1 } })
      yield* finished(manager, "completed")
      const oldFailed = yield* finished(manager, "failed")
      yield* finished(manager, "cancelled")
      const paused = yield* manager.pauseJob(yield* manager.submitJob(frames(2)))
      yield* TestClock.adjust(Duration.minutes(2))
      const newDone = yield* finished(manager, "completed")

      expect(yield* manager.pruneJobs({ olderThan: "1 minute", states: ["completed", "cancelled"] })).toBe(2)
      expect(yield* ids(manager)).toEqual([oldFailed.id, paused.id, newDone.id].sort())
      expect(yield* manager.pruneJobs({ olderThan: new Date(newDone.finishedAt!.getTime() + 1) })).toBe(2)
      expect(yield* ids(manager)).toEqual([paused.id])
    }))

  it.scoped("bad options fail with InvalidOption naming them, and delete nothing", () =>
    Effect.gen(function*() {
      const repository = yield* JobRepositoryModule.makeMemory
      const manager = yield* startManager(repository, { concurrency: 1 })
      yield* finished(manager, "completed")
      yield* TestClock.adjust(Duration.seconds(2))
      const cases: ReadonlyArray<readonly [unknown, ReadonlyArray<string | number>]> = [
        [{}, ["olderThan"]],
        [{ olderThan: -5 }, ["olderThan"]],
        [{ olderThan: "soon" }, ["olderThan"]],
        [{ olderThan: "1 second", states: ["running"] }, ["states", 0]],
        [{ olderThan: "1 second", states: [] }, ["states"]],
        [{ olderThan: "1 second", state: "completed" }, ["state"]]
      ]
      for (const [options, path] of cases) {
        const error = yield* Effect.flip(manager.pruneJobs(options))
        expect(error).toMatchObject({ _tag: "InvalidOption", path })
      }
      expect(yield* ids(manager)).toHaveLength(1)
    }))
})

describe("JobManager retention", () => {
  it.scoped("a sweep at start and every sweepInterval deletes finished jobs older than their state's retention", () =>
    Effect.gen(function*() {
      const repository = yield* JobRepositoryModule.makeMemory
      const quiet = { heartbeatInterval: 30_000, staleAfter: 300_000 }
      const runner = yield* startManager(repository, { ...quiet, concurrency: 1, retry: { attempts: 1 } })
      yield* finished(runner, "completed")
      const failed = yield* finished(runner, "failed")
      const cancelled = yield* finished(runner, "cancelled")
      const paused = (yield* runner.pauseJob(yield* runner.submitJob(frames(1_000)))).id
      yield* TestClock.adjust(Duration.seconds(90))

      // A second manager with a retention policy: its first sweep runs as it starts.
      const keeper = yield* startManager(repository, {
        ...quiet,
        retention: { completed: "1 minute", cancelled: "2 minutes", sweepInterval: "10 seconds" }
      })
      yield* settle
      expect(yield* ids(keeper)).toEqual([failed.id, cancelled.id, paused].sort())
      yield* TestClock.adjust(Duration.seconds(25))
      expect(yield* ids(keeper)).toEqual([failed.id, cancelled.id, paused].sort())
      yield* TestClock.adjust(Duration.seconds(20))
      // 2 min 15 s after the cancel: gone; the failed job has no retention, the paused one has not ended.
      expect(yield* ids(keeper)).toEqual([failed.id, paused].sort())
    }))

  it.scoped("a failed sweep is logged and the next one runs", () =>
    Effect.gen(function*() {
      const memory = yield* JobRepositoryModule.makeMemory
      let failures = 1
      const repository: JobRepository["Type"] = {
        ...memory,
        prune: (query) =>
          failures-- > 0 ? Effect.fail(new RepositoryError({ operation: "prune", detail: "disk on fire" })) : memory.prune(query)
      }
      const logs: Array<string> = []
      const logger = Logger.make(({ message }) => logs.push(String(message)))
      const manager = yield* startManager(repository, {
        concurrency: 1,
        retention: { completed: 0, sweepInterval: "1 minute" }
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      const done = yield* finished(manager, "completed")
      expect(logs.some((line) => line.startsWith("effect-jobs: pruning finished jobs failed"))).toBe(true)
      yield* TestClock.adjust(Duration.minutes(1))
      expect(yield* Effect.flip(manager.getJob(done.id))).toMatchObject({ _tag: "JobNotFound" })
    }))

  it.scoped("a bad retention option fails the layer with InvalidOption naming it", () =>
    Effect.gen(function*() {
      const repository = yield* JobRepositoryModule.makeMemory
      for (
        const [retention, path] of [
          [{ completed: "a week" }, ["retention", "completed"]],
          [{ failed: -1 }, ["retention", "failed"]],
          [{ sweepInterval: 0 }, ["retention", "sweepInterval"]],
          [{ running: "1 day" }, ["retention", "running"]]
        ] as const
      ) {
        const error = yield* Effect.flip(startManager(repository, { retention } as never))
        expect(error).toMatchObject({ _tag: "InvalidOption", path })
      }
    }))
})

describe("JobClient.retryJob", () => {
  it.scoped("stores the re-drive without an owner; a manager sharing the store claims and runs it", () =>
    Effect.gen(function*() {
      const memory = yield* JobRepositoryModule.makeMemory
      const repository = { ...memory, durable: true }
      const manager = yield* startManager(repository, { concurrency: 1, retry: { attempts: 1 }, heartbeatInterval: 100 })
      const failed = yield* finished(manager, "failed")
      const client = yield* Effect.provideService(JobClient.make(), JobRepository, repository)
      const refused = yield* Effect.flip(client.retryJob((yield* finished(manager, "completed")).id))
      expect(refused).toMatchObject({ _tag: "InvalidJobState", state: "completed", operation: "retry" })

      // The chunk fails again: the re-drive runs it (and only it), and fails too.
      const retry: JobStatus = yield* client.retryJob(failed.id)
      expect(retry).toMatchObject({ state: "pending", retryOf: failed.id, totalChunks: 1 })
      expect(retry.owner).toBeUndefined()
      yield* TestClock.adjust(Duration.millis(200))
      const ended = yield* manager.awaitJob(retry.id)
      expect(ended).toMatchObject({ state: "failed", owner: manager.owner, retryOf: failed.id })
      expect(Option.isSome(yield* memory.get(failed.id as JobId))).toBe(true)
    }))
})

describe("Promise facade: deleteJob, pruneJobs, retention", () => {
  it("deletes and prunes finished jobs; rejects a job that has not ended", async () => {
    await using manager = await createJobManager({
      worker: async () => {},
      retention: { completed: "1 hour" }
    })
    const id = await manager.submitJob(frames(2))
    const done = await manager.waitForJob(id)
    expect((await manager.deleteJob(id)).state).toBe("completed")
    expect(await manager.getJob(id)).toBeUndefined()
    await expect(manager.deleteJob(id)).rejects.toMatchObject({ name: "JobNotFound" })
    await manager.waitForJob(await manager.submitJob(frames(1)))
    // `olderThan: 0` prunes what finished more than 0 ms ago: not a job that ended in this very millisecond.
    await new Promise((resolve) => setTimeout(resolve, 2))
    expect(await manager.pruneJobs({ olderThan: 0 })).toBe(1)
    await expect(manager.pruneJobs({ olderThan: "later" })).rejects.toMatchObject({ name: "InvalidOption" })
    const paused = await manager.pauseJob(await manager.submitJob({ chunks: { start: 0, end: 1e6, size: 1 } }))
    await expect(manager.deleteJob(paused.id)).rejects.toMatchObject({ name: "InvalidJobState" })
    expect(done.state).toBe("completed")
  })
})
