/**
 * The metrics effect-jobs records, with Effect's `Metric` (export them with `@effect/opentelemetry` or
 * read them with `Metric.value`). Chunk metrics are updated in place on the hot path (no effect per
 * update); they count every job of the process.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/** Chunks whose first attempt started. @since 0.1.0 */
export const chunksStarted = Metric.counter("effect_jobs_chunks_started", {
  description: "chunks whose first attempt started",
  incremental: true
})

/** Chunks that succeeded. @since 0.1.0 */
export const chunksSucceeded = Metric.counter("effect_jobs_chunks_succeeded", {
  description: "chunks that succeeded",
  incremental: true
})

/** Chunks that ran out of attempts. @since 0.1.0 */
export const chunksFailed = Metric.counter("effect_jobs_chunks_failed", {
  description: "chunks that ran out of attempts",
  incremental: true
})

/** Attempts after the first (retries). @since 0.1.0 */
export const chunkRetries = Metric.counter("effect_jobs_chunk_retries", {
  description: "chunk attempts after the first",
  incremental: true
})

/** Time from a chunk's first attempt to its outcome, retries included, in milliseconds. @since 0.1.0 */
export const chunkDuration = Metric.histogram(
  "effect_jobs_chunk_duration_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 18 }),
  "time from a chunk's first attempt to its outcome, in milliseconds"
)

/** Jobs running now in this process. @since 0.1.0 */
export const jobsRunning = Metric.gauge("effect_jobs_jobs_running", { description: "jobs running in this process" })
