/**
 * Runs one job's chunks through the `ChunkWorker`: a pool of `concurrency` fibers pulling chunks lazily
 * from the spec ({@link execute}) or from a chunk stream ({@link executeStream}, {@link executeIterable}), with
 * a per-chunk retry policy, a per-chunk timeout and a failure policy.
 *
 * Memory grows with the concurrency, never with the number of chunks: chunks are made (or pulled from the
 * stream) one at a time as a worker fiber needs them, and nothing is kept per chunk once it has settled.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import * as Either from "effect/Either"
import * as Deferred from "effect/Deferred"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { LazyAbortController, SignalLane } from "./Abort.js"
import { copyJson } from "./internal/json.js"
import { DurationInput, FunctionInput, PositiveDurationInput } from "./internal/schemas.js"
import * as JobMetrics from "./JobMetrics.js"
import type { DeadlineSlot } from "./internal/deadlines.js"
import * as Deadlines from "./internal/deadlines.js"
import { MacrotaskYield } from "./internal/macrotaskYield.js"
import { isTracing } from "./internal/tracing.js"
import type { ChunkContext } from "./ChunkWorker.js"
import { ChunkWorker } from "./ChunkWorker.js"
import * as ChunkStream from "./internal/chunkStream.js"
import type { Chunk, JobId, JobSpec, Json } from "./Job.js"
import { chunkAt, isStreamSource, totalChunks } from "./Job.js"
import { isEffectStream } from "./internal/iterables.js"
import {
  ChunkFailed,
  InvalidJobSpec,
  ChunkTimeout,
  describeError,
  firstIssue,
  InvalidOption,
  InvalidResult,
  isNonRetryable,
  JobFailed
} from "./JobError.js"

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
  /** Which errors are retried (default: all but `NonRetryable` and `InvalidResult`). */
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
  failurePolicy: Schema.optional(FailurePolicy),
  /**
   * The largest result a worker may return, in bytes of its JSON encoding (default 65,536). A larger one, or
   * one that is not plain JSON, fails the attempt with `InvalidResult`. `undefined` and `null` are no result.
   */
  maxResultBytes: Schema.optional(Schema.Int.pipe(Schema.between(1, 2 ** 30)))
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
  /** The attempts the chunk took. */
  readonly attempts: number
  /** What the worker returned (a checked copy), when it returned something other than `undefined`/`null`. */
  readonly result: Json | undefined
  /** The last error of a failed chunk. */
  readonly error: string | undefined
  /** When its first attempt started and when it settled (epoch millis). */
  readonly startedAt: number
  readonly finishedAt: number
}

/**
 * A chunk in flight.
 *
 * @since 0.2.0
 */
export interface InFlightChunk {
  readonly id: number
  /** The attempt under way (1 for the first). */
  readonly attempts: number
  readonly startedAt: number
  /** What it last reported with `reportProgress` (0..1; 0 when it reported nothing). */
  readonly progress: number
}

/**
 * A look into a running execution, for the manager that runs it.
 *
 * @since 0.2.0
 */
export interface ExecutionView {
  /** The chunks in flight now, in no particular order. */
  readonly inFlight: () => ReadonlyArray<InFlightChunk>
  /** The sum of the fractions the chunks in flight reported: how many chunks' worth of work they have done. */
  readonly partialChunks: () => number
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
  /**
   * Called for each settled chunk, in the order the chunks settled. A Promise worker's chunks are handed over
   * in batches (see {@link onChunksSettled}); otherwise each right after it settles, in the fiber that ran it.
   */
  readonly onChunkSettled?: ((event: ChunkSettled) => Effect.Effect<void>) | undefined
  /**
   * Called with the chunks settled since the last call, in the order they settled (their counts never go
   * back). A Promise worker's chunks run in lanes that leave the Effect runtime while chunks succeed: their
   * events are handed over at most ~10 ms (real time) after they settle, before a worker loop waits for a
   * pull (`beforePull`, a stream's next chunk), after a failed attempt, and, whatever the execution's end
   * (success, failure or interruption), before it ends. An Effect worker's chunks (and any worker's while a
   * tracer is installed) are handed over one at a time, right after each settles.
   */
  readonly onChunksSettled?: ((events: ReadonlyArray<ChunkSettled>) => Effect.Effect<void>) | undefined
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
  /** Called once, as the execution starts, with a view of its chunks in flight. */
  readonly onStart?: ((view: ExecutionView) => void) | undefined
  /** Called (synchronously, in the worker's call) when a chunk in flight reports more progress. */
  readonly onChunkProgress?: (() => void) | undefined
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
  maxDelay: Duration.seconds(30),
  maxResultBytes: 64 * 1024
} as const

const noTags: ReadonlyArray<never> = []
/**
 * The longest a job's worker loops run without the event loop taking a turn (timers, I/O), and how many
 * pulls go between two looks at the clock.
 */
const macrotaskTurn = { everyMillis: 4, checkEvery: 16 } as const

/**
 * What one worker loop of an execution owns: its timeout slot, its lane of abort signals, and the chunk it
 * runs (`chunkId` -1 between chunks).
 */
class Lane {
  chunkId = -1
  attempt = 1
  startedAt = 0
  fraction = 0
  constructor(
    readonly slot: DeadlineSlot | undefined,
    readonly signals: SignalLane,
    readonly partial: PartialProgress
  ) {}

