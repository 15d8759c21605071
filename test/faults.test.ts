/**
 * Store faults never wedge a job (issue 9, item 2). A store that fails (`RepositoryError`) or dies (a
 * defect, as @effect/sql does on a failed COMMIT) on each path a manager uses (heartbeat, claim of orphans,
 * start transition, progress, end transition, stop requests) while a job runs: the job reaches its terminal
 * state once the store answers again, `awaitJob` resolves only after that state is stored, the fault is
 * logged at WARNING/ERROR naming the job, and the manager's loops are still alive afterwards. The memory
 * store runs under the TestClock; the SQL flush path runs on a real SQLite file and PostgreSQL.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as ChunkWorkerModule from "../src/ChunkWorker.js"
import { ChunkWorker } from "../src/ChunkWorker.js"
import { RangeSet } from "../src/internal/rangeSet.js"
import type { JobId } from "../src/Job.js"
import * as JobClient from "../src/JobClient.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import { JobRepository } from "../src/JobRepository.js"
import * as JobRepositoryModule from "../src/JobRepository.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import { CapturedLogs } from "./support/capturedLogs.js"
import { ChunkRuns } from "./support/chunkRuns.js"
import type { Fault } from "./support/faultyRepository.js"
import * as Faulty from "./support/faultyRepository.js"
import { eventually, settle } from "./util.js"

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

/** A manager called `runner` on `store`, seen through a store it can break; it lives until `close`. */
const startManager = (
  store: Store,
  runs: ChunkRuns,
  runner: string,
  options: JobManagerModule.ManagerOptions = {}
): Effect.Effect<Running, unknown> =>
  Effect.gen(function*() {
    const controller = new Faulty.FaultController()
    const scope = yield* Scope.make()
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

/** Runs `body` with the logs of everything it builds captured. */
const withLogs = <A, E, R>(body: (logs: CapturedLogs) => Effect.Effect<A, E, R>) => {
  const logs = new CapturedLogs()
  return Effect.provide(body(logs), logs.layer)
}

const kinds: ReadonlyArray<Fault["kind"]> = ["fail", "die"]

describe.each(kinds)("a store that %ss", (kind) => {
  it.effect("on the heartbeat, for longer than staleAfter: the jobs stop here, are queued again once it answers, and complete", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        const id = yield* running.manager.submitJob(chunks(60))
        const awaiting = yield* Effect.fork(running.manager.awaitJob(id))
        yield* advance(50)
        running.controller.inject("heartbeat", { kind })
        // The last heartbeat that landed was at 0: ownership is proven until staleAfter.
        yield* advance(staleAfter - 50 + 10)
        expect(running.controller.injected("heartbeat")).toBeGreaterThanOrEqual(4)
        const startedBefore = runs.of(id).filter((run) => run.startedAt < staleAfter)
        expect(startedBefore.length).toBeGreaterThanOrEqual(30)
        // From staleAfter on no chunk starts, and the chunks in flight are aborted at the next failed heartbeat.
        yield* advance(300)
        expect(runs.of(id).filter((run) => run.startedAt >= staleAfter)).toEqual([])
        expect(runs.inFlight(id)).toEqual([])
        const aborted = runs.of(id).filter((run) => run.outcome === "aborted")
        expect(aborted.length).toBeGreaterThan(0)
        for (const run of aborted) expect(run.endedAt).toBeLessThanOrEqual(staleAfter + heartbeatInterval)
        expect(logs.warnings(id).some((entry) => entry.text.includes("could not reach the store"))).toBe(true)
        expect(Option.isNone(yield* Fiber.poll(awaiting))).toBe(true)

        running.controller.heal()
        const status = yield* advanceUntilDone(awaiting)
        expect(status).toMatchObject({ state: "completed", completedChunks: 60, failedChunks: 0 })
        expect(yield* stored(store, id)).toMatchObject({ state: "completed", completedChunks: 60 })
        expect(runs.finished(id).size).toBe(60)
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the requeue after an outage, after writing it (the answer is lost): the job is queued and completes", () =>
    withLogs(() =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        const id = yield* running.manager.submitJob(chunks(60))
        const awaiting = yield* Effect.fork(running.manager.awaitJob(id))
        yield* advance(50)
        running.controller.inject("heartbeat", { kind })
        yield* advance(staleAfter + heartbeatInterval)
        expect(runs.inFlight(id)).toEqual([])
        // The store is back, but the answer to the requeue (running -> pending under a new lease) is lost.
        running.controller.heal()
        running.controller.inject("transition", { kind, to: ["pending"], afterApplying: true })
        yield* advance(heartbeatInterval * 2)
        expect(yield* stored(store, id)).toMatchObject({ state: "pending", owner: running.manager.owner })
        running.controller.heal()
        const status = yield* advanceUntilDone(awaiting)
        expect(status).toMatchObject({ state: "completed", completedChunks: 60 })
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the claim of orphans: the orphan is claimed and completed once it answers", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        running.controller.inject("claimOrphans", { kind })
        // A job of a manager that is gone (it never heartbeated).
        const orphan = yield* store.create({ id: "job_orphan" as JobId, spec: chunks(6), totalChunks: 6, owner: "gone" })
        yield* advance(heartbeatInterval * 5)
        expect(running.controller.injected("claimOrphans")).toBeGreaterThanOrEqual(4)
        expect(yield* stored(store, orphan.id)).toMatchObject({ state: "pending", owner: "gone" })
        expect(logs.warnings("recovery of orphaned jobs failed").length).toBeGreaterThanOrEqual(4)

        running.controller.heal()
        const status = yield* advanceUntilDone(yield* Effect.fork(running.manager.awaitJob(orphan.id)))
        expect(status).toMatchObject({ state: "completed", completedChunks: 6, owner: running.manager.owner })
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the reads after a claim: the claimed job is run once it answers", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        running.controller.inject(["get", "getSpec"], { kind })
        const orphan = yield* store.create({ id: "job_orphan" as JobId, spec: chunks(6), totalChunks: 6, owner: "gone" })
        yield* advance(heartbeatInterval * 5)
        // Claimed (it is this manager's now), but its spec could not be read.
        expect(yield* stored(store, orphan.id)).toMatchObject({ state: "pending", owner: running.manager.owner })
        expect(logs.warnings().length).toBeGreaterThan(0)

        running.controller.heal()
        const status = yield* advanceUntilDone(yield* Effect.fork(running.manager.awaitJob(orphan.id)))
        expect(status).toMatchObject({ state: "completed", completedChunks: 6 })
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the reads after a resume: the resumed job is run once it answers", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a", { maxConcurrentJobs: 1 })
        const blocker = yield* running.manager.submitJob(blocking)
        const id = yield* running.manager.submitJob(chunks(6))
        expect((yield* running.manager.pauseJob(id)).state).toBe("paused")
        yield* running.manager.cancelJob(blocker)
        running.controller.inject(["get", "getSpec"], { kind })
        expect((yield* running.manager.resumeJob(id)).state).toBe("pending")
        yield* advance(1_000)
        expect(runs.of(id)).toEqual([])
        expect(logs.warnings(id).length).toBeGreaterThan(0)

        running.controller.heal()
        const status = yield* advanceUntilDone(yield* Effect.fork(running.manager.awaitJob(id)))
        expect(status).toMatchObject({ state: "completed", completedChunks: 6 })
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the start transition: the job starts once it answers", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        running.controller.inject("transition", { kind, to: ["running"] })
        const id = yield* running.manager.submitJob(chunks(6))
        const awaiting = yield* Effect.fork(running.manager.awaitJob(id))
        yield* advance(2_000)
        expect(running.controller.injected("transition")).toBeGreaterThanOrEqual(4)
        expect(runs.of(id)).toEqual([])
        expect(yield* stored(store, id)).toMatchObject({ state: "pending" })
        expect(logs.warnings(id).length).toBeGreaterThanOrEqual(4)
        expect(Option.isNone(yield* Fiber.poll(awaiting))).toBe(true)

        running.controller.heal()
        const status = yield* advanceUntilDone(awaiting)
        expect(status).toMatchObject({ state: "completed", completedChunks: 6 })
        expect(runs.of(id)).toHaveLength(6)
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the start transition after writing it (the answer is lost): the job runs and completes", () =>
    withLogs(() =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        running.controller.inject("transition", { kind, to: ["running"], afterApplying: true })
        const id = yield* running.manager.submitJob(chunks(6))
        const awaiting = yield* Effect.fork(running.manager.awaitJob(id))
        yield* advance(500)
        running.controller.heal()
        const status = yield* advanceUntilDone(awaiting)
        expect(status).toMatchObject({ state: "completed", completedChunks: 6 })
        expect(runs.of(id)).toHaveLength(6)
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on progress: the job runs on and its final counts are stored", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        running.controller.inject("updateProgress", { kind })
        const id = yield* running.manager.submitJob(chunks(6))
        const awaiting = yield* Effect.fork(running.manager.awaitJob(id))
        yield* advance(100)
        expect(running.controller.injected("updateProgress")).toBeGreaterThan(0)
        expect(logs.warnings(id).length).toBeGreaterThan(0)
        running.controller.heal()
        const status = yield* advanceUntilDone(awaiting)
        expect(status).toMatchObject({ state: "completed", completedChunks: 6, failedChunks: 0 })
        expect(yield* stored(store, id)).toMatchObject({ state: "completed", completedChunks: 6 })
        expect(runs.of(id)).toHaveLength(6)
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the end transition: awaitJob resolves only once the end is stored", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        running.controller.inject("transition", { kind, to: ["completed"] })
        const id = yield* running.manager.submitJob(chunks(6))
        const awaiting = yield* Effect.fork(running.manager.awaitJob(id))
        yield* advance(2_000)
        expect(runs.finished(id).size).toBe(6)
        expect(running.controller.injected("transition")).toBeGreaterThanOrEqual(4)
        expect(yield* stored(store, id)).toMatchObject({ state: "running" })
        expect(Option.isNone(yield* Fiber.poll(awaiting))).toBe(true)
        expect(logs.warnings(id).some((entry) => entry.level === "ERROR")).toBe(true)

        running.controller.heal()
        const status = yield* advanceUntilDone(awaiting)
        expect(status).toMatchObject({ state: "completed", completedChunks: 6 })
        expect(yield* stored(store, id)).toEqual(status)
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the end transition after writing it (the answer is lost): the job is completed once", () =>
    withLogs(() =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        running.controller.inject("transition", { kind, to: ["completed"], afterApplying: true })
        const id = yield* running.manager.submitJob(chunks(6))
        const awaiting = yield* Effect.fork(running.manager.awaitJob(id))
        yield* advance(1_000)
        running.controller.heal()
        const status = yield* advanceUntilDone(awaiting)
        expect(status).toMatchObject({ state: "completed", completedChunks: 6 })
        expect(yield* stored(store, id)).toEqual(status)
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("on the end transition while the manager closes: the close does not wait for the store, and another manager completes the job", () =>
    withLogs(() =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const a = yield* startManager(store, runs, "a")
        const id = yield* a.manager.submitJob(chunks(20))
        yield* advance(100)
        a.controller.inject("transition", { kind })
        const closing = yield* Effect.fork(a.close)
        yield* advance(100)
        expect(Option.isSome(yield* Fiber.poll(closing))).toBe(true)
        // Its end could not be written: the job is still running under the manager that closed.
        expect(yield* stored(store, id)).toMatchObject({ state: "running", owner: a.manager.owner })

        const b = yield* startManager(store, runs, "b")
        const status = yield* advanceUntilDone(yield* Effect.fork(b.manager.awaitJob(id)))
        expect(status).toMatchObject({ state: "completed", completedChunks: 20, owner: b.manager.owner })
      })
    ))

  it.effect("on stop requests: the listener starts again and hears the next request", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        running.controller.inject("stopRequests", { kind })
        yield* advance(heartbeatInterval * 5)
        expect(running.controller.injected("stopRequests")).toBeGreaterThanOrEqual(4)
        expect(logs.warnings("listening for stop requests failed").length).toBeGreaterThanOrEqual(4)
        running.controller.heal()
        yield* advance(heartbeatInterval * 2)
        yield* assertAlive(store, running, runs)
      })
    ))
})

