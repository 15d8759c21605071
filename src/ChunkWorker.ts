/**
 * How one chunk is executed. The executor calls `run` once per attempt; the work must stop when the
 * attempt's `signal` fires (or, for an Effect worker, when its fiber is interrupted).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Chunk, JobId } from "./Job.js"

/**
 * What a worker knows about the attempt it runs.
 *
 * @since 0.1.0
 */
export interface ChunkContext {
  readonly jobId: JobId
  /** 1 for the first attempt, 2 for the first retry, ... */
  readonly attempt: number
  /**
   * Fires when this attempt is interrupted: the job is cancelled or paused, a sibling chunk failed the job,
   * or the attempt timed out. It is made on first read, so a worker that never reads it pays nothing.
   */
  readonly signal: AbortSignal
  /**
   * Reports how far this chunk has got, from 0 to 1 (e.g. frames rendered / frames of the chunk). Cheap: it
   * stores a number in memory, and nothing is written per call. The job's `progress` counts the fraction of
   * its running chunks (coalesced with its other progress writes); a value lower than one reported before
   * for the same chunk is ignored, so progress never goes back while the chunk runs. Values are clamped to
   * 0..1; calls after the attempt ended are ignored.
   */
  readonly reportProgress: (fraction: number) => void
}

/**
 * The worker service. An error (failure) of `run` is retried according to the job's retry policy, unless
 * it is a `NonRetryable`; a defect fails the job at once.
 *
 * @since 0.1.0
 */
export class ChunkWorker extends Context.Tag("effect-jobs/ChunkWorker")<ChunkWorker, {
  readonly run: (chunk: Chunk, context: ChunkContext) => Effect.Effect<unknown, unknown>
  /**
   * The Promise function behind `run`, when the worker was made by {@link fromPromise}: the executor calls
   * it directly (one async step per attempt, and a timeout without a fiber per attempt), with the same
   * semantics as `run`.
   */
  readonly promise?: ((chunk: Chunk, context: ChunkContext) => PromiseLike<unknown>) | undefined
}>() {}

/**
 * A worker from an Effect function. Interrupting the returned effect must stop the work.
 *
 * @since 0.1.0
 */
export const make = (run: (chunk: Chunk, context: ChunkContext) => Effect.Effect<unknown, unknown>): ChunkWorker["Type"] =>
  ChunkWorker.of({ run })

/**
 * A worker from a Promise function. A rejection (or a synchronous throw) is the attempt's error; a plain value
 * returned instead of a Promise is the result, as `await` would take it. The function should stop its work
 * when `context.signal` fires.
 *
 * The executor runs such a worker's chunks in lanes: a plain Promise loop per worker loop that leaves the
 * Effect runtime while chunks succeed (see `JobExecutor.ExecuteOptions.onChunksSettled`).
 *
 * @since 0.1.0
 */
export const fromPromise = (
  run: (chunk: Chunk, context: ChunkContext) => PromiseLike<unknown>
): ChunkWorker["Type"] =>
  ChunkWorker.of({
    run: (chunk, context) => Effect.tryPromise({ try: () => Promise.resolve(run(chunk, context)), catch: (error) => error }),
    promise: run
  })

/** @since 0.1.0 */
export const layer = (
  run: (chunk: Chunk, context: ChunkContext) => Effect.Effect<unknown, unknown>
): Layer.Layer<ChunkWorker> => Layer.succeed(ChunkWorker, make(run))

/** @since 0.1.0 */
export const layerPromise = (
  run: (chunk: Chunk, context: ChunkContext) => PromiseLike<unknown>
): Layer.Layer<ChunkWorker> => Layer.succeed(ChunkWorker, fromPromise(run))
