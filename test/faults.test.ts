/**
 * Store faults never wedge a job (issue 9, item 2). A store that fails (`RepositoryError`) or dies (a
 * defect, as @effect/sql does on a failed COMMIT) on each path a manager uses (heartbeat, claim of orphans,
 * start transition, progress, end transition, stop requests) while a job runs: the job reaches its terminal
 * state once the store answers again, `awaitJob` resolves only after that state is stored, the fault is
 * logged at WARNING/ERROR naming the job, and the manager's loops are still alive afterwards. The memory
 * store, wrapped in a store that breaks on demand, runs under the TestClock. Faults of real databases are in
 * faults.real.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { ChunkWorker } from "../src/ChunkWorker.js"
import type { JobId, JobStatus } from "../src/Job.js"
import * as JobClient from "../src/JobClient.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import { JobRepository } from "../src/JobRepository.js"
import * as JobRepositoryModule from "../src/JobRepository.js"
import type { CapturedLogs } from "./support/capturedLogs.js"
import { withLogs } from "./support/capturedLogs.js"
import { ChunkRuns } from "./support/chunkRuns.js"
import type { Fault } from "./support/faultyRepository.js"
import * as Faulty from "./support/faultyRepository.js"
import { settle } from "./util.js"

type Store = JobRepository["Type"]

const heartbeatInterval = 100
const staleAfter = 500
/** Chunks end between heartbeats, so some are in flight when the manager stops its jobs. */
const chunkMillis = 30

const chunks = (count: number) => ({ chunks: Array.from({ length: count }, (_, id) => ({ id, payload: null })) })
const blocking = { chunks: [{ id: 0, payload: "block" }] }

interface Running {
  readonly manager: JobManager["Type"]
  readonly controller: Faulty.FaultController
  /** Closes the manager (its shutdown runs). */
  readonly close: Effect.Effect<void>
}

/**
 * A manager called `runner` on `store`, seen through a store it can break; it lives until `close`, or until
 * the test's scope closes.
 */
const startManager = (
  store: Store,
  runs: ChunkRuns,
  runner: string,
  options: JobManagerModule.ManagerOptions = {}
): Effect.Effect<Running, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const controller = new Faulty.FaultController()
    const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const layer = JobManagerModule.layer({
      concurrency: 2,
      heartbeatInterval,
      staleAfter,
      pollInterval: 50,
      watchInterval: 0,
      ...options
    }).pipe(
      Layer.provide(Layer.succeed(JobRepository, Faulty.wrap(store, controller))),
      Layer.provide(Layer.succeed(ChunkWorker, runs.worker(runner, chunkMillis)))
    )
    const context = yield* Layer.buildWithScope(layer, scope)
    return { manager: Context.get(context, JobManager), controller, close: Scope.close(scope, Exit.void) }
  })

/** Moves the TestClock `step` at a time until `fiber` is done; dies after `maxMillis`. */
const advanceUntilDone = <A, E>(fiber: Fiber.Fiber<A, E>, step = 10, maxMillis = 10_000) =>
  Effect.gen(function*() {
    for (let elapsed = 0; elapsed <= maxMillis; elapsed += step) {
      yield* settle
      if (Option.isSome(yield* Fiber.poll(fiber))) return yield* Fiber.join(fiber)
      yield* TestClock.adjust(step)
    }
    return yield* Effect.dieMessage(`not done within ${maxMillis} ms of the TestClock`)
  })

/** Moves the TestClock by `millis`, `step` at a time, letting fibers run at each step. */
const advance = (millis: number, step = 10) =>
  Effect.gen(function*() {
    for (let elapsed = 0; elapsed < millis; elapsed += step) {
      yield* TestClock.adjust(step)
      yield* settle
    }
  })

const stored = (store: Store, id: JobId) => Effect.map(store.get(id), Option.getOrThrow)

/**
 * The manager's loops still run after the fault: its heartbeat advances in the store, a new job completes,
 * and a cancel stored by another process (a client on the same store) is heard and aborts the chunk.
 */