describe("a store that is down for longer than staleAfter", () => {
  it.effect("its manager stops its jobs (no chunk starts, the chunks in flight are aborted), queues them again once it is back, and they complete", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const running = yield* startManager(store, runs, "a")
        const ids = [yield* running.manager.submitJob(chunks(40)), yield* running.manager.submitJob(chunks(40))]
        const awaiting = yield* Effect.fork(Effect.all(ids.map((id) => running.manager.awaitJob(id))))
        yield* advance(50)
        running.controller.inject("all", { kind: "die" })
        yield* advance(1_000)
        for (const id of ids) {
          expect(runs.of(id).filter((run) => run.startedAt >= staleAfter)).toEqual([])
          expect(runs.inFlight(id)).toEqual([])
          expect(runs.of(id).some((run) => run.outcome === "aborted")).toBe(true)
          expect(logs.warnings(id).length).toBeGreaterThan(0)
        }
        expect(Option.isNone(yield* Fiber.poll(awaiting))).toBe(true)

        running.controller.heal()
        const statuses = yield* advanceUntilDone(awaiting)
        for (const [index, id] of ids.entries()) {
          expect(statuses[index]).toMatchObject({ state: "completed", completedChunks: 40 })
          expect(yield* stored(store, id)).toMatchObject({ state: "completed", completedChunks: 40 })
          expect(runs.finished(id).size).toBe(40)
        }
        yield* assertAlive(store, running, runs)
      })
    ))

  it.effect("a healthy manager on the same store takes its jobs over; no chunk runs in both at once", () =>
    withLogs(() =>
      Effect.gen(function*() {
        const store = yield* JobRepositoryModule.makeMemory
        const runs = new ChunkRuns()
        const a = yield* startManager(store, runs, "a")
        const b = yield* startManager(store, runs, "b")
        const id = yield* a.manager.submitJob(chunks(60))
        const awaitingOnA = yield* Effect.fork(a.manager.awaitJob(id))
        const faultAt = 100
        yield* advance(faultAt)
        a.controller.inject("all", { kind: "fail" })
        const proofExpires = Option.getOrThrow(yield* store.lastHeartbeat(a.manager.owner)) + staleAfter
        const status = yield* advanceUntilDone(yield* Effect.fork(b.manager.awaitJob(id)))
        expect(status).toMatchObject({ state: "completed", completedChunks: 60, owner: b.manager.owner })
        const onA = runs.of(id, "a")
        const onB = runs.of(id, "b")
        expect(onB.length).toBeGreaterThan(0)
        // A stopped starting chunks when its ownership expired, and aborted those in flight before B began.
        const takeover = Math.min(...onB.map((run) => run.startedAt))
        expect(onA.filter((run) => run.startedAt >= proofExpires)).toEqual([])
        expect(onA.filter((run) => run.endedAt === undefined || run.endedAt > takeover)).toEqual([])
        // Chunks A finished while the store was up are in the checkpoint: B does not run them again.
        const recorded = new Set(onA.filter((run) => run.endedAt! < faultAt).map((run) => run.chunkId))
        expect(recorded.size).toBeGreaterThan(0)
        expect(onB.filter((run) => recorded.has(run.chunkId))).toEqual([])
        expect(new Set([...runs.finished(id)]).size).toBe(60)

        // Once back, A leaves the job to B: it runs nothing more of it, and its waiter sees the end.
        a.controller.heal()
        const seenByA = yield* advanceUntilDone(awaitingOnA)
        expect(seenByA).toEqual(status)
        yield* advance(heartbeatInterval * 3)
        expect(runs.of(id, "a")).toEqual(onA)
        yield* assertAlive(store, a, runs)
      })
    ))
})