  /** The lane's chunk settled: its reported fraction leaves the execution's sum. */
  free(): void {
    this.chunkId = -1
    if (this.fraction !== 0) {
      this.partial.sum -= this.fraction
      this.fraction = 0
    }
  }
}

/** The fractions reported by an execution's chunks in flight, summed as they are reported. */
class PartialProgress {
  sum = 0
  constructor(readonly onChange: (() => void) | undefined) {}
}

class AttemptContext extends LazyAbortController implements ChunkContext {
  readonly #lane: Lane
  readonly #chunkId: number
  constructor(readonly jobId: JobId, readonly attempt: number, lane: Lane) {
    super(lane.signals)
    this.#lane = lane
    this.#chunkId = lane.chunkId
  }

  #reporter: ((fraction: number) => void) | undefined = undefined

  /** Made on first read (so `const { reportProgress } = context` works), and only then. */
  get reportProgress(): (fraction: number) => void {
    return this.#reporter ??= (fraction) => this.#report(fraction)
  }

  #report(fraction: number): void {
    const lane = this.#lane
    // A late call of an attempt whose chunk has settled must not count for the lane's next chunk.
    if (lane.chunkId !== this.#chunkId || !(fraction > lane.fraction)) return
    const value = fraction > 1 ? 1 : fraction
    lane.partial.sum += value - lane.fraction
    lane.fraction = value
    lane.partial.onChange?.()
  }
}

/**
 * Runs the spec's chunks (options are validated first), `spec.concurrency` of them at once when the spec
 * sets it, else `options.concurrency`.
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
 * Promise workers (`ChunkWorker.fromPromise`, unless a tracer is installed) run in lanes: each worker loop
 * drives its chunks in a plain Promise loop and resumes its fiber only to wait for a pull, to retry or fail
 * a chunk, and to end; the guarantees above are the same, and settled chunks reach `onChunkSettled` /
 * `onChunksSettled` in batches (see {@link ExecuteOptions.onChunksSettled}).
 *
 * @since 0.1.0
 */
export const execute = (
  spec: JobSpec,
  options: ExecuteOptions
): Effect.Effect<ExecutionSummary, ChunkFailed | JobFailed | InvalidOption | InvalidJobSpec, ChunkWorker> =>
  isStreamSource(spec.chunks) ? Effect.fail(namedSourceRefused) : Effect.flatMap(
    validateOptions(settingsOf(options, executionOptionKeys)),
    (validated) => executeValidated(spec, { ...options, ...validated })
  )

/**
 * The error for a spec whose chunks name a stream source run without a manager: only a `JobManager` with that
 * source (its `sources` option) can make the stream.
 *
 * @since 0.2.0
 */
export const namedSourceRefused = new InvalidJobSpec({
  path: ["chunks", "source"],
  detail: "chunks named by a source are made by a JobManager with that source in its `sources`; without a " +
    "manager, run the stream itself (executeStream / executeIterable, or executeJob with an async iterable)"
})

/**
 * {@link execute} for options that were already validated (the manager validates once per job), and a spec
 * whose chunks are an array or a range plan (a spec naming a stream source is a defect here).
 *
 * @since 0.1.0
 */
export const executeValidated = (
  spec: JobSpec,
  options: ExecuteOptions
): Effect.Effect<ExecutionSummary, ChunkFailed | JobFailed, ChunkWorker> =>
  Effect.suspend(() => {
    const total = totalChunks(spec)
    if (total === undefined) return Effect.die(namedSourceRefused)
    let next = 0
    const source: Source<never, never> = {
      total: () => total,
      pulled: () => next,
      take: () => (next < total ? chunkAt(spec, next++) : undefined),
      more: () => undefined,
      producer: undefined
    }
    // A spec's own concurrency wins over the options'.
    const settings = spec.concurrency === undefined ? options : { ...options, concurrency: spec.concurrency }
    // A spec's total is known from the start, so the summary's is a number.
    return runSource(source, settings) as Effect.Effect<ExecutionSummary, ChunkFailed | JobFailed, ChunkWorker>
  })

/**
 * A settled chunk of a streamed execution and the job's counts after it: `totalChunks` is `undefined` until
 * the stream has ended (then it is the stream's number of chunks).
 *
 * @since 0.1.0
 */
export interface StreamChunkSettled extends Omit<ChunkSettled, "totalChunks"> {
  readonly totalChunks: number | undefined
}

/**
 * Options of a streamed execution ({@link executeStream}, {@link executeIterable}).
 *
 * @since 0.1.0
 */
export interface ExecuteStreamOptions extends Omit<ExecuteOptions, "onChunkSettled" | "onChunksSettled"> {
  /**
   * Chunks pulled ahead of the worker loops, waiting for a free one (0..10,000; default: the concurrency).
   * With 0 a chunk is pulled only when a worker loop is free for it.
   */
  readonly prefetch?: number | undefined
  /** Called for each settled chunk, in the order they settled (as `ExecuteOptions.onChunkSettled`). */
  readonly onChunkSettled?: ((event: StreamChunkSettled) => Effect.Effect<void>) | undefined
  /**
   * Called by the fiber that pulls the stream with each batch of chunks it has just pulled and checked,
   * before any of them can start (a manager records them so that a resumed job can run them again).
   */
  readonly onPulled?: ((chunks: ReadonlyArray<Chunk>) => Effect.Effect<void>) | undefined
  /** Called with the chunks settled since the last call (as `ExecuteOptions.onChunksSettled`). */
  readonly onChunksSettled?: ((events: ReadonlyArray<StreamChunkSettled>) => Effect.Effect<void>) | undefined
}

