/**
 * Runs one job's chunks through the `ChunkWorker`: a pool of `concurrency` fibers pulling chunks lazily
 * from the spec, with a per-chunk retry policy, a per-chunk timeout and a failure policy.
 *
 * Memory grows with the concurrency, never with the number of chunks: chunks are made one at a time as a
 * worker fiber pulls them, and nothing is kept per chunk once it has settled.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { LazyAbortController, SignalLane } from "./Abort.js"
import { DurationInput, FunctionInput, PositiveDurationInput } from "./internal/schemas.js"
import * as JobMetrics from "./JobMetrics.js"
import type { DeadlineSlot } from "./internal/deadlines.js"
import * as Deadlines from "./internal/deadlines.js"
import { MacrotaskYield } from "./internal/macrotaskYield.js"
import { isTracing } from "./internal/tracing.js"
import type { ChunkContext } from "./ChunkWorker.js"
import { ChunkWorker } from "./ChunkWorker.js"
import type { Chunk, JobId, JobSpec } from "./Job.js"
import { chunkAt, totalChunks } from "./Job.js"
import { ChunkFailed, ChunkTimeout, firstIssue, InvalidOption, isNonRetryable, JobFailed } from "./JobError.js"

const RetryableFunction = FunctionInput<(error: unknown) => boolean>("a function (error) => boolean")

/**
 * When and how a failed chunk attempt is tried again.
 *
 * @since 0.1.0
 */
export const RetryPolicy = Schema.Struct({
  /** Attempts in all, the first included (1..100, default 3). */
  attempts: Schema.optional(Schema.Int.pipe(Schema.between(1, 100))),
  /**
   * Delay before the first retry (finite, 0 or more; default 100 ms); each further retry waits `factor`
   * times longer.
   */
  initialDelay: Schema.optional(DurationInput),
  /** Growth of the delay per retry (1..100, default 2). */
  factor: Schema.optional(Schema.Number.pipe(Schema.between(1, 100))),
  /** Upper bound of a delay (finite, more than 0; default 30 s). */
  maxDelay: Schema.optional(PositiveDurationInput),
  /** Multiply each delay by a random factor in 0.8..1.2 (then cap it at `maxDelay`); default true. */
  jitter: Schema.optional(Schema.Boolean),
  /** Which errors are retried (default: all but `NonRetryable`). */
  isRetryable: Schema.optional(RetryableFunction)
}).annotations({ identifier: "RetryPolicy" })
/** @since 0.1.0 */
export type RetryPolicy = typeof RetryPolicy.Type

/**
 * What a job does when chunks run out of attempts: `"fail-fast"` (the default) fails the job on the first
 * such chunk and interrupts the others; `{ maxFailedChunks: N }` tolerates up to N failed chunks and
 * `{ maxFailedPercent: P }` up to P percent of the job's chunks, failing the job when one more fails.
 * A job that ends within its tolerance is `completed`, with its `failedChunks` counted.
 *
 * @since 0.1.0
 */
export const FailurePolicy = Schema.Union(
  Schema.Literal("fail-fast"),
  Schema.Struct({ maxFailedChunks: Schema.Int.pipe(Schema.nonNegative()) }),
  Schema.Struct({ maxFailedPercent: Schema.Number.pipe(Schema.between(0, 100)) })
).annotations({ identifier: "FailurePolicy" })
/** @since 0.1.0 */
export type FailurePolicy = typeof FailurePolicy.Type

/**
 * How a job's chunks are run.
 *
 * @since 0.1.0
 */
export const ExecutionOptions = Schema.Struct({
  /** Chunks in flight at once (1..10,000, default 4). */
  concurrency: Schema.optional(Schema.Int.pipe(Schema.between(1, 10_000))),
  retry: Schema.optional(RetryPolicy),
  /**
   * Time limit of one attempt (finite, more than 0); on expiry the attempt is interrupted and counts as a
   * failed attempt.
   */
  chunkTimeout: Schema.optional(PositiveDurationInput),
  failurePolicy: Schema.optional(FailurePolicy)
}).annotations({ identifier: "ExecutionOptions" })
/** @since 0.1.0 */
export type ExecutionOptions = typeof ExecutionOptions.Type

const decodeExecutionOptions = Schema.decodeUnknown(ExecutionOptions, { onExcessProperty: "error" })

/**
 * Validates execution options; a bad option fails with `InvalidOption` naming it.
 *
 * @since 0.1.0
 */
