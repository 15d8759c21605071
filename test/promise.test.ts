import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import { getEventListeners } from "node:events"
import * as Abort from "../src/Abort.js"
import * as ChunkWorker from "../src/ChunkWorker.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import { createJobManager, executeJob } from "../src/promise.js"
import type { Harness } from "./contract/managerCases.js"
import { drain, GatedWorker, managerCases } from "./contract/managerCases.js"

managerCases("Promise facade", async (options) => {
  const manager = await createJobManager(options)
  return {
    submitJob: (spec) => manager.submitJob(spec),
    getJob: async (id) => {
      const status = await manager.getJob(id)
      if (status === undefined) throw new Error(`no job ${id}`)
      return status
    },
    listJobs: (query) => manager.listJobs(query),
    cancelJob: (id) => manager.cancelJob(id),
    waitForJob: (id) => manager.waitForJob(id),
    close: () => manager.close()
  }
})

managerCases("Effect JobManager", async (options) => {
  const { worker, ...managerOptions } = options
  const runtime = ManagedRuntime.make(
    JobManagerModule.layer(managerOptions).pipe(
      Layer.provide(JobRepository.layerMemory),
      Layer.provide(ChunkWorker.layerPromise(worker))
    )
  )
  const run = <A, E>(f: (manager: JobManager["Type"]) => Effect.Effect<A, E>) =>
    Abort.runPromise(Effect.flatMap(JobManager, f), { runtime })
  const harness: Harness = {
    submitJob: (spec) => run((m) => m.submitJob(spec)),
    getJob: (id) => run((m) => m.getJob(id)),
    listJobs: (query) => run((m) => m.listJobs(query)),
    cancelJob: (id) => run((m) => m.cancelJob(id)),
    waitForJob: (id) => run((m) => m.awaitJob(id)),
    close: () => runtime.dispose()
  }
  return harness
})

const frames = (count: number) => ({ chunks: { start: 0, end: count - 1, size: 1 } })
const rejection = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => undefined, (error) => error)

