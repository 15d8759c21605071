/**
 * Chunk results, per-chunk history and in-chunk progress, through the Effect `JobManager` and the Promise
 * facade.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { ChunkContext } from "../src/ChunkWorker.js"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { Chunk as JobChunk, ChunkResult, JobStatus, ListChunksQueryInput } from "../src/Job.js"
import { NonRetryable } from "../src/JobError.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import * as ProcessWorker from "../src/ProcessWorker.js"
import * as NodeContext from "@effect/platform-node/NodeContext"
import type { ChunkSettled } from "../src/JobExecutor.js"
import { createJobManager, executeJob } from "../src/promise.js"

const frames = (count: number) => ({ chunks: { start: 0, end: count - 1, size: 1 } })

const withManager = <A, E>(
  run: (chunk: JobChunk, context: ChunkContext) => Effect.Effect<unknown, unknown>,
  options: JobManagerModule.ManagerOptions,
  body: Effect.Effect<A, E, JobManager>
) =>
  body.pipe(
    Effect.provide(
      JobManagerModule.layer(options).pipe(
        Layer.provide(JobRepository.layerMemory),
        Layer.provide(ChunkWorker.layer(run))
      )
    )
  )

const noRetryDelay = { attempts: 2, initialDelay: 0, jitter: false } as const

describe("chunk results and history (Effect JobManager)", () => {
  it.live("results, failures and attempts are listed per chunk; the finalizer reads the results in id order", () => {
    let finalized: Array<ChunkResult> = []
    return withManager(
      (chunk, context) => {
        if (chunk.id === 2) return Effect.fail(new Error(`frame ${chunk.id} is corrupt`))
        if (chunk.id === 3 && context.attempt === 1) return Effect.fail(new Error("flaky"))
        // Chunk 0 returns nothing; the others a segment name.
        return Effect.succeed(chunk.id === 0 ? undefined : { segment: `part-${chunk.id}.mp4` })
      },
      {
        concurrency: 2,
        retry: noRetryDelay,
        failurePolicy: { maxFailedChunks: 1 },
        finalizers: {
          stitch: (context) =>
            Effect.map(Stream.runCollect(context.results), (results) => {
              finalized = Chunk.toArray(results)
            })
        }
      },
      Effect.gen(function*() {
        const manager = yield* JobManager
        const status = yield* manager.runJob({
          ...frames(5),
          metadata: { title: "trailer" },
          finalize: { name: "stitch" }
        })
        expect(status).toMatchObject({ state: "completed", completedChunks: 4, failedChunks: 1 })
        expect(finalized).toEqual([1, 3, 4].map((id) => ({ id, result: { segment: `part-${id}.mp4` } })))
        const page = yield* manager.listChunks(status.id)
        expect(page.chunks.map(({ attempts, error, id, result, state }) => ({ id, state, attempts, result, error })))
          .toEqual([
            { id: 0, state: "completed", attempts: 1, result: undefined, error: undefined },
            { id: 1, state: "completed", attempts: 1, result: { segment: "part-1.mp4" }, error: undefined },
            { id: 2, state: "failed", attempts: 2, result: undefined, error: "frame 2 is corrupt" },
            { id: 3, state: "completed", attempts: 2, result: { segment: "part-3.mp4" }, error: undefined },
            { id: 4, state: "completed", attempts: 1, result: { segment: "part-4.mp4" }, error: undefined }
          ])
        expect(page.chunks[2]!.startedAt).toBeInstanceOf(Date)
        const failed = yield* manager.listChunks(status.id, { state: "failed" })
        expect(failed.chunks.map((chunk) => chunk.id)).toEqual([2])
        expect((yield* manager.getJob(status.id)).metadata).toEqual({ title: "trailer" })
      })
    )
  })

  it.live("a result larger than maxResultBytes, or not JSON, fails the attempt with a clear error, without retries", () =>
    withManager(
      (chunk) => Effect.succeed(chunk.id === 0 ? "x".repeat(200) : chunk.id === 1 ? { when: new Date(0) } : "ok"),
      { maxResultBytes: 100, failurePolicy: { maxFailedChunks: 2 }, retry: noRetryDelay },
      Effect.gen(function*() {
        const manager = yield* JobManager
        const status = yield* manager.runJob(frames(3))
        expect(status).toMatchObject({ state: "completed", completedChunks: 1, failedChunks: 2 })
        const chunks = (yield* manager.listChunks(status.id)).chunks
        expect(chunks[0]).toMatchObject({ state: "failed", attempts: 1 })
        expect(chunks[0]!.error).toContain("passes maxResultBytes (100 bytes of JSON); raise maxResultBytes")
        expect(chunks[1]).toMatchObject({ state: "failed", attempts: 1 })
        expect(chunks[1]!.error).toContain("expected plain JSON")
        expect(chunks[1]!.error).toContain("when")
        expect(chunks[2]).toMatchObject({ state: "completed", result: "ok" })
      })
    ))

  it.effect("chunks in flight are listed as running with the progress they reported; reportProgress moves progress", () =>
    Effect.gen(function*() {
      const gates = new Map<number, Deferred.Deferred<void>>()
      const contexts = new Map<number, ChunkContext>()
      const statuses: Array<JobStatus> = []
      yield* withManager(
        (chunk, context) =>
          Effect.suspend(() => {
            const gate = Deferred.unsafeMake<void>(FiberId.none)
            gates.set(chunk.id, gate)
            contexts.set(chunk.id, context)
            return Deferred.await(gate)
          }),
        { concurrency: 2, watchInterval: 0 },
        Effect.gen(function*() {
          const manager = yield* JobManager
          const id = yield* manager.submitJob(frames(4))
          const watcher = yield* Effect.fork(Stream.runForEach(manager.watchJob(id), (status) =>
            Effect.sync(() => statuses.push(status))))
          yield* TestClock.adjust(1)
          expect([...contexts.keys()]).toEqual([0, 1])
          contexts.get(0)!.reportProgress(0.5)
          contexts.get(1)!.reportProgress(0.25)
          // Lower values, values out of range and NaN never move it back.
          contexts.get(0)!.reportProgress(0.1)
          contexts.get(1)!.reportProgress(Number.NaN)
          contexts.get(1)!.reportProgress(-3)
          // The store has it once the reports are written (coalesced, within 200 ms).
          expect((yield* manager.getJob(id)).progress).toBe(0)
          yield* TestClock.adjust(200)
          expect((yield* manager.getJob(id)).progress).toBe(18) // (0.5 + 0.25) / 4
          const running = yield* manager.listChunks(id, { state: "running" })
          expect(running.chunks.map(({ id, progress, state }) => ({ id, state, progress }))).toEqual([
            { id: 0, state: "running", progress: 0.5 },
            { id: 1, state: "running", progress: 0.25 }
          ])
          const all = yield* manager.listChunks(id, { limit: 3 })
          expect(all.chunks.map((chunk) => chunk.state)).toEqual(["running", "running", "pending"])
          expect(all.nextCursor).toBeDefined()
          contexts.get(1)!.reportProgress(7) // clamped to 1
          yield* TestClock.adjust(200)
          expect((yield* manager.getJob(id)).progress).toBe(37)
          yield* Deferred.succeed(gates.get(1)!, undefined)
          yield* TestClock.adjust(1)
          // Chunk 1 done (1 of 4), chunk 0 at half: 37.5%.
          expect((yield* manager.getJob(id)).progress).toBe(37)
          // A call of chunk 1's attempt after it settled counts for nothing (chunk 2 now runs in its lane).
          const { reportProgress: late } = contexts.get(1)!
          late(0.9)
          expect((yield* manager.getJob(id)).progress).toBe(37)
          for (const chunk of [0, 2, 3]) {
            yield* TestClock.adjust(1)
            yield* Deferred.succeed(gates.get(chunk)!, undefined)
          }
          yield* TestClock.adjust(1)
          expect((yield* manager.awaitJob(id)).progress).toBe(100)
          yield* Fiber.join(watcher)
          const seen = statuses.map((status) => status.progress)
          expect(seen.some((progress) => progress > 0 && progress < 25)).toBe(true) // between whole chunks
          expect(seen).toEqual([...seen].sort((a, b) => a - b)) // never backwards
          expect(Math.max(...seen)).toBe(100)
        })
      )
    }))

  it.live("a process worker's noisy output fits the default result limit: its chunk completes with the tails", () =>
    Effect.gen(function*() {
      const manager = yield* JobManager
      const status = yield* manager.runJob(frames(1))
      expect(status.state).toBe("completed")
      const [chunk] = (yield* manager.listChunks(status.id)).chunks
      const output = chunk!.result as unknown as ProcessWorker.ProcessOutput
      expect([output.stdout.length, output.stderr.length]).toEqual([16 * 1024, 16 * 1024])
      expect([output.stdoutTruncated, output.stderrTruncated]).toEqual([true, true])
    }).pipe(
      Effect.provide(
        JobManagerModule.layer({}).pipe(
          Layer.provide(JobRepository.layerMemory),
          Layer.provide(ProcessWorker.layer({
            command: () => ({
              command: process.execPath,
              args: ["-e", "process.stdout.write('o'.repeat(200000)); process.stderr.write('e\\n'.repeat(100000))"]
            })
          })),
          Layer.provide(NodeContext.layer)
        )
      )
    ), 30_000)

  it.effect("listChunks refuses a misspelt query field, and an unknown job", () =>
    withManager(() => Effect.void, {}, Effect.gen(function*() {
      const manager = yield* JobManager
      const id = yield* manager.submitJob(frames(2))
      // @ts-expect-error a misspelt field is a compile error (and an InvalidOption at run time)
      expect(yield* Effect.flip(manager.listChunks(id, { stat: "failed" }))).toMatchObject({
        _tag: "InvalidOption",
        path: ["stat"]
      })
      yield* manager.awaitJob(id)
      const typed: ListChunksQueryInput = { state: ["failed", "running"], limit: 10 }
      expect((yield* manager.listChunks(id, typed)).chunks).toEqual([])
      expect(yield* Effect.flip(manager.listChunks(id, { state: "done" as never }))).toMatchObject({
        _tag: "InvalidOption",
        path: ["state"]
      })
      expect(yield* Effect.flip(manager.listChunks("job_nope"))).toMatchObject({ _tag: "JobNotFound" })
    })))
})

describe("chunk results and history (Promise facade)", () => {
  it("executeJob hands each chunk's result and attempts to onProgress", async () => {
    const events: Array<ChunkSettled> = []
    const summary = await executeJob(frames(3), {
      concurrency: 1,
      retry: { attempts: 2, initialDelay: 0, jitter: false },
      worker: async (chunk, { attempt }) => {
        if (chunk.id === 2 && attempt === 1) throw new Error("flaky")
        return chunk.id === 1 ? null : [chunk.id]
      },
      onProgress: (event) => events.push(event)
    })
    expect(summary).toEqual({ totalChunks: 3, completedChunks: 3, failedChunks: 0, skippedChunks: 0 })
    expect(events.map(({ attempts, chunkId, result }) => ({ chunkId, attempts, result }))).toEqual([
      { chunkId: 0, attempts: 1, result: [0] },
      { chunkId: 1, attempts: 1, result: undefined },
      { chunkId: 2, attempts: 2, result: [2] }
    ])
    expect(events.every((event) => event.finishedAt >= event.startedAt)).toBe(true)
  })

  it("listChunks pages a job's chunks; a finalizer iterates the results; metadata comes back", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-jobs-chunks-"))
    const seen: Array<ChunkResult> = []
    try {
      for (const store of ["memory", { sqlite: path.join(dir, "jobs.db") }] as const) {
        seen.length = 0
        const manager = await createJobManager({
          store,
          concurrency: 3,
          retry: { attempts: 1 },
          failurePolicy: { maxFailedChunks: 5 },
          worker: async (chunk) => {
            if (chunk.id % 4 === 3) throw new NonRetryable({ cause: `chunk ${chunk.id} has no source` })
            return chunk.id % 2 === 0 ? { frames: chunk.id * 10 } : undefined
          },
          finalizers: {
            collect: async (context) => {
              for await (const item of context.results) seen.push(item)
            }
          }
        })
        try {
          const status = await manager.runJob({ ...frames(12), metadata: { owner: "ci" }, finalize: { name: "collect" } })
          expect(status).toMatchObject({ state: "completed", completedChunks: 9, failedChunks: 3 })
          expect(seen).toEqual([0, 2, 4, 6, 8, 10].map((id) => ({ id, result: { frames: id * 10 } })))
          const first = await manager.listChunks(status.id, { limit: 5 })
          expect(first.chunks.map((chunk) => [chunk.id, chunk.state])).toEqual([
            [0, "completed"],
            [1, "completed"],
            [2, "completed"],
            [3, "failed"],
            [4, "completed"]
          ])
          const second = await manager.listChunks(status.id, { limit: 5, cursor: first.nextCursor! })
          expect(second.chunks.map((chunk) => chunk.id)).toEqual([5, 6, 7, 8, 9])
          const failed = await manager.listChunks(status.id, { state: "failed" })
          expect(failed.chunks.map((chunk) => [chunk.id, chunk.error])).toEqual([
            [3, "chunk 3 has no source"],
            [7, "chunk 7 has no source"],
            [11, "chunk 11 has no source"]
          ])
          expect((await manager.getJob(status.id))?.metadata).toEqual({ owner: "ci" })
          await expect(manager.listChunks("job_unknown")).rejects.toMatchObject({ _tag: "JobNotFound" })
          // @ts-expect-error a misspelt field is a compile error (and an InvalidOption at run time)
          await expect(manager.listChunks(status.id, { limt: 5 })).rejects.toMatchObject({ _tag: "InvalidOption" })
        } finally {
          await manager.close()
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