/**
 * The counts of a streamed execution that ended without failing the job.
 *
 * @since 0.1.0
 */
export interface StreamSummary extends ExecutionSummary {
  /**
   * True when the stream was read to its end: `totalChunks` is then its number of chunks. False only after
   * `shouldStop` drained the execution early; `totalChunks` then counts the chunks pulled.
   */
  readonly ended: boolean
}

/**
 * How a streamed job's chunks are run: {@link ExecutionOptions} and how far ahead the stream is pulled.
 *
 * @since 0.1.0
 */
export const StreamExecutionOptions = Schema.Struct({
  ...ExecutionOptions.fields,
  /** Chunks pulled ahead of the worker loops (0..10,000; default: the concurrency). */
  prefetch: Schema.optional(Schema.Int.pipe(Schema.between(0, 10_000)))
}).annotations({ identifier: "StreamExecutionOptions" })
/** @since 0.1.0 */
export type StreamExecutionOptions = typeof StreamExecutionOptions.Type

const decodeStreamOptions = Schema.decodeUnknown(StreamExecutionOptions, { onExcessProperty: "error" })

const executionOptionKeys = Object.keys(ExecutionOptions.fields)
const streamOptionKeys = Object.keys(StreamExecutionOptions.fields)

/**
 * The settings among an execution's options (those `keys` name and that are set), to be validated: the
 * callbacks and the manager's hooks beside them are not settings.
 */
const settingsOf = (options: object, keys: ReadonlyArray<string>): Record<string, unknown> => {
  const settings: Record<string, unknown> = {}
  for (const key of keys) {
    const value = (options as Record<string, unknown>)[key]
    if (value !== undefined) settings[key] = value
  }
  return settings
}

/**
 * Runs the chunks of an Effect `Stream` (options are validated first), pulling it lazily with backpressure.
 *
 * - Laziness: one producer fiber pulls the stream while fewer than `prefetch` chunks wait for a worker loop
 *   (or while one waits for a chunk); at most `concurrency + prefetch` chunks are pulled and not settled,
 *   so memory grows with those, never with the stream's length. (A stream that emits elements in Effect
 *   chunks of several, like `Stream.fromIterable`, has made each such chunk before it is pulled.)
 * - Each element is checked as a `Chunk` (`{ id, payload }`, the payload JSON); an element that is not, or
 *   whose id was pulled before, fails the execution with `InvalidJobSpec` naming it (path
 *   `["chunks", index, ...]`, `index` counting from 0 in the stream). The ids seen are kept as ranges: O(1)
 *   memory for ids pulled in order (0, 1, 2, ...), up to one range per chunk for scattered ids.
 * - The total is unknown until the stream ends: `onChunkSettled` gets `totalChunks: undefined` until then.
 *   A `maxFailedPercent` policy is judged once the total is known (a `maxFailedChunks` or `"fail-fast"` one
 *   at each failure, as for a spec).
 * - Failure: the stream's error, or an invalid element, fails the execution at once (the chunks in flight
 *   are interrupted, their signals fire); chunk failures follow the failure policy as for a spec.
 * - Interruption: the pull in progress is interrupted and nothing more is pulled, the chunks in flight are
 *   interrupted and their signals fire, then the stream's scope is closed (its finalizers run).
 *
 * @since 0.1.0
 */
export const executeStream = <E, R>(
  stream: Stream.Stream<Chunk, E, R>,
  options: ExecuteStreamOptions
): Effect.Effect<StreamSummary, ChunkFailed | JobFailed | InvalidJobSpec | InvalidOption | E, ChunkWorker | R> =>
  executeOpened(ChunkStream.pullStream(stream), options)

/**
 * {@link executeStream} for an `AsyncIterable` (an async generator, a paginated listing) or an `Iterable`
 * (a generator): the same laziness, checks, failure and interruption. A `next()` that throws or rejects
 * fails the execution with what it threw. Interruption abandons a pending `next()` (a Promise cannot be
 * stopped) and calls the iterator's `return()` without waiting for it: an async generator suspended in an
 * `await` runs its `finally` blocks once that `await` settles.
 *
 * @since 0.1.0
 */
export const executeIterable = (
  iterable: AsyncIterable<Chunk> | Iterable<Chunk>,
  options: ExecuteStreamOptions
): Effect.Effect<StreamSummary, ChunkFailed | JobFailed | InvalidJobSpec | InvalidOption | unknown, ChunkWorker> =>
  executeOpened(ChunkStream.pullIterable(iterable), options)

/**
 * Options of {@link executeResumed}.
 *
 * @since 0.2.0
 */
export interface ExecuteResumedOptions extends ExecuteStreamOptions {
  /**
   * The stream's total, recorded when it ended (given with no `source`): the events, the summary and a
   * `maxFailedPercent` policy count it, not only the chunks of `rerun`. An integer, at least `rerun`'s length.
   */
  readonly totalChunks?: number | undefined
}

