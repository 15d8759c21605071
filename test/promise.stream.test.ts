/**
 * Chunk streams in the Promise facade: `executeJob({ chunks: asyncIterable })` pulls lazily, an abort stops the
 * pulling at once, duplicate ids and bad chunks are refused by name, and an endless source runs until aborted.
 */
import { describe, expect, it } from "vitest"
import type { Chunk } from "../src/Job.js"
import { createJobManager, executeJob } from "../src/promise.js"
import { drain, GatedWorker } from "./contract/managerCases.js"
import { countedChunks } from "./support/countedChunks.js"

const rejection = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => undefined, (error) => error)

/** An async generator of `count` chunks (endless by default) that records what it was asked for. */
const source = (count = Number.POSITIVE_INFINITY) => {
  const state = { yielded: 0, finished: 0 }
  return { state, chunks: countedChunks(state, count) }
}

describe("executeJob with a chunk stream", () => {
  it("runs every chunk of an async iterable and resolves with its total", async () => {
    const { chunks, state } = source(40)
    const seen: Array<number> = []
    const totals: Array<number | undefined> = []
    const summary = await executeJob({ name: "manifest", chunks }, {
      worker: async (chunk) => {
        seen.push(chunk.id)
      },
      concurrency: 4,
      onProgress: (event) => totals.push(event.totalChunks)
    })
    expect(summary).toEqual({ totalChunks: 40, completedChunks: 40, failedChunks: 0, skippedChunks: 0, ended: true })
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, id) => id))
    expect(totals[0]).toBeUndefined()
    expect(totals.at(-1)).toBe(40)
    expect(state.finished).toBe(1)
  })

  it("pulls lazily: the source is never more than concurrency + prefetch ahead of the settled chunks", async () => {
    const concurrency = 3
    const prefetch = 2
    let settled = 0
    let maxAhead = 0
    const state = { yielded: 0 }
    async function* chunks(): AsyncGenerator<Chunk> {
      for (let id = 0; id < 200; id++) {
        state.yielded++
        maxAhead = Math.max(maxAhead, state.yielded - settled)
        yield { id, payload: null }
      }
    }
    let reported = 0
    await executeJob({ chunks: chunks() }, {
      // Counted as the chunk settles (onProgress hears of it in a batch, a few milliseconds later).
      worker: () =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            settled++
            resolve()
          }, 1)
        ),
      concurrency,
      prefetch,
      onProgress: () => reported++
    })
    expect(settled).toBe(200)
    expect(reported).toBe(200)
    expect(maxAhead).toBeLessThanOrEqual(concurrency + prefetch)
    expect(maxAhead).toBeGreaterThan(concurrency)
  })

  it("an endless source runs until the signal aborts; the abort stops the pulling at once", async () => {
    const { chunks, state } = source()
    const worker = new GatedWorker()
    const controller = new AbortController()
    const run = rejection(executeJob({ chunks }, { worker: worker.run, concurrency: 2, prefetch: 1, signal: controller.signal }))
    await worker.startedAtLeast(2)
    worker.release(0)
    worker.release(1)
    await worker.startedAtLeast(4)
    await drain()
    expect(state.yielded).toBe(5)
    controller.abort()
    expect(await run).toMatchObject({ name: "AbortError" })
    const pulled = state.yielded
    expect(worker.aborted.sort()).toEqual([2, 3])
    await drain()
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(state.yielded).toBe(pulled)
    expect(worker.started).toHaveLength(4)
    expect(state.finished).toBe(1)
  })

  it("an abort while the source's next() is pending rejects at once (the pending next() is abandoned)", async () => {
    const controller = new AbortController()
    let asked = 0
    const chunks: AsyncIterable<Chunk> = {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          asked++
          return asked === 1
            ? Promise.resolve({ done: false, value: { id: 0, payload: null } })
            : new Promise<IteratorResult<Chunk>>(() => {}) // a listing that never answers
        }
      })
    }
    const done: Array<number> = []
    const run = rejection(executeJob({ chunks }, {
      worker: async (chunk) => {
        done.push(chunk.id)
      },
      signal: controller.signal
    }))
    while (done.length === 0 || asked < 2) await new Promise((resolve) => setTimeout(resolve, 1))
    controller.abort()
    expect(await run).toMatchObject({ name: "AbortError" })
    expect(asked).toBe(2)
  })

  it("a duplicate id rejects with InvalidJobSpec naming it and aborts the chunks in flight", async () => {
    const worker = new GatedWorker()
    async function* chunks(): AsyncGenerator<Chunk> {
      yield { id: 7, payload: null }
      yield { id: 8, payload: null }
      await worker.startedAtLeast(2)
      yield { id: 7, payload: "again" }
    }
    const error = await rejection(executeJob({ chunks: chunks() }, { worker: worker.run, concurrency: 2 }))
    expect(error).toMatchObject({ _tag: "InvalidJobSpec", path: ["chunks", 2, "id"] })
    expect((error as Error).message).toContain("duplicate chunk id 7")
    expect(worker.aborted.sort()).toEqual([7, 8])
  })

  it("runs a sync generator; an error the source throws rejects with that error", async () => {
    function* lines(): Generator<Chunk> {
      yield { id: 0, payload: "a" }
      yield { id: 1, payload: "b" }
      throw new Error("manifest truncated")
    }
    const seen: Array<number> = []
    const error = await rejection(executeJob({ chunks: lines() }, {
      worker: async (chunk) => {
        seen.push(chunk.id)
      },
      concurrency: 1,
      prefetch: 0
    }))
    expect(error).toMatchObject({ message: "manifest truncated" })
    expect(seen).toEqual([0, 1])
  })

  it("rejects a bad option or spec field before the source is pulled; an aborted signal pulls nothing", async () => {
    const worker = new GatedWorker()
    const first = source()
    expect(await rejection(executeJob({ chunks: first.chunks }, { worker: worker.run, prefetch: -1 })))
      .toMatchObject({ _tag: "InvalidOption", path: ["prefetch"] })
    const second = source()
    expect(await rejection(executeJob({ name: 42 as unknown as string, chunks: second.chunks }, { worker: worker.run })))
      .toMatchObject({ _tag: "InvalidJobSpec", path: ["name"] })
    const third = source()
    expect(await rejection(executeJob({ chunks: third.chunks }, { worker: worker.run, signal: AbortSignal.abort() })))
      .toMatchObject({ name: "AbortError" })
    await drain()
    expect([first.state.yielded, second.state.yielded, third.state.yielded]).toEqual([0, 0, 0])
    expect(worker.started).toEqual([])
  })

  it("a chunk timeout and retries apply to streamed chunks as to an array's", async () => {
    const attempts = new Map<number, number>()
    const error = await rejection(executeJob({ chunks: source(10).chunks }, {
      worker: (chunk, { signal }) => {
        attempts.set(chunk.id, (attempts.get(chunk.id) ?? 0) + 1)
        // Chunk 3 hangs until its signal fires (the timeout); the others take a millisecond.
        return new Promise((resolve, reject) => {
          if (chunk.id !== 3) setTimeout(resolve, 1)
          signal.addEventListener("abort", () => reject(signal.reason), { once: true })
        })
      },
      concurrency: 2,
      chunkTimeout: 30,
      retry: { attempts: 2, initialDelay: 0 }
    }))
    expect(error).toMatchObject({ _tag: "ChunkFailed", chunkId: 3, attempts: 2 })
    expect((error as Error).message).toContain("timed out after 30 ms")
    expect(attempts.get(3)).toBe(2)
  })

  it("a manager refuses a chunk stream in a spec by name (it stores specs as JSON), and pulls nothing", async () => {
    const manager = await createJobManager({ worker: async () => {} })
    try {
      const { chunks, state } = source()
      const error = await rejection(manager.submitJob({ chunks } as never))
      expect(error).toMatchObject({ _tag: "InvalidJobSpec", path: ["chunks"] })
      expect((error as Error).message).toContain("run the stream with executeJob")
      expect(await manager.listJobs()).toEqual({ jobs: [] })
      await drain()
      expect(state.yielded).toBe(0)
    } finally {
      await manager.close()
    }
  })
})
