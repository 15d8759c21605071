/**
 * Spans and metrics of a job, exported through OpenTelemetry, then printed as a span tree and a metric
 * summary.
 *
 *     npx tsx examples/tracing.ts [--chunks N]
 *
 * Each job gets an `effect-jobs.job` span and, with a tracer installed, each chunk an `effect-jobs.chunk`
 * span (attributes `job.id`, `chunk.id`); the manager's operations (`JobManager.submitJob`, ...) are spans
 * too. The chunk metrics (`effect_jobs_chunks_*`, `effect_jobs_chunk_duration_ms`) and the
 * `effect_jobs_jobs_running` gauge are exported once the job is done.
 *
 * The exporters here keep what they receive in memory so that it can be printed; for a real backend, use
 * an OTLP exporter (`@opentelemetry/exporter-trace-otlp-http`, ...) in their place.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import type { DataPoint, Histogram, MetricData } from "@opentelemetry/sdk-metrics"
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  PeriodicExportingMetricReader
} from "@opentelemetry/sdk-metrics"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
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

// --- Exporters that keep what they are given ---

const spans: Array<ReadableSpan> = []
const spanExporter: SpanExporter = {
  export: (batch, done) => {
    spans.push(...batch)
    done({ code: 0 }) // ExportResultCode.SUCCESS
  },
  shutdown: () => Promise.resolve()
}
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)

const Observability = NodeSdk.layer(() => ({
  resource: { serviceName: "effect-jobs-example" },
  spanProcessor: new SimpleSpanProcessor(spanExporter),
  // Exported once, when the SDK shuts down at the end of the program.
  metricReader: new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 60_000 })
}))

// --- The job ---

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
  console.log(`job ${status.id} ${status.state}: ${status.completedChunks}/${status.totalChunks} chunks`)
})

// --- Printing what was exported ---

const millis = (span: ReadableSpan): number => span.duration[0] * 1e3 + span.duration[1] / 1e6

/** The span's name and its job or chunk id (a chunk's job is its parent's). */
const label = (span: ReadableSpan): string => {
  const key = "chunk.id" in span.attributes ? "chunk.id" : "job.id"
  const attributes = key in span.attributes ? [`${key}=${String(span.attributes[key])}`] : []
  const status = span.status.code === 2 ? `  ERROR ${span.status.message ?? ""}`.trimEnd() : ""
  return [span.name, ...attributes].join("  ") + status
}

/** The spans as a tree (children under their parent, in start order), one line each with its duration. */
const spanTree = (all: ReadonlyArray<ReadableSpan>): Array<string> => {
  const ids = new Set(all.map((span) => span.spanContext().spanId))
  const children = new Map<string | undefined, Array<ReadableSpan>>()
  for (const span of all) {
    const parent = span.parentSpanContext?.spanId
    const key = parent !== undefined && ids.has(parent) ? parent : undefined
    children.set(key, [...(children.get(key) ?? []), span])
  }
  const startOf = (span: ReadableSpan) => span.startTime[0] * 1e9 + span.startTime[1]
  const rows: Array<[string, number]> = []
  const walk = (parent: string | undefined, indent: string) => {
    const list = [...(children.get(parent) ?? [])].sort((a, b) => startOf(a) - startOf(b))
    list.forEach((span, index) => {
      const last = index === list.length - 1
      const root = parent === undefined
      rows.push([`${indent}${root ? "" : last ? "└─ " : "├─ "}${label(span)}`, millis(span)])
      walk(span.spanContext().spanId, root ? indent : indent + (last ? "   " : "│  "))
    })
  }
  walk(undefined, "")
  const width = Math.max(...rows.map(([text]) => text.length))
  return rows.map(([text, duration]) => `${text.padEnd(width)}  ${duration.toFixed(1).padStart(7)} ms`)
}

const describeMetric = (metric: MetricData): string => {
  if (metric.dataPointType === DataPointType.HISTOGRAM) {
    const points = metric.dataPoints as Array<DataPoint<Histogram>>
    const count = points.reduce((sum, point) => sum + point.value.count, 0)
    const total = points.reduce((sum, point) => sum + (point.value.sum ?? 0), 0)
    const max = Math.max(...points.map((point) => point.value.max ?? 0))
    return `count ${count}, mean ${(count === 0 ? 0 : total / count).toFixed(1)}, max ${max.toFixed(1)}` +
      (metric.descriptor.name.endsWith("_ms") ? " (ms)" : "")
  }
  const points = metric.dataPoints as Array<DataPoint<number>>
  return String(points.reduce((sum, point) => sum + point.value, 0))
}

/** The effect-jobs metrics of the last export (cumulative), one line each. */
const metricSummary = (): Array<string> => {
  const last = metricExporter.getMetrics().at(-1)
  const metrics = (last?.scopeMetrics ?? []).flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name.startsWith("effect_jobs_"))
    .sort((a, b) => a.descriptor.name.localeCompare(b.descriptor.name))
  const width = Math.max(0, ...metrics.map((metric) => metric.descriptor.name.length))
  return metrics.map((metric) => `${metric.descriptor.name.padEnd(width)}  ${describeMetric(metric)}`)
}

const report = Effect.sync(() => {
  console.log(`\nSpans (${spans.length}):`)
  for (const line of spanTree(spans)) console.log(`  ${line}`)
  console.log("\nMetrics:")
  for (const line of metricSummary()) console.log(`  ${line}`)
})

// The SDK shuts down (and exports the metrics) when the program that `Observability` is provided to ends.
program.pipe(Effect.provide(Jobs), Effect.provide(Observability), Effect.zipRight(report), NodeRuntime.runMain)
