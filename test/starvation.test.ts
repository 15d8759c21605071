/**
 * A job of instant chunks must not starve the process: with a Promise worker that resolves at once, timers,
 * heartbeats and a cancel still run on time (the worker loops let the event loop take a turn every few ms).
 */
import Database from "better-sqlite3"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { createJobManager } from "../src/promise.js"

const dir = mkdtempSync(join(tmpdir(), "effect-jobs-starvation-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("a job of instant chunks on SQLite", () => {
  it("2,000,000 chunks of `async () => {}`: a timer at 1 s fires on time, heartbeats keep their interval, a cancel at 1 s returns at once", async () => {
    const db = join(dir, "instant.db")
    const heartbeatInterval = 200
    await using manager = await createJobManager({
      worker: async () => {},
      concurrency: 16,
      store: { sqlite: db },
      heartbeatInterval,
      staleAfter: 2_000
    })
    const reader = new Database(db, { readonly: true })
    const beats: Array<number> = []
    const readBeat = () => {
      const row = reader.prepare("SELECT max(heartbeat_at) AS at FROM effect_jobs_owners").get() as { at: number | null }
      if (row.at !== null && row.at !== beats[beats.length - 1]) beats.push(row.at)
    }
    const poller = setInterval(readBeat, 20)
    try {
      const id = await manager.submitJob({ chunks: { start: 0, end: 1_999_999, size: 1 } })
      const scheduledAt = performance.now()
      const { firedAfter, cancelMillis, state } = await new Promise<{
        firedAfter: number
        cancelMillis: number
        state: string
      }>((resolve, reject) =>
        setTimeout(() => {
          const firedAfter = performance.now() - scheduledAt
          const cancelStarted = performance.now()
          manager.cancelJob(id).then(
            (status) => resolve({ firedAfter, cancelMillis: performance.now() - cancelStarted, state: status.state }),
            reject
          )
        }, 1_000)
      )
      readBeat()
      const status = await manager.getJob(id)
      // The job was running all along (not done by the time the timer fired): it ran chunks, not all of them.
      expect(state).toBe("cancelled")
      expect(status!.completedChunks).toBeGreaterThan(0)
      expect(status!.completedChunks).toBeLessThan(2_000_000)
      expect(firedAfter).toBeLessThan(1_000 + 100)
      // Starved, the cancel would not run before the job's end (about 27 s); measured on a quiet machine: 15 to
      // 48 ms. The bound leaves room for the suite's other files running on the same 2 cores.
      expect(cancelMillis).toBeLessThan(250)
      // Heartbeats kept their interval while the chunks ran.
      const gaps = beats.slice(1).map((beat, index) => beat - beats[index]!)
      expect(beats.length).toBeGreaterThanOrEqual(4)
      expect(Math.max(...gaps)).toBeLessThan(heartbeatInterval * 2)
    } finally {
      clearInterval(poller)
      reader.close()
    }
  }, 60_000)
})