const assertAlive = (store: Store, running: Running, runs: ChunkRuns) =>
  Effect.gen(function*() {
    const owner = running.manager.owner
    const before = Option.getOrThrow(yield* store.lastHeartbeat(owner))
    yield* advance(heartbeatInterval * 2)
    expect(Option.getOrThrow(yield* store.lastHeartbeat(owner))).toBeGreaterThan(before)

    const later = yield* running.manager.submitJob(chunks(4))
    const done = yield* advanceUntilDone(yield* Effect.fork(running.manager.awaitJob(later)))
    expect(done).toMatchObject({ state: "completed", completedChunks: 4 })

    const blocked = yield* running.manager.submitJob(blocking)
    yield* advance(20)
    expect(runs.inFlight(blocked)).toHaveLength(1)
    const client = yield* Effect.provideService(JobClient.make({ staleAfter, pollInterval: 50 }), JobRepository, store)
    const cancelled = yield* advanceUntilDone(yield* Effect.fork(client.cancelJob(blocked)))
    expect(cancelled.state).toBe("cancelled")
    expect(runs.of(blocked).map((run) => run.outcome)).toEqual(["aborted"])
  })

/** A fresh memory store, manager "a" on it (through a store it can break), the chunks it runs, its logs. */
interface World {
  readonly store: Store
  readonly runs: ChunkRuns
  readonly logs: CapturedLogs
  readonly a: Running
}

/** A test body run in a fresh {@link World} (manager options as given), under the TestClock. */
const inWorld = (body: (world: World) => Effect.Effect<void, unknown, Scope.Scope>, options?: JobManagerModule.ManagerOptions) => () =>
  withLogs((logs) =>
    Effect.gen(function*() {
      const store = yield* JobRepositoryModule.makeMemory
      const runs = new ChunkRuns()
      yield* body({ store, runs, logs, a: yield* startManager(store, runs, "a", options) })
    })
  ).pipe(Effect.scoped)

/** Submits a job of `total` chunks to `running`, and waits for its end in the background. */
const submitWatched = (running: Running, total: number) =>
  Effect.gen(function*() {
    const id = yield* running.manager.submitJob(chunks(total))
    return { id, awaiting: yield* Effect.fork(running.manager.awaitJob(id)) }
  })

/** Awaits `job` of `total` chunks: completed, as stored, every chunk finished, and manager "a" still alive. */
const expectCompleted = (world: World, job: { readonly id: JobId; readonly awaiting: Fiber.Fiber<JobStatus, unknown> }, total: number) =>
  Effect.gen(function*() {
    const status = yield* advanceUntilDone(job.awaiting)
    expect(status).toMatchObject({ state: "completed", completedChunks: total, failedChunks: 0 })
    expect(yield* stored(world.store, job.id)).toEqual(status)
    expect(world.runs.finished(job.id).size).toBe(total)
    yield* assertAlive(world.store, world.a, world.runs)
  })

/** Whether `fiber` is still waiting. */
const waiting = (fiber: Fiber.Fiber<unknown, unknown>) => Effect.map(Fiber.poll(fiber), Option.isNone)

/** A job of a manager that is gone (it never heartbeated): an orphan for a live manager to claim. */
const orphanIn = (store: Store) =>
  Effect.map(
    store.create({ id: "job_orphan" as JobId, spec: chunks(6), totalChunks: 6, owner: "gone" }),
    (status) => status.id
  )

const kinds: ReadonlyArray<Fault["kind"]> = ["fail", "die"]

