/**
 * Cancel/list behaviour cases shared by the Effect `JobManager` and the Promise facade: both are driven
 * through the same Promise-shaped harness, with a gated Promise worker whose chunks finish only when the
 * test releases them (or their signal fires).
 */
import { describe, expect, it } from "@effect/vitest"
import type { ChunkContext } from "../../src/ChunkWorker.js"
import type { Chunk, JobPage, JobSpecInput, JobStatus, ListQueryInput } from "../../src/Job.js"

export interface Harness {
  readonly submitJob: (spec: JobSpecInput) => Promise<string>
  readonly getJob: (id: string) => Promise<JobStatus>
  readonly listJobs: (query?: ListQueryInput) => Promise<JobPage>
  readonly cancelJob: (id: string) => Promise<JobStatus>
  readonly waitForJob: (id: string) => Promise<JobStatus>
  readonly close: () => Promise<void>
}

export interface HarnessOptions {
  readonly worker: (chunk: Chunk, context: ChunkContext) => Promise<unknown>
  readonly concurrency?: number
  readonly maxConcurrentJobs?: number
  readonly retry?: { readonly attempts: number }
}

/** A worker whose chunks wait until released (succeed or fail) or aborted. */
export class GatedWorker {
  readonly started: Array<{ readonly jobId: string; readonly chunkId: number }> = []
  readonly aborted: Array<number> = []
  readonly #gates = new Map<number, { resolve: () => void; reject: (error: Error) => void }>()
  #waiters: Array<() => void> = []

  readonly run = (chunk: Chunk, { jobId, signal }: ChunkContext): Promise<unknown> =>
    new Promise<void>((resolve, reject) => {
      this.started.push({ jobId, chunkId: chunk.id })
      signal.addEventListener("abort", () => {
        this.aborted.push(chunk.id)
        reject(signal.reason)
      }, { once: true })
      this.#gates.set(chunk.id, { resolve, reject })
      const waiters = this.#waiters
      this.#waiters = []
      for (const wake of waiters) wake()
    })

  release(chunkId: number, error?: Error): void {
    const gate = this.#gates.get(chunkId)
    if (gate === undefined) throw new Error(`chunk ${chunkId} is not running`)
    this.#gates.delete(chunkId)
    if (error === undefined) gate.resolve()
    else gate.reject(error)
  }

  /** Resolves once `count` chunks have started (fails after 5 s). */
  async startedAtLeast(count: number): Promise<void> {
    const deadline = Date.now() + 5_000
    while (this.started.length < count) {
      if (Date.now() > deadline) throw new Error(`only ${this.started.length} of ${count} chunks started`)
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve)
        setTimeout(resolve, 50)
      })
    }
  }
}

/** Lets pending callbacks and fibers run. */
export const drain = async (): Promise<void> => {
  for (let index = 0; index < 20; index++) await new Promise<void>((resolve) => setImmediate(resolve))
}

const chunks = (count: number) => Array.from({ length: count }, (_, id) => ({ id, payload: { frame: id } }))

