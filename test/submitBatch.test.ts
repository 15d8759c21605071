/**
 * `submitBatch`: many jobs in one call, all or nothing. Every spec is checked before anything is stored; a
 * bad one fails the batch with `InvalidJobSpec` whose path starts with its index, and no job is stored.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as ChunkWorker from "../src/ChunkWorker.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import { createJobManager } from "../src/promise.js"

const range = (chunks: number, name?: string) => ({
  ...(name === undefined ? {} : { name }),
  chunks: { start: 0, end: chunks - 1, size: 1 }
})

const managerLayer = JobManagerModule.layer({ concurrency: 2, maxConcurrentJobs: 2 }).pipe(
  Layer.provide(JobRepository.layerMemory),
  Layer.provide(ChunkWorker.layer(() => Effect.void))
)

describe("JobManager.submitBatch", () => {
  it.live("stores and runs every job, and returns their ids in order", () =>
    Effect.gen(function*() {
      const manager = yield* JobManager
      const ids = yield* manager.submitBatch([range(3, "a"), range(1, "b"), range(2, "c")])
      expect(ids).toHaveLength(3)
      const statuses = yield* Effect.forEach(ids, manager.awaitJob)
      expect(statuses.map((status) => [status.name, status.state, status.completedChunks])).toEqual([
        ["a", "completed", 3],
        ["b", "completed", 1],
        ["c", "completed", 2]
      ])
      expect(yield* manager.submitBatch([])).toEqual([])
    }).pipe(Effect.provide(managerLayer)))

  it.live("one bad spec fails the batch with its index in the path, and stores nothing", () =>
    Effect.gen(function*() {
      const manager = yield* JobManager
      const badChunks = yield* Effect.flip(
        manager.submitBatch([range(1), range(1), { chunks: { start: 0, end: 9, size: 0 } }, range(1)])
      )
      expect(badChunks).toMatchObject({ _tag: "InvalidJobSpec", path: [2, "chunks", "size"] })
      const badFinalizer = yield* Effect.flip(manager.submitBatch([range(1), { ...range(1), finalize: { name: "nope" } }]))
      expect(badFinalizer).toMatchObject({ _tag: "InvalidJobSpec", path: [1, "finalize", "name"] })
      const notArray = yield* Effect.flip(manager.submitBatch(range(1) as never))
      expect(notArray).toMatchObject({ _tag: "InvalidJobSpec", path: [] })
      expect((yield* manager.listJobs()).jobs).toEqual([])
    }).pipe(Effect.provide(managerLayer)))
})

describe("Promise submitBatch on SQLite", () => {
  const dir = mkdtempSync(join(tmpdir(), "effect-jobs-batch-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("stores 2,000 jobs in one call and runs them; a bad batch stores nothing", async () => {
    await using manager = await createJobManager({
      worker: async () => {},
      maxConcurrentJobs: 32,
      store: { sqlite: join(dir, "batch.db") }
    })
    const rejected = await manager.submitBatch([range(1), { chunks: "nope" } as never]).catch((error: unknown) => error)
    expect(rejected).toMatchObject({ name: "InvalidJobSpec", path: [1, "chunks"] })
    expect(await manager.listJobs()).toEqual([])

    const ids = await manager.submitBatch(Array.from({ length: 2_000 }, (_, index) => range(1, `job ${index}`)))
    expect(new Set(ids).size).toBe(2_000)
    const last = await manager.waitForJob(ids[1_999]!)
    expect(last).toMatchObject({ state: "completed", name: "job 1999" })
    const page = await manager.listJobsPage({ limit: 1000 })
    expect(page.jobs).toHaveLength(1000)
    expect(page.nextCursor).toBeDefined()
  }, 60_000)
})