/**
 * A streamed job as a manager runs it again (see `JobManager`'s `sources`): first the chunks in `rerun`
 * (pulled by an earlier run and not completed), then the chunks of `source`, if given, less those whose id
 * `rerun` has; pass the ids completed earlier as `skip` (they are pulled again, counted and not run). The
 * same laziness, checks, failure and interruption as {@link executeStream}; the summary's total is
 * `totalChunks` when given, else it counts `rerun` and every chunk pulled from `source`.
 *
 * @since 0.2.0
 */
export const executeResumed = (
  rerun: ReadonlyArray<Chunk>,
  source: Stream.Stream<Chunk, unknown> | AsyncIterable<Chunk> | Iterable<Chunk> | undefined,
  options: ExecuteResumedOptions
): Effect.Effect<StreamSummary, ChunkFailed | JobFailed | InvalidJobSpec | InvalidOption | unknown, ChunkWorker> => {
  const { totalChunks: recordedTotal, ...streamOptions } = options
  if (recordedTotal !== undefined && !(Number.isSafeInteger(recordedTotal) && recordedTotal >= rerun.length)) {
    return Effect.fail(
      new InvalidOption({
        path: ["totalChunks"],
        detail: `expected an integer at least the ${rerun.length} chunks to run again, got ${recordedTotal}`
      })
    )
  }
  const open: Effect.Effect<ChunkStream.Pull<unknown>, unknown, Scope.Scope> = source === undefined
    ? Effect.succeed(Effect.succeed(undefined))
    : isEffectStream(source)
    ? ChunkStream.pullStream(source)
    : ChunkStream.pullIterable(source)
  return executeOpened(Effect.map(open, (pull) => ChunkStream.after(rerun, pull)), streamOptions, recordedTotal)
}

const executeOpened = <E, R, E2>(
  open: Effect.Effect<ChunkStream.Pull<E, R>, E2, Scope.Scope | R>,
  options: ExecuteStreamOptions,
  recordedTotal?: number
): Effect.Effect<StreamSummary, ChunkFailed | JobFailed | InvalidJobSpec | InvalidOption | E | E2, ChunkWorker | R> =>
  Effect.gen(function*() {
    const validated = yield* Effect.mapError(
      decodeStreamOptions(settingsOf(options, streamOptionKeys)),
      (error) => new InvalidOption(firstIssue(error))
    )
    const pull = yield* open
    const buffer = new ChunkStream.ChunkBuffer(validated.prefetch ?? validated.concurrency ?? defaults.concurrency)
    const summary = yield* runSource({
      total: recordedTotal === undefined ? () => (buffer.ended ? buffer.pulled : undefined) : () => recordedTotal,
      pulled: () => buffer.pulled,
      take: () => buffer.take(),
      more: () => buffer.more(),
      producer: ChunkStream.produce(pull, buffer, options.onPulled)
    }, { ...options, ...validated } as ExecuteOptions)
    return { ...summary, totalChunks: summary.totalChunks ?? buffer.pulled, ended: buffer.ended }
  }).pipe(Effect.scoped)

/**
 * Where an execution's worker loops take their chunks: a spec (array or range plan) or a stream's buffer.
 * `take` is the hot path: a spec's is a bounds check and `chunkAt`.
 */
interface Source<E, R> {
  /** The number of chunks, when known: a spec's from the start, a stream's once it has ended. */
  readonly total: () => number | undefined
  /** Chunks taken out of the source so far. */
  readonly pulled: () => number
  /** The next chunk ready now, or `undefined`. */
  readonly take: () => Chunk | undefined
  /** After `take` gave nothing: what to wait on before taking again, or `undefined` when no chunk is left. */
  readonly more: () => Effect.Effect<void> | undefined
  /**
   * Runs beside the worker loops (a stream's producer): its failure fails the execution (the chunks in flight
   * are interrupted); it is interrupted when the loops end.
   */
  readonly producer: Effect.Effect<void, E, R> | undefined
}

/** The summary of a run; `totalChunks` is undefined when a stream was left before its end (a drain). */
type RunSummary = Omit<ExecutionSummary, "totalChunks"> & { readonly totalChunks: number | undefined }