describe("Promise facade", () => {
  it("rejects bad options with a message naming the option", async () => {
    const worker = async () => {}
    const cases: Array<[unknown, string]> = [
      [{ worker, concurrency: 0 }, "concurrency"],
      [{ concurrency: 2 }, "worker"],
      [{ worker: "render.sh" }, "worker"],
      [{ worker, store: "redis" }, "store"],
      [{ worker, retry: { attempts: -1 } }, "retry.attempts"],
      [{ worker, chunkTimeout: "a while" }, "chunkTimeout"],
      [{ worker, maxConcurrentJobs: 1.5 }, "maxConcurrentJobs"],
      [{ worker, concurency: 4 }, "concurency"]
    ]
    for (const [options, name] of cases) {
      const error = await rejection(createJobManager(options as never))
      expect(error).toBeInstanceOf(Error)
      expect(error).toMatchObject({ _tag: "InvalidOption", name: "InvalidOption" })
      expect((error as Error).message).toContain(name)
    }
  })

  it("runJob resolves with the terminal status; getJob of an unknown id is undefined", async () => {
    await using manager = await createJobManager({ worker: async () => {}, concurrency: 4 })
    const status = await manager.runJob({ name: "clip", ...frames(20) })
    expect(status).toMatchObject({ name: "clip", state: "completed", completedChunks: 20, progress: 100 })
    expect(await manager.getJob(status.id)).toEqual(status)
    expect(await manager.getJob("job_unknown")).toBeUndefined()
    expect(await manager.listJobs({ state: "completed" })).toEqual({ jobs: [status] })
  })

  it("a failed job resolves runJob with state failed and the error message", async () => {
    await using manager = await createJobManager({
      worker: async (chunk) => {
        if (chunk.id === 3) throw new Error("frame 3 is corrupt")
      },
      retry: { attempts: 2, initialDelay: 0 }
    })
    const status = await manager.runJob(frames(5))
    expect(status.state).toBe("failed")
    expect(status.error).toBe("chunk 3 failed after 2 attempts: frame 3 is corrupt")
  })

  describe("AbortSignal", () => {
    it("aborted before start: nothing is submitted and no chunk runs", async () => {
      const worker = new GatedWorker()
      await using manager = await createJobManager({ worker: worker.run })
      const error = await rejection(manager.runJob(frames(3), { signal: AbortSignal.abort() }))
      expect(error).toMatchObject({ name: "AbortError" })
      expect(await manager.listJobs()).toEqual({ jobs: [] })
      expect(worker.started).toEqual([])
    })

    it("abort during a run: in-flight signals fire, the job is stored cancelled, the rejection is an AbortError", async () => {
      const worker = new GatedWorker()
      await using manager = await createJobManager({ worker: worker.run, concurrency: 2 })
      const controller = new AbortController()
      const run = rejection(manager.runJob(frames(10), { signal: controller.signal }))
      await worker.startedAtLeast(2)
      controller.abort()
      const error = await run
      expect(error).toBeInstanceOf(DOMException)
      expect(error).toMatchObject({ name: "AbortError" })
      expect(worker.aborted.sort()).toEqual([0, 1])
      const [job] = (await manager.listJobs()).jobs
      expect(job?.state).toBe("cancelled")
      await drain()
      expect(worker.started).toHaveLength(2)
    })

    it("abort after completion changes nothing", async () => {
      await using manager = await createJobManager({ worker: async () => {} })
      const controller = new AbortController()
      const status = await manager.runJob(frames(2), { signal: controller.signal })
      controller.abort()
      await drain()
      expect(await manager.getJob(status.id)).toEqual(status)
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(0)
    })

    it("rejects with a custom reason when it is an Error, else with an AbortError carrying it", async () => {
      const worker = new GatedWorker()
      await using manager = await createJobManager({ worker: worker.run })
      const custom = new Error("user pressed stop")
      const controller = new AbortController()
      const run = rejection(manager.runJob(frames(1), { signal: controller.signal }))
      await worker.startedAtLeast(1)
      controller.abort(custom)
      expect(await run).toBe(custom)

      const second = new AbortController()
      const run2 = rejection(manager.runJob(frames(1), { signal: second.signal }))
      await worker.startedAtLeast(2)
      second.abort("quit")
      expect(await run2).toMatchObject({ name: "AbortError", message: "quit" })
    })

    it("waitForJob: aborting stops waiting without cancelling the job", async () => {
      const worker = new GatedWorker()
      await using manager = await createJobManager({ worker: worker.run })
      const id = await manager.submitJob(frames(1))
      await worker.startedAtLeast(1)
      const controller = new AbortController()
      const waiting = rejection(manager.waitForJob(id, { signal: controller.signal }))
      controller.abort()
      expect(await waiting).toMatchObject({ name: "AbortError" })
      expect((await manager.getJob(id))?.state).toBe("running")
      worker.release(0)
      expect((await manager.waitForJob(id)).state).toBe("completed")
    })

    it("one long-lived signal serves 10,000 runs without keeping a listener", async () => {
      const controller = new AbortController()
      for (let index = 0; index < 10_000; index++) {
        await Abort.runPromise(Effect.succeed(index), { signal: controller.signal })
      }
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(0)
      await using manager = await createJobManager({ worker: async () => {} })
      const status = await manager.runJob(frames(1))
      for (let index = 0; index < 1_000; index++) {
        await manager.waitForJob(status.id, { signal: controller.signal })
      }
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(0)
    })

    it("Abort.runPromise: an aborted signal starts nothing; an abort interrupts the fiber", async () => {
      let ran = false
      const error = await rejection(Abort.runPromise(Effect.sync(() => (ran = true)), { signal: AbortSignal.abort() }))
      expect(ran).toBe(false)
      expect(error).toMatchObject({ name: "AbortError" })

      let finalized = false
      const controller = new AbortController()
      const running = rejection(
        Abort.runPromise(Effect.never.pipe(Effect.ensuring(Effect.sync(() => (finalized = true)))), {
          signal: controller.signal
        })
      )
      await drain()
      controller.abort()
      expect(await running).toMatchObject({ name: "AbortError" })
      expect(finalized).toBe(true)
    })

    it("Abort.causeToError exposes the typed failure, never a Cause or FiberFailure", async () => {
      const error = await rejection(Abort.runPromise(Effect.fail({ code: 42 })))
      expect(error).toBeInstanceOf(Error)
      expect((error as Error).message).toBe("{\"code\":42}")
      expect((error as Error).name).toBe("Error")
      const defect = await rejection(Abort.runPromise(Effect.die(new TypeError("bug"))))
      expect(defect).toBeInstanceOf(TypeError)
    })
  })

  describe("watchJob", () => {
    it("yields statuses and ends after the terminal one", async () => {
      const worker = new GatedWorker()
      await using manager = await createJobManager({ worker: worker.run, concurrency: 1 })
      const id = await manager.submitJob(frames(3))
      const seen: Array<string> = []
      const watching = (async () => {
        for await (const status of manager.watchJob(id)) seen.push(`${status.state}:${status.completedChunks}`)
      })()
      for (let chunk = 0; chunk < 3; chunk++) {
        await worker.startedAtLeast(chunk + 1)
        worker.release(chunk)
      }
      await watching
      expect(seen[0]).toMatch(/^running:/)
      expect(seen.at(-1)).toBe("completed:3")
    })

    it("an abort makes the iteration throw the abort reason; an unknown id throws JobNotFound", async () => {
      const worker = new GatedWorker()
      await using manager = await createJobManager({ worker: worker.run })
      const id = await manager.submitJob(frames(1))
      const controller = new AbortController()
      const watching = rejection((async () => {
        for await (const _ of manager.watchJob(id, { signal: controller.signal })) controller.abort()
      })())
      expect(await watching).toMatchObject({ name: "AbortError" })
      const missing = rejection((async () => {
        for await (const _ of manager.watchJob("job_nope")) { /* nothing */ }
      })())
      expect(await missing).toMatchObject({ _tag: "JobNotFound" })
    })
  })

  it("close() interrupts running jobs and later calls reject with ManagerClosed", async () => {
    const worker = new GatedWorker()
    const manager = await createJobManager({ worker: worker.run })
    await manager.submitJob(frames(2))
    await worker.startedAtLeast(2)
    await manager.close()
    expect(worker.aborted.sort()).toEqual([0, 1])
    expect(await rejection(manager.listJobs())).toMatchObject({ _tag: "ManagerClosed" })
    await manager.close()
  })

  describe("executeJob", () => {
    it("runs every chunk and reports progress", async () => {
      const events: Array<number> = []
      const summary = await executeJob(frames(5), {
        worker: async () => {},
        concurrency: 2,
        onProgress: (event) => events.push(event.completedChunks)
      })
      expect(summary).toEqual({ totalChunks: 5, completedChunks: 5, failedChunks: 0, skippedChunks: 0 })
      expect(events).toEqual([1, 2, 3, 4, 5])
    })

    it("an aborted signal starts no chunk and rejects with an AbortError", async () => {
      const worker = new GatedWorker()
      const error = await rejection(executeJob(frames(5), { worker: worker.run, signal: AbortSignal.abort() }))
      expect(error).toMatchObject({ name: "AbortError" })
      expect(worker.started).toEqual([])
    })

    it("an abort mid-run fires the in-flight signals and starts no pending chunk", async () => {
      const worker = new GatedWorker()
      const controller = new AbortController()
      const run = rejection(executeJob(frames(50), { worker: worker.run, concurrency: 3, signal: controller.signal }))
      await worker.startedAtLeast(3)
      controller.abort()
      expect(await run).toMatchObject({ name: "AbortError" })
      expect(worker.aborted.sort()).toEqual([0, 1, 2])
      await drain()
      expect(worker.started).toHaveLength(3)
    })

    it("rejects a bad spec or option before running anything", async () => {
      const worker = new GatedWorker()
      expect(await rejection(executeJob({ chunks: { start: 0, end: 9, size: -1 } }, { worker: worker.run })))
        .toMatchObject({ _tag: "InvalidJobSpec", path: ["chunks", "size"] })
      expect(await rejection(executeJob(frames(1), { worker: worker.run, concurrency: Number.NaN })))
        .toMatchObject({ _tag: "InvalidOption", path: ["concurrency"] })
      expect(worker.started).toEqual([])
    })

    it("a failing chunk rejects with ChunkFailed carrying the chunk id and attempts", async () => {
      const error = await rejection(executeJob(frames(3), {
        worker: async (chunk) => {
          if (chunk.id === 1) throw new Error("no space left")
        },
        retry: { attempts: 2, initialDelay: 0 }
      }))
      expect(error).toMatchObject({ _tag: "ChunkFailed", chunkId: 1, attempts: 2 })
      expect((error as Error).message).toBe("chunk 1 failed after 2 attempts: no space left")
    })
  })
})

