/**
 * The contract every `JobRepository` layer passes. Each test builds a fresh, empty store from `makeLayer()`;
 * time comes from the TestClock, starting at {@link base}.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as fc from "effect/FastCheck"
import type { JobSpec, JobState, JobStatus } from "../../src/Job.js"
import { canTransition, isTerminal, JobId, totalChunks } from "../../src/Job.js"
import type { NewJob } from "../../src/JobRepository.js"
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
  finishedAt: status.finishedAt?.getTime()
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
          expect(yield* step(["paused"], "running")).toEqual({
            ...common,
            state: "running",
            completedChunks: 1,
            failedChunks: 0,
            progress: 25,
            updatedAt: t(3),
            startedAt: t(1),
            finishedAt: undefined
          })
          const completed = {
            ...common,
            state: "completed",
            completedChunks: 3,
            failedChunks: 1,
            progress: 100,
            updatedAt: t(4),
            startedAt: t(1),
            finishedAt: t(4)
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
          for (const to of ["pending", "paused", "completed"] as const) {
            const result = yield* repo.transition(pending, allStates, to)
            assert.isFalse(result.applied, `pending -> ${to}`)
            expect(view(result.status)).toEqual(created)
          }
          yield* repo.create(newJob("job_paused"))
          yield* moveTo(jobId("job_paused"), "paused")
          const before = yield* getView(jobId("job_paused"))
          for (const to of ["pending", "paused", "completed", "failed"] as const) {
            const result = yield* repo.transition(jobId("job_paused"), allStates, to)
            assert.isFalse(result.applied, `paused -> ${to}`)
            expect(view(result.status)).toEqual(before)
          }
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
            ["paused", [["paused"], "running"], [["paused", "running"], "cancelled"]]
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
          const resumed = yield* repo.transition(id, ["paused"], "running", { completedChunks: 6 })
          expect(view(resumed.status)).toMatchObject({ completedChunks: 6, failedChunks: 1, progress: 70 })
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
        "removes a job and reports whether there was one",
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob("job_gone"))
          yield* repo.create(newJob("job_kept"))
          yield* repo.updateProgress(jobId("job_gone"), { completedChunks: 1, failedChunks: 0 })
          expect(yield* repo.delete(jobId("job_gone"))).toBe(true)
          expect(Option.isNone(yield* repo.get(jobId("job_gone")))).toBe(true)
          expect(Option.isNone(yield* repo.getSpec(jobId("job_gone")))).toBe(true)
          expect((yield* listIds({})).ids).toEqual(["job_kept"])
          expect(yield* repo.delete(jobId("job_gone"))).toBe(false)
          const error = yield* Effect.flip(repo.transition(jobId("job_gone"), ["pending"], "running"))
          expect(error).toMatchObject({ _tag: "JobNotFound", jobId: "job_gone" })
          yield* TestClock.adjust("1 second")
          expect(Option.isNone(yield* repo.get(jobId("job_gone")))).toBe(true)
          expect((yield* getView(jobId("job_kept"))).state).toBe("pending")
        })
      )
    })
  })
