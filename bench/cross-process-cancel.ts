/**
 * Cross-process cancel latency on one SQLite store: an owner process runs jobs with 16 chunks in flight;
 * this process cancels each through `JobClient` and times `cancelJob` until it returns `cancelled` (the
 * owner noticed the stored request, interrupted the job and stored the state).
 * argv: runs, sqlite file. The owner is this script with argv "owner <file>".
 */
import * as ManagedRuntime from "effect/ManagedRuntime"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import * as JobClient from "../src/JobClient.js"
import { createJobManager } from "../src/promise.js"
import { gatedWorker } from "./gated.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"

const inFlight = 16

const owner = async (file: string) => {
  const gated = gatedWorker(inFlight)
  const manager = await createJobManager({ worker: gated.worker, concurrency: inFlight, store: { sqlite: file } })
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== "next") break
    const allStarted = gated.nextRound()
    const id = await manager.submitJob({ chunks: { start: 0, end: inFlight * 4 - 1, size: 1 } })
    await allStarted
    process.stdout.write(`${id}\n`)
  }
  await manager.close()
}

const canceller = async (runs: number, file: string) => {
  const compiled = import.meta.filename.endsWith(".js")
  const child = spawn(process.execPath, [...(compiled ? [] : ["--import", "tsx"]), import.meta.filename, "owner", file], {
    stdio: ["pipe", "pipe", "inherit"]
  })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const runtime = ManagedRuntime.make(SqlJobRepository.layerSqlite({ filename: file }))
  const client = await runtime.runPromise(JobClient.make({ pollInterval: 1 }))
  const latencies: Array<number> = []
  for (let run = 0; run < runs; run++) {
    child.stdin.write("next\n")
    const next = await lines.next()
    if (next.done) throw new Error("the owner process ended")
    const before = performance.now()
    const status = await runtime.runPromise(client.cancelJob(next.value))
    latencies.push(performance.now() - before)
    if (status.state !== "cancelled") throw new Error(`cancelJob returned ${status.state}`)
  }
  child.stdin.end()
  await new Promise((resolve) => child.once("exit", resolve))
  await runtime.dispose()
  latencies.sort((a, b) => a - b)
  console.log(JSON.stringify({
    runs,
    median: latencies[latencies.length >> 1],
    p99: latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)]
  }))
}

if (process.argv[2] === "owner") await owner(process.argv[3]!)
else await canceller(Number(process.argv[2] ?? 50), process.argv[3]!)

