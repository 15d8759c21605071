/**
 * The contract every `JobRepository` layer passes. Each test builds a fresh, empty store from `makeLayer()`;
 * time comes from the TestClock, starting at {@link base}.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import * as fc from "effect/FastCheck"
import type * as Scope from "effect/Scope"
import { RangeSet } from "../../src/internal/rangeSet.js"
import type { JobSpec, JobState, JobStatus } from "../../src/Job.js"
import { canTransition, isTerminal, JobId, totalChunks } from "../../src/Job.js"
import type { NewJob, StopRequest } from "../../src/JobRepository.js"
import { JobRepository } from "../../src/JobRepository.js"

/** The TestClock time (millis) at which every contract test starts. */
export const base = Date.UTC(2025, 0, 1, 12, 0, 0)

export const allStates: ReadonlyArray<JobState> = ["pending", "running", "paused", "completed", "failed", "cancelled"]

export const jobId = (value: string): JobId => Schema.decodeSync(JobId)(value)

export const chunkSpec = (chunks: number, name?: string): JobSpec => ({
  ...(name === undefined ? {} : { name }),
  chunks: Array.from({ length: chunks }, (_, index) => ({ id: index, payload: { frame: index } }))
})

export const newJob = (id: string, spec: JobSpec = chunkSpec(10)): NewJob => ({
  id: jobId(id),
  spec,
  totalChunks: totalChunks(spec)
})

/** A status as plain data, times as millis, so `toEqual` compares every field (absent = undefined). */
export const view = (status: JobStatus) => ({
  id: status.id,
  name: status.name,
  state: status.state,
  totalChunks: status.totalChunks,
  completedChunks: status.completedChunks,
  failedChunks: status.failedChunks,
  progress: status.progress,
  error: status.error,
  createdAt: status.createdAt.getTime(),
  updatedAt: status.updatedAt.getTime(),
  startedAt: status.startedAt?.getTime(),
  finishedAt: status.finishedAt?.getTime(),
  owner: status.owner,
  phase: status.phase,
  retryOf: status.retryOf
})

const pathTo: { readonly [S in JobState]: ReadonlyArray<JobState> } = {
  pending: [],
  running: ["running"],
  paused: ["running", "paused"],
  completed: ["running", "completed"],
  failed: ["running", "failed"],
  cancelled: ["running", "cancelled"]
}

/** Moves a pending job to `target` along legal transitions, checking that each one applies. */
export const moveTo = (id: JobId, target: JobState) =>
  Effect.gen(function*() {
    const repo = yield* JobRepository
    for (const to of pathTo[target]) {
      const result = yield* repo.transition(id, allStates, to)
      assert.isTrue(result.applied, `move to ${to}`)
    }
  })

const getView = (id: JobId) =>
  Effect.gen(function*() {
    const status = yield* (yield* JobRepository).get(id)
    assert.isTrue(Option.isSome(status), `job ${id} exists`)
    return view(Option.getOrThrow(status))
  })

const listIds = (query: Parameters<JobRepository["Type"]["list"]>[0]) =>
  Effect.map(Effect.flatMap(JobRepository, (repo) => repo.list(query)), (page) => ({
    ids: page.jobs.map((status) => status.id as string),
    nextCursor: page.nextCursor
  }))

/** Every page of a listing, following cursors; `between` runs before each page after the first. */
const allPages = (
  query: Parameters<JobRepository["Type"]["list"]>[0],
  between: (page: number) => Effect.Effect<void, unknown, JobRepository> = () => Effect.void
) =>
  Effect.gen(function*() {
    const pages: Array<ReadonlyArray<string>> = []
    let cursor: string | undefined = undefined
    do {
      if (pages.length > 0) yield* between(pages.length)
      const page: { ids: Array<string>; nextCursor: string | undefined } = yield* listIds(
        cursor === undefined ? query : { ...query, cursor }
      )
      pages.push(page.ids)
      cursor = page.nextCursor
      assert.isBelow(pages.length, 100, "paging ends")
    } while (cursor !== undefined)
    return pages
  })

export const rangeSet = (...values: ReadonlyArray<number>): RangeSet => {
  const set = RangeSet.empty()
  for (const value of values) set.add(value)
  return set
}

/** Creates a job owned by `owner` (none when undefined) and moves it to `running`. */
export const startJob = (id: string, owner: string | undefined) =>
  Effect.gen(function*() {
    const repo = yield* JobRepository
    yield* repo.create({ ...newJob(id), ...(owner === undefined ? {} : { owner }) })
    yield* moveTo(jobId(id), "running")
    return jobId(id)
  })

/**
 * Runs a stop request stream in the scope, collecting what it emits into the returned array.
 */
export const collectStops = (): Effect.Effect<Array<StopRequest>, never, JobRepository | Scope.Scope> =>
  Effect.gen(function*() {
    const repo = yield* JobRepository
    const received: Array<StopRequest> = []
    yield* repo.stopRequests.pipe(
      Stream.runForEach((request) => Effect.sync(() => received.push(request))),
      Effect.orDie,
      Effect.forkScoped
    )
    // Lets the stream subscribe (the memory store only delivers requests made after that).
    for (let turn = 0; turn < 10; turn++) yield* Effect.yieldNow()
    return received
  })

/**
 * Waits until `done()` holds: moves the TestClock in small steps (a store may look for changes on a timer)
 * and lets real I/O run in between. Fails the test after 300 steps (6 seconds of TestClock time).
 */
export const eventually = (done: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let step = 0; step < 300; step++) {
      if (done()) return
      yield* TestClock.adjust("20 millis")
      yield* TestServices.provideLive(Effect.sleep("5 millis"))
    }
    assert.fail(`${what}: not reached`)
  })

