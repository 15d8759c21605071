/**
 * The chunk part of the repository contract: chunk records (results, failures, attempts) kept with the
 * checkpoint, `listChunks` paging, `chunkResults` and metadata. Run against every store beside the main
 * contract.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type { ChunkInfo, ChunkPage, ListChunksQuery } from "../../src/Job.js"
import { JobRepository } from "../../src/JobRepository.js"
import type { ChunkRecord } from "../../src/JobRepository.js"
import { RangeSet } from "../../src/internal/rangeSet.js"
import { base, chunkSpec, jobId, moveTo, newJob } from "./JobRepositoryContract.js"

const at = (offset: number) => base + offset

/** A chunk listing as plain data (times as millis). */
const shown = (chunk: ChunkInfo) => ({
  id: chunk.id,
  state: chunk.state,
  attempts: chunk.attempts,
  ...(chunk.result === undefined ? {} : { result: chunk.result }),
  ...(chunk.error === undefined ? {} : { error: chunk.error }),
  ...(chunk.startedAt === undefined ? {} : { startedAt: chunk.startedAt.getTime() }),
  ...(chunk.finishedAt === undefined ? {} : { finishedAt: chunk.finishedAt.getTime() })
})

/** Every page of a chunk listing, following cursors; `between` runs before each page after the first. */
const allChunkPages = (
  id: string,
  query: ListChunksQuery,
  between: (page: number) => Effect.Effect<void, unknown, JobRepository> = () => Effect.void
) =>
  Effect.gen(function*() {
    const repo = yield* JobRepository
    const pages: Array<Array<ReturnType<typeof shown>>> = []
    let cursor: string | undefined = undefined
    do {
      if (pages.length > 0) yield* between(pages.length)
      const page: ChunkPage = yield* repo.listChunks(jobId(id), cursor === undefined ? query : { ...query, cursor })
      pages.push(page.chunks.map(shown))
      cursor = page.nextCursor
      assert.isBelow(pages.length, 1000, "paging ends")
    } while (cursor !== undefined)
    return pages
  })

const record = (
  id: number,
  state: ChunkRecord["state"],
  attempts: number,
  extra: { readonly result?: ChunkRecord["result"]; readonly error?: string } = {}
): ChunkRecord => ({ id, state, attempts, ...extra, startedAt: at(id * 10), finishedAt: at(id * 10 + 5) })

