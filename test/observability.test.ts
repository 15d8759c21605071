import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import { ChunkWorker } from "../src/ChunkWorker.js"
import * as ChunkWorkerModule from "../src/ChunkWorker.js"
import type { JobId } from "../src/Job.js"
import * as JobExecutor from "../src/JobExecutor.js"
import * as JobMetrics from "../src/JobMetrics.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import { withLogs } from "./support/capturedLogs.js"

const counts = Effect.all({
  started: Metric.value(JobMetrics.chunksStarted),
  succeeded: Metric.value(JobMetrics.chunksSucceeded),
  failed: Metric.value(JobMetrics.chunksFailed),
  retries: Metric.value(JobMetrics.chunkRetries),
  durations: Metric.value(JobMetrics.chunkDuration)
}).pipe(Effect.map((m) => ({
  started: m.started.count,
  succeeded: m.succeeded.count,
  failed: m.failed.count,
  retries: m.retries.count,
  durations: m.durations.count
})))

/** A tracer that records the spans it is asked to start (with their parent's name, for spans of this tracer). */
const recordingTracer = (
  names: Array<{ name: string; attributes: ReadonlyMap<string, unknown>; parent?: string | undefined }>
) => {
  const native = Effect.runSync(Effect.tracer)
  return Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = native.span(name, parent, context, links, startTime, kind, options)
      names.push({ name, attributes: span.attributes, parent: Option.getOrUndefined(Option.map(parent, (p) => p._tag === "Span" ? p.name : p.spanId)) })
      return span
    },
    context: (f) => f()
  })
}

describe("observability", () => {
  it.effect("chunk metrics count starts, outcomes, retries and durations", () =>
    Effect.gen(function*() {
      const before = yield* counts
      yield* JobExecutor.execute({ chunks: { start: 0, end: 9, size: 1 } }, {
        jobId: "job_metrics" as JobId,
        retry: { attempts: 2, initialDelay: 0 },
        failurePolicy: { maxFailedChunks: 10 }
      }).pipe(Effect.provideService(
        ChunkWorker,
        ChunkWorkerModule.make((chunk, { attempt }) => chunk.id < 3 && (chunk.id === 0 || attempt === 1) ? Effect.fail("x") : Effect.void)
      ))
      const after = yield* counts
      expect(after.started - before.started).toBe(10)
      expect(after.succeeded - before.succeeded).toBe(9)
      expect(after.failed - before.failed).toBe(1)
      expect(after.retries - before.retries).toBe(3)
      expect(after.durations - before.durations).toBe(10)
    }))

  it.effect("with a tracer installed, jobs and chunks get spans carrying their ids", () =>
    Effect.gen(function*() {
      const spans: Array<{ name: string; attributes: ReadonlyMap<string, unknown> }> = []
      const status = yield* Effect.flatMap(JobManager, (manager) => manager.runJob({ chunks: { start: 0, end: 2, size: 1 } })).pipe(
        Effect.provide(JobManagerModule.layer().pipe(
          Layer.provide(JobRepository.layerMemory),
          Layer.provide(ChunkWorkerModule.layer(() => Effect.void))
        )),
        Effect.withTracer(recordingTracer(spans))
      )
      const job = spans.find((span) => span.name === "effect-jobs.job")
      expect(Option.fromNullable(job?.attributes.get("job.id"))).toEqual(Option.some(status.id))
      const chunks = spans.filter((span) => span.name === "effect-jobs.chunk")
      expect(chunks.map((span) => span.attributes.get("chunk.id")).sort()).toEqual([0, 1, 2])
      expect(spans.some((span) => span.name === "JobManager.submitJob")).toBe(true)
    }))

  it.effect("a job's span is a root: not a child of the span the manager was built in", () =>
    Effect.gen(function*() {
      const spans: Array<{ name: string; attributes: ReadonlyMap<string, unknown>; parent?: string | undefined }> = []
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(JobManagerModule.layer().pipe(
          Layer.provide(JobRepository.layerMemory),
          Layer.provide(ChunkWorkerModule.layer(() => Effect.void))
        )).pipe(Effect.withSpan("application start-up"))
        yield* Context.get(context, JobManager).runJob({ chunks: { start: 0, end: 1, size: 1 } })
      })).pipe(Effect.withTracer(recordingTracer(spans)))
      const job = spans.find((span) => span.name === "effect-jobs.job")
      expect(job).toBeDefined()
      expect(job!.parent).toBeUndefined()
      expect(spans.find((span) => span.name === "effect-jobs.chunk")?.parent).toBe("effect-jobs.job")
    }))

  it.effect("logs from a job carry its id as the jobId annotation, and a submitter's logs do not", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const manager = yield* JobManager
        const first = yield* manager.runJob({ chunks: [{ id: 0, payload: null }] })
        const second = yield* manager.runJob({ chunks: [{ id: 0, payload: null }] })
        yield* Effect.logWarning("from the submitter")
        const jobOf = (text: string) => logs.entries.filter((entry) => entry.text === text).map((entry) => entry.annotations.jobId)
        expect(jobOf("chunk ran")).toEqual([first.id, second.id])
        expect(jobOf("from the submitter")).toEqual([undefined])
      }).pipe(
        Effect.provide(JobManagerModule.layer().pipe(
          Layer.provide(JobRepository.layerMemory),
          Layer.provide(ChunkWorkerModule.layer(() => Effect.logWarning("chunk ran")))
        ))
      )
    ))
})