describe.each(kinds)("a store that %ss", (kind) => {
  it.effect("on the heartbeat, for longer than staleAfter: the jobs stop here, are queued again once it answers, and complete", inWorld((world) =>
    Effect.gen(function*() {
      const { a, logs, runs } = world
      const job = yield* submitWatched(a, 60)
      yield* advance(50)
      a.controller.inject("heartbeat", { kind })
      // The last heartbeat that landed was at 0: ownership is proven until staleAfter.
      yield* advance(staleAfter - 50 + 10)
      expect(a.controller.injected("heartbeat")).toBeGreaterThanOrEqual(4)
      expect(runs.of(job.id).filter((run) => run.startedAt < staleAfter).length).toBeGreaterThanOrEqual(30)
      // From staleAfter on no chunk starts, and the chunks in flight are aborted at the next failed heartbeat.
      yield* advance(300)
      expect(runs.of(job.id).filter((run) => run.startedAt >= staleAfter)).toEqual([])
      expect(runs.inFlight(job.id)).toEqual([])
      const aborted = runs.of(job.id).filter((run) => run.outcome === "aborted")
      expect(aborted.length).toBeGreaterThan(0)
      for (const run of aborted) expect(run.endedAt).toBeLessThanOrEqual(staleAfter + heartbeatInterval)
      expect(logs.warnings(job.id).some((entry) => entry.text.includes("could not reach the store"))).toBe(true)
      expect(yield* waiting(job.awaiting)).toBe(true)

      a.controller.heal()
      yield* expectCompleted(world, job, 60)
    })))

  it.effect("on the requeue after an outage, after writing it (the answer is lost): the job is queued and completes", inWorld((world) =>
    Effect.gen(function*() {
      const { a, runs, store } = world
      const job = yield* submitWatched(a, 60)
      yield* advance(50)
      a.controller.inject("heartbeat", { kind })
      yield* advance(staleAfter + heartbeatInterval)
      expect(runs.inFlight(job.id)).toEqual([])
      // The store is back, but the answer to the requeue (running -> pending under a new lease) is lost.
      a.controller.heal()
      a.controller.inject("transition", { kind, to: ["pending"], afterApplying: true })
      yield* advance(heartbeatInterval * 2)
      expect(yield* stored(store, job.id)).toMatchObject({ state: "pending", owner: a.manager.owner })

      a.controller.heal()
      yield* expectCompleted(world, job, 60)
    })))

  it.effect("on the claim of orphans: the orphan is claimed and completed once it answers", inWorld((world) =>
    Effect.gen(function*() {
      const { a, logs, store } = world
      a.controller.inject("claimOrphans", { kind })
      const id = yield* orphanIn(store)
      yield* advance(heartbeatInterval * 5)
      expect(a.controller.injected("claimOrphans")).toBeGreaterThanOrEqual(4)
      expect(yield* stored(store, id)).toMatchObject({ state: "pending", owner: "gone" })
      expect(logs.warnings("recovery of orphaned jobs failed").length).toBeGreaterThanOrEqual(4)

      a.controller.heal()
      yield* expectCompleted(world, { id, awaiting: yield* Effect.fork(a.manager.awaitJob(id)) }, 6)
    })))

  it.effect("on the claim of orphans after writing it (the answer is lost): the manager finds the job it holds unrun, and runs it", inWorld((world) =>
    Effect.gen(function*() {
      const { a, store } = world
      a.controller.inject("claimOrphans", { kind, afterApplying: true })
      const id = yield* orphanIn(store)
      yield* advance(heartbeatInterval * 2)
      a.controller.heal()
      // Claimed in the store, but the manager never heard of it: it stays this manager's, unrun, until its
      // look at its own jobs finds it unchanged for staleAfter and queues it.
      expect(yield* stored(store, id)).toMatchObject({ state: "pending", owner: a.manager.owner })
      yield* expectCompleted(world, { id, awaiting: yield* Effect.fork(a.manager.awaitJob(id)) }, 6)
    })))

  it.effect("on the reads after a claim: the claimed job is run once it answers", inWorld((world) =>
    Effect.gen(function*() {
      const { a, logs, store } = world
      a.controller.inject(["get", "getSpec"], { kind })
      const id = yield* orphanIn(store)
      yield* advance(heartbeatInterval * 5)
      // Claimed (it is this manager's now), but it could not be read.
      expect(yield* stored(store, id)).toMatchObject({ state: "pending", owner: a.manager.owner })
      expect(logs.warnings(id).length).toBeGreaterThan(0)

      a.controller.heal()
      yield* expectCompleted(world, { id, awaiting: yield* Effect.fork(a.manager.awaitJob(id)) }, 6)
    })))

  it.effect("on the reads after a resume: the resumed job is run once it answers", inWorld((world) =>
    Effect.gen(function*() {
      const { a, logs, runs } = world
      const blocker = yield* a.manager.submitJob(blocking)
      const id = yield* a.manager.submitJob(chunks(6))
      expect((yield* a.manager.pauseJob(id)).state).toBe("paused")
      yield* a.manager.cancelJob(blocker)
      a.controller.inject(["get", "getSpec"], { kind })
      expect((yield* a.manager.resumeJob(id)).state).toBe("pending")
      yield* advance(1_000)
      expect(runs.of(id)).toEqual([])
      expect(logs.warnings(id).length).toBeGreaterThan(0)

      a.controller.heal()
      yield* expectCompleted(world, { id, awaiting: yield* Effect.fork(a.manager.awaitJob(id)) }, 6)
    }), { maxConcurrentJobs: 1 }))

  it.effect("on the start transition: the job starts once it answers", inWorld((world) =>
    Effect.gen(function*() {
      const { a, logs, runs, store } = world
      a.controller.inject("transition", { kind, to: ["running"] })
      const job = yield* submitWatched(a, 6)
      yield* advance(2_000)
      expect(a.controller.injected("transition")).toBeGreaterThanOrEqual(4)
      expect(runs.of(job.id)).toEqual([])
      expect(yield* stored(store, job.id)).toMatchObject({ state: "pending" })
      expect(logs.warnings(job.id).length).toBeGreaterThanOrEqual(4)
      expect(yield* waiting(job.awaiting)).toBe(true)

      a.controller.heal()
      yield* expectCompleted(world, job, 6)
    })))

  it.effect("on the start transition after writing it (the answer is lost): the job runs and completes", inWorld((world) =>
    Effect.gen(function*() {
      world.a.controller.inject("transition", { kind, to: ["running"], afterApplying: true })
      const job = yield* submitWatched(world.a, 6)
      yield* advance(500)
      world.a.controller.heal()
      yield* expectCompleted(world, job, 6)
    })))

  it.effect("on progress: the job runs on and its final counts are stored", inWorld((world) =>
    Effect.gen(function*() {
      const { a, logs } = world
      a.controller.inject("updateProgress", { kind })
      const job = yield* submitWatched(a, 6)
      yield* advance(100)
      expect(a.controller.injected("updateProgress")).toBeGreaterThan(0)
      expect(logs.warnings(job.id).length).toBeGreaterThan(0)
      a.controller.heal()
      yield* expectCompleted(world, job, 6)
    })))

  it.effect("on the end transition: awaitJob resolves only once the end is stored", inWorld((world) =>
    Effect.gen(function*() {
      const { a, logs, runs, store } = world
      a.controller.inject("transition", { kind, to: ["completed"] })
      const job = yield* submitWatched(a, 6)
      yield* advance(2_000)
      expect(runs.finished(job.id).size).toBe(6)
      expect(a.controller.injected("transition")).toBeGreaterThanOrEqual(4)
      expect(yield* stored(store, job.id)).toMatchObject({ state: "running" })
      expect(yield* waiting(job.awaiting)).toBe(true)
      expect(logs.warnings(job.id).some((entry) => entry.level === "ERROR")).toBe(true)

      a.controller.heal()
      yield* expectCompleted(world, job, 6)
    })))

  it.effect("on the end transition after writing it (the answer is lost): the job is completed once", inWorld((world) =>
    Effect.gen(function*() {
      world.a.controller.inject("transition", { kind, to: ["completed"], afterApplying: true })
      const job = yield* submitWatched(world.a, 6)
      yield* advance(1_000)
      world.a.controller.heal()
      yield* expectCompleted(world, job, 6)
    })))

  it.effect("on the end transition while the manager closes: the close does not wait for the store, and another manager completes the job", inWorld(({ a, runs, store }) =>
    Effect.gen(function*() {
      const id = yield* a.manager.submitJob(chunks(20))
      yield* advance(100)
      a.controller.inject("transition", { kind })
      const closing = yield* Effect.fork(a.close)
      yield* advance(100)
      expect(yield* waiting(closing)).toBe(false)
      // Its end could not be written: the job is still running under the manager that closed.
      expect(yield* stored(store, id)).toMatchObject({ state: "running", owner: a.manager.owner })

      const b = yield* startManager(store, runs, "b")
      const status = yield* advanceUntilDone(yield* Effect.fork(b.manager.awaitJob(id)))
      expect(status).toMatchObject({ state: "completed", completedChunks: 20, owner: b.manager.owner })
    })))

  it.effect("on stop requests: the listener starts again and hears the next request", inWorld(({ a, logs, runs, store }) =>
    Effect.gen(function*() {
      a.controller.inject("stopRequests", { kind })
      yield* advance(heartbeatInterval * 5)
      expect(a.controller.injected("stopRequests")).toBeGreaterThanOrEqual(4)
      expect(logs.warnings("listening for stop requests failed").length).toBeGreaterThanOrEqual(4)
      a.controller.heal()
      yield* advance(heartbeatInterval * 2)
      yield* assertAlive(store, a, runs)
    })))
})

