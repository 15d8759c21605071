/**
 * Durability of the SQLite store with real processes: a process running a job is killed with SIGKILL at
 * random instants, and a manager started afterwards finishes the job from its checkpoint; a reader in
 * another process polls the store while 1,000 chunks run at concurrency 16.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import Database from "better-sqlite3"
import { afterAll, describe, expect, it } from "vitest"
import * as ChunkWorker from "../src/ChunkWorker.js"
import * as JobManager from "../src/JobManager.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import { createJobManager } from "../src/promise.js"
import { loggingWorker, streamFlushInterval, streamOptions, streamSources } from "./fixtures/streamJobs.js"
import { killAll, startTsx } from "./support/tsxProcess.js"

const dir = mkdtempSync(join(tmpdir(), "effect-jobs-durability-"))
afterAll(() => {
  killAll()
  rmSync(dir, { recursive: true, force: true })
})

/** The same options as test/fixtures/owner.ts. */
const concurrency = 4
const flushInterval = 50
const chunkMillis = { min: 3, max: 8 }

const fixture = (name: string, args: ReadonlyArray<string>) => startTsx(`test/fixtures/${name}.ts`, args)

const until = async (condition: () => boolean, what: string, timeoutMillis = 15_000) => {
  const deadline = Date.now() + timeoutMillis
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const executions = (log: string): Array<number> =>
  existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((line) => line !== "").map(Number) : []

/**
 * Starts the owner fixture `owner` on a fresh store named `name`, and kills it with SIGKILL once `share` of its
 * `chunks` have completed; returns the store, the execution log, the job id and the chunks completed by then.
 */
const killOwner = async (owner: string, name: string, chunks: number, share: number) => {
  const db = join(dir, `${name}.db`)
  const log = join(dir, `${name}.log`)
  const idFile = join(dir, `${name}.id`)
  const started = fixture(owner, [db, log, idFile, String(chunks)])
  await until(() => executions(log).length >= Math.floor(chunks * share), "the owner's progress")
  started.child.kill("SIGKILL")
  await started.exited
  return { db, log, id: readFileSync(idFile, "utf8"), beforeKill: executions(log).length }
}

describe("SQLite store durability", () => {
  const chunks = 300
  // Kill the owner at several random instants (as a share of the chunks it has completed).
  const instants = Array.from({ length: 4 }, () => 0.1 + Math.random() * 0.8)

  it.each(instants.map((instant, index) => [index, instant] as const))(
    "SIGKILL at random instant #%i (after %f of the chunks): the job completes and no completed chunk is lost",
    async (index, instant) => {
      const { beforeKill, db, id, log } = await killOwner("owner", `kill-${index}`, chunks, instant)

      // The store is intact and the job is still `running`, owned by the dead process.
      const raw = new Database(db, { readonly: true })
      expect(raw.pragma("integrity_check", { simple: true })).toBe("ok")
      raw.close()

      // A new manager takes the job over once the dead owner's heartbeat is stale.
      const runtime = ManagedRuntime.make(
        JobManager.layer({ concurrency, heartbeatInterval: 100, staleAfter: 400, pollInterval: 20 }).pipe(
          Layer.provide(SqlJobRepository.layerSqlite({ filename: db, flushInterval })),
          Layer.provide(ChunkWorker.layer((chunk) =>
            Effect.sleep(chunkMillis.min + (chunk.id % 6)).pipe(
              Effect.zipRight(Effect.sync(() => appendFileSync(log, `${chunk.id}\n`)))
            )
          ))
        )
      )
      try {
        const status = await runtime.runPromise(Effect.flatMap(JobManager.JobManager, (manager) => manager.awaitJob(id)))
        expect(status).toMatchObject({ state: "completed", completedChunks: chunks, failedChunks: 0, progress: 100 })
      } finally {
        await runtime.dispose()
      }

      const all = executions(log)
      const counts = new Map<number, number>()
      for (const chunk of all) counts.set(chunk, (counts.get(chunk) ?? 0) + 1)
      // Every chunk completed at least once: none was lost.
      expect([...counts.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: chunks }, (_, i) => i))
      // Run twice at most: the chunks in flight at the kill plus those completed in the last flush window.
      const twice = [...counts.values()].filter((count) => count > 1).length
      const flushWindowChunks = Math.ceil((flushInterval / chunkMillis.min) * concurrency)
      expect(twice).toBeLessThanOrEqual(concurrency + flushWindowChunks)
      // The owner really died mid-job: the job was not done when it was killed.
      expect(beforeKill).toBeGreaterThan(0)
      expect(beforeKill).toBeLessThan(chunks)
    },
    30_000
  )

  it.each([0.3, 0.7])(
    "a streamed job, SIGKILL after %f of its chunks: resumed from the chunks pulled and not completed, then its stream made again",
    async (instant) => {
      const { beforeKill, db, id, log } = await killOwner("streamOwner", `stream-${instant}`, chunks, instant)

      // The store is intact: the job is streaming (no total yet), and the chunks it pulled and had not completed
      // are recorded.
      const raw = new Database(db, { readonly: true })
      expect(raw.pragma("integrity_check", { simple: true })).toBe("ok")
      const row = raw.prepare("SELECT state, streaming FROM effect_jobs WHERE id = ?").get(id)
      const pulled = raw.prepare("SELECT COUNT(*) AS count FROM effect_jobs_pulled WHERE job_id = ?").get(id) as {
        count: number
      }
      raw.close()
      expect(row).toEqual({ state: "running", streaming: 1 })
      expect(pulled.count).toBeLessThanOrEqual(2 * streamOptions.concurrency + 1)

      const runtime = ManagedRuntime.make(
        JobManager.layer({ ...streamOptions, sources: streamSources }).pipe(
          Layer.provide(SqlJobRepository.layerSqlite({ filename: db, flushInterval: streamFlushInterval })),
          Layer.provide(loggingWorker(log))
        )
      )
      try {
        const status = await runtime.runPromise(Effect.flatMap(JobManager.JobManager, (manager) => manager.awaitJob(id)))
        expect(status).toMatchObject({ state: "completed", totalChunks: chunks, completedChunks: chunks, progress: 100 })
      } finally {
        await runtime.dispose()
      }
      const counts = new Map<number, number>()
      for (const chunk of executions(log)) counts.set(chunk, (counts.get(chunk) ?? 0) + 1)
      expect([...counts.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: chunks }, (_, i) => i))
      // Run twice at most: the chunks in flight at the kill plus those completed in the last flush window.
      const twice = [...counts.values()].filter((count) => count > 1).length
      expect([...counts.values()].every((count) => count <= 2)).toBe(true)
      expect(twice).toBeLessThanOrEqual(
        streamOptions.concurrency + Math.ceil((streamFlushInterval / chunkMillis.min) * streamOptions.concurrency)
      )
      expect(beforeKill).toBeGreaterThan(0)
      expect(beforeKill).toBeLessThan(chunks)
    },
    30_000
  )

  it("1,000 chunks at concurrency 16 while another process polls getJob/listJobs: no error, no torn record", async () => {
    const db = join(dir, "poll.db")
    await using manager = await createJobManager({
      worker: () => new Promise<void>((resolve) => setTimeout(resolve, 1)),
      concurrency: 16,
      store: { sqlite: db }
    })
    const reader = fixture("reader", [db])
    await until(() => reader.stderr().includes("ready\n"), "the reader to open the store")
    const id = await manager.submitJob({ chunks: { start: 0, end: 999, size: 1 } })
    const status = await manager.waitForJob(id)
    expect(status).toMatchObject({ state: "completed", completedChunks: 1000 })
    const code = await reader.exited
    expect(reader.stderr()).toBe("ready\n")
    expect(code).toBe(0)
    const result = JSON.parse(reader.stdout()) as { reads: number; errors: Array<string>; regressions: number; final: string }
    expect(result.errors).toEqual([])
    expect(result.regressions).toBe(0)
    expect(result.final).toBe("completed")
    expect(result.reads).toBeGreaterThan(10)
  }, 60_000)
})