export const validateOptions = (input: unknown): Effect.Effect<ExecutionOptions, InvalidOption> =>
  Effect.mapError(decodeExecutionOptions(input ?? {}), (error) => new InvalidOption(firstIssue(error)))

/**
 * A settled chunk and the job's counts after it.
 *
 * @since 0.1.0
 */
export interface ChunkSettled {
  readonly chunkId: number
  readonly outcome: "completed" | "failed"
  readonly completedChunks: number
  readonly failedChunks: number
  readonly totalChunks: number
}

/**
 * Options of one execution.
 *
 * @since 0.1.0
 */
export interface ExecuteOptions extends ExecutionOptions {
  readonly jobId: JobId
  /**
   * Chunk ids already completed (by an earlier run, e.g. a checkpoint): they are not run again and count as
   * completed from the start, so progress continues from where the earlier run left it. Every id in it
   * must be an id of the spec's chunks.
   */
  readonly skip?: { readonly has: (chunkId: number) => boolean; readonly size: number } | undefined
  /** Called after each chunk settles, in the fiber that ran it. */
  readonly onChunkSettled?: ((event: ChunkSettled) => Effect.Effect<void>) | undefined
  /**
   * Read before each chunk is pulled: once it returns true, no further chunk starts, the chunks in flight
   * finish, and the execution succeeds with the counts so far (fewer settled chunks than `totalChunks`).
   * A graceful drain, unlike interruption, which stops the chunks in flight too.
   */
  readonly shouldStop?: (() => boolean) | undefined
  /**
   * Read before each chunk is pulled: when it returns an effect, the pull waits for it, then asks again (a
   * manager holds its pulls while it cannot prove that it still owns the job). `undefined`: pull.
   */
  readonly beforePull?: (() => Effect.Effect<void> | undefined) | undefined
}

/**
 * The counts of an execution that ended without failing the job.
 *
 * @since 0.1.0
 */
export interface ExecutionSummary {
  readonly totalChunks: number
  /** Chunks that succeeded, skipped ones included. */
  readonly completedChunks: number
  /** Chunks that ran out of attempts (within the failure policy's tolerance). */
  readonly failedChunks: number
  readonly skippedChunks: number
}

const defaults = {
  concurrency: 4,
  attempts: 3,
  initialDelay: Duration.millis(100),
  factor: 2,
  maxDelay: Duration.seconds(30)
} as const

const noTags: ReadonlyArray<never> = []
/**
 * The longest a job's worker loops run without the event loop taking a turn (timers, I/O), and how many
 * pulls go between two looks at the clock.
 */
const macrotaskTurn = { everyMillis: 4, checkEvery: 16 } as const

class AttemptContext extends LazyAbortController implements ChunkContext {
  constructor(readonly jobId: JobId, readonly attempt: number, lane: SignalLane) {
    super(lane)
  }
}

/** What one worker loop of an execution owns: its timeout slot and its lane of abort signals. */
interface Lane {
  readonly slot: DeadlineSlot | undefined
  readonly signals: SignalLane
}

/**
 * Runs the spec's chunks (options are validated first).
 *
 * Failure: with `"fail-fast"` the first chunk out of attempts fails the execution with its `ChunkFailed`;
 * with a tolerance, exceeding it fails with `JobFailed`. Either way the chunks still in flight are
 * interrupted (their signals fire) and no further chunk starts.
 *
 * Interruption: pulling stops at once, every in-flight attempt is interrupted and its signal fires, and no
 * chunk starts after interruption has begun.
 *
 * Fairness: the worker loops let the event loop take a turn (timers, I/O) at least every 4 ms of continuous
 * work, so a job of instant chunks never starves the rest of the process.
 *
 * @since 0.1.0
 */
export const execute = (
  spec: JobSpec,
  options: ExecuteOptions
): Effect.Effect<ExecutionSummary, ChunkFailed | JobFailed | InvalidOption, ChunkWorker> =>
  Effect.flatMap(
    validateOptions({
      ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
      ...(options.retry === undefined ? {} : { retry: options.retry }),
      ...(options.chunkTimeout === undefined ? {} : { chunkTimeout: options.chunkTimeout }),
      ...(options.failurePolicy === undefined ? {} : { failurePolicy: options.failurePolicy })
    }),
    (validated) => executeValidated(spec, { ...options, ...validated })
  )

/**
 * {@link execute} for options that were already validated (the manager validates once per job).
 *
 * @since 0.1.0
 */