describe("Abort.whenAborted", () => {
  it.effect("fails with the abort reason and removes its listener when interrupted", () =>
    Effect.gen(function*() {
      const controller = new AbortController()
      const scope = yield* Scope.make()
      const exit = yield* Effect.exit(Effect.timeout(Abort.whenAborted(controller.signal), 0))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(0)
      yield* Scope.close(scope, Exit.void)
      const reason = new Error("stop")
      controller.abort(reason)
      const failed = yield* Effect.flip(Abort.whenAborted(controller.signal))
      expect(failed).toBe(reason)
    }))
})

describe("Promise facade stores", () => {
  it("an SQLite store keeps jobs across managers; a bad store option or an unreachable server rejects clearly", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs")
    const { tmpdir } = await import("node:os")
    const { join } = await import("node:path")
    const dir = mkdtempSync(join(tmpdir(), "effect-jobs-facade-"))
    try {
      const db = join(dir, "jobs.db")
      const first = await createJobManager({ worker: async () => {}, store: { sqlite: db } })
      const status = await first.runJob({ name: "kept", chunks: { start: 0, end: 9, size: 1 } })
      await first.close()
      const second = await createJobManager({ worker: async () => {}, store: { sqlite: db } })
      expect(await second.getJob(status.id)).toMatchObject({ name: "kept", state: "completed", completedChunks: 10 })
      await second.close()

      expect(await rejection(createJobManager({ worker: async () => {}, store: { sqlite: "" } })))
        .toMatchObject({ _tag: "InvalidOption" })
      expect(await rejection(createJobManager({ worker: async () => {}, store: "mysql://localhost/jobs" })))
        .toMatchObject({ _tag: "InvalidOption" })
      const unreachable = await rejection(createJobManager({ worker: async () => {}, store: "postgres://127.0.0.1:1/none" }))
      expect(unreachable).toBeInstanceOf(Error)
      expect(unreachable).toMatchObject({ _tag: "RepositoryError" })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("Abort.SignalLane", () => {
  it("hands a controller to the next attempt only if it was not aborted and no listener was left on it", () => {
    const lane = new Abort.SignalLane()
    const clean = new Abort.LazyAbortController(lane)
    const first = clean.signal
    clean.release()
    const reused = new Abort.LazyAbortController(lane)
    expect(reused.signal).toBe(first)
    const onAbort = () => {}
    reused.signal.addEventListener("abort", onAbort)
    reused.release()
    const afterListener = new Abort.LazyAbortController(lane)
    expect(afterListener.signal).not.toBe(first)
    const second = afterListener.signal
    afterListener.abort()
    afterListener.release()
    expect(second.aborted).toBe(true)
    const afterAbort = new Abort.LazyAbortController(lane)
    expect(afterAbort.signal).not.toBe(second)
    expect(afterAbort.signal.aborted).toBe(false)
    expect(first.aborted).toBe(false)
  })

  it("a signal first read after its attempt was aborted is already aborted", () => {
    const controller = new Abort.LazyAbortController(new Abort.SignalLane())
    controller.abort(new Error("timed out"))
    expect(controller.signal.aborted).toBe(true)
    expect(controller.signal.reason).toEqual(new Error("timed out"))
    expect(controller.signal).toBe(controller.signal)
  })
})