describe("a store that is down for longer than staleAfter", () => {
  it.effect("its manager stops its jobs (no chunk starts, the chunks in flight are aborted), queues them again once it is back, and they complete", inWorld((world) =>
    Effect.gen(function*() {
      const { a, logs, runs } = world
      const jobs = [yield* submitWatched(a, 40), yield* submitWatched(a, 40)]
      yield* advance(50)
      a.controller.inject("all", { kind: "die" })
      yield* advance(1_000)
      for (const { awaiting, id } of jobs) {
        expect(runs.of(id).filter((run) => run.startedAt >= staleAfter)).toEqual([])
        expect(runs.inFlight(id)).toEqual([])
        expect(runs.of(id).some((run) => run.outcome === "aborted")).toBe(true)
        expect(logs.warnings(id).length).toBeGreaterThan(0)
        expect(yield* waiting(awaiting)).toBe(true)
      }

      a.controller.heal()
      for (const job of jobs) yield* expectCompleted(world, job, 40)
    })))

  it.effect("a healthy manager on the same store takes its jobs over; no chunk runs in both at once", inWorld((world) =>
    Effect.gen(function*() {
      const { a, runs, store } = world
      const b = yield* startManager(store, runs, "b")
      const job = yield* submitWatched(a, 60)
      const faultAt = 100
      yield* advance(faultAt)
      a.controller.inject("all", { kind: "fail" })
      const proofExpires = Option.getOrThrow(yield* store.lastHeartbeat(a.manager.owner)) + staleAfter
      const status = yield* advanceUntilDone(yield* Effect.fork(b.manager.awaitJob(job.id)))
      expect(status).toMatchObject({ state: "completed", completedChunks: 60, owner: b.manager.owner })
      const onA = runs.of(job.id, "a")
      const onB = runs.of(job.id, "b")
      expect(onB.length).toBeGreaterThan(0)
      // A stopped starting chunks when its ownership expired, and ended those in flight before B began.
      const takeover = Math.min(...onB.map((run) => run.startedAt))
      expect(onA.filter((run) => run.startedAt >= proofExpires)).toEqual([])
      expect(onA.filter((run) => run.endedAt === undefined || run.endedAt > takeover)).toEqual([])
      // Chunks A finished while the store was up are in the checkpoint: B does not run them again.
      const recorded = new Set(onA.filter((run) => run.endedAt! < faultAt).map((run) => run.chunkId))
      expect(recorded.size).toBeGreaterThan(0)
      expect(onB.filter((run) => recorded.has(run.chunkId))).toEqual([])

      // Once back, A leaves the job to B: it runs nothing more of it, and its waiter sees the end.
      a.controller.heal()
      yield* expectCompleted(world, job, 60)
      expect(runs.of(job.id, "a")).toEqual(onA)
    })))
})