export const jobRepositoryContract = (
  name: string,
  makeLayer: () => Layer.Layer<JobRepository, unknown>
) =>
  describe(name, () => {
    const test = (title: string, body: Effect.Effect<void, unknown, JobRepository>) =>
      it.effect(title, () =>
        // The clock is set before the store is built: a store's periodic fibers would otherwise wake for
        // every period between the epoch and `base`.
        Effect.zipRight(TestClock.setTime(base), Effect.provide(body, makeLayer())))

    describe("create, get, getSpec", () => {
      test(
        "create stores a pending job; get returns it; getSpec returns the spec as given (a range plan stays a plan)",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const spec: JobSpec = {
            name: "render",
            metadata: { scene: "intro", fps: 24, tags: ["a", null, true], nested: { depth: { value: 1.5 } } },
            chunks: { start: 0, end: 999_999, size: 10 }
          }
          const expected = {
            id: "job_range",
            name: "render",
            state: "pending",
            totalChunks: 100_000,
            completedChunks: 0,
            failedChunks: 0,
            progress: 0,
            error: undefined,
            createdAt: base,
            updatedAt: base,
            startedAt: undefined,
            finishedAt: undefined
          }
          expect(view(yield* repo.create(newJob("job_range", spec)))).toEqual(expected)
          yield* TestClock.adjust("1 second")
          expect(yield* getView(jobId("job_range"))).toEqual(expected)
          const stored = Option.getOrThrow(yield* repo.getSpec(jobId("job_range")))
          expect(stored).toEqual(spec)
          expect(Array.isArray(stored.chunks)).toBe(false)
        })
      )

      test(
        "an explicit chunk list and a spec without name round-trip",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const spec: JobSpec = {
            chunks: [
              { id: 0, payload: { start: 0, end: 9 } },
              { id: 7, payload: ["x", 1, false, null] },
              { id: 3, payload: "three" }
            ]
          }
          const created = yield* repo.create(newJob("job_list", spec))
          expect(created.name).toBeUndefined()
          expect(created.totalChunks).toBe(3)
          expect(Option.getOrThrow(yield* repo.getSpec(jobId("job_list")))).toEqual(spec)
        })
      )

      test(
        "createMany stores every job, in order, or none: an id already stored or repeated stores nothing",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const ids = Array.from({ length: 1_200 }, (_, index) => `job_many_${String(index).padStart(4, "0")}`)
          const created = yield* repo.createMany(ids.map((id, index) => newJob(id, chunkSpec(1 + (index % 3)))))
          expect(created.map((status) => [status.id, status.state, status.totalChunks])).toEqual(
            ids.map((id, index) => [id, "pending", 1 + (index % 3)])
          )
          expect(Option.getOrThrow(yield* repo.get(jobId(ids[1_199]!))).totalChunks).toBe(3)
          expect(Option.getOrThrow(yield* repo.getSpec(jobId(ids[600]!)))).toEqual(chunkSpec(1))

          const stored = yield* Effect.flip(repo.createMany([newJob("job_fresh_1"), newJob(ids[5]!), newJob("job_fresh_2")]))
          expect(stored).toMatchObject({ _tag: "RepositoryError", detail: expect.stringContaining(ids[5]!) })
          const repeated = yield* Effect.flip(repo.createMany([newJob("job_fresh_3"), newJob("job_fresh_3")]))
          expect(repeated).toMatchObject({ _tag: "RepositoryError", detail: expect.stringContaining("job_fresh_3") })
          for (const id of ["job_fresh_1", "job_fresh_2", "job_fresh_3"]) {
            expect(Option.isNone(yield* repo.get(jobId(id)))).toBe(true)
          }
          expect(yield* repo.createMany([])).toEqual([])
        })
      )

      test(
        "concurrent creates each get their own answer: a duplicate fails alone, the others are stored",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob("job_taken"))
          const ids = [...Array.from({ length: 40 }, (_, index) => `job_burst_${index}`), "job_taken", "job_burst_7"]
          const outcomes = yield* Effect.forEach(ids, (id) => Effect.either(repo.create(newJob(id, chunkSpec(2)))), {
            concurrency: "unbounded"
          })
          const failed = ids.filter((_, index) => outcomes[index]!._tag === "Left")
          // The first create of `job_burst_7` is stored; the second is a duplicate, like `job_taken`.
          expect(failed).toEqual(["job_taken", "job_burst_7"])
          for (const id of ids) expect(Option.isSome(yield* repo.get(jobId(id)))).toBe(true)
          expect(Option.getOrThrow(yield* repo.get(jobId("job_taken"))).totalChunks).toBe(10)
        })
      )

      test(
        "get and getSpec of an unknown id are none",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob("job_known"))
          expect(Option.isNone(yield* repo.get(jobId("job_unknown")))).toBe(true)
          expect(Option.isNone(yield* repo.getSpec(jobId("job_unknown")))).toBe(true)
        })
      )
    })

    describe("transition", () => {
      test(
        "applies legal moves and sets startedAt once, finishedAt on a terminal state, counts from the patch",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_life")
          yield* repo.create(newJob("job_life", chunkSpec(4, "life")))
          const step = (from: ReadonlyArray<JobState>, to: JobState, patch?: Parameters<typeof repo.transition>[3]) =>
            Effect.gen(function*() {
              yield* TestClock.adjust("1 second")
              const result = yield* repo.transition(id, from, to, patch)
              assert.isTrue(result.applied, `${from} -> ${to}`)
              return view(result.status)
            })
          const t = (seconds: number) => base + seconds * 1000
          const common = { id: "job_life", name: "life", totalChunks: 4, error: undefined, createdAt: base }

          expect(yield* step(["pending"], "running")).toEqual({
            ...common,
            state: "running",
            completedChunks: 0,
            failedChunks: 0,
            progress: 0,
            updatedAt: t(1),
            startedAt: t(1),
            finishedAt: undefined
          })
          expect(yield* step(["running"], "paused", { completedChunks: 1 })).toEqual({
            ...common,
            state: "paused",
            completedChunks: 1,
            failedChunks: 0,
            progress: 25,
            updatedAt: t(2),
            startedAt: t(1),
            finishedAt: undefined
          })
          // Resuming queues the job again; running it again keeps the first startedAt.
          expect(yield* step(["paused"], "pending")).toEqual({
            ...common,
            state: "pending",
            completedChunks: 1,
            failedChunks: 0,
            progress: 25,
            updatedAt: t(3),
            startedAt: t(1),
            finishedAt: undefined
          })
          expect(yield* step(["pending"], "running")).toMatchObject({ state: "running", updatedAt: t(4), startedAt: t(1) })
          const completed = {
            ...common,
            state: "completed",
            completedChunks: 3,
            failedChunks: 1,
            progress: 100,
            updatedAt: t(5),
            startedAt: t(1),
            finishedAt: t(5)
          }
          expect(yield* step(["running"], "completed", { completedChunks: 3, failedChunks: 1 })).toEqual(completed)
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toEqual(completed)
        })
      )

      test(
        "a failure records its error message; cancelling a pending job never sets startedAt",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob("job_fail"))
          yield* repo.create(newJob("job_cancel"))
          yield* TestClock.adjust("1 second")
          yield* moveTo(jobId("job_fail"), "running")
          const failed = yield* repo.transition(jobId("job_fail"), ["running"], "failed", {
            error: "chunk 3 failed: boom",
            completedChunks: 2,
            failedChunks: 1
          })
          assert.isTrue(failed.applied)
          expect(view(failed.status)).toMatchObject({
            state: "failed",
            error: "chunk 3 failed: boom",
            completedChunks: 2,
            failedChunks: 1,
            progress: 30,
            finishedAt: base + 1000
          })
          const cancelled = yield* repo.transition(jobId("job_cancel"), ["pending"], "cancelled")
          assert.isTrue(cancelled.applied)
          expect(view(cancelled.status)).toMatchObject({
            state: "cancelled",
            error: undefined,
            startedAt: undefined,
            finishedAt: base + 1000
          })
        })
      )

      test(
        "a job without chunks is at progress 0 until it completes, then at 100",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_empty")
          expect((yield* repo.create(newJob("job_empty", { chunks: [] }))).progress).toBe(0)
          expect((yield* repo.transition(id, ["pending"], "running")).status.progress).toBe(0)
          const completed = yield* repo.transition(id, ["running"], "completed")
          expect(view(completed.status)).toMatchObject({ state: "completed", totalChunks: 0, progress: 100 })
        })
      )

      test(
        "is refused, changing nothing, when the current state is not in `from`",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_cas")
          const created = view(yield* repo.create(newJob("job_cas")))
          yield* TestClock.adjust("1 second")
          const result = yield* repo.transition(id, ["running", "paused"], "cancelled", { error: "no" })
          assert.isFalse(result.applied)
          expect(view(result.status)).toEqual(created)
          expect(yield* getView(id)).toEqual(created)
        })
      )

      test(
        "is refused when the move is illegal, even if the current state is in `from`",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const pending = jobId("job_pending")
          const created = view(yield* repo.create(newJob("job_pending")))
          yield* TestClock.adjust("1 second")
          for (const to of ["pending", "completed"] as const) {
            const result = yield* repo.transition(pending, allStates, to)
            assert.isFalse(result.applied, `pending -> ${to}`)
            expect(view(result.status)).toEqual(created)
          }
          yield* repo.create(newJob("job_paused"))
          yield* moveTo(jobId("job_paused"), "paused")
          const before = yield* getView(jobId("job_paused"))
          for (const to of ["running", "paused", "completed", "failed"] as const) {
            const result = yield* repo.transition(jobId("job_paused"), allStates, to)
            assert.isFalse(result.applied, `paused -> ${to}`)
            expect(view(result.status)).toEqual(before)
          }
          yield* repo.create(newJob("job_running"))
          yield* moveTo(jobId("job_running"), "running")
          const running = yield* getView(jobId("job_running"))
          const again = yield* repo.transition(jobId("job_running"), allStates, "running")
          assert.isFalse(again.applied, "running -> running")
          expect(view(again.status)).toEqual(running)
        })
      )

      test(
        "never changes a terminal state",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          for (const terminal of ["completed", "failed", "cancelled"] as const) {
            const id = jobId(`job_${terminal}`)
            yield* repo.create(newJob(id))
            yield* moveTo(id, terminal)
            const stored = yield* getView(id)
            expect(stored.state).toBe(terminal)
            yield* TestClock.adjust("1 second")
            for (const to of allStates) {
              const result = yield* repo.transition(id, allStates, to, {
                error: "late",
                completedChunks: 9,
                failedChunks: 1
              })
              assert.isFalse(result.applied, `${terminal} -> ${to}`)
              expect(view(result.status)).toEqual(stored)
            }
            yield* repo.updateProgress(id, { completedChunks: 5, failedChunks: 5 })
            expect(yield* getView(id)).toEqual(stored)
          }
        })
      )

      test(
        "of an unknown id fails with JobNotFound, whether or not the move is legal",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob("job_other"))
          const missing = jobId("job_missing")
          const legal = yield* Effect.flip(repo.transition(missing, ["pending"], "running"))
          expect(legal._tag).toBe("JobNotFound")
          expect(legal).toMatchObject({ jobId: "job_missing" })
          const illegal = yield* Effect.flip(repo.transition(missing, ["completed"], "running"))
          expect(illegal).toMatchObject({ _tag: "JobNotFound", jobId: "job_missing" })
        })
      )

      test(
        "racing transitions: exactly one applies and both callers see the winner",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const races: ReadonlyArray<
            readonly [JobState, readonly [ReadonlyArray<JobState>, JobState], readonly [ReadonlyArray<JobState>, JobState]]
          > = [
            ["running", [["running", "paused"], "cancelled"], [["running"], "completed"]],
            ["running", [["running"], "completed"], [["running", "paused"], "cancelled"]],
            ["running", [["pending", "running", "paused"], "cancelled"], [["pending", "running", "paused"], "cancelled"]],
            ["pending", [["pending"], "running"], [["pending", "running"], "cancelled"]],
            ["running", [["running"], "pending"], [["running"], "paused"]],
            ["paused", [["paused"], "pending"], [["paused"], "cancelled"]]
          ]
          let index = 0
          for (const [start, [fromA, toA], [fromB, toB]] of races) {
            for (let round = 0; round < 4; round++) {
              const id = jobId(`job_race_${index++}`)
              yield* repo.create(newJob(id))
              yield* moveTo(id, start)
              const [a, b] = yield* Effect.all([
                repo.transition(id, fromA, toA, { completedChunks: 1 }),
                repo.transition(id, fromB, toB, { completedChunks: 2 })
              ], { concurrency: "unbounded" })
              // Exactly one wins unless the first winner's state lets the other move apply too
              // (pending -> running, then running -> cancelled).
              const stored = yield* getView(id)
              if (a.applied && b.applied) {
                expect([toA, toB]).toEqual(["running", "cancelled"])
                expect(stored.state).toBe("cancelled")
                continue
              }
              expect(Number(a.applied) + Number(b.applied)).toBe(1)
              const winner = a.applied ? a : b
              expect(stored.state).toBe(a.applied ? toA : toB)
              expect(view(winner.status)).toEqual(stored)
              expect((a.applied ? b : a).status.state).toBe(stored.state)
            }
          }
        })
      )

      test(
        "a state machine of random moves agrees with `transitions`",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const step = fc.record({ from: fc.subarray([...allStates]), to: fc.constantFrom(...allStates) })
          const runs = fc.sample(fc.array(step, { maxLength: 8 }), { numRuns: 30, seed: 20250101 })
          let index = 0
          for (const steps of runs) {
            const id = jobId(`job_prop_${index++}`)
            yield* repo.create(newJob(id))
            let current: JobState = "pending"
            let everRunning = false
            for (const { from, to } of steps) {
              yield* TestClock.adjust("1 millis")
              const expectApplied = from.includes(current) && canTransition(current, to)
              const result = yield* repo.transition(id, from, to)
              expect(result.applied).toBe(expectApplied)
              if (expectApplied) current = to
              everRunning ||= current === "running"
              expect(result.status.state).toBe(current)
            }
            const stored = yield* getView(id)
            expect(stored.state).toBe(current)
            expect(stored.startedAt !== undefined).toBe(everRunning)
            expect(stored.finishedAt !== undefined).toBe(isTerminal(current))
          }
        })
      )
    })

    describe("updateProgress", () => {
      test(
        "updates counts, progress and updatedAt of a non-terminal job; the latest update wins",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_progress")
          yield* repo.create(newJob("job_progress"))
          yield* TestClock.adjust("1 second")
          yield* repo.updateProgress(id, { completedChunks: 2, failedChunks: 0 })
          expect(yield* getView(id)).toMatchObject({
            state: "pending",
            completedChunks: 2,
            failedChunks: 0,
            progress: 20,
            updatedAt: base + 1000
          })
          yield* moveTo(id, "running")
          yield* TestClock.adjust("1 second")
          yield* repo.updateProgress(id, { completedChunks: 5, failedChunks: 1 })
          yield* TestClock.adjust("1 second")
          yield* repo.updateProgress(id, { completedChunks: 6, failedChunks: 1 })
          expect(yield* getView(id)).toMatchObject({
            state: "running",
            completedChunks: 6,
            failedChunks: 1,
            progress: 70,
            updatedAt: base + 3000,
            startedAt: base + 1000
          })
          const page = yield* repo.list({})
          expect(page.jobs.map(view)).toEqual([yield* getView(id)])
        })
      )

      test(
        "a transition keeps the latest reported counts unless its patch gives new ones",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_keep")
          yield* repo.create(newJob("job_keep"))
          yield* moveTo(id, "running")
          yield* repo.updateProgress(id, { completedChunks: 4, failedChunks: 1 })
          const paused = yield* repo.transition(id, ["running"], "paused")
          expect(view(paused.status)).toMatchObject({ state: "paused", completedChunks: 4, failedChunks: 1, progress: 50 })
          const resumed = yield* repo.transition(id, ["paused"], "pending", { completedChunks: 6 })
          expect(view(resumed.status)).toMatchObject({ completedChunks: 6, failedChunks: 1, progress: 70 })
          yield* repo.transition(id, ["pending"], "running")
          yield* repo.updateProgress(id, { completedChunks: 8, failedChunks: 1 })
          const cancelled = yield* repo.transition(id, ["running"], "cancelled")
          expect(view(cancelled.status)).toMatchObject({ state: "cancelled", completedChunks: 8, progress: 90 })
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toEqual(view(cancelled.status))
        })
      )

      test(
        "is ignored once the job is terminal, and for an unknown id",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_done")
          yield* repo.create(newJob("job_done"))
          yield* moveTo(id, "running")
          yield* repo.transition(id, ["running"], "completed", { completedChunks: 10, failedChunks: 0 })
          const done = yield* getView(id)
          yield* TestClock.adjust("1 second")
          yield* repo.updateProgress(id, { completedChunks: 1, failedChunks: 1 })
          expect(yield* getView(id)).toEqual(done)
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toEqual(done)
          expect(done).toMatchObject({ completedChunks: 10, failedChunks: 0, progress: 100 })

          yield* repo.updateProgress(jobId("job_nobody"), { completedChunks: 1, failedChunks: 0 })
          yield* TestClock.adjust("1 second")
          expect(Option.isNone(yield* repo.get(jobId("job_nobody")))).toBe(true)
          expect((yield* listIds({})).ids).toEqual(["job_done"])
        })
      )
    })

    describe("list", () => {
      test(
        "returns jobs newest first: by createdAt, then by id",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          for (const id of ["job_e", "job_d", "job_a", "job_c", "job_b"]) {
            yield* repo.create(newJob(id))
            yield* TestClock.adjust("1 second")
          }
          for (const id of ["job_x1", "job_x3", "job_x2"]) yield* repo.create(newJob(id))
          expect(yield* listIds({})).toEqual({
            ids: ["job_x3", "job_x2", "job_x1", "job_b", "job_c", "job_a", "job_d", "job_e"],
            nextCursor: undefined
          })
        })
      )

      test(
        "filters by one state or several",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          for (const state of allStates) {
            const id = jobId(`job_${state}`)
            yield* repo.create(newJob(id))
            yield* moveTo(id, state)
            yield* TestClock.adjust("1 second")
          }
          expect((yield* listIds({ state: "running" })).ids).toEqual(["job_running"])
          expect((yield* listIds({ state: ["pending", "cancelled"] })).ids).toEqual(["job_cancelled", "job_pending"])
          expect((yield* listIds({ state: ["completed", "failed", "cancelled"] })).ids).toEqual([
            "job_cancelled",
            "job_failed",
            "job_completed"
          ])
          expect((yield* listIds({ state: [] })).ids).toEqual([])
          expect((yield* listIds({})).ids).toHaveLength(6)
          const page = yield* repo.list({ state: "paused" })
          expect(page.jobs.map((status) => status.state)).toEqual(["paused"])
        })
      )

      test(
        "limit cuts a page and cursors return every job exactly once, in order",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          // Creation times with ties: three jobs share one millisecond, two another.
          const plan: ReadonlyArray<readonly [string, number]> = [
            ["job_a", 0],
            ["job_b", 0],
            ["job_c", 1],
            ["job_e", 1],
            ["job_d", 1],
            ["job_f", 2],
            ["job_g", 3]
          ]
          let now = 0
          for (const [id, at] of plan) {
            if (at > now) {
              yield* TestClock.adjust(`${at - now} seconds`)
              now = at
            }
            yield* repo.create(newJob(id))
            if (id === "job_b" || id === "job_e" || id === "job_g") yield* moveTo(jobId(id), "running")
          }
          const everything = ["job_g", "job_f", "job_e", "job_d", "job_c", "job_b", "job_a"]
          expect((yield* listIds({ limit: 1000 })).ids).toEqual(everything)

          const first = yield* listIds({ limit: 3 })
          expect(first.ids).toEqual(["job_g", "job_f", "job_e"])
          assert.isString(first.nextCursor)
          const pages = yield* allPages({ limit: 3 })
          expect(pages).toEqual([["job_g", "job_f", "job_e"], ["job_d", "job_c", "job_b"], ["job_a"]])
          expect(yield* allPages({ limit: 2 })).toEqual([
            ["job_g", "job_f"],
            ["job_e", "job_d"],
            ["job_c", "job_b"],
            ["job_a"]
          ])
          // A last page that is exactly full has no cursor.
          const second = yield* listIds({ limit: 6 })
          expect(second.ids).toEqual(everything.slice(0, 6))
          expect(yield* listIds({ limit: 6, cursor: second.nextCursor! })).toEqual({
            ids: ["job_a"],
            nextCursor: undefined
          })
          expect(yield* listIds({ limit: 7 })).toEqual({ ids: everything, nextCursor: undefined })
          // Paging a state filter.
          expect(yield* allPages({ state: "running", limit: 1 })).toEqual([["job_g"], ["job_e"], ["job_b"]])
          expect(yield* allPages({ state: "pending", limit: 2 })).toEqual([["job_f", "job_d"], ["job_c", "job_a"]])
        })
      )

      test(
        "paging while jobs are added never repeats or skips a job that existed when paging began",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const existing: Array<string> = []
          for (let index = 0; index < 9; index++) {
            const id = `job_old_${index}`
            yield* repo.create(newJob(id))
            existing.unshift(id)
            if (index % 3 !== 2) yield* TestClock.adjust("1 second")
          }
          let added = 0
          const pages = yield* allPages({ limit: 2 }, () =>
            Effect.gen(function*() {
              yield* TestClock.adjust("1 second")
              yield* repo.create(newJob(`job_new_${added++}`))
              yield* repo.create(newJob(`job_new_${added++}`))
            }))
          expect(pages.flat()).toEqual(existing)
          expect(added).toBeGreaterThan(4)
          expect((yield* listIds({ limit: 1000 })).ids).toHaveLength(9 + added)
        })
      )

      test(
        "a cursor that no listing returned fails with InvalidOption at path cursor",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob("job_a"))
          const garbage = [
            "%%%",
            "not a cursor",
            "",
            Buffer.from("12:").toString("base64url"),
            Buffer.from("abc:job_a").toString("base64url"),
            Buffer.from("12:job a").toString("base64url")
          ]
          for (const cursor of garbage) {
            const error = yield* Effect.flip(repo.list({ cursor }))
            expect(error).toMatchObject({ _tag: "InvalidOption", path: ["cursor"] })
          }
        })
      )
    })

    describe("delete", () => {
      test(
        "removes a terminal job (status, spec, checkpoint) and returns its last status",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob("job_gone"))
          yield* repo.create(newJob("job_kept"))
          yield* moveTo(jobId("job_gone"), "running")
          yield* repo.updateProgress(jobId("job_gone"), { completedChunks: 1, failedChunks: 0, completedChunkIds: [0] })
          yield* repo.transition(jobId("job_gone"), ["running"], "completed", { completedChunks: 10 })
          yield* TestClock.adjust("1 second")
          const deleted = yield* repo.delete(jobId("job_gone"))
          expect(view(deleted)).toMatchObject({ id: "job_gone", state: "completed", completedChunks: 10 })
          expect(Option.isNone(yield* repo.get(jobId("job_gone")))).toBe(true)
          expect(Option.isNone(yield* repo.getSpec(jobId("job_gone")))).toBe(true)
          expect(yield* Effect.flip(repo.getCheckpoint(jobId("job_gone")))).toMatchObject({ _tag: "JobNotFound" })
          expect((yield* listIds({})).ids).toEqual(["job_kept"])
          expect(yield* Effect.flip(repo.delete(jobId("job_gone")))).toMatchObject({
            _tag: "JobNotFound",
            jobId: "job_gone"
          })
          const error = yield* Effect.flip(repo.transition(jobId("job_gone"), ["pending"], "running"))
          expect(error).toMatchObject({ _tag: "JobNotFound", jobId: "job_gone" })
          yield* TestClock.adjust("1 second")
          expect(Option.isNone(yield* repo.get(jobId("job_gone")))).toBe(true)
          expect((yield* getView(jobId("job_kept"))).state).toBe("pending")
        })
      )

      test(
        "refuses a job that has not ended with InvalidJobState and leaves it as it is",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          for (const state of ["pending", "running", "paused"] as const) {
            const id = jobId(`job_${state}`)
            yield* repo.create(newJob(id))
            yield* moveTo(id, state)
            if (state === "running") yield* repo.updateProgress(id, { completedChunks: 2, failedChunks: 0, completedChunkIds: [1] })
            const before = yield* getView(id)
            const error = yield* Effect.flip(repo.delete(id))
            expect(error).toMatchObject({ _tag: "InvalidJobState", jobId: id, state, operation: "delete" })
            expect(error.message).toContain("cancel it first")
            expect(yield* getView(id)).toEqual(before)
            expect(Option.isSome(yield* repo.getSpec(id))).toBe(true)
          }
        })
      )
    })

    describe("prune", () => {
      test(
        "removes the jobs of the given terminal states that finished before the time, and counts them",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const finish = (id: string, state: "completed" | "failed" | "cancelled") =>
            Effect.gen(function*() {
              yield* repo.create(newJob(id))
              yield* moveTo(jobId(id), state)
            })
          yield* finish("job_old_done", "completed")
          yield* finish("job_old_failed", "failed")
          yield* finish("job_old_cancelled", "cancelled")
          yield* repo.create(newJob("job_old_pending"))
          yield* repo.create(newJob("job_old_running"))
          yield* moveTo(jobId("job_old_running"), "running")
          yield* TestClock.adjust("2 seconds")
          const cutoff = base + 2_000
          yield* finish("job_new_done", "completed")
          yield* finish("job_new_failed", "failed")

          expect(yield* repo.prune({ states: ["completed", "cancelled"], finishedBefore: cutoff })).toBe(2)
          expect((yield* listIds({})).ids.sort()).toEqual(
            ["job_new_done", "job_new_failed", "job_old_failed", "job_old_pending", "job_old_running"]
          )
          expect(Option.isNone(yield* repo.getSpec(jobId("job_old_done")))).toBe(true)
          // A job that finished exactly at the cutoff is kept; the pending and running ones never go.
          expect(yield* repo.prune({ states: ["failed"], finishedBefore: cutoff })).toBe(1)
          expect(yield* repo.prune({ states: ["completed", "failed", "cancelled"], finishedBefore: cutoff })).toBe(0)
          expect(yield* repo.prune({ states: [], finishedBefore: cutoff + 1 })).toBe(0)
          expect(yield* repo.prune({ states: ["completed", "failed", "cancelled"], finishedBefore: cutoff + 1 })).toBe(2)
          expect((yield* listIds({})).ids.sort()).toEqual(["job_old_pending", "job_old_running"])
        })
      )
    })

    describe("find", () => {
      test(
        "returns the jobs whose id starts with the prefix or whose name is the name, newest first",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob("job_abc1", chunkSpec(1, "render")))
          yield* TestClock.adjust("1 second")
          yield* repo.create(newJob("job_abc2", chunkSpec(1, "encode")))
          yield* TestClock.adjust("1 second")
          yield* repo.create(newJob("job_xyz", chunkSpec(1, "render")))
          yield* repo.create(newJob("job_ab", chunkSpec(1, "job_abc")))
          const ids = (query: Parameters<typeof repo.find>[0]) =>
            Effect.map(repo.find(query), (found) => found.map((status) => status.id as string))
          expect(yield* ids({ idPrefix: "job_abc", limit: 10 })).toEqual(["job_abc2", "job_abc1"])
          expect(yield* ids({ idPrefix: "job_abc2", limit: 10 })).toEqual(["job_abc2"])
          expect(yield* ids({ name: "render", limit: 10 })).toEqual(["job_xyz", "job_abc1"])
          expect(yield* ids({ idPrefix: "job_abc", name: "job_abc", limit: 10 })).toEqual(["job_ab", "job_abc2", "job_abc1"])
          expect(yield* ids({ idPrefix: "job_a", limit: 2 })).toEqual(["job_ab", "job_abc2"])
          expect(yield* ids({ idPrefix: "job_q", name: "rend", limit: 10 })).toEqual([])
          // Not a pattern: the prefix and the name are taken literally.
          expect(yield* ids({ idPrefix: "job%", name: "%", limit: 10 })).toEqual([])
          expect(yield* ids({ limit: 10 })).toEqual([])
        })
      )
    })

    describe("owner, phase, retryOf", () => {
      test(
        "create stores owner and retryOf; get and list return them",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const created = yield* repo.create({ ...newJob("job_owned"), owner: "host:1:abc", retryOf: jobId("job_before") })
          expect(view(created)).toMatchObject({ owner: "host:1:abc", retryOf: "job_before", phase: undefined })
          yield* repo.create(newJob("job_plain"))
          yield* TestClock.adjust("1 second")
          expect(yield* getView(jobId("job_owned"))).toEqual(view(created))
          expect(yield* getView(jobId("job_plain"))).toMatchObject({ owner: undefined, retryOf: undefined })
          const listed = (yield* repo.list({})).jobs.map(view)
          expect(listed.find((status) => status.id === "job_owned")).toEqual(view(created))
        })
      )

      test(
        "a transition sets, keeps or clears the owner as patched; the phase lives only while running",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_phases")
          yield* repo.create({ ...newJob(id), owner: "m1" })
          const started = yield* repo.transition(id, ["pending"], "running", { owner: "m2" })
          expect(view(started.status)).toMatchObject({ state: "running", owner: "m2", phase: undefined })
          // The finalize step is reported with the progress.
          yield* TestClock.adjust("1 second")
          yield* repo.updateProgress(id, { completedChunks: 10, failedChunks: 0, phase: "finalizing" })
          expect(yield* getView(id)).toMatchObject({ phase: "finalizing", completedChunks: 10, updatedAt: base + 1000 })
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toMatchObject({ phase: "finalizing", completedChunks: 10 })
          // Without an owner in the patch the owner stays; leaving `running` clears the phase.
          const paused = yield* repo.transition(id, ["running"], "paused")
          expect(view(paused.status)).toMatchObject({ state: "paused", owner: "m2", phase: undefined, completedChunks: 10 })
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toEqual(view(paused.status))
          const queued = yield* repo.transition(id, ["paused"], "pending", { owner: null })
          expect(view(queued.status)).toMatchObject({ state: "pending", owner: undefined })
          const again = yield* repo.transition(id, ["pending"], "running", { owner: "m3", phase: "finalizing" })
          expect(view(again.status)).toMatchObject({ state: "running", owner: "m3", phase: "finalizing" })
          // A phase in the patch of a move out of `running` is not stored.
          const done = yield* repo.transition(id, ["running"], "completed", { phase: "finalizing" })
          expect(view(done.status)).toMatchObject({ state: "completed", owner: "m3", phase: undefined })
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toEqual(view(done.status))
        })
      )

      test(
        "a move to running keeps a reported phase unless the patch clears it with null",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          for (const id of ["job_keep", "job_clear"]) {
            yield* repo.create(newJob(id))
            yield* repo.updateProgress(jobId(id), { completedChunks: 10, failedChunks: 0, phase: "finalizing" })
          }
          const kept = yield* repo.transition(jobId("job_keep"), ["pending"], "running")
          expect(view(kept.status)).toMatchObject({ state: "running", phase: "finalizing" })
          const cleared = yield* repo.transition(jobId("job_clear"), ["pending"], "running", { phase: null })
          expect(view(cleared.status)).toMatchObject({ state: "running", phase: undefined })
          yield* TestClock.adjust("1 second")
          expect(yield* getView(jobId("job_keep"))).toEqual(view(kept.status))
          expect(yield* getView(jobId("job_clear"))).toEqual(view(cleared.status))
        })
      )
    })

    describe("create refuses", () => {
      test(
        "an id that is already stored, changing nothing",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const first = chunkSpec(3, "first")
          const created = view(yield* repo.create({ ...newJob("job_twice", first), owner: "m1" }))
          yield* TestClock.adjust("1 second")
          const error = yield* Effect.flip(repo.create({ ...newJob("job_twice", chunkSpec(5, "second")), owner: "m2" }))
          expect(error).toMatchObject({ _tag: "RepositoryError", operation: "create" })
          expect(error.message).toContain("a job with id job_twice already exists")
          expect(yield* getView(jobId("job_twice"))).toEqual(created)
          expect(Option.getOrThrow(yield* repo.getSpec(jobId("job_twice")))).toEqual(first)
          expect((yield* listIds({})).ids).toEqual(["job_twice"])
        })
      )

      test(
        "a checkpoint of more chunks than the job has, storing nothing",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const error = yield* Effect.flip(
            repo.create({ ...newJob("job_big", chunkSpec(2)), completed: rangeSet(0, 1, 2) })
          )
          expect(error).toMatchObject({ _tag: "RepositoryError", operation: "create" })
          expect(Option.isNone(yield* repo.get(jobId("job_big")))).toBe(true)
          expect((yield* listIds({})).ids).toEqual([])
        })
      )
    })

    describe("counts", () => {
      test(
        "counts or chunk ids that are not non-negative integers, or counts over the total, fail with RepositoryError and change nothing",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_counts")
          yield* repo.create(newJob(id, chunkSpec(10)))
          yield* moveTo(id, "running")
          yield* repo.updateProgress(id, { completedChunks: 3, failedChunks: 1, completedChunkIds: [0] })
          const before = yield* getView(id)
          const malformed = [
            { completedChunks: -1, failedChunks: 0 },
            { completedChunks: 1.5, failedChunks: 0 },
            { completedChunks: 0, failedChunks: -2 },
            { completedChunks: Number.NaN, failedChunks: 0 },
            { completedChunks: 4, failedChunks: 1, completedChunkIds: [-1] },
            { completedChunks: 4, failedChunks: 1, completedChunkIds: [0.5] },
            { completedChunks: 4, failedChunks: 1, completedChunkIds: [Number.NaN] },
            { completedChunks: 5, failedChunks: 1, completedChunkIds: [1, -1] },
            { completedChunks: 5, failedChunks: 1, completedChunkIds: [1, 2.5] },
            // From an untyped caller: a single id where the array belongs.
            { completedChunks: 4, failedChunks: 1, completedChunkIds: 1 as unknown as ReadonlyArray<number> }
          ]
          for (const counts of malformed) {
            const error = yield* Effect.flip(repo.updateProgress(id, counts))
            expect(error).toMatchObject({ _tag: "RepositoryError", operation: "updateProgress" })
            const { completedChunkIds: ids, ...patch } = counts
            if (ids !== undefined) continue
            const refused = yield* Effect.flip(repo.transition(id, ["running"], "completed", patch))
            expect(refused).toMatchObject({ _tag: "RepositoryError", operation: "transition" })
          }
          // Over the total of 10: on their own, or with the current count the patch leaves out (1 failed).
          const over = yield* Effect.flip(repo.updateProgress(id, { completedChunks: 8, failedChunks: 3 }))
          expect(over).toMatchObject({ _tag: "RepositoryError", operation: "updateProgress" })
          for (const patch of [{ completedChunks: 10 }, { completedChunks: 6, failedChunks: 5 }, { failedChunks: 8 }]) {
            const refused = yield* Effect.flip(repo.transition(id, ["running"], "completed", patch))
            expect(refused).toMatchObject({ _tag: "RepositoryError", operation: "transition" })
          }
          // A job without chunks has room for none (its progress alone would not show it).
          const empty = jobId("job_empty")
          yield* repo.create(newJob(empty, { chunks: [] }))
          yield* moveTo(empty, "running")
          const emptyBefore = yield* getView(empty)
          const noRoom = yield* Effect.flip(repo.updateProgress(empty, { completedChunks: 1, failedChunks: 0 }))
          expect(noRoom).toMatchObject({ _tag: "RepositoryError", operation: "updateProgress" })
          const noRoomEither = yield* Effect.flip(repo.transition(empty, ["running"], "completed", { failedChunks: 1 }))
          expect(noRoomEither).toMatchObject({ _tag: "RepositoryError", operation: "transition" })
          expect(yield* getView(empty)).toEqual(emptyBefore)
          // A malformed count is refused whatever the job: unknown or terminal.
          const unknown = yield* Effect.flip(repo.updateProgress(jobId("job_nobody"), { completedChunks: -1, failedChunks: 0 }))
          expect(unknown).toMatchObject({ _tag: "RepositoryError", operation: "updateProgress" })
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toEqual(before)
          expect((yield* repo.getCheckpoint(id)).toString()).toBe("0")
          // Counts that fit are taken.
          const completed = yield* repo.transition(id, ["running"], "completed", { completedChunks: 9, failedChunks: 1 })
          expect(view(completed.status)).toMatchObject({ state: "completed", completedChunks: 9, failedChunks: 1 })
        })
      )
    })

    describe("checkpoint", () => {
      test(
        "updateProgress adds completedChunkIds; getCheckpoint sees it at once, after flushes and after transitions",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_checkpoint")
          yield* repo.create(newJob(id, chunkSpec(10)))
          expect((yield* repo.getCheckpoint(id)).size).toBe(0)
          yield* moveTo(id, "running")
          let done = 0
          for (const chunk of [0, 1, 2, 5, 3]) {
            yield* repo.updateProgress(id, { completedChunks: ++done, failedChunks: 0, completedChunkIds: [chunk] })
          }
          // A chunk that failed has no id to add.
          yield* repo.updateProgress(id, { completedChunks: 5, failedChunks: 1 })
          const first = yield* repo.getCheckpoint(id)
          expect(first.toString()).toBe("0-3,5")
          expect(first.size).toBe(5)
          yield* TestClock.adjust("1 second")
          expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-3,5")
          // Reported, then moved at once.
          yield* repo.updateProgress(id, { completedChunks: 6, failedChunks: 1, completedChunkIds: [4] })
          const paused = yield* repo.transition(id, ["running"], "paused")
          expect(view(paused.status)).toMatchObject({ completedChunks: 6, failedChunks: 1 })
          expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-5")
          yield* TestClock.adjust("1 second")
          expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-5")
          // What getCheckpoint returns is a copy.
          const copy = yield* repo.getCheckpoint(id)
          copy.add(9)
          expect((yield* repo.getCheckpoint(id)).has(9)).toBe(false)
          // Resumed, it goes on; the ids reported before the job fails are in its checkpoint.
          yield* repo.transition(id, ["paused"], "pending")
          yield* repo.transition(id, ["pending"], "running")
          yield* repo.updateProgress(id, { completedChunks: 7, failedChunks: 1, completedChunkIds: [6] })
          yield* repo.transition(id, ["running"], "failed", { error: "chunk 7 failed" })
          expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-6")
          // Ignored once terminal.
          const failed = yield* getView(id)
          yield* repo.updateProgress(id, { completedChunks: 8, failedChunks: 1, completedChunkIds: [7] })
          yield* TestClock.adjust("1 second")
          expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-6")
          expect(yield* getView(id)).toEqual(failed)

          const missing = yield* Effect.flip(repo.getCheckpoint(jobId("job_missing")))
          expect(missing).toMatchObject({ _tag: "JobNotFound", jobId: "job_missing" })
        })
      )

      test(
        "a re-drive starts from the checkpoint it is given, and the failed job's checkpoint stays as it was",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const failedId = jobId("job_failed")
          yield* repo.create(newJob(failedId, chunkSpec(10)))
          yield* moveTo(failedId, "running")
          for (const chunk of [0, 1, 2, 4]) {
            yield* repo.updateProgress(failedId, { completedChunks: chunk + 1, failedChunks: 0, completedChunkIds: [chunk] })
          }
          yield* repo.transition(failedId, ["running"], "failed", { completedChunks: 4, failedChunks: 1, error: "boom" })
          const completed = yield* repo.getCheckpoint(failedId)
          yield* TestClock.adjust("1 second")
          const redriveId = jobId("job_redrive")
          const created = yield* repo.create({
            ...newJob(redriveId, chunkSpec(10)),
            owner: "m1",
            retryOf: failedId,
            completed
          })
          // The store keeps its own copy.
          completed.add(9)
          expect(view(created)).toMatchObject({
            state: "pending",
            completedChunks: 4,
            failedChunks: 0,
            progress: 40,
            owner: "m1",
            retryOf: "job_failed"
          })
          expect(yield* getView(redriveId)).toEqual(view(created))
          expect((yield* repo.getCheckpoint(redriveId)).toString()).toBe("0-2,4")
          yield* repo.transition(redriveId, ["pending"], "running")
          yield* repo.updateProgress(redriveId, { completedChunks: 5, failedChunks: 0, completedChunkIds: [3] })
          yield* TestClock.adjust("1 second")
          expect((yield* repo.getCheckpoint(redriveId)).toString()).toBe("0-4")
          expect((yield* repo.getCheckpoint(failedId)).toString()).toBe("0-2,4")
          yield* repo.transition(redriveId, ["running"], "cancelled")
          expect((yield* repo.delete(redriveId)).id).toBe(redriveId)
          expect(yield* Effect.flip(repo.getCheckpoint(redriveId))).toMatchObject({ _tag: "JobNotFound" })
        })
      )
    })

    describe("owners", () => {
      test(
        "heartbeat records the time; lastHeartbeat reads it; retire forgets it",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          expect(Option.isNone(yield* repo.lastHeartbeat("m1"))).toBe(true)
          yield* repo.heartbeat("m1")
          expect(yield* repo.lastHeartbeat("m1")).toEqual(Option.some(base))
          yield* TestClock.adjust("5 seconds")
          yield* repo.heartbeat("m2")
          expect(yield* repo.lastHeartbeat("m1")).toEqual(Option.some(base))
          yield* repo.heartbeat("m1")
          expect(yield* repo.lastHeartbeat("m1")).toEqual(Option.some(base + 5000))
          expect(yield* repo.lastHeartbeat("m2")).toEqual(Option.some(base + 5000))
          yield* repo.retire("m1")
          expect(Option.isNone(yield* repo.lastHeartbeat("m1"))).toBe(true)
          expect(yield* repo.lastHeartbeat("m2")).toEqual(Option.some(base + 5000))
          yield* repo.retire("m1")
          yield* repo.retire("nobody")
        })
      )

      test(
        "claimOrphans takes the pending and running jobs of no owner, a stale owner or a retired one, oldest first",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.heartbeat("stale")
          yield* TestClock.adjust("10 seconds")
          const create = (id: string, owner: string | undefined, state: JobState) =>
            Effect.gen(function*() {
              yield* repo.create({ ...newJob(id), ...(owner === undefined ? {} : { owner }) })
              yield* moveTo(jobId(id), state)
            })
          yield* create("job_1_ownerless", undefined, "pending")
          yield* TestClock.adjust("1 second")
          // Created in the same millisecond: by id.
          yield* create("job_2_z", undefined, "running")
          yield* create("job_2_a", undefined, "pending")
          yield* TestClock.adjust("1 second")
          yield* create("job_3_stale", "stale", "running")
          yield* TestClock.adjust("1 second")
          yield* create("job_4_gone", "gone", "pending")
          yield* TestClock.adjust("1 second")
          yield* create("job_5_live", "live", "running")
          yield* create("job_6_mine", "me", "running")
          yield* create("job_7_paused", undefined, "paused")
          yield* create("job_8_stale_paused", "stale", "paused")
          yield* create("job_9_completed", "stale", "completed")
          yield* create("job_9_failed", undefined, "failed")
          yield* create("job_9_cancelled", "gone", "cancelled")
          yield* TestClock.adjust("1 second")
          yield* repo.heartbeat("live")
          yield* repo.heartbeat("me")
          // Reported just before the claim (a store may still hold it in memory).
          yield* repo.updateProgress(jobId("job_3_stale"), { completedChunks: 3, failedChunks: 1, phase: "finalizing" })
          const now = base + 10_000 + 5_000
          const staleBefore = now - 5_000
          const untouched = ["job_5_live", "job_6_mine", "job_7_paused", "job_8_stale_paused", "job_9_completed", "job_9_failed", "job_9_cancelled"]
          const before = new Map<string, ReturnType<typeof view>>()
          for (const id of ["job_3_stale", ...untouched]) before.set(id, yield* getView(jobId(id)))

          const claimed = yield* repo.claimOrphans("me", staleBefore)
          expect(claimed).toEqual(["job_1_ownerless", "job_2_a", "job_2_z", "job_3_stale", "job_4_gone"])
          for (const id of claimed) {
            expect(yield* getView(id)).toMatchObject({ state: "pending", owner: "me", phase: undefined, updatedAt: now })
          }
          // The counts and startedAt of a job that was running stay.
          expect(yield* getView(jobId("job_3_stale"))).toEqual({
            ...before.get("job_3_stale")!,
            state: "pending",
            owner: "me",
            phase: undefined,
            updatedAt: now
          })
          expect(before.get("job_3_stale")).toMatchObject({ completedChunks: 3, failedChunks: 1, phase: "finalizing" })
          for (const id of untouched) expect(yield* getView(jobId(id))).toEqual(before.get(id))
          yield* TestClock.adjust("1 second")
          expect(yield* getView(jobId("job_3_stale"))).toMatchObject({ phase: undefined, completedChunks: 3 })

          // Claimed jobs are the claimer's: claiming again, or by another live manager, takes nothing.
          expect(yield* repo.claimOrphans("me", staleBefore)).toEqual([])
          expect(yield* repo.claimOrphans("live", staleBefore)).toEqual([])
          // Once `me` retires, its pending and running jobs are free.
          yield* repo.retire("me")
          expect(yield* repo.claimOrphans("live", staleBefore)).toEqual([
            "job_1_ownerless",
            "job_2_a",
            "job_2_z",
            "job_3_stale",
            "job_4_gone",
            "job_6_mine"
          ])
          expect(yield* getView(jobId("job_6_mine"))).toMatchObject({ state: "pending", owner: "live" })
        })
      )

      test(
        "two managers claiming at once never get the same job",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const ids: Array<string> = []
          for (let index = 0; index < 30; index++) {
            const id = `job_orphan_${String(index).padStart(2, "0")}`
            ids.push(id)
            yield* repo.create({ ...newJob(id), ...(index % 3 === 0 ? { owner: "dead" } : {}) })
            if (index % 2 === 0) yield* moveTo(jobId(id), "running")
          }
          yield* repo.heartbeat("a")
          yield* repo.heartbeat("b")
          const [a, b] = yield* Effect.all([repo.claimOrphans("a", base), repo.claimOrphans("b", base)], {
            concurrency: "unbounded"
          })
          expect(a.filter((id) => b.includes(id))).toEqual([])
          expect([...a, ...b].sort()).toEqual(ids)
          for (const [owner, claimed] of [["a", a], ["b", b]] as const) {
            for (const id of claimed) expect((yield* getView(id)).owner).toBe(owner)
          }
        })
      )

      test(
        "claimable changes when a job may be claimed before any owner goes stale (stored or resumed without an owner, an owner retired), and only then",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const version = () => repo.claimable.version
          const start = version()
          const owned = jobId("job_owned")
          yield* repo.create({ ...newJob("job_owned"), owner: "m1" })
          yield* repo.createMany([{ ...newJob("job_owned_too"), owner: "m1" }])
          yield* repo.heartbeat("m1")
          yield* repo.transition(owned, ["pending"], "running", { owner: "m1" })
          yield* repo.updateProgress(owned, { completedChunks: 1, failedChunks: 0 })
          yield* repo.transition(owned, ["running"], "paused", { owner: null })
          yield* repo.claimOrphans("m2", base)
          expect(version()).toBe(start)

          const waiting = yield* Effect.fork(repo.claimable.changedSince(start))
          yield* repo.create(newJob("job_ownerless"))
          yield* Fiber.join(waiting)
          const created = version()
          expect(created).toBeGreaterThan(start)
          yield* repo.createMany([{ ...newJob("job_owned_3"), owner: "m1" }, newJob("job_ownerless_2")])
          const createdMany = version()
          expect(createdMany).toBeGreaterThan(created)
          yield* repo.transition(owned, ["paused"], "pending", { owner: null })
          const resumed = version()
          expect(resumed).toBeGreaterThan(createdMany)
          yield* repo.retire("m1")
          expect(version()).toBeGreaterThan(resumed)
        })
      )
    })

    describe("leases (fencing)", () => {
      test(
        "a job is created at lease 0; every applied transition and every claim takes the next lease; a refused one leaves it",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_lease")
          expect((yield* repo.create(newJob("job_lease"))).lease).toBe(0)
          expect((yield* repo.transition(id, ["pending"], "running", { owner: "a" })).status.lease).toBe(1)
          const refused = yield* repo.transition(id, ["pending"], "running", { owner: "a" })
          expect(refused).toMatchObject({ applied: false, status: { lease: 1 } })
          expect((yield* repo.transition(id, ["running"], "pending", { owner: null })).status.lease).toBe(2)
          yield* repo.heartbeat("b")
          expect(yield* repo.claimOrphans("b", base)).toEqual([id])
          expect(Option.map(yield* repo.get(id), (status) => status.lease)).toEqual(Option.some(3))
          expect((yield* repo.transition(id, ["pending"], "running", { owner: "b", lease: 3 })).status.lease).toBe(4)
          expect((yield* repo.transition(id, ["running"], "completed", { lease: 4 })).status).toMatchObject({
            state: "completed",
            lease: 5
          })
        })
      )

      test(
        "a transition under a lease the job no longer has does not apply and writes nothing",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_fenced")
          yield* repo.create(newJob("job_fenced"))
          const mine = (yield* repo.transition(id, ["pending"], "running", { owner: "a", lease: 0 })).status.lease
          // Owner a stalls; b takes the job over and runs it.
          yield* repo.transition(id, ["running"], "pending", { owner: "b" })
          const theirs = (yield* repo.transition(id, ["pending"], "running", { owner: "b" })).status.lease
          const before = yield* getView(id)
          for (const to of ["completed", "failed", "cancelled", "paused", "pending"] as const) {
            const stale = yield* repo.transition(id, ["running"], to, {
              lease: mine,
              completedChunks: 10,
              error: "stale",
              owner: null
            })
            expect(stale).toMatchObject({ applied: false, status: { state: "running", owner: "b", lease: theirs } })
          }
          expect(yield* getView(id)).toEqual(before)
          // A start under a stale lease does not take a queued job either.
          yield* repo.transition(id, ["running"], "pending", { owner: "c", lease: theirs })
          const started = yield* repo.transition(id, ["pending"], "running", { owner: "a", lease: mine })
          expect(started).toMatchObject({ applied: false, status: { state: "pending", owner: "c" } })
        })
      )

      test(
        "progress under a lease the job no longer has never lands, and fails with LeaseLost once the store knows",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const id = jobId("job_stale_progress")
          yield* repo.create(newJob("job_stale_progress"))
          const mine = (yield* repo.transition(id, ["pending"], "running", { owner: "a" })).status.lease
          yield* repo.transition(id, ["running"], "pending", { owner: "b" })
          const theirs = (yield* repo.transition(id, ["pending"], "running", { owner: "b" })).status.lease
          yield* repo.updateProgress(id, { completedChunks: 2, failedChunks: 0, completedChunkIds: [0], lease: theirs })
          yield* repo.updateProgress(id, { completedChunks: 2, failedChunks: 0, completedChunkIds: [1], lease: theirs })
          // The stale owner keeps reporting; a store that coalesces learns of the loss when it writes.
          let refused = false
          for (let attempt = 0; attempt < 50 && !refused; attempt++) {
            const result = yield* Effect.either(
              repo.updateProgress(id, { completedChunks: 9, failedChunks: 0, completedChunkIds: [9], lease: mine })
            )
            if (result._tag === "Left") {
              expect(result.left).toMatchObject({ _tag: "LeaseLost", jobId: id, lease: mine })
              refused = true
            } else {
              yield* TestClock.adjust("100 millis")
            }
          }
          expect(refused).toBe(true)
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toMatchObject({ state: "running", owner: "b", completedChunks: 2 })
          expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-1")
          // The holder's own progress still lands.
          yield* repo.updateProgress(id, { completedChunks: 3, failedChunks: 0, completedChunkIds: [2], lease: theirs })
          yield* TestClock.adjust("1 second")
          expect(yield* getView(id)).toMatchObject({ completedChunks: 3 })
          expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-2")
        })
      )

      test(
        "heartbeat returns the held jobs whose lease moved on (taken over, stopped elsewhere, or deleted)",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          const ids = ["job_h1", "job_h2", "job_h3", "job_h4"].map(jobId)
          const held = []
          for (const id of ids) {
            yield* repo.create(newJob(id))
            held.push({ id, lease: (yield* repo.transition(id, ["pending"], "running", { owner: "a" })).status.lease })
          }
          expect(yield* repo.heartbeat("a", held)).toEqual([])
          yield* repo.transition(ids[1]!, ["running"], "pending", { owner: "b" }) // taken over
          yield* repo.transition(ids[2]!, ["running"], "cancelled") // stopped by another process
          yield* repo.transition(ids[3]!, ["running"], "failed")
          yield* repo.delete(ids[3]!)
          const lost = yield* repo.heartbeat("a", held)
          expect([...lost].sort()).toEqual([ids[1], ids[2], ids[3]])
          expect(yield* repo.lastHeartbeat("a")).toEqual(Option.some(base))
        })
      )
    })

    describe("stop requests", () => {
      test(
        "a request for a running job reaches every stream once, whoever owns the job; other jobs are ignored",
        Effect.scoped(Effect.gen(function*() {
          const repo = yield* JobRepository
          const a = yield* startJob("job_a", "m1")
          const b = yield* startJob("job_b", "m1")
          const c = yield* startJob("job_c", "m2")
          yield* repo.create({ ...newJob("job_pending"), owner: "m1" })
          yield* repo.create({ ...newJob("job_paused"), owner: "m1" })
          yield* moveTo(jobId("job_paused"), "paused")
          yield* repo.create({ ...newJob("job_done"), owner: "m1" })
          yield* moveTo(jobId("job_done"), "completed")
          yield* startJob("job_ownerless", undefined)
          const first = yield* collectStops()
          const second = yield* collectStops()

          yield* repo.requestStop({ id: a, kind: "cancel" })
          yield* eventually(() => first.length > 0 && second.length > 0, "the request for job_a arrives")
          for (const id of ["job_pending", "job_paused", "job_done", "job_ownerless", "job_unknown"]) {
            yield* repo.requestStop({ id: jobId(id), kind: "cancel" })
          }
          // Time passes (a store may look again on a timer): nothing new comes.
          yield* TestClock.adjust("3 seconds")
          // Requests are delivered in order, so once job_b's arrives nothing else is on the way.
          yield* repo.requestStop({ id: b, kind: "pause" })
          yield* eventually(() => first.length > 1 && second.length > 1, "the request for job_b arrives")
          yield* repo.requestStop({ id: c, kind: "pause" })
          yield* eventually(() => first.length > 2 && second.length > 2, "the request for job_c arrives")
          const expected = [{ id: "job_a", kind: "cancel" }, { id: "job_b", kind: "pause" }, { id: "job_c", kind: "pause" }]
          expect(first).toEqual(expected)
          expect(second).toEqual(expected)
          // A request changes no status.
          expect(yield* getView(a)).toMatchObject({ state: "running", owner: "m1" })
        }))
      )

      test(
        "a transition clears the stored request",
        Effect.scoped(Effect.gen(function*() {
          const repo = yield* JobRepository
          const a = yield* startJob("job_a", "m1")
          const b = yield* startJob("job_b", "m1")
          yield* repo.requestStop({ id: a, kind: "cancel" })
          yield* repo.transition(a, ["running"], "pending")
          yield* repo.transition(a, ["pending"], "running")
          const m1 = yield* collectStops()
          yield* TestClock.adjust("3 seconds")
          yield* repo.requestStop({ id: b, kind: "pause" })
          yield* eventually(() => m1.length > 0, "the request for job_b arrives")
          expect(m1).toEqual([{ id: "job_b", kind: "pause" }])
        }))
      )
    })
  })
