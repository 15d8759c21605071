/**
 * Cross-process cancel latency on one store (SQLite or PostgreSQL): an owner process runs jobs with 16
 * chunks in flight; this process cancels each through a `JobClient` with its default options (as the CLI
 * does) and times `cancelJob` until it returns `cancelled` (the owner noticed the stored request, interrupted
 * the job and stored the state, and this process saw it).
 * argv: runs, store as JSON (`{"sqlite":"file"}` or `{"pg":"url","schema":"name"}`). The owner is this
 * script with argv "owner <store>".
 */
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import * as ChunkWorker from "../src/ChunkWorker.js"
import * as JobClient from "../src/JobClient.js"
import * as JobManager from "../src/JobManager.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import { gatedWorker } from "./gated.js"

const inFlight = 16

type Store = { readonly sqlite: string } | { readonly pg: string; readonly schema: string }

const storeLayer = (store: Store) =>
  "sqlite" in store
    ? SqlJobRepository.layerSqlite({ filename: store.sqlite })
    : SqlJobRepository.layerPg({ url: store.pg, schema: store.schema })

const owner = async (store: Store) => {
  const gated = gatedWorker(inFlight)
  const runtime = ManagedRuntime.make(
    JobManager.layer({ concurrency: inFlight }).pipe(
      Layer.provide(storeLayer(store)),
      Layer.provide(ChunkWorker.layerPromise(gated.worker))
    )
  )
  const manager = await runtime.runPromise(JobManager.JobManager)
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== "next") break
    const allStarted = gated.nextRound()
    const id = await runtime.runPromise(manager.submitJob({ chunks: { start: 0, end: inFlight * 4 - 1, size: 1 } }))
    await allStarted
    process.stdout.write(`${id}\n`)
  }
  await runtime.dispose()
}

const canceller = async (runs: number, store: Store) => {
  const compiled = import.meta.filename.endsWith(".js")
  const args = [...(compiled ? [] : ["--import", "tsx"]), import.meta.filename, "owner", JSON.stringify(store)]
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const runtime = ManagedRuntime.make(storeLayer(store))
  const client = await runtime.runPromise(JobClient.make())
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

if (process.argv[2] === "owner") await owner(JSON.parse(process.argv[3]!) as Store)
else await canceller(Number(process.argv[2] ?? 50), JSON.parse(process.argv[3]!) as Store)

