/**
 * Spans and metrics of a job, exported through OpenTelemetry to the console.
 *
 *     npx tsx examples/tracing.ts [--chunks N]
 *
 * Each job gets an `effect-jobs.job` span and, with a tracer installed, each chunk an `effect-jobs.chunk`
 * span (attributes `job.id`, `chunk.id`); the manager's operations (`JobManager.submitJob`, ...) are spans
 * too. The chunk metrics (`effect_jobs_chunks_*`, `effect_jobs_chunk_duration_ms`) and the
 * `effect_jobs_jobs_running` gauge are exported once the job is done.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ConsoleMetricExporter, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { ConsoleSpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import { ChunkWorker, JobManager, JobRepository } from "effect-jobs"
import { parseArgs } from "node:util"

const { values } = parseArgs({ options: { chunks: { type: "string", default: "6" } }, strict: true })
const chunks = Number(values.chunks)
if (!Number.isSafeInteger(chunks) || chunks < 1) {
  console.error("--chunks must be a positive integer")
  process.exit(2)
}

const Observability = NodeSdk.layer(() => ({
  resource: { serviceName: "effect-jobs-example" },
  spanProcessor: new SimpleSpanProcessor(new ConsoleSpanExporter()),
  metricReader: new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis: 60_000 })
}))

// A render node that takes 5-20 ms per chunk and fails a third of first attempts (the retries show up in
// the metrics).
const RenderNode = ChunkWorker.layer((_chunk, { attempt }) =>
  Effect.gen(function*() {
    yield* Effect.sleep(yield* Random.nextIntBetween(5, 20))
    if (attempt === 1 && (yield* Random.nextIntBetween(0, 3)) === 0) return yield* Effect.fail("render node busy")
  })
)

const Jobs = JobManager.layer({ concurrency: 3, retry: { attempts: 3, initialDelay: 5 } }).pipe(
  Layer.provide(JobRepository.layerMemory),
  Layer.provide(RenderNode)
)

const program = Effect.gen(function*() {
  const jobs = yield* JobManager.JobManager
  const status = yield* jobs.runJob({ name: "traced render", chunks: { start: 0, end: chunks * 24 - 1, size: 24 } })
  yield* Effect.log(`job ${status.id} ${status.state}: ${status.completedChunks}/${status.totalChunks} chunks`)
})

// The metric reader exports once more when the SDK shuts down, at the end of the program.
program.pipe(Effect.provide(Jobs), Effect.provide(Observability), NodeRuntime.runMain)
