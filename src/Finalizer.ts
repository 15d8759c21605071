/**
 * The finalize step of a job: one effect that runs after the job's chunks are done (e.g. stitching the
 * rendered segments into one video). A job names its finalizer in its spec (`finalize: { name, payload }`);
 * the manager is given the finalizers by name, so a job resumed by another process can still finalize.
 *
 * Guarantees:
 * - It runs once the chunk phase ended without failing the job (with the default fail-fast policy: after
 *   every chunk succeeded); never for a job that is cancelled or failed.
 * - While it runs the job's status has `phase: "finalizing"`.
 * - It is interruptible like a chunk: cancelling or pausing the job interrupts it and its `signal` fires.
 * - Its failure fails the job (`FinalizeFailed`).
 * - A job paused or re-queued while finalizing runs it again when it resumes: make it idempotent.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { ChunkResult, JobId, JobSpec, Json } from "./Job.js"
import type { JobNotFound, RepositoryError } from "./JobError.js"
import { describeError } from "./JobError.js"

/**
 * What a finalizer knows about its job.
 *
 * @since 0.1.0
 */
export interface FinalizeContext {
  readonly jobId: JobId
  readonly spec: JobSpec
  /** The `payload` of the spec's `finalize`. */
  readonly payload: Json | undefined
  readonly completedChunks: number
  /** Chunks that failed within the failure policy's tolerance (0 with fail-fast). */
  readonly failedChunks: number
  /** Fires when the finalize step is interrupted. */
  readonly signal: AbortSignal
  /**
   * The results the job's chunks returned, in chunk-id order (chunks that returned nothing are left out), read
   * from the store a page at a time as the stream is pulled: memory stays flat however many there are.
   */
  readonly results: Stream.Stream<ChunkResult, JobNotFound | RepositoryError>
}

/**
 * What a Promise finalizer knows about its job: the same as {@link FinalizeContext}, with the results as an
 * `AsyncIterable` (`for await (const { id, result } of context.results)`).
 *
 * @since 0.2.0
 */
export interface PromiseFinalizeContext extends Omit<FinalizeContext, "results"> {
  readonly results: AsyncIterable<ChunkResult>
}

/**
 * A finalize step.
 *
 * @since 0.1.0
 */
export type Finalizer = (context: FinalizeContext) => Effect.Effect<unknown, unknown>

/**
 * The finalize step failed; the job is stored `failed` with this message.
 *
 * @since 0.1.0
 */
export class FinalizeFailed extends Schema.TaggedError<FinalizeFailed>()("FinalizeFailed", {
  name: Schema.String,
  cause: Schema.Defect
}) {
  override get message(): string {
    return `finalize step ${JSON.stringify(this.name)} failed: ${describeError(this.cause)}`
  }
}

/**
 * A finalizer from a Promise function; it should stop when `context.signal` fires.
 *
 * @since 0.1.0
 */
export const fromPromise = (run: (context: PromiseFinalizeContext) => PromiseLike<unknown>): Finalizer => (context) =>
  Effect.tryPromise({
    try: () =>
      run({
        jobId: context.jobId,
        spec: context.spec,
        payload: context.payload,
        completedChunks: context.completedChunks,
        failedChunks: context.failedChunks,
        get signal() {
          return context.signal
        },
        results: Stream.toAsyncIterable(context.results)
      }),
    catch: (error) => error
  })