export const executeValidated = (
  spec: JobSpec,
  options: ExecuteOptions
): Effect.Effect<ExecutionSummary, ChunkFailed | JobFailed, ChunkWorker> =>
  Effect.flatMap(Effect.all([ChunkWorker, Effect.clock, Effect.tracer]), ([worker, clock, tracer]) => {
    const jobId = options.jobId
    // A span per chunk only when a tracer is installed: the built-in one records nothing, at a cost.
    const traced = isTracing(tracer)
    const spanOptions = (chunk: Chunk) => ({ attributes: { "job.id": jobId, "chunk.id": chunk.id } })
    const total = totalChunks(spec)
    const skip = options.skip
    const onChunkSettled = options.onChunkSettled
    const shouldStop = options.shouldStop
    const retry = options.retry
    const maxAttempts = retry?.attempts ?? defaults.attempts
    const isRetryable = retry?.isRetryable ?? ((error: unknown) => !isNonRetryable(error))
    const initialDelayMillis = Duration.toMillis(retry?.initialDelay ?? defaults.initialDelay)
    const factor = retry?.factor ?? defaults.factor
    const maxDelayMillis = Duration.toMillis(retry?.maxDelay ?? defaults.maxDelay)
    const jitter = retry?.jitter ?? true
    const timeout = options.chunkTimeout === undefined ? undefined : Duration.decode(options.chunkTimeout)
    const timeoutMillis = timeout === undefined ? 0 : Duration.toMillis(timeout)
    const policy = options.failurePolicy ?? "fail-fast"
    const tolerated = policy === "fail-fast"
      ? 0
      : "maxFailedChunks" in policy
      ? policy.maxFailedChunks
      : Math.floor((policy.maxFailedPercent * total) / 100)

    let nextIndex = 0
    let completed = skip?.size ?? 0
    let failed = 0
    let skipped = 0
    let halted = false

    /** The next chunk to run, or undefined when there is none (or the execution is halting). */
    const pull = (): Chunk | undefined => {
      while (!halted && nextIndex < total) {
        if (shouldStop !== undefined && shouldStop()) return undefined
        const chunk = chunkAt(spec, nextIndex++)
        if (skip === undefined || !skip.has(chunk.id)) return chunk
        skipped++
      }
      return undefined
    }

    const retryDelay = (attempt: number): Effect.Effect<number> => {
      const base = Math.min(initialDelayMillis * factor ** (attempt - 1), maxDelayMillis)
      return jitter
        ? Effect.map(Random.next, (random) => Math.min(base * (0.8 + 0.4 * random), maxDelayMillis))
        : Effect.succeed(base)
    }

    /** A Promise worker's attempt as one async step: no fiber, one timer slot armed when there is a timeout. */
    const promiseAttempt = (
      run: (chunk: Chunk, context: ChunkContext) => PromiseLike<unknown>,
      chunk: Chunk,
      attempt: number,
      lane: Lane
    ): Effect.Effect<unknown, unknown> =>
      Effect.async<unknown, unknown>((resume) => {
        const context = new AttemptContext(jobId, attempt, lane.signals)
        const slot = lane.slot
        let settled = false
        const settle = (result: Effect.Effect<unknown, unknown>) => {
          if (settled) return
          settled = true
          if (slot !== undefined) slot.disarm()
          context.release()
          resume(result)
        }
        if (slot !== undefined) {
          slot.arm(timeoutMillis, () => {
            context.abort()
            settle(Effect.fail(new ChunkTimeout({ chunkId: chunk.id, timeoutMillis })))
          })
        }
        try {
          run(chunk, context).then(
            (value) => settle(Exit.succeed(value)),
            (error) => settle(Exit.fail(error))
          )
        } catch (error) {
          settle(Exit.fail(error))
        }
        return Effect.sync(() => {
          if (settled) return
          settled = true
          if (slot !== undefined) slot.disarm()
          context.abort()
        })
      })

    const attemptOnce = (chunk: Chunk, attempt: number, lane: Lane): Effect.Effect<unknown, unknown> => {
      if (worker.promise !== undefined) return promiseAttempt(worker.promise, chunk, attempt, lane)
      const context = new AttemptContext(jobId, attempt, lane.signals)
      const run = Effect.onExit(
        worker.run(chunk, context),
        (exit) => Effect.sync(() => Exit.isInterrupted(exit) ? context.abort() : context.release())
      )
      return timeout === undefined ? run : Effect.timeoutFail(run, {
        duration: timeout,
        onTimeout: () => new ChunkTimeout({ chunkId: chunk.id, timeoutMillis })
      })
    }

    const attemptFrom = (chunk: Chunk, attempt: number, lane: Lane): Effect.Effect<unknown, ChunkFailed> =>
      Effect.catchAll(attemptOnce(chunk, attempt, lane), (error) =>
        attempt < maxAttempts && isRetryable(error)
          ? Effect.zipRight(
            Effect.flatMap(retryDelay(attempt), (millis) => Effect.sleep(millis)),
            Effect.suspend(() => {
              JobMetrics.chunkRetries.unsafeUpdate(1, noTags)
              return attemptFrom(chunk, attempt + 1, lane)
            })
          )
          : Effect.fail(
            new ChunkFailed({ chunkId: chunk.id, attempts: attempt, cause: isNonRetryable(error) ? error.cause : error })
          ))

    const settled = (chunkId: number, outcome: ChunkSettled["outcome"]): Effect.Effect<void> =>
      onChunkSettled === undefined
        ? Effect.void
        : onChunkSettled({ chunkId, outcome, completedChunks: completed, failedChunks: failed, totalChunks: total })

    const runChunk = (chunk: Chunk, lane: Lane): Effect.Effect<void, ChunkFailed | JobFailed> => {
      const startedAt = clock.unsafeCurrentTimeMillis()
      JobMetrics.chunksStarted.unsafeUpdate(1, noTags)
      const attempts = attemptFrom(chunk, 1, lane)
      return Effect.matchEffect(traced ? Effect.withSpan(attempts, "effect-jobs.chunk", spanOptions(chunk)) : attempts, {
        onSuccess: () => {
          completed++
          JobMetrics.chunksSucceeded.unsafeUpdate(1, noTags)
          JobMetrics.chunkDuration.unsafeUpdate(clock.unsafeCurrentTimeMillis() - startedAt, noTags)
          return settled(chunk.id, "completed")
        },
        onFailure: (error): Effect.Effect<void, ChunkFailed | JobFailed> => {
          failed++
          JobMetrics.chunksFailed.unsafeUpdate(1, noTags)
          JobMetrics.chunkDuration.unsafeUpdate(clock.unsafeCurrentTimeMillis() - startedAt, noTags)
          if (failed <= tolerated) return settled(chunk.id, "failed")
          halted = true
          const failure: ChunkFailed | JobFailed = policy === "fail-fast" ? error : new JobFailed({
            failedChunks: failed,
            totalChunks: total,
            detail: `${failed} chunks failed, more than the ${tolerated} tolerated; the last: ${error.message}`
          })
          return Effect.zipRight(settled(chunk.id, "failed"), Effect.fail(failure))
        }
      })
    }

    const turns = new MacrotaskYield(macrotaskTurn.everyMillis, macrotaskTurn.checkEvery)
    const beforePull = options.beforePull
    const workerLoop = (lane: Lane): Effect.Effect<void, ChunkFailed | JobFailed> =>
      Effect.suspend(() => {
        const wait = turns.due() ?? beforePull?.()
        if (wait !== undefined) return Effect.zipRight(wait, workerLoop(lane))
        const chunk = pull()
        return chunk === undefined ? Effect.void : Effect.zipRight(runChunk(chunk, lane), workerLoop(lane))
      })

    const concurrency = Math.max(1, Math.min(options.concurrency ?? defaults.concurrency, total))
    const summary = Effect.sync((): ExecutionSummary => ({
      totalChunks: total,
      completedChunks: completed,
      failedChunks: failed,
      skippedChunks: skipped
    }))
    const pool = (slotOf: (index: number) => DeadlineSlot | undefined) => {
      const laneOf = (index: number): Lane => ({ slot: slotOf(index), signals: new SignalLane() })
      return Effect.zipRight(
        concurrency === 1
          ? workerLoop(laneOf(0))
          : Effect.forEach(Array.from({ length: concurrency }, (_, index) => index), (index) => workerLoop(laneOf(index)), {
            concurrency,
            discard: true
          }),
        summary
      )
    }
    if (timeout === undefined || worker.promise === undefined) return pool(() => undefined)
    // Promise workers with a timeout: one watchdog fiber for the whole execution, interrupted when it ends.
    return Effect.flatMap(Deadlines.make(concurrency), (deadlines) =>
      Effect.acquireUseRelease(
        Effect.fork(Effect.interruptible(deadlines.watchdog)), // acquire is uninterruptible; the watchdog must not be
        () => pool((index) => deadlines.slots[index]),
        Fiber.interrupt
      ))
  })
