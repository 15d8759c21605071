/**
 * S4: time until cancelJob resolves (with `cancelled` stored) for jobs with 16 chunks in flight, and the
 * chunks started after it resolved (must be 0). argv: runs, store ("memory" | "sqlite"), sqlite file.
 */
import { setImmediate as nextTurn } from "node:timers/promises"
import { createJobManager } from "../src/promise.js"
import { gatedWorker } from "./gated.js"

const runs = Number(process.argv[2] ?? 1_000)
const store = process.argv[3] === "sqlite" ? { sqlite: process.argv[4]! } : "memory" as const
const inFlight = 16

const gated = gatedWorker(inFlight)
const manager = await createJobManager({ worker: gated.worker, concurrency: inFlight, store })

const latencies: Array<number> = []
let startedAfterCancel = 0
for (let run = 0; run < runs; run++) {
  const allStarted = gated.nextRound()
  const id = await manager.submitJob({ chunks: { start: 0, end: inFlight * 4 - 1, size: 1 } })
  await allStarted
  const before = performance.now()
  const status = await manager.cancelJob(id)
  latencies.push(performance.now() - before)
  if (status.state !== "cancelled") throw new Error(`cancelJob returned ${status.state}`)
  const startedAtCancel = gated.started()
  for (let turn = 0; turn < 5; turn++) await nextTurn()
  startedAfterCancel += gated.started() - startedAtCancel
}
await manager.close()
latencies.sort((a, b) => a - b)
console.log(JSON.stringify({
  runs,
  median: latencies[latencies.length >> 1],
  p99: latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)],
  startedAfterCancel
}))