export const chunkContract = (name: string, makeLayer: () => Layer.Layer<JobRepository, unknown>) =>
  describe(`${name}: chunks`, () => {
    const test = (title: string, body: Effect.Effect<void, unknown, JobRepository>, timeout?: number) =>
      it.effect(title, () => Effect.zipRight(TestClock.setTime(base), Effect.provide(body, makeLayer())), timeout)

    /** Job `id` of 10 chunks, running, with chunks 0 (plain), 1 (a result), 2 (failed), 4 (retried) settled. */
    const settleSome = (id: string) =>
      Effect.gen(function*() {
        const repo = yield* JobRepository
        yield* repo.create(newJob(id, chunkSpec(10)))
        yield* moveTo(jobId(id), "running")
        yield* repo.updateProgress(jobId(id), { completedChunks: 1, failedChunks: 0, completedChunkIds: [0] })
        yield* repo.updateProgress(jobId(id), {
          completedChunks: 2,
          failedChunks: 0,
          completedChunkIds: [1],
          chunks: [record(1, "completed", 1, { result: { segment: "part-1.mp4", frames: [10, 19] } })]
        })
        yield* repo.updateProgress(jobId(id), {
          completedChunks: 2,
          failedChunks: 1,
          chunks: [record(2, "failed", 3, { error: "encoder crashed" })]
        })
        yield* repo.updateProgress(jobId(id), {
          completedChunks: 3,
          failedChunks: 1,
          completedChunkIds: [4],
          chunks: [record(4, "completed", 2)]
        })
      })

    const expected = [
      { id: 0, state: "completed", attempts: 1 },
      {
        id: 1,
        state: "completed",
        attempts: 1,
        result: { segment: "part-1.mp4", frames: [10, 19] },
        startedAt: at(10),
        finishedAt: at(15)
      },
      { id: 2, state: "failed", attempts: 3, error: "encoder crashed", startedAt: at(20), finishedAt: at(25) },
      { id: 3, state: "pending", attempts: 0 },
      { id: 4, state: "completed", attempts: 2, startedAt: at(40), finishedAt: at(45) },
      ...[5, 6, 7, 8, 9].map((id) => ({ id, state: "pending", attempts: 0 }))
    ]

    test(
      "results, failures and attempts are listed in chunk-id order, as reported, after a flush and after the job ends",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        yield* settleSome("job_chunks")
        expect((yield* allChunkPages("job_chunks", { limit: 3 })).flat()).toEqual(expected)
        expect((yield* allChunkPages("job_chunks", { limit: 3 })).map((page) => page.length)).toEqual([3, 3, 3, 1])
        yield* TestClock.adjust("1 second")
        expect((yield* allChunkPages("job_chunks", {})).flat()).toEqual(expected)
        yield* repo.transition(jobId("job_chunks"), ["running"], "failed", { error: "chunk 2 failed" })
        expect((yield* allChunkPages("job_chunks", { limit: 1000 })).flat()).toEqual(expected)
        expect(yield* repo.chunkResults(jobId("job_chunks"), { limit: 10 })).toEqual([
          { id: 1, result: { segment: "part-1.mp4", frames: [10, 19] } }
        ])
        expect(yield* repo.chunkResults(jobId("job_chunks"), { after: 1, limit: 10 })).toEqual([])
      })
    )

    test(
      "chunks reported several at once (completedChunkIds, chunks) are kept as if reported one at a time",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        const id = jobId("job_batch")
        yield* repo.create(newJob(id, chunkSpec(10)))
        yield* moveTo(id, "running")
        yield* repo.updateProgress(id, {
          completedChunks: 2,
          failedChunks: 1,
          completedChunkIds: [0, 1],
          chunks: [
            record(1, "completed", 1, { result: { segment: "part-1.mp4", frames: [10, 19] } }),
            record(2, "failed", 3, { error: "encoder crashed" })
          ]
        })
        yield* repo.updateProgress(id, {
          completedChunks: 3,
          failedChunks: 1,
          completedChunkIds: [4],
          chunks: [record(4, "completed", 2)]
        })
        expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-1,4")
        expect((yield* allChunkPages("job_batch", {})).flat()).toEqual(expected)
        yield* TestClock.adjust("1 second")
        expect((yield* allChunkPages("job_batch", {})).flat()).toEqual(expected)
        // An id that is not a non-negative integer refuses the whole update.
        const refused = yield* Effect.flip(
          repo.updateProgress(id, { completedChunks: 5, failedChunks: 1, completedChunkIds: [5, -1] })
        )
        expect(refused).toMatchObject({ _tag: "RepositoryError", operation: "updateProgress" })
        expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-1,4")
      })
    )

    test(
      "a state filter lists only chunks in those states; a store shows no chunk as running",
      Effect.gen(function*() {
        yield* settleSome("job_filter")
        const ids = (query: ListChunksQuery) =>
          Effect.map(allChunkPages("job_filter", { ...query, limit: 2 }), (pages) => pages.flat().map((chunk) => chunk.id))
        for (const flushed of [false, true]) {
          if (flushed) yield* TestClock.adjust("1 second")
          expect(yield* ids({ state: "failed" })).toEqual([2])
          expect(yield* ids({ state: "completed" })).toEqual([0, 1, 4])
          expect(yield* ids({ state: "pending" })).toEqual([3, 5, 6, 7, 8, 9])
          expect(yield* ids({ state: ["failed", "pending"] })).toEqual([2, 3, 5, 6, 7, 8, 9])
          expect(yield* ids({ state: "running" })).toEqual([])
        }
      })
    )

    test(
      "a newer record of a chunk replaces the older one (a failed chunk that completes when the job is re-run)",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        yield* settleSome("job_rerun")
        yield* TestClock.adjust("1 second")
        yield* repo.transition(jobId("job_rerun"), ["running"], "paused")
        yield* repo.transition(jobId("job_rerun"), ["paused"], "pending")
        yield* repo.transition(jobId("job_rerun"), ["pending"], "running")
        yield* repo.updateProgress(jobId("job_rerun"), {
          completedChunks: 4,
          failedChunks: 0,
          completedChunkIds: [2],
          chunks: [record(2, "completed", 1, { result: "second try" })]
        })
        const page = yield* repo.listChunks(jobId("job_rerun"), { state: ["completed", "failed"] })
        expect(page.chunks.map(shown)).toEqual([
          expected[0],
          expected[1],
          { id: 2, state: "completed", attempts: 1, result: "second try", startedAt: at(20), finishedAt: at(25) },
          expected[4]
        ])
        yield* TestClock.adjust("1 second")
        expect(yield* repo.chunkResults(jobId("job_rerun"), { limit: 1 })).toEqual([
          { id: 1, result: { segment: "part-1.mp4", frames: [10, 19] } }
        ])
        expect(yield* repo.chunkResults(jobId("job_rerun"), { after: 1, limit: 5 })).toEqual([{ id: 2, result: "second try" }])
      })
    )

    test(
      "paging while chunks complete never repeats or skips a chunk",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        const id = jobId("job_paging")
        yield* repo.create(newJob(id, chunkSpec(50)))
        yield* moveTo(id, "running")
        let done = 0
        const pages = yield* allChunkPages("job_paging", { limit: 7 }, () =>
          // Between pages, chunks complete both behind and ahead of the cursor.
          Effect.forEach([done, 49 - done], (chunk) =>
            repo.updateProgress(id, {
              completedChunks: ++done,
              failedChunks: 0,
              completedChunkIds: [chunk],
              chunks: [record(chunk, "completed", 1, { result: chunk })]
            }), { discard: true }))
        const ids = pages.flat().map((chunk) => chunk.id)
        expect(ids).toEqual(Array.from({ length: 50 }, (_, index) => index))
      })
    )

    test(
      "bad queries: an unknown job fails with JobNotFound, a cursor that is not one with InvalidOption",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        expect(yield* Effect.flip(repo.listChunks(jobId("job_missing"), {}))).toMatchObject({ _tag: "JobNotFound" })
        expect(yield* Effect.flip(repo.chunkResults(jobId("job_missing"), { limit: 1 }))).toMatchObject({
          _tag: "JobNotFound"
        })
        yield* repo.create(newJob("job_cursor", chunkSpec(3)))
        for (const cursor of ["x", "-1", "1.5", "01", "99999999999999999999"]) {
          expect(yield* Effect.flip(repo.listChunks(jobId("job_cursor"), { cursor }))).toMatchObject({
            _tag: "InvalidOption",
            path: ["cursor"]
          })
        }
      })
    )

    test(
      "delete and prune take a job's chunk records with it",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        yield* settleSome("job_gone")
        yield* repo.transition(jobId("job_gone"), ["running"], "failed", { error: "boom" })
        expect((yield* repo.listChunks(jobId("job_gone"), {})).chunks).toHaveLength(10)
        yield* repo.delete(jobId("job_gone"))
        expect(yield* Effect.flip(repo.listChunks(jobId("job_gone"), {}))).toMatchObject({ _tag: "JobNotFound" })
        // A new job under the same id starts with no records.
        yield* repo.create(newJob("job_gone", chunkSpec(3)))
        expect((yield* repo.listChunks(jobId("job_gone"), {})).chunks.map((chunk) => chunk.state)).toEqual([
          "pending",
          "pending",
          "pending"
        ])
        yield* settleSome("job_pruned")
        yield* repo.transition(jobId("job_pruned"), ["running"], "failed", { error: "boom" })
        yield* TestClock.adjust("1 second")
        expect(yield* repo.prune({ states: ["failed"], finishedBefore: base + 60_000 })).toBe(1)
        expect(yield* Effect.flip(repo.chunkResults(jobId("job_pruned"), { limit: 1 }))).toMatchObject({
          _tag: "JobNotFound"
        })
      })
    )

    test(
      "explicit chunk ids in any order are listed in id order",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        const spec = { chunks: [7, 3, 11, 0].map((id) => ({ id, payload: null })) }
        yield* repo.create({ id: jobId("job_ids"), spec, totalChunks: 4 })
        yield* moveTo(jobId("job_ids"), "running")
        yield* repo.updateProgress(jobId("job_ids"), { completedChunks: 1, failedChunks: 0, completedChunkIds: [11] })
        const pages = yield* allChunkPages("job_ids", { limit: 3 })
        expect(pages.flat().map((chunk) => [chunk.id, chunk.state])).toEqual([
          [0, "pending"],
          [3, "pending"],
          [7, "pending"],
          [11, "completed"]
        ])
      })
    )

    test(
      "get returns the metadata the job was created with",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        const metadata = { customer: "acme", tags: ["4k", "hdr"], priority: 2 }
        yield* repo.create(newJob("job_meta", { ...chunkSpec(2), metadata }))
        yield* repo.create(newJob("job_plain", chunkSpec(2)))
        expect(Option.getOrThrow(yield* repo.get(jobId("job_meta"))).metadata).toEqual(metadata)
        yield* moveTo(jobId("job_meta"), "completed")
        expect(Option.getOrThrow(yield* repo.get(jobId("job_meta"))).metadata).toEqual(metadata)
        expect(Option.getOrThrow(yield* repo.get(jobId("job_plain"))).metadata).toBeUndefined()
      })
    )

    test(
      "a streamed job: its pulled chunks not completed are kept in id order, through flushes and transitions; no total until its stream ends",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        const id = jobId("job_streamed")
        const line = (chunkId: number) => ({ id: chunkId, payload: { line: `line ${chunkId}` } })
        const pulled = Effect.map(repo.pulledChunks(id), (chunks) => chunks.map((chunk) => chunk.id))
        const status = Effect.map(repo.get(id), Option.getOrThrow)
        yield* repo.create({ id, spec: { chunks: { source: "lines", payload: { file: "a.txt" } } }, totalChunks: undefined })
        expect(yield* status).toMatchObject({ state: "pending", completedChunks: 0, progress: 0 })
        expect((yield* status).totalChunks).toBeUndefined()
        expect(yield* repo.getSpec(id)).toEqual(Option.some({ chunks: { source: "lines", payload: { file: "a.txt" } } }))
        yield* moveTo(id, "running")
        yield* repo.updateProgress(id, { completedChunks: 0, failedChunks: 0, pulled: [0, 1, 2].map(line) })
        expect(yield* repo.pulledChunks(id)).toEqual([0, 1, 2].map(line))
        yield* repo.updateProgress(id, { completedChunks: 1, failedChunks: 0, completedChunkIds: [1], pulled: [] })
        expect(yield* pulled).toEqual([0, 2])
        yield* TestClock.adjust("1 second")
        expect(yield* pulled).toEqual([0, 2])
        // Counts with no total to check them against; progress stays 0 until the total is known.
        expect(yield* status).toMatchObject({ completedChunks: 1, progress: 0 })
        expect((yield* status).totalChunks).toBeUndefined()
        // Pulled and completed within one flush window, and a completion of a chunk pulled in an earlier one.
        yield* repo.updateProgress(id, { completedChunks: 1, failedChunks: 0, pulled: [3].map(line) })
        yield* repo.updateProgress(id, { completedChunks: 2, failedChunks: 0, completedChunkIds: [3], pulled: [] })
        yield* repo.updateProgress(id, { completedChunks: 3, failedChunks: 0, completedChunkIds: [0], pulled: [] })
        expect(yield* pulled).toEqual([2])
        yield* TestClock.adjust("1 second")
        expect(yield* pulled).toEqual([2])
        const listed = yield* repo.listChunks(id, {})
        expect(listed.chunks.map((chunk) => [chunk.id, chunk.state])).toEqual([
          [0, "completed"],
          [1, "completed"],
          [2, "pending"],
          [3, "completed"]
        ])
        // Pulled just before a transition: its write takes them.
        yield* repo.updateProgress(id, { completedChunks: 3, failedChunks: 0, pulled: [4].map(line) })
        yield* repo.transition(id, ["running"], "paused")
        expect(yield* pulled).toEqual([2, 4])
        yield* repo.transition(id, ["paused"], "pending")
        yield* repo.transition(id, ["pending"], "running")
        yield* repo.updateProgress(id, { completedChunks: 5, failedChunks: 0, completedChunkIds: [2], pulled: [] })
        yield* repo.updateProgress(id, { completedChunks: 5, failedChunks: 0, completedChunkIds: [4], pulled: [], totalChunks: 5 })
        expect(yield* status).toMatchObject({ totalChunks: 5, completedChunks: 5, progress: 100 })
        expect(yield* pulled).toEqual([])
        yield* TestClock.adjust("1 second")
        expect(yield* status).toMatchObject({ totalChunks: 5, completedChunks: 5, progress: 100 })
        const ended = yield* repo.transition(id, ["running"], "completed")
        expect(ended.status).toMatchObject({ state: "completed", totalChunks: 5, progress: 100 })
        expect(yield* pulled).toEqual([])
      })
    )

    test(
      "pulled chunks: a job that is not streamed has none, an unknown job fails, delete takes them with the job",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        yield* repo.create(newJob("job_array", chunkSpec(3)))
        expect(yield* repo.pulledChunks(jobId("job_array"))).toEqual([])
        expect(yield* Effect.flip(repo.pulledChunks(jobId("job_nothing")))).toMatchObject({ _tag: "JobNotFound" })
        const id = jobId("job_gone_streamed")
        const spec = { chunks: { source: "lines" } }
        yield* repo.create({ id, spec, totalChunks: undefined })
        yield* moveTo(id, "running")
        yield* repo.updateProgress(id, { completedChunks: 0, failedChunks: 0, pulled: [{ id: 9, payload: null }] })
        yield* TestClock.adjust("1 second")
        yield* repo.transition(id, ["running"], "cancelled")
        expect(yield* repo.pulledChunks(id)).toEqual([{ id: 9, payload: null }])
        yield* repo.delete(id)
        yield* repo.create({ id, spec, totalChunks: undefined })
        expect(yield* repo.pulledChunks(id)).toEqual([])
        // Only a streamed job may have no total.
        expect(yield* Effect.flip(repo.create({ id: jobId("job_no_total"), spec: chunkSpec(2), totalChunks: undefined })))
          .toMatchObject({ _tag: "RepositoryError" })
      })
    )

    test(
      "a 1,000,000-chunk range job: page 1 and page 10,000 cost the same, in constant memory",
      Effect.gen(function*() {
        const repo = yield* JobRepository
        const id = jobId("job_million")
        const completed = RangeSet.empty()
        for (let chunk = 0; chunk < 600_000; chunk++) completed.add(chunk)
        completed.add(700_001)
        yield* repo.create({
          id,
          spec: { chunks: { start: 0, end: 999_999, size: 1 } },
          totalChunks: 1_000_000,
          completed
        })
        yield* moveTo(id, "running")
        yield* repo.updateProgress(id, {
          completedChunks: 600_001,
          failedChunks: 1,
          chunks: [record(999_950, "failed", 2, { error: "late failure" })]
        })
        yield* TestClock.adjust("1 second")
        const heapBefore = process.memoryUsage().heapUsed
        const first = yield* repo.listChunks(id, { limit: 100 })
        expect(first.chunks.map((chunk) => chunk.id)).toEqual(Array.from({ length: 100 }, (_, index) => index))
        expect(first.nextCursor).toBeDefined()
        // Page 10,000 of 100 chunks: the last page.
        const last = yield* repo.listChunks(id, { limit: 100, cursor: "999899" })
        expect(last.chunks.map((chunk) => chunk.id)).toEqual(Array.from({ length: 100 }, (_, index) => 999_900 + index))
        expect(last.nextCursor).toBeUndefined()
        expect(last.chunks.find((chunk) => chunk.id === 999_950)).toMatchObject({ state: "failed", error: "late failure" })
        // Pending chunks: the 600,000 completed ones are skipped a range at a time.
        const pending = yield* repo.listChunks(id, { state: "pending", limit: 3 })
        expect(pending.chunks.map((chunk) => chunk.id)).toEqual([600_000, 600_001, 600_002])
        const around = yield* repo.listChunks(id, { state: ["completed", "failed"], cursor: "600000", limit: 2 })
        expect(around.chunks.map((chunk) => chunk.id)).toEqual([700_001, 999_950])
        expect(around.nextCursor).toBeUndefined()
        // A million listed chunks would take well over 100 MB.
        expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024)
      }),
      60_000
    )
  })