export const managerCases = (name: string, makeHarness: (options: HarnessOptions) => Promise<Harness>) =>
  describe(`${name}: cancel and list`, () => {
    const withHarness = async (
      options: Omit<HarnessOptions, "worker">,
      body: (harness: Harness, worker: GatedWorker) => Promise<void>
    ) => {
      const worker = new GatedWorker()
      const harness = await makeHarness({ ...options, worker: worker.run })
      try {
        await body(harness, worker)
      } finally {
        await harness.close()
      }
    }

    it("listJobs returns the stored jobs, newest first, filtered by state", () =>
      withHarness({ maxConcurrentJobs: 1 }, async (harness, worker) => {
        const first = await harness.submitJob({ chunks: chunks(1) })
        const second = await harness.submitJob({ chunks: chunks(1) })
        await worker.startedAtLeast(1)
        const all = await harness.listJobs()
        expect(all.jobs.map((job) => job.id)).toEqual([second, first])
        const pending = await harness.listJobs({ state: "pending" })
        expect(pending.jobs.map((job) => job.id)).toEqual([second])
        const page = await harness.listJobs({ limit: 1 })
        expect(page.jobs.map((job) => job.id)).toEqual([second])
        const next = await harness.listJobs({ limit: 1, cursor: page.nextCursor })
        expect(next.jobs.map((job) => job.id)).toEqual([first])
        expect(next.nextCursor).toBeUndefined()
      }))

    it("cancelJob on a running job fires the in-flight signals, stores cancelled, and starts no chunk after", () =>
      withHarness({ concurrency: 2 }, async (harness, worker) => {
        const id = await harness.submitJob({ chunks: chunks(10) })
        await worker.startedAtLeast(2)
        worker.release(0)
        await worker.startedAtLeast(3)
        const status = await harness.cancelJob(id)
        expect(status.state).toBe("cancelled")
        expect(status.completedChunks).toBe(1)
        expect(worker.aborted.sort()).toEqual([1, 2])
        await drain()
        expect(worker.started).toHaveLength(3)
        expect((await harness.getJob(id)).state).toBe("cancelled")
      }))

    it("cancelJob on a pending job stores cancelled and it never starts", () =>
      withHarness({ maxConcurrentJobs: 1 }, async (harness, worker) => {
        const first = await harness.submitJob({ chunks: chunks(1) })
        const second = await harness.submitJob({ chunks: chunks(1) })
        await worker.startedAtLeast(1)
        expect((await harness.cancelJob(second)).state).toBe("cancelled")
        worker.release(0)
        expect((await harness.waitForJob(first)).state).toBe("completed")
        await drain()
        expect(worker.started.map((s) => s.jobId)).toEqual([first])
      }))

    it("cancelJob on a completed or failed job is a no-op; twice is once", () =>
      withHarness({ retry: { attempts: 1 } }, async (harness, worker) => {
        const done = await harness.submitJob({ chunks: chunks(1) })
        await worker.startedAtLeast(1)
        worker.release(0)
        const completed = await harness.waitForJob(done)
        expect(await harness.cancelJob(done)).toEqual(completed)
        const bad = await harness.submitJob({ chunks: chunks(1) })
        await worker.startedAtLeast(2)
        worker.release(0, new Error("disk full"))
        const failed = await harness.waitForJob(bad)
        expect(failed.state).toBe("failed")
        expect(failed.error).toContain("disk full")
        expect(await harness.cancelJob(bad)).toEqual(failed)
        expect(await harness.cancelJob(bad)).toEqual(failed)
      }))

    it("cancelJob of an unknown id rejects with JobNotFound", () =>
      withHarness({}, async (harness) => {
        const error = await harness.cancelJob("job_missing").then(() => undefined, (e: unknown) => e)
        expect(error).toBeInstanceOf(Error)
        expect(error).toMatchObject({ _tag: "JobNotFound", name: "JobNotFound", message: "no job with id \"job_missing\"" })
      }))

    it("a job run with no cancellation completes with every chunk run once", () =>
      withHarness({ concurrency: 3 }, async (harness, worker) => {
        const id = await harness.submitJob({ chunks: chunks(5) })
        for (let chunk = 0; chunk < 5; chunk++) {
          await worker.startedAtLeast(chunk + 1)
          worker.release(chunk)
        }
        const status = await harness.waitForJob(id)
        expect(status).toMatchObject({ state: "completed", completedChunks: 5, progress: 100 })
        expect(worker.started.map((s) => s.chunkId).sort()).toEqual([0, 1, 2, 3, 4])
        expect(worker.aborted).toEqual([])
      }))

    it("an invalid spec is rejected with its path and nothing is stored", () =>
      withHarness({}, async (harness, worker) => {
        const error = await harness.submitJob({ chunks: [{ id: 1.5, payload: null }] }).then(
          () => undefined,
          (e: unknown) => e
        )
        expect(error).toMatchObject({ _tag: "InvalidJobSpec", path: ["chunks", 0, "id"] })
        expect((await harness.listJobs()).jobs).toEqual([])
        expect(worker.started).toEqual([])
      }))
  })