// --- The SQL store's progress flush, on real databases (live clock) -----------------------------------------

const pgUrl = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"

/** A fresh temporary directory, removed when the scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "effect-jobs-faults-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A manager on `store`, built in the current scope; chunks sleep `millis` (live clock) and are counted. */
const sqlManager = <E>(store: Layer.Layer<JobRepository, E>, millis: number, options: JobManagerModule.ManagerOptions = {}) =>
  Effect.gen(function*() {
    const counts = { finished: 0 }
    const context = yield* Layer.build(JobManagerModule.layer({ concurrency: 2, heartbeatInterval: 100, staleAfter: 2_000, ...options }).pipe(
      Layer.provide(store),
      Layer.provide(ChunkWorkerModule.layer(() => Effect.zipRight(Effect.sleep(millis), Effect.sync(() => counts.finished++))))
    ))
    return { manager: Context.get(context, JobManager), counts }
  })

describe("the SQL store's progress flush", () => {
  it.scopedLive("on SQLite, a flush that fails keeps the progress buffered, writes it once healed, and nothing dies", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const filename = join(yield* tempDir, "jobs.db")
        const { manager } = yield* sqlManager(SqlJobRepository.layerSqlite({ filename, flushInterval: 20 }), 5)
        // Another connection breaks every write of progress (an UPDATE that keeps the state) while the switch is on.
        const raw = yield* Effect.acquireRelease(Effect.sync(() => new Database(filename)), (db) => Effect.sync(() => db.close()))
        raw.exec(`CREATE TABLE fault_switch (active INTEGER NOT NULL);
          INSERT INTO fault_switch VALUES (0);
          CREATE TRIGGER fault_flush BEFORE UPDATE ON effect_jobs
            WHEN (SELECT active FROM fault_switch) = 1 AND NEW.state = OLD.state
            BEGIN SELECT RAISE(ABORT, 'injected'); END;`)
        const row = (id: string) =>
          raw.prepare("SELECT state, completed_chunks, checkpoint FROM effect_jobs WHERE id = ?").get(id) as {
            readonly state: string
            readonly completed_chunks: number
            readonly checkpoint: string | null
          }
        const total = 400
        const id = yield* manager.submitJob(chunks(total))
        yield* eventually(() => row(id).completed_chunks >= 20, 5_000)
        raw.exec("UPDATE fault_switch SET active = 1")
        const frozen = row(id).completed_chunks
        yield* Effect.sleep(300)
        // Nothing reached the file; this process still sees its progress.
        expect(row(id).completed_chunks).toBe(frozen)
        const seen = yield* manager.getJob(id)
        expect(seen.state).toBe("running")
        expect(seen.completedChunks).toBeGreaterThan(frozen + 10)
        expect(logs.warnings(id).length).toBeGreaterThan(0)

        raw.exec("UPDATE fault_switch SET active = 0")
        // The flush is still alive: the buffered progress lands while the job runs.
        yield* eventually(() => row(id).completed_chunks >= seen.completedChunks, 5_000)
        expect(row(id).state).toBe("running")
        const status = yield* manager.awaitJob(id)
        expect(status).toMatchObject({ state: "completed", completedChunks: total })
        expect(row(id)).toMatchObject({ state: "completed", completed_chunks: total })
        expect(RangeSet.parse(row(id).checkpoint!)?.size).toBe(total)
      })
    ), 20_000)

  it.scopedLive("on PostgreSQL, closing the manager during a flush stores the final progress", () =>
    Effect.gen(function*() {
      const schema = `ej_faults_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`
      const admin = yield* Layer.build(PgClient.layer({ url: Redacted.make(pgUrl) })).pipe(
        Effect.map((context) => Context.get(context, SqlClient.SqlClient))
      )
      yield* Effect.addFinalizer(() => Effect.orDie(admin`DROP SCHEMA IF EXISTS ${admin(schema)} CASCADE`))
      const scope = yield* Scope.make()
      const { counts, manager } = yield* Scope.extend(
        sqlManager(SqlJobRepository.layerPg({ url: pgUrl, schema, flushInterval: 20 }), 2, {
          concurrency: 4,
          shutdownGracePeriod: 5_000
        }),
        scope
      )
      const jobs = admin(`${schema}.effect_jobs`)
      const row = (id: string) =>
        Effect.map(
          admin<{ state: string; completed_chunks: number; checkpoint: string | null }>`
            SELECT state, completed_chunks, checkpoint FROM ${jobs} WHERE id = ${id}`,
          (rows) => rows[0]!
        )
      const id = yield* manager.submitJob(chunks(100_000))
      yield* Effect.repeat(row(id), { until: (stored) => stored.completed_chunks >= 50, schedule: Schedule.spaced(10) })

      // Another connection locks the job's row: the next flush waits on it, inside its transaction.
      const release = yield* Deferred.make<void>()
      const locked = yield* Deferred.make<void>()
      yield* Effect.forkScoped(admin.withTransaction(
        admin`SELECT id FROM ${jobs} WHERE id = ${id} FOR UPDATE`.pipe(
          Effect.zipRight(Deferred.succeed(locked, undefined)),
          Effect.zipRight(Deferred.await(release))
        )
      ))
      yield* Deferred.await(locked)
      const flushWaits = admin<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query LIKE ${`%${schema}%`}`
      yield* Effect.repeat(flushWaits, { until: (rows) => Number(rows[0]!.n) > 0, schedule: Schedule.spaced(10) })

      // Close the manager (and its store) while the flush waits; let the flush through a little later.
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* Effect.sleep(300)
      expect(Option.isNone(yield* Fiber.poll(closing))).toBe(true)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(closing)

      const stored = yield* row(id)
      expect(stored.state).toBe("pending")
      expect(Number(stored.completed_chunks)).toBe(counts.finished)
      expect(RangeSet.parse(stored.checkpoint!)?.size).toBe(counts.finished)
    }), 20_000)
})
