/**
 * S3: peak RSS growth of one range job of N chunks (argv[2]) over the idle baseline of a manager that has
 * already run a small job. Prints JSON. Run in a fresh process by bench/run.ts.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChunkWorker from "../src/ChunkWorker.js"
import * as JobManager from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"

const chunks = Number(process.argv[2] ?? 1_000_000)
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})
const noop = (_chunk: unknown, { signal }: { readonly signal: AbortSignal }) =>
  signal.aborted ? Promise.reject(signal.reason) : new Promise<void>((resolve) => setImmediate(resolve))
const mb = (bytes: number) => bytes / 2 ** 20

const program = Effect.gen(function*() {
  const manager = yield* JobManager.JobManager
  const run = (end: number) => manager.runJob({ chunks: { start: 0, end: end - 1, size: 1 } })
  yield* run(10_000) // warm up: load and optimise the code paths before the baseline
  gc()
  const baseline = process.memoryUsage()
  let peakRss = baseline.rss
  let peakHeap = baseline.heapUsed
  const sampler = setInterval(() => {
    const now = process.memoryUsage()
    peakRss = Math.max(peakRss, now.rss)
    peakHeap = Math.max(peakHeap, now.heapUsed)
  }, 20)
  const status = yield* run(chunks)
  clearInterval(sampler)
  if (status.state !== "completed") throw new Error(`job ended ${status.state}`)
  gc()
  const retained = process.memoryUsage()
  return {
    peakGrowthMb: mb(peakRss - baseline.rss),
    heapGrowthMb: mb(peakHeap - baseline.heapUsed),
    retainedHeapMb: mb(retained.heapUsed - baseline.heapUsed),
    chunks
  }
})

const layer = JobManager.layer({ concurrency: 16, retry: { attempts: 3 }, chunkTimeout: "30 seconds" }).pipe(
  Layer.provide(JobRepository.layerMemory),
  Layer.provide(ChunkWorker.layerPromise(noop))
)
Effect.runPromise(Effect.provide(program, layer)).then((result) => console.log(JSON.stringify(result)))
