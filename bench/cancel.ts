/**
 * S4: time until cancelJob resolves (with `cancelled` stored) for jobs with 16 chunks in flight, and the
 * chunks started after it resolved (must be 0). The first `warmUp` cancels (a fifth of the runs, while the
 * code is being optimised) are not timed. argv: runs, store ("memory" | "sqlite"), sqlite file.
 */
import { PerformanceObserver } from "node:perf_hooks"
import { setImmediate as nextTurn } from "node:timers/promises"
import { createJobManager } from "../src/promise.js"
import { gatedWorker } from "./gated.js"

const runs = Number(process.argv[2] ?? 1_000)
const store = process.argv[3] === "sqlite" ? { sqlite: process.argv[4]! } : "memory" as const
const inFlight = 16

const gated = gatedWorker(inFlight)
const manager = await createJobManager({ worker: gated.worker, concurrency: inFlight, store })

// Garbage collections, to tell how many slow cancels overlapped one.
const collections: Array<{ readonly start: number; readonly end: number }> = []
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) collections.push({ start: entry.startTime, end: entry.startTime + entry.duration })
})
gcObserver.observe({ entryTypes: ["gc"] })

const latencies: Array<number> = []
const slow: Array<{ readonly start: number; readonly end: number; readonly run: number }> = []
let startedAfterCancel = 0
const warmUp = Math.ceil(runs / 5)
for (let run = -warmUp; run < runs; run++) {
  const allStarted = gated.nextRound()
  const id = await manager.submitJob({ chunks: { start: 0, end: inFlight * 4 - 1, size: 1 } })
  await allStarted
  const before = performance.now()
  const status = await manager.cancelJob(id)
  const after = performance.now()
  if (run >= 0) {
    latencies.push(after - before)
    if (after - before > 1) slow.push({ start: before, end: after, run })
  }
  if (status.state !== "cancelled") throw new Error(`cancelJob returned ${status.state}`)
  const startedAtCancel = gated.started()
  for (let turn = 0; turn < 5; turn++) await nextTurn()
  startedAfterCancel += gated.started() - startedAtCancel
}
await manager.close()
await new Promise((resolve) => setImmediate(resolve))
gcObserver.disconnect()
const slowDuringGc = slow.filter((run) => collections.some((gc) => gc.start < run.end && gc.end > run.start)).length
latencies.sort((a, b) => a - b)
console.log(JSON.stringify({
  runs,
  median: latencies[latencies.length >> 1],
  p99: latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)],
  startedAfterCancel,
  over1ms: slow.length,
  over1msDuringGc: slowDuringGc
}))