const runSource = <E, R>(
  source: Source<E, R>,
  options: ExecuteOptions
): Effect.Effect<RunSummary, ChunkFailed | JobFailed | E, ChunkWorker | R> =>
  // One step reads the worker, the clock and the tracer (as `ChunkWorker`, `Effect.clock` and `Effect.tracer` would).
  Effect.withFiberRuntime<RunSummary, ChunkFailed | JobFailed | E, ChunkWorker | R>((fiber) => {
    const worker = Context.unsafeGet(fiber.currentContext as Context.Context<ChunkWorker>, ChunkWorker)
    const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    const tracer = fiber.currentTracer
    const jobId = options.jobId
    // A span per chunk only when a tracer is installed: the built-in one records nothing, at a cost.
    const traced = isTracing(tracer)
    const spanOptions = (chunk: Chunk) => ({ attributes: { "job.id": jobId, "chunk.id": chunk.id } })
    const knownTotal = source.total()
    const skip = options.skip
    const onChunkSettled = options.onChunkSettled
    const onChunksSettled = options.onChunksSettled
    const shouldStop = options.shouldStop
    const retry = options.retry
    const maxAttempts = retry?.attempts ?? defaults.attempts
    const isRetryable = retry?.isRetryable ??
      ((error: unknown) => !isNonRetryable(error) && !(error instanceof InvalidResult))
    const maxResultBytes = options.maxResultBytes ?? defaults.maxResultBytes
    const resultLimit = {
      bytes: maxResultBytes,
      message: `the result passes maxResultBytes (${maxResultBytes} bytes of JSON); raise maxResultBytes, or keep ` +
        "bulky output out of the result (e.g. return a reference to it)"
    }
    /** A worker's return value as a stored result: a checked copy, or the attempt's failure. */
    const checkedResult = (chunkId: number, value: unknown): Json | InvalidResult => {
      const copied = copyJson(value, { maxBytes: resultLimit })
      return Either.isRight(copied)
        ? copied.right
        : new InvalidResult({ chunkId, path: copied.left.path, detail: copied.left.detail })
    }
    const checkResult = (chunkId: number, value: unknown): Exit.Exit<Json, InvalidResult> => {
      const checked = checkedResult(chunkId, value)
      return checked instanceof InvalidResult ? Exit.fail(checked) : Exit.succeed(checked)
    }
    const initialDelayMillis = Duration.toMillis(retry?.initialDelay ?? defaults.initialDelay)
    const factor = retry?.factor ?? defaults.factor
    const maxDelayMillis = Duration.toMillis(retry?.maxDelay ?? defaults.maxDelay)
    const jitter = retry?.jitter ?? true
    const timeout = options.chunkTimeout === undefined ? undefined : Duration.decode(options.chunkTimeout)
    const timeoutMillis = timeout === undefined ? 0 : Duration.toMillis(timeout)
    const policy = options.failurePolicy ?? "fail-fast"
    /** Failed chunks tolerated; `undefined` while a share of a total not yet known (a stream's). */
    const toleratedOf = (total: number | undefined): number | undefined =>
      policy === "fail-fast"
        ? 0
        : "maxFailedChunks" in policy
        ? policy.maxFailedChunks
        : total === undefined
        ? undefined
        : Math.floor((policy.maxFailedPercent * total) / 100)
    let tolerated = toleratedOf(knownTotal)

    let completed = skip?.size ?? 0
    let failed = 0
    let skipped = 0
    let halted = false
    let draining = false

    /** The next chunk to run, or undefined when none is ready (or the execution is halting or draining). */
    const pull = (): Chunk | undefined => {
      while (!halted) {
        if (shouldStop !== undefined && shouldStop()) {
          draining = true
          return undefined
        }
        const chunk = source.take()
        if (chunk === undefined || skip === undefined || !skip.has(chunk.id)) return chunk
        skipped++
      }
      return undefined
    }

    /** Whether the failed chunks are within the failure policy (judged once a total it needs is known). */
    const withinTolerance = (): boolean => {
      tolerated ??= toleratedOf(source.total())
      return tolerated === undefined || failed <= tolerated
    }

    let lastFailure = ""
    const toleranceExceeded = (): JobFailed =>
      new JobFailed({
        failedChunks: failed,
        totalChunks: source.total() ?? source.pulled(),
        detail: `${failed} chunks failed, more than the ${tolerated} tolerated; the last: ${lastFailure}`
      })

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
        const context = new AttemptContext(jobId, attempt, lane)
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
        // No result costs one comparison.
        const onValue = (value: unknown) => settle(value == null ? Exit.void : checkResult(chunk.id, value))
        const onError = (error: unknown) => settle(Exit.fail(error))
        try {
          settleWith(run(chunk, context), onValue, onError)
        } catch (error) {
          onError(error)
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
      const context = new AttemptContext(jobId, attempt, lane)
      const run = Effect.onExit(
        Effect.flatMap(
          worker.run(chunk, context),
          (value): Effect.Effect<Json | undefined, InvalidResult> =>
            value == null ? Effect.void as Effect.Effect<undefined> : checkResult(chunk.id, value)
        ),
        (exit) => Effect.sync(() => Exit.isInterrupted(exit) ? context.abort() : context.release())
      )
      return timeout === undefined ? run : Effect.timeoutFail(run, {
        duration: timeout,
        onTimeout: () => new ChunkTimeout({ chunkId: chunk.id, timeoutMillis })
      })
    }

    /** After attempt `attempt` of `chunk` failed with `error`: the next attempt (after the backoff), or the chunk's failure. */
    const retryAfter = (chunk: Chunk, attempt: number, lane: Lane, error: unknown): Effect.Effect<unknown, ChunkFailed> =>
      attempt < maxAttempts && isRetryable(error)
        ? Effect.zipRight(
          Effect.flatMap(retryDelay(attempt), (millis) => Effect.sleep(millis)),
          Effect.suspend(() => {
            JobMetrics.chunkRetries.unsafeUpdate(1, noTags)
            lane.attempt = attempt + 1
            return attemptFrom(chunk, attempt + 1, lane)
          })
        )
        : Effect.fail(
          new ChunkFailed({ chunkId: chunk.id, attempts: attempt, cause: isNonRetryable(error) ? error.cause : error })
        )

    const attemptFrom = (chunk: Chunk, attempt: number, lane: Lane): Effect.Effect<unknown, ChunkFailed> =>
      Effect.catchAll(attemptOnce(chunk, attempt, lane), (error) => retryAfter(chunk, attempt, lane, error))

    // --- Settled chunks: handed to onChunkSettled / onChunksSettled ---

    const notify = onChunkSettled !== undefined || onChunksSettled !== undefined
    const deliver = (events: ReadonlyArray<ChunkSettled>): Effect.Effect<void> => {
      const batch = onChunksSettled === undefined ? Effect.void : onChunksSettled(events)
      return onChunkSettled === undefined
        ? batch
        : Effect.zipRight(batch, Effect.forEach(events, onChunkSettled, { discard: true }))
    }
    const eventOf = (
      chunkId: number,
      outcome: ChunkSettled["outcome"],
      attempts: number,
      result: Json | undefined,
      error: string | undefined,
      startedAt: number,
      finishedAt: number
    ): ChunkSettled => ({
      chunkId,
      outcome,
      completedChunks: completed,
      failedChunks: failed,
      // A stream's total is unknown until it ends (see StreamChunkSettled).
      totalChunks: source.total() as number,
      attempts,
      result,
      error,
      startedAt,
      finishedAt
    })

    // Lanes (below) keep their settled chunks and their metric counts here until they are published.
    const useLanes = worker.promise !== undefined && !traced
    let unpublished: Array<ChunkSettled> = []
    let unreportedStarts = 0
    let unreportedSuccesses = 0
    let publisherWake: Deferred.Deferred<void> | undefined
    const enqueue = (event: ChunkSettled): void => {
      unpublished.push(event)
      const wake = publisherWake
      if (wake !== undefined) {
        publisherWake = undefined
        Deferred.unsafeDone(wake, Exit.void)
      }
    }
    /**
     * Hands the unpublished settled chunks over, and updates the metrics with the lanes' counts. Uninterruptible:
     * a batch taken is delivered whole.
     */
    const publishPending: Effect.Effect<void> = Effect.uninterruptible(Effect.suspend(() => {
      if (unreportedStarts !== 0) JobMetrics.chunksStarted.unsafeUpdate(unreportedStarts, noTags)
      if (unreportedSuccesses !== 0) JobMetrics.chunksSucceeded.unsafeUpdate(unreportedSuccesses, noTags)
      unreportedStarts = 0
      unreportedSuccesses = 0
      if (unpublished.length === 0) return Effect.void
      const events = unpublished
      unpublished = []
      // A stream that has ended since these settled: they go out with its total.
      const total = knownTotal === undefined ? source.total() : undefined
      if (total !== undefined) {
        for (const event of events) if (event.totalChunks === undefined) (event as { totalChunks: number }).totalChunks = total
      }
      return deliver(events)
    }))
    /** {@link publishPending}, when there is something to publish. */
    const publish: Effect.Effect<void> = Effect.suspend(() =>
      unpublished.length === 0 && unreportedStarts === 0 && unreportedSuccesses === 0 ? Effect.void : publishPending
    )
    /** Publishes what the lanes settled, at most `settledBatchMillis` (real time) after the first of it settled. */
    const publisher: Effect.Effect<never> = Effect.suspend(() => {
      if (unpublished.length === 0) {
        const wake = Deferred.unsafeMake<void>(FiberId.none)
        publisherWake = wake
        return Effect.zipRight(Deferred.await(wake), publisher)
      }
      return Effect.zipRight(Effect.zipRight(realSleep(settledBatchMillis), publish), publisher)
    })
    /**
     * The publisher, forked beside the loops. When a report dies in it, the lanes stop pulling (the execution
     * ends once the chunks in flight settle) and {@link stopPublisher} fails the execution with that defect.
     */
    const startPublisher = Effect.fork(Effect.interruptible(Effect.onExit(publisher, (exit) =>
      Effect.sync(() => {
        if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) halted = true
      }))))
    /** Interrupts the publisher (between two batches); a defect it died of is the execution's. */
    const stopPublisher = (fiber: Fiber.RuntimeFiber<never>): Effect.Effect<void> =>
      Effect.flatMap(Fiber.interrupt(fiber), (exit) =>
        Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? Effect.failCause(exit.cause) : Effect.void)

    /** The chunk of `lane` settled: the lane is free, and the event goes out. */
    const settled = (
      lane: Lane,
      outcome: ChunkSettled["outcome"],
      finishedAt: number,
      result: Json | undefined,
      error: string | undefined
    ): Effect.Effect<void> => {
      const chunkId = lane.chunkId
      lane.free()
      if (!notify) return useLanes ? publish : Effect.void
      const event = eventOf(chunkId, outcome, lane.attempt, result, error, lane.startedAt, finishedAt)
      if (!useLanes) {
        return onChunksSettled === undefined
          ? onChunkSettled!(event)
          : onChunkSettled === undefined
          ? onChunksSettled([event])
          : Effect.zipRight(onChunksSettled([event]), onChunkSettled(event))
      }
      // After the lanes' earlier chunks, in the order they settled.
      enqueue(event)
      return publish
    }

    /** The outcome of a chunk whose attempts are `attempts` (its lane holds it, and when it started). */
    const outcomeOf = (lane: Lane, attempts: Effect.Effect<unknown, ChunkFailed>) =>
      Effect.matchEffect(attempts, {
        onSuccess: (value) => {
          completed++
          const finishedAt = clock.unsafeCurrentTimeMillis()
          JobMetrics.chunksSucceeded.unsafeUpdate(1, noTags)
          JobMetrics.chunkDuration.unsafeUpdate(finishedAt - lane.startedAt, noTags)
          return settled(lane, "completed", finishedAt, value as Json | undefined, undefined)
        },
        onFailure: (error): Effect.Effect<void, ChunkFailed | JobFailed> => {
          failed++
          const finishedAt = clock.unsafeCurrentTimeMillis()
          JobMetrics.chunksFailed.unsafeUpdate(1, noTags)
          JobMetrics.chunkDuration.unsafeUpdate(finishedAt - lane.startedAt, noTags)
          const message = describeError(error.cause)
          lastFailure = error.message
          if (withinTolerance()) return settled(lane, "failed", finishedAt, undefined, message)
          halted = true
          const failure: ChunkFailed | JobFailed = policy === "fail-fast" ? error : toleranceExceeded()
          return Effect.zipRight(settled(lane, "failed", finishedAt, undefined, message), Effect.fail(failure))
        }
      })

    const runChunk = (chunk: Chunk, lane: Lane): Effect.Effect<void, ChunkFailed | JobFailed> => {
      lane.chunkId = chunk.id
      lane.attempt = 1
      lane.startedAt = clock.unsafeCurrentTimeMillis()
      JobMetrics.chunksStarted.unsafeUpdate(1, noTags)
      const attempts = attemptFrom(chunk, 1, lane)
      return outcomeOf(lane, traced ? Effect.withSpan(attempts, "effect-jobs.chunk", spanOptions(chunk)) : attempts)
    }

    const turns = new MacrotaskYield(macrotaskTurn.everyMillis, macrotaskTurn.checkEvery)
    const beforePull = options.beforePull
    /** A worker loop of the fiber-per-attempt path (Effect workers, and any worker while a tracer is installed). */
    const workerLoop = (lane: Lane): Effect.Effect<void, ChunkFailed | JobFailed> =>
      Effect.suspend(() => {
        const wait = turns.due() ?? beforePull?.()
        if (wait !== undefined) return Effect.zipRight(wait, workerLoop(lane))
        const chunk = pull()
        if (chunk !== undefined) return Effect.zipRight(runChunk(chunk, lane), workerLoop(lane))
        const more = halted || draining ? undefined : source.more()
        return more === undefined ? Effect.void : Effect.zipRight(more, workerLoop(lane))
      })

    // --- Lanes: a Promise worker's chunks in a plain Promise loop, one Effect.async for many chunks ---

    /**
     * Runs chunks of `lane` back to back outside the Effect runtime: pull (after the same `turns` and
     * `beforePull` checks as a worker loop; a due turn of the event loop is waited for in the lane), call the
     * worker, arm and disarm the lane's deadline slot, count a success into the plain counters and queue its
     * event. The fiber is resumed only when the lane must stop: `beforePull` holds the pull (`Wait`), there is
     * nothing to pull now (`Pull`), or an attempt failed (`Failed`: the retry and failure policy then run in
     * Effect, and the lane starts again).
     *
     * Interruption: no chunk starts after the canceler ran, and the attempt in flight is aborted (its signal
     * fires); a late settlement of it is ignored.
     */
    const runLane = (
      run: (chunk: Chunk, context: ChunkContext) => PromiseLike<unknown>,
      lane: Lane
    ): Effect.Effect<LaneStop> =>
      Effect.async<LaneStop>((resume) => {
        const slot = lane.slot
        let stopped = false
        let chunk: Chunk | undefined = undefined
        /** The attempt in flight, if any. */
        let context: AttemptContext | undefined = undefined
        /** When the lane's next chunk starts: when the previous one settled. */
        let now = clock.unsafeCurrentTimeMillis()
        let starting = false
        let startAgain = false

        const stop = (why: LaneStop): void => {
          stopped = true
          resume(Effect.succeed(why))
        }
        /** The attempt in flight ended; `aborted`: by its timeout. */
        const attemptEnded = (aborted: boolean): void => {
          if (slot !== undefined) slot.disarm()
          if (aborted) context!.abort()
          else context!.release()
          context = undefined
        }
        const failed = (error: unknown): void => stop({ _tag: "Failed", chunk: chunk!, error })
        const onExpire = (): void => {
          if (stopped || context === undefined) return
          attemptEnded(true)
          failed(new ChunkTimeout({ chunkId: chunk!.id, timeoutMillis }))
        }
        const onError = (error: unknown): void => {
          if (stopped || context === undefined) return
          attemptEnded(false)
          failed(error)
        }
        const onValue = (value: unknown): void => {
          if (stopped || context === undefined) return
          attemptEnded(false)
          let result: Json | undefined = undefined
          if (value != null) {
            const checked = checkedResult(chunk!.id, value)
            if (checked instanceof InvalidResult) return failed(checked)
            result = checked
          }
          now = clock.unsafeCurrentTimeMillis()
          completed++
          unreportedSuccesses++
          JobMetrics.chunkDuration.unsafeUpdate(now - lane.startedAt, noTags)
          if (notify) enqueue(eventOf(chunk!.id, "completed", 1, result, undefined, lane.startedAt, now))
          lane.free()
          next()
        }
        /** Starts the next chunk; a worker that settles synchronously loops here instead of recursing. */
        const next = (): void => {
          if (stopped) return
          if (starting) {
            startAgain = true
            return
          }
          starting = true
          do {
            startAgain = false
            startOne()
          } while (startAgain && !stopped)
          starting = false
        }
        const afterTurn = (): void => {
          now = clock.unsafeCurrentTimeMillis()
          next()
        }
        const startOne = (): void => {
          // A turn of the event loop is taken without leaving the lane.
          if (turns.deferIfDue(afterTurn)) return
          const wait = beforePull?.()
          if (wait !== undefined) return stop({ _tag: "Wait", wait })
          const pulled = pull()
          if (pulled === undefined) return stop(pullStop)
          chunk = pulled
          lane.chunkId = pulled.id
          lane.attempt = 1
          lane.startedAt = now
          unreportedStarts++
          const attempt = context = new AttemptContext(jobId, 1, lane)
          if (slot !== undefined) slot.armAt(now + timeoutMillis, onExpire)
          let returned: PromiseLike<unknown>
          try {
            returned = run(pulled, attempt)
          } catch (error) {
            return onError(error)
          }
          settleWith(returned, onValue, onError)
        }

        next()
        return Effect.sync(() => {
          if (stopped) return
          stopped = true
          if (context !== undefined) attemptEnded(true)
        })
      })

    const laneLoop = (
      run: (chunk: Chunk, context: ChunkContext) => PromiseLike<unknown>,
      lane: Lane
    ): Effect.Effect<void, ChunkFailed | JobFailed> =>
      Effect.flatMap(runLane(run, lane), (stop): Effect.Effect<void, ChunkFailed | JobFailed> => {
        switch (stop._tag) {
          case "Wait":
            return Effect.zipRight(publish, Effect.zipRight(stop.wait, laneLoop(run, lane)))
          case "Failed":
            return Effect.zipRight(outcomeOf(lane, retryAfter(stop.chunk, 1, lane, stop.error)), laneLoop(run, lane))
          case "Pull": {
            const more = halted || draining ? undefined : source.more()
            return more === undefined ? publish : Effect.zipRight(publish, Effect.zipRight(more, laneLoop(run, lane)))
          }
        }
      })

    const requested = options.concurrency ?? defaults.concurrency
    const concurrency = Math.max(1, knownTotal === undefined ? requested : Math.min(requested, knownTotal))
    // A stream's percent tolerance is judged once its total is known: at the latest, here.
    const summary = Effect.suspend((): Effect.Effect<RunSummary, JobFailed> =>
      withinTolerance() ? Effect.succeed({
        totalChunks: source.total(),
        completedChunks: completed,
        failedChunks: failed,
        skippedChunks: skipped
      }) : Effect.fail(toleranceExceeded()))
    const onStart = options.onStart
    const loopOf = useLanes ? (lane: Lane) => laneLoop(worker.promise!, lane) : workerLoop
    const producer = source.producer
    const pool = (slotOf: (index: number) => DeadlineSlot | undefined) => {
      const partial = new PartialProgress(options.onChunkProgress)
      const lanes = Array.from({ length: concurrency }, (_, index) => new Lane(slotOf(index), new SignalLane(), partial))
      if (onStart !== undefined) {
        onStart({
          inFlight: () =>
            lanes.flatMap((lane): Array<InFlightChunk> =>
              lane.chunkId === -1
                ? []
                : [{ id: lane.chunkId, attempts: lane.attempt, startedAt: lane.startedAt, progress: lane.fraction }]
            ),
          // Rounding of the running sum must not show as a tiny negative.
          partialChunks: () => Math.max(0, partial.sum)
        })
      }
      const loops = concurrency === 1 ? loopOf(lanes[0]!) : Effect.forEach(lanes, loopOf, { concurrency, discard: true })
      // The producer never ends the race by succeeding: the loops end it (and the producer is interrupted).
      const raced = producer === undefined ? loops : Effect.raceFirst(loops, Effect.zipRight(producer, Effect.never))
      if (!useLanes) return Effect.zipRight(raced, summary)
      // Lanes: the publisher runs beside the loops and is interrupted when they end (between two batches), its
      // defect failing the execution; then, whatever the end, what is left is published before the execution ends.
      // When every chunk has a lane of its own (a known total within the concurrency: a job of one chunk), no
      // publisher is needed: a lane gives its fiber back, which publishes, as soon as its one chunk has settled.
      const lanePerChunk = knownTotal !== undefined && knownTotal <= concurrency
      const published = notify && !lanePerChunk
        ? Effect.acquireUseRelease(startPublisher, () => raced, stopPublisher)
        : raced
      return Effect.zipRight(Effect.ensuring(published, publish), summary)
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

/** Why a lane gave its fiber back (see `runLane` in {@link runSource}). */
type LaneStop =
  | { readonly _tag: "Pull" }
  | { readonly _tag: "Wait"; readonly wait: Effect.Effect<void> }
  | { readonly _tag: "Failed"; readonly chunk: Chunk; readonly error: unknown }

const pullStop: LaneStop = { _tag: "Pull" }

/**
 * Calls `onValue` or `onError` once `returned` settles: a native Promise directly, any other thenable through
 * `Promise.resolve` (so its callbacks run once, never synchronously), a plain value at once (as `await` takes it).
 */
const settleWith = (
  returned: unknown,
  onValue: (value: unknown) => void,
  onError: (error: unknown) => void
): void => {
  if (returned instanceof Promise) returned.then(onValue, onError)
  else if (typeof (returned as PromiseLike<unknown> | null)?.then === "function") {
    Promise.resolve(returned).then(onValue, onError)
  } else onValue(returned)
}

/** Real time (not the Effect `Clock`): how long the lanes' settled chunks may wait to be published. */
const settledBatchMillis = 10

/** Sleeps `millis` of real time (a timer, cleared on interruption). */
const realSleep = (millis: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })
