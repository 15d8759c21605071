/**
 * The job lifecycle: submit, run, get, list, cancel, await and watch jobs.
 *
 * A running job is a fiber in a `FiberMap` owned by the layer's scope; cancelling a job interrupts that
 * fiber. The fiber's `Exit` is mapped to the stored state in one place ({@link make}'s `settle`): success
 * -> `completed`, interruption only -> `cancelled` (or `paused` / re-queued when it was paused or its
 * manager shut down), any failure -> `failed` with the error's message.
 *
 * A streamed job (`chunks: { source, payload }`) pulls the stream its source makes, recording each chunk
 * pulled with the checkpoint; resumed, it runs the chunks pulled and not completed again, then the stream made
 * again, less the chunks recorded (see `ManagerOptions.sources`).
 *
 * Each manager instance has an owner id (`host:pid:random`) and heartbeats through the repository. Jobs
 * whose owner stopped heartbeating are claimed and resumed from their checkpoints by a live manager (every
 * `heartbeatInterval`); a job stored without an owner, resumed by a client or left by a retired owner is
 * claimed at once when the store signals it (`JobRepository.claimable`). Cancel/pause requests stored by
 * another process reach the owner through `JobRepository.stopRequests`.
 *
 * @since 0.1.0
 */
import { hostname } from "node:os"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberMap from "effect/FiberMap"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as FiberSet from "effect/FiberSet"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as MutableList from "effect/MutableList"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { LazyAbortController } from "./Abort.js"
import { ChunkWorker } from "./ChunkWorker.js"
import * as JobClient from "./JobClient.js"
import { decodeChunksQuery, parseJobId } from "./JobClient.js"
import type { FinalizeContext, Finalizer } from "./Finalizer.js"
import { FinalizeFailed } from "./Finalizer.js"
import type {
  Chunk as JobChunk,
  ChunkInfo,
  ChunkPage,
  ChunkResult,
  ChunkState,
  JobId,
  JobPage,
  JobSpec,
  JobSpecInput,
  JobState,
  JobStatus,
  Json,
  ListChunksQueryInput,
  ListQueryInput,
  StreamSource
} from "./Job.js"
import { isStreamSource, isTerminal, makeJobId, SpecLimits, totalChunks, validateSpec } from "./Job.js"
import {
  describeCause,
  firstIssue,
  InvalidJobSpec,
  InvalidJobState,
  InvalidOption,
  JobNotFound,
  type RepositoryError
} from "./JobError.js"
import { decodeChunkCursor, encodeChunkCursor, statesOf, streamedIds } from "./internal/chunkListing.js"
import type { RangeSet } from "./internal/rangeSet.js"
import type { ExecutionOptions, ExecutionSummary, StreamChunkSettled, StreamSummary } from "./JobExecutor.js"
import * as JobExecutor from "./JobExecutor.js"
import * as JobMetrics from "./JobMetrics.js"
import type { ChunkRecord, HeldLease, ProgressUpdate, TransitionResult } from "./JobRepository.js"
import { JobRepository } from "./JobRepository.js"
import type { StopReason } from "./internal/liveJob.js"
import { LiveJob } from "./internal/liveJob.js"
import { OwnershipProof } from "./internal/ownershipProof.js"
import { VersionSignal } from "./internal/versionSignal.js"
import * as Retention from "./internal/retention.js"
import { FunctionInput } from "./internal/schemas.js"
import { logFailure, loop } from "./internal/supervised.js"
import { fn, traced, withSpan } from "./internal/tracing.js"

/**
 * A stream source: makes a streamed job's chunks from the payload of its spec's `chunks: { source, payload }`,
 * as an Effect `Stream`, an `AsyncIterable` (an async generator) or a non-array `Iterable` (a generator). It is
 * called again whenever the job is resumed (after a restart, a pause, a takeover by another manager), so it
 * must give the same chunks (the same ids for the same work) each time.
 *
 * @since 0.2.0
 */
export type ChunkSource = (
  payload: Json | undefined
) => Stream.Stream<JobChunk, unknown> | AsyncIterable<JobChunk> | Iterable<JobChunk>

/**
 * Options of a manager: how each job's chunks run, the limits on submitted specs (`maxSpecBytes`,
 * `maxExplicitChunks`), how many jobs run at once, and the timings of ownership (heartbeat, recovery) and
 * shutdown. Durations are milliseconds.
 *
 * @since 0.1.0
 */
export const ManagerOptions = Schema.Struct({
  ...JobExecutor.ExecutionOptions.fields,
  ...SpecLimits.fields,
  /** Jobs running at once (default: no limit); the others wait as `pending`, started in submission order. */
  maxConcurrentJobs: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /** How often a watcher re-reads a job that runs in another process (default 500). */
  pollInterval: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /**
   * The shortest time between two statuses a watcher of a job of this manager receives (default 50; 0
   * for every change). Statuses in between are skipped; the terminal one is delivered at once.
   */
  watchInterval: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  /**
   * How often this manager records that it is alive and looks for jobs to take over: ownerless `pending`
   * jobs (resumed by the CLI, left by a graceful shutdown) and jobs of managers gone stale (default 1,000).
   */
  heartbeatInterval: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /**
   * A manager silent this long is gone: its jobs are claimed and resumed by a live manager, and a cancel
   * of its running jobs is applied directly (default 5,000; more than `heartbeatInterval`).
   */
  staleAfter: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /**
   * Durable stores only: on shutdown, how long running jobs may finish their in-flight chunks (no new
   * chunk starts) before they are interrupted; either way they are left `pending`, to be resumed from their
   * checkpoints (default 5,000).
   */
  shutdownGracePeriod: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  /** The finalize steps jobs may name in their spec's `finalize`, by name. */
  finalizers: Schema.optional(Schema.Record({
    key: Schema.String,
    value: FunctionInput<Finalizer>("a finalizer: a function (context) => Effect")
  })),
  /**
   * The stream sources jobs may name in their spec's `chunks: { source, payload }`, by name (see
   * {@link ChunkSource}). A manager that resumes such a job needs the same source under the same name.
   */
  sources: Schema.optional(Schema.Record({
    key: Schema.String,
    value: FunctionInput<ChunkSource>("a chunk source: a function (payload) => Stream, AsyncIterable or Iterable")
  })),
  /**
   * How long finished jobs are kept, by state (e.g. `{ completed: "7 days", failed: "30 days", cancelled:
   * "7 days" }`; a state left out is kept forever): the manager deletes older ones when it starts and then
   * every `sweepInterval` (default 1 minute), whichever manager ran them.
   */
  retention: Schema.optional(Retention.Retention)
}).annotations({ identifier: "ManagerOptions" })
/** @since 0.1.0 */
export type ManagerOptions = typeof ManagerOptions.Type

/**
 * The job manager service.
 *
 * @since 0.1.0
 */
export class JobManager extends Context.Tag("effect-jobs/JobManager")<JobManager, {
  /**
   * Validates the spec, stores the job as `pending` and starts it in the background (at once, or when a
   * slot under `maxConcurrentJobs` frees up). An invalid spec fails with `InvalidJobSpec` naming the path,
   * and nothing is stored (a finalizer or a stream source this manager does not have included). (`spec` is
   * typed; it is also checked at run time, for JavaScript callers.)
   */
  readonly submitJob: (spec: JobSpecInput) => Effect.Effect<JobId, InvalidJobSpec | RepositoryError>
  /**
   * Submits several jobs at once and returns their ids, in order: every spec is validated first, and one
   * invalid spec fails the whole batch with `InvalidJobSpec` whose path starts with its index (nothing is
   * stored); then all are stored in one write (one transaction on a SQL store) or none, and started in the
   * background like `submitJob`'s.
   */
  readonly submitBatch: (specs: ReadonlyArray<JobSpecInput>) => Effect.Effect<ReadonlyArray<JobId>, InvalidJobSpec | RepositoryError>
  /**
   * Submits the job and waits for its terminal status (`completed`, `failed` or `cancelled`).
   * Interrupting the caller cancels the job, and the interruption completes once `cancelled` is stored.
   */
  readonly runJob: (spec: JobSpecInput) => Effect.Effect<JobStatus, InvalidJobSpec | JobNotFound | RepositoryError>
  readonly getJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /**
   * One page of jobs, newest first, filtered by state: `{ jobs, nextCursor }`, `nextCursor` absent on the
   * last page (see `ListQuery`). A bad query fails with `InvalidOption` naming the field.
   */
  readonly listJobs: (query?: ListQueryInput) => Effect.Effect<JobPage, InvalidOption | RepositoryError>
  /**
   * One page of the job's chunks in chunk-id order, filtered by state (see `ListChunksQuery`): each with its
   * state, attempts, result, last error and times. The chunks in flight of a job this manager runs show as
   * `running` (with the progress they reported); a job running in another process shows them as `pending`.
   * Paging never materialises the job's chunks: any page of a million-chunk range job costs the same.
   */
  readonly listChunks: (
    id: string,
    query?: ListChunksQueryInput
  ) => Effect.Effect<ChunkPage, JobNotFound | InvalidOption | RepositoryError>
  /**
   * Cancels a job and returns its status:
   * - `pending` or `paused`: stored `cancelled`; it never starts another chunk.
   * - `running` here: its fiber is interrupted, every in-flight chunk is interrupted (its `AbortSignal`
   *   fires), and this returns once `cancelled` is stored; no chunk starts after it returns.
   * - `running` in another process sharing the store: the request is stored, the owner interrupts the job,
   *   and this returns once `cancelled` is stored (at once if the owner is gone).
   * - terminal: nothing changes; the status is returned as it is. Cancelling twice is the same as once.
   * If the job completes or fails as it is being cancelled, exactly one terminal state is stored and
   * returned, and it never changes afterwards.
   */
  readonly cancelJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /**
   * Pauses a job: a `running` job is interrupted like a cancel (in-flight chunks aborted) but stored
   * `paused`, its completed chunks kept in its checkpoint; a `pending` job is held as `paused`. Any other
   * state: nothing changes. Returns the status.
   */
  readonly pauseJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /**
   * Resumes a `paused` job: it is queued again (`pending`) and, when it runs, only the chunks missing
   * from its checkpoint run. Any other state: nothing changes. Returns the status.
   */
  readonly resumeJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /**
   * Re-drives a `failed` job as a new job (its `retryOf` names the failed one, which keeps its terminal
   * state): only the chunks that failed or never ran are run. Fails with `InvalidJobState` for a job
   * that did not fail.
   */
  readonly retryJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | InvalidJobState | RepositoryError>
  /**
   * Deletes a `completed`, `failed` or `cancelled` job (status, spec and checkpoint) and returns its last
   * status. Any other state fails with `InvalidJobState` and changes nothing (cancel the job first).
   */
  readonly deleteJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | InvalidJobState | RepositoryError>
  /**
   * Deletes the finished jobs that `options` names, `{ olderThan, states? }`: those in one of `states`
   * (default: `completed`, `failed` and `cancelled`) that finished more than `olderThan` ago (a duration such
   * as `"7 days"`) or before it (a `Date`); returns how many. Bad options fail with `InvalidOption` and delete
   * nothing. Jobs that have not ended are never deleted.
   */
  readonly pruneJobs: (options: JobClient.PruneOptionsInput) => Effect.Effect<number, InvalidOption | RepositoryError>
  /**
   * Waits for the job's terminal status, as stored. Interrupting the caller does not cancel the job. For a job
   * this manager runs, store faults are waited out (retried until the store answers); for another job they
   * fail with `RepositoryError`.
   */
  readonly awaitJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /**
   * The job's status now, then its changes, ending with its terminal status: at most one status per
   * `watchInterval` (the newest), and the terminal one as soon as it is stored. A slow consumer skips
   * intermediate statuses too, never the terminal one.
   */
  readonly watchJob: (id: string) => Stream.Stream<JobStatus, JobNotFound | RepositoryError>
  /** This manager's owner id, as stored on the jobs it runs. */
  readonly owner: string
}>() {}

/** The compare-and-set that records how a job's fiber ended. */
interface Target {
  readonly from: ReadonlyArray<JobState>
  readonly to: JobState
  readonly error?: string
}

const decodeOptions = Schema.decodeUnknown(ManagerOptions, { onExcessProperty: "error" })

/**
 * Validates manager options; a bad option fails with `InvalidOption` naming it.
 *
 * @since 0.1.0
 */
export const validateOptions = (input: unknown): Effect.Effect<ManagerOptions, InvalidOption> =>
  Effect.flatMap(
    Effect.mapError(decodeOptions(input ?? {}), (error) => new InvalidOption(firstIssue(error))),
    (options) =>
      (options.staleAfter ?? 5_000) > (options.heartbeatInterval ?? 1_000)
        ? Effect.succeed(options)
        : Effect.fail(new InvalidOption({ path: ["staleAfter"], detail: "must be longer than heartbeatInterval" }))
  )

/**
 * How a store write that must happen (a job's start, its end) is tried again after a fault: 0.1 s, 0.2 s,
 * ... doubling up to every 5 s, for as long as the manager lives.
 */
const storeRetry = Schedule.exponential(100).pipe(Schedule.either(Schedule.spaced(5_000)))

/**
 * Whether every chunk settled (an execution drained by a shutdown or pause ends before that; a streamed one
 * is finished only once its stream has ended).
 */
const isFinished = (summary: ExecutionSummary | StreamSummary): boolean =>
  ("ended" in summary ? summary.ended : true) && summary.completedChunks + summary.failedChunks >= summary.totalChunks

/** The `pulled` of the updates of a streamed job that pulled nothing new (it marks the update as a streamed job's). */
const nothingPulled: ReadonlyArray<JobChunk> = []

/** The targets that are the same for every job. */
const toCompleted: Target = { from: ["running"], to: "completed" }
const toPaused: Target = { from: ["running"], to: "paused" }
const toPending: Target = { from: ["running"], to: "pending" }
const toCancelled: Target = { from: ["pending", "running", "paused"], to: "cancelled" }

/**
 * The state a job fiber's Exit stores: the one place where an outcome becomes a state. `undefined`: the job
 * never started (another change of state got there first), or the manager lost it: nothing is stored.
 */
const targetOf = (
  stopReason: StopReason | undefined,
  durable: boolean,
  exit: Exit.Exit<ExecutionSummary | undefined, unknown>
): Target | undefined => {
  if (stopReason === "lost") return undefined
  const stopped = (): Target =>
    stopReason === "pause" ? toPaused : stopReason === "shutdown" && durable ? toPending : toCancelled
  if (Exit.isSuccess(exit)) {
    const summary = exit.value
    if (summary === undefined) return undefined
    return isFinished(summary) ? toCompleted : stopped() // drained before every chunk ran
  }
  return Cause.isInterruptedOnly(exit.cause)
    ? stopped()
    : { from: ["pending", "running"], to: "failed", error: describeCause(exit.cause) }
}

/** How often the progress reported inside chunks is handed to the store (which may coalesce it further). */
const partialProgressInterval = 200

/** The results read per page by a finalize step's `results`. */
const resultsPage = 256

/** What the store keeps of a settled chunk that has more to say than its id. */
const chunkRecord = (event: StreamChunkSettled): ChunkRecord => ({
  id: event.chunkId,
  state: event.outcome,
  attempts: event.attempts,
  ...(event.result === undefined ? {} : { result: event.result }),
  ...(event.error === undefined ? {} : { error: event.error }),
  startedAt: event.startedAt,
  finishedAt: event.finishedAt
})

const makeOwnerId = (): string =>
  `${hostname()}:${process.pid}:${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`

/**
 * Builds a manager in the current scope.
 *
 * Ownership: the manager heartbeats every `heartbeatInterval`, and each heartbeat checks the leases of the
 * jobs it runs. A job whose lease moved on (another manager took it over after this one stalled, or another
 * process stopped it) is interrupted here at once, its chunks in flight aborted, and nothing more of it is
 * stored. A job pulls its next chunk only while this manager's last successful heartbeat is younger than
 * `staleAfter` by its own clock, so a process resumed after a stall starts nothing until a heartbeat has
 * proven it still owns the job. When heartbeats keep failing for `staleAfter` (the store is unreachable), the
 * running jobs are stopped here; once the store answers again they are queued again under a new lease,
 * unless another manager took them over meanwhile.
 *
 * Faults: a store failure or defect on the heartbeat, recovery, stop-request, start or end-of-job path is
 * logged and retried for as long as the manager lives; no background fiber dies of it. A job whose end
 * could not be written is kept here and written once the store is back (`awaitJob` waits for that); closing
 * the manager gives that up without waiting for the store, and leaves the job to the next manager.
 *
 * Job fibers run with the services and fiber refs of the fiber that built the manager (its logger, tracer,
 * clock, log annotations), each with its `jobId` log annotation; they never inherit from the fiber that submitted
 * or dispatched them, nor from another job.
 *
 * Closing the scope stops every job of this manager and leaves no fiber behind. With a durable store,
 * running jobs stop pulling chunks, get `shutdownGracePeriod` to finish the chunks in flight, and are left
 * `pending` to be resumed from their checkpoints by the next manager; with the memory store they are
 * stored `cancelled`. Jobs still waiting for a slot stay `pending`.
 *
 * @since 0.1.0
 */
export const make = (
  options?: ManagerOptions
): Effect.Effect<JobManager["Type"], InvalidOption | RepositoryError, JobRepository | ChunkWorker | Scope.Scope> =>
  Effect.gen(function*() {
    const validated = yield* validateOptions(options)
    const {
      heartbeatInterval = 1_000,
      maxConcurrentJobs = Number.POSITIVE_INFINITY,
      pollInterval = 500,
      shutdownGracePeriod = 5_000,
      staleAfter = 5_000,
      watchInterval = 50,
      finalizers = {},
      sources = {},
      maxSpecBytes,
      maxExplicitChunks,
      retention,
      ...execution
    } = validated
    const specLimits = { maxSpecBytes, maxExplicitChunks }
    const executionOptions: ExecutionOptions = execution
    const repository = yield* JobRepository
    const clock = yield* Effect.clock
    const client = yield* JobClient.make({ pollInterval, staleAfter, watchInterval })
    const owner = makeOwnerId()
    const fibers = yield* FiberMap.make<JobId, ExecutionSummary | undefined, unknown>()
    const built = yield* Effect.runtime<ChunkWorker>()
    // Interruptible whatever the flags of the fiber that builds the manager (a job fiber is cancelled by interruption);
    // without the builder's span as parent: a job's span is a root, not a child of a start-up span long ended.
    const runJobFiber = Runtime.runFork(Runtime.make({
      context: Context.omit(Tracer.ParentSpan)(built.context),
      fiberRefs: built.fiberRefs,
      runtimeFlags: Runtime.defaultRuntime.runtimeFlags
    }))
    // Work started on behalf of jobs outside their fibers: end writes retried after a fault, stops of jobs
    // this manager lost.
    const background = yield* FiberSet.make<void>()
    const live = new Map<JobId, LiveJob>()
    const waiting = MutableList.empty<LiveJob>()
    const proof = new OwnershipProof(staleAfter, () => clock.unsafeCurrentTimeMillis())
    /** Jobs stopped here because ownership could not be proven; queued again once it can, if still ours. */
    const unproven = new Map<JobId, number>()
    let running = 0
    let closing = false

    /**
     * `effect` tried again after any failure or defect, except an interruption or an error that `isFinal`. The
     * first try runs bare (a retry schedule costs a few allocations per call, and a job's start takes this
     * path); once it has failed, that failure and the tries after it go through `storeRetry` as one would.
     */
    const retryingStore = <A, E>(
      what: string,
      effect: Effect.Effect<A, E>,
      isFinal: (error: E) => boolean = () => false
    ): Effect.Effect<A, E> => {
      const triedAgain = (cause: Cause.Cause<E>) =>
        !Cause.isInterruptedOnly(cause) && !Option.exists(Cause.failureOption(cause), isFinal)
      return Effect.catchAllCause(effect, (first) => {
        if (!triedAgain(first)) return Effect.failCause(first)
        let replayed: Cause.Cause<E> | undefined = first
        const attempt = Effect.suspend(() => {
          const cause = replayed
          replayed = undefined
          return cause === undefined ? effect : Effect.failCause(cause)
        })
        return attempt.pipe(
          Effect.sandbox,
          Effect.tapError((cause) => Effect.logWarning(`effect-jobs: ${what} failed; trying again`, cause)),
          Effect.retry({ schedule: storeRetry, while: triedAgain }),
          Effect.unsandbox
        )
      })
    }

    // --- Losing jobs: another manager holds the lease, or ownership cannot be proven ---

    /** Stops a job's fiber here without storing anything (the store belongs to whoever holds the lease now). */
    const lose = (job: LiveJob, why: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (job.stopReason === "lost") return Effect.void
        job.stopReason = "lost"
        return Effect.zipRight(
          Effect.logWarning(`effect-jobs: job ${job.id} is stopped here: ${why}`),
          FiberSet.run(background, FiberMap.remove(fibers, job.id))
        )
      })

    const loseById = (id: JobId, why: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const job = live.get(id)
        return job === undefined || job.settling || !FiberMap.unsafeHas(fibers, id) ? Effect.void : lose(job, why)
      })

    /** The leases this manager runs jobs under (jobs with a fiber that has started). */
    const heldLeases = (): Array<HeldLease> => {
      const held: Array<HeldLease> = []
      for (const job of live.values()) {
        if (job.status.state === "running" && job.stopReason !== "lost" && FiberMap.unsafeHas(fibers, job.id)) {
          held.push({ id: job.id, lease: job.lease })
        }
      }
      return held
    }

    /**
     * Whether a fenced transition of this manager, from `lease` to `to`, is in the store: it applied, or an
     * earlier try of it landed but its answer was lost (a retry then finds the job in `to`, owned here, under the
     * very next lease, which no other writer can make).
     */
    const landed = (result: TransitionResult, lease: number, to: JobState): boolean =>
      result.applied || (result.status.state === to && result.status.owner === owner && result.status.lease === lease + 1)

    /**
     * Held before each pull of `job`: a job this manager lost never pulls again (its fiber is being
     * interrupted), and while the manager cannot prove it owns its jobs, none of them starts a chunk.
     */
    const beforePull = (job: LiveJob) => (): Effect.Effect<void> | undefined =>
      job.stopReason === "lost" ? Effect.never : proof.isFresh() ? undefined : proof.awaitRenewal

    // --- A job's fiber, and the one place its Exit becomes a state ---

    /**
     * Chunks of the job settled (in the order they did): one progress update with their ids and records.
     * `streamed`: the job's chunks come from a stream; `recordTotal`, its total is to be recorded once the stream
     * has ended (not yet recorded by an earlier run).
     */
    const onChunksSettled = (job: LiveJob, streamed?: { readonly recordTotal: boolean }) =>
    (
      events: ReadonlyArray<StreamChunkSettled>
    ): Effect.Effect<void> => {
      const completedChunkIds: Array<number> = []
      let records: Array<ChunkRecord> | undefined
      for (const event of events) {
        if (event.outcome === "completed") {
          completedChunkIds.push(event.chunkId)
          // A chunk completed at its first attempt without a result is only an id in the checkpoint.
          if (event.result === undefined && event.attempts === 1) continue
        }
        ;(records ??= []).push(chunkRecord(event))
      }
      // Their counts never go back: the last event's are the job's.
      const last = events[events.length - 1]!
      const progress: ProgressUpdate = {
        completedChunks: last.completedChunks,
        failedChunks: last.failedChunks,
        completedChunkIds,
        lease: job.lease,
        partialChunks: job.execution?.partialChunks(),
        pulled: streamed === undefined ? undefined : nothingPulled,
        totalChunks: streamed !== undefined && streamed.recordTotal ? last.totalChunks : undefined,
        chunks: records
      }
      job.setProgress(progress, clock.unsafeCurrentTimeMillis())
      return recordProgress(job, progress)
    }

    /**
     * Writes a job's progress. A lost lease stops the job here; any other failure, a defect included, is
     * logged and the job runs on (its counts are written with its end, its checkpoint misses those chunks).
     */
    const recordProgress = (job: LiveJob, progress: ProgressUpdate): Effect.Effect<void> =>
      Effect.catchAllCause(repository.updateProgress(job.id, progress), (cause) => {
        const failure = Cause.failureOption(cause)
        return Option.isSome(failure) && failure.value._tag === "LeaseLost"
          ? lose(job, "another manager holds its lease")
          : Effect.logWarning(`effect-jobs: could not record the progress of job ${job.id}`, cause)
      })

    /** The job leaves the manager with `status` (its stored status, or the last one seen if it was lost). */
    const finish = (job: LiveJob, status: JobStatus): void => {
      if (live.get(job.id) === job) live.delete(job.id)
      job.end(status)
    }

    /** Writes how the job ended; a store fault is retried in the background until it is written. */
    const settle = (job: LiveJob, exit: Exit.Exit<ExecutionSummary | undefined, unknown>): Effect.Effect<void> => {
      job.settling = true
      job.execution = undefined
      const target = targetOf(job.stopReason, repository.durable, exit)
      if (target === undefined) {
        if (job.stopReason === "lost") return Effect.sync(() => finish(job, job.status))
        return repository.get(job.id).pipe(
          Effect.map(Option.getOrElse(() => job.status)),
          Effect.orElseSucceed(() => job.status),
          Effect.flatMap((status) => Effect.sync(() => finish(job, status)))
        )
      }
      const write = Effect.flatMap(
        repository.transition(job.id, target.from, target.to, {
          completedChunks: job.completedChunks,
          failedChunks: job.failedChunks,
          error: target.error,
          owner: target.to === "pending" || target.to === "paused" ? null : undefined,
          lease: job.lease
        }),
        (result) => {
          if (!result.applied && result.status.lease !== job.lease && !isTerminal(result.status.state)) {
            return Effect.zipRight(
              Effect.logWarning(`effect-jobs: the end of job ${job.id} was not recorded: another manager holds its lease`),
              Effect.sync(() => finish(job, result.status))
            )
          }
          finish(job, result.status)
          return Effect.void
        }
      ).pipe(
        // A job deleted meanwhile has nothing left to record.
        Effect.catchTag("JobNotFound", () => Effect.sync(() => finish(job, job.status)))
      )
      return write.pipe(
        Effect.catchAllCause((cause) =>
          Effect.zipRight(
            Effect.logError(`effect-jobs: could not record the end of job ${job.id}; retrying until the store answers`, cause),
            // Interruptible, though forked from the fiber's exit (uninterruptible, which a fork inherits): closing
            // the manager stops the retries (the job is left to the next manager) instead of waiting for the store.
            FiberSet.run(background, Effect.interruptible(retryingStore(`recording the end of job ${job.id}`, write)))
          )
        ),
        Effect.asVoid
      )
    }

    // --- In-chunk progress: what chunks in flight report, written with the next progress flush ---

    /** Jobs whose chunks in flight reported progress since the last write. */
    const partialReported = new Set<LiveJob>()
    const partialSignal = new VersionSignal()
    let partialSeen = 0

    const onChunkProgress = (job: LiveJob) => () => {
      job.progressReported()
      partialReported.add(job)
      partialSignal.bump()
    }

    /** Waits for a report, lets more come for `partialProgressInterval`, then hands them to the store. */
    const writePartialProgress = Effect.suspend(() => partialSignal.changedSince(partialSeen)).pipe(
      Effect.zipRight(Effect.sleep(partialProgressInterval)),
      Effect.zipRight(Effect.suspend(() => {
        partialSeen = partialSignal.version
        const jobs = [...partialReported]
        partialReported.clear()
        return Effect.forEach(jobs, (job) => {
          const view = job.execution
          return view === undefined || job.stopReason !== undefined ? Effect.void : recordProgress(job, {
            completedChunks: job.completedChunks,
            failedChunks: job.failedChunks,
            partialChunks: view.partialChunks(),
            lease: job.lease
          })
        }, { discard: true })
      }))
    )

    /** Runs the job's finalize step, with `phase: "finalizing"` recorded while it runs. */
    const finalize = (job: LiveJob, step: NonNullable<JobSpec["finalize"]>, summary: ExecutionSummary) =>
      Effect.gen(function*() {
        const progress = {
          completedChunks: summary.completedChunks,
          failedChunks: summary.failedChunks,
          phase: "finalizing" as const,
          lease: job.lease
        }
        job.setProgress(progress, clock.unsafeCurrentTimeMillis())
        yield* recordProgress(job, progress)
        const finalizer = Object.hasOwn(finalizers, step.name) ? finalizers[step.name] : undefined
        if (finalizer === undefined) {
          return yield* new FinalizeFailed({ name: step.name, cause: "this manager has no finalizer of that name" })
        }
        const controller = new LazyAbortController()
        const context: FinalizeContext = {
          jobId: job.id,
          spec: job.spec,
          payload: step.payload,
          completedChunks: summary.completedChunks,
          failedChunks: summary.failedChunks,
          get signal() {
            return controller.signal
          },
          results: resultsOf(job.id)
        }
        yield* finalizer(context).pipe(
          Effect.onInterrupt(() => Effect.sync(() => controller.abort())),
          Effect.mapError((cause) => new FinalizeFailed({ name: step.name, cause }))
        )
      })

    /**
     * Runs a streamed job: first the chunks an earlier run pulled and did not complete (read from the store),
     * then its stream, made again by its source, less the chunks recorded (the completed ones are counted and
     * skipped). Each chunk pulled is recorded before it can start, with the checkpoint (buffered like it), so a
     * chunk pulled but not recorded when the process died is pulled again by the next run: at least once. A
     * job whose stream had ended needs no source; one whose source this manager does not have fails, naming it.
     */
    const runStreamed = (
      job: LiveJob,
      named: StreamSource,
      status: JobStatus,
      checkpoint: RangeSet,
      options: Omit<JobExecutor.ExecuteStreamOptions, "onChunkSettled" | "onChunksSettled" | "onPulled">
    ) =>
      Effect.gen(function*() {
        const rerun = yield* retryingStore(`reading the pulled chunks of job ${job.id}`, repository.pulledChunks(job.id))
        const recorded = streamedIds(checkpoint, rerun.map((chunk) => chunk.id))
        const total = status.totalChunks
        const make = Object.hasOwn(sources, named.source) ? sources[named.source] : undefined
        if (total === undefined && make === undefined) {
          return yield* new InvalidJobSpec({
            path: ["chunks", "source"],
            detail: `this manager has no source named ${JSON.stringify(named.source)} to make the stream of this ` +
              "job again (register it in the manager's `sources`)"
          })
        }
        const source = total === undefined
          ? yield* Effect.try({ try: () => make!(named.payload), catch: (error) => error })
          : undefined
        const summary = yield* JobExecutor.executeResumed(rerun, source, {
          ...options,
          // A spec's own concurrency wins over the manager's, as for a spec's listed chunks.
          ...(job.spec.concurrency === undefined ? {} : { concurrency: job.spec.concurrency }),
          // A stream that had ended: its recorded total, not only the chunks run again, is the job's total.
          totalChunks: total,
          onChunksSettled: onChunksSettled(job, { recordTotal: total === undefined }),
          onPulled: (pulled) => {
            const fresh = pulled.filter((chunk) => !recorded.has(chunk.id))
            return fresh.length === 0 ? Effect.void : recordProgress(job, {
              completedChunks: job.completedChunks,
              failedChunks: job.failedChunks,
              partialChunks: job.execution?.partialChunks(),
              pulled: fresh,
              lease: job.lease
            })
          }
        })
        if (summary.ended && job.status.totalChunks === undefined) {
          // The stream ended after its last chunk settled: its total is recorded now.
          const progress: ProgressUpdate = {
            completedChunks: job.completedChunks,
            failedChunks: job.failedChunks,
            pulled: nothingPulled,
            totalChunks: summary.totalChunks,
            lease: job.lease
          }
          job.setProgress(progress, clock.unsafeCurrentTimeMillis())
          yield* recordProgress(job, progress)
        }
        return summary
      })

    /** The options of a job's execution (a streamed job's `onChunksSettled` is set by `runStreamed`). */
    const executionFor = (job: LiveJob, skip: RangeSet | undefined, streamed: boolean) => ({
      ...executionOptions,
      jobId: job.id,
      skip,
      shouldStop: () => job.draining,
      beforePull: beforePull(job),
      onStart: (view: JobExecutor.ExecutionView) => {
        job.execution = view
      },
      onChunkProgress: onChunkProgress(job),
      onChunksSettled: streamed ? undefined : onChunksSettled(job)
    })

    const jobFiber = (job: LiveJob): Effect.Effect<ExecutionSummary | undefined, unknown, ChunkWorker> =>
      Effect.gen(function*() {
        // The start is fenced by the lease the job was queued under: a job claimed or stopped by another
        // process since then does not start here.
        const started = yield* retryingStore(
          `starting job ${job.id}`,
          repository.transition(job.id, ["pending"], "running", { owner, lease: job.lease }),
          (error) => error._tag === "JobNotFound"
        ).pipe(Effect.catchTag("JobNotFound", () => Effect.succeed(undefined))) // deleted meanwhile
        if (started === undefined || !landed(started, job.lease, "running")) return undefined
        job.setStatus(started.status)
        const chunks = job.spec.chunks
        const streamed = isStreamSource(chunks)
        const completed = started.status.completedChunks > 0 || streamed
          ? yield* retryingStore(`reading the checkpoint of job ${job.id}`, repository.getCheckpoint(job.id))
          : undefined
        const options = executionFor(job, completed, streamed)
        const summary = yield* (streamed
          ? runStreamed(job, chunks, started.status, completed!, options)
          : JobExecutor.executeValidated(job.spec, options))
        // The execution has ended (`settle` clears it too when it ends otherwise).
        job.execution = undefined
        if (job.spec.finalize !== undefined && isFinished(summary)) {
          const hold = beforePull(job)()
          if (hold !== undefined) yield* hold
          yield* finalize(job, job.spec.finalize, summary)
        }
        return summary
      }).pipe(
        // Its end is written, then its slot freed (even if writing it died: the outcome of `settle` is kept).
        Effect.onExit((exit) =>
          Effect.flatMap(Effect.exit(settle(job, exit)), (settled) => {
            running--
            JobMetrics.jobsRunning.unsafeUpdate(running, [])
            return Effect.zipRight(dispatch, settled)
          })
        ),
        (effect) => withSpan(effect, "effect-jobs.job", { attributes: { "job.id": job.id } })
      )

    // --- The queue: jobs wait for a slot under `maxConcurrentJobs`, in submission order ---

    /**
     * Forks the job's fiber into `fibers`. Every job fiber is forked from the manager's own runtime (the context and
     * fiber refs of the fiber that built the manager, as `FiberMap.run` would take them from the caller), never from
     * the fiber that happens to dispatch it: a job dispatched from the end of the job before it would otherwise
     * inherit that job's fiber refs, and each fork adds an entry to them, so they would grow with every job run.
     * Its logs carry its id (`jobId`), set as the fiber is made.
     */
    const forkJob = (job: LiveJob): void => {
      const fiber = runJobFiber(jobFiber(job), {
        updateRefs: (refs, fiberId) =>
          FiberRefs.updateAs(refs, {
            fiberId,
            fiberRef: FiberRef.currentLogAnnotations,
            value: HashMap.set(FiberRefs.getOrDefault(refs, FiberRef.currentLogAnnotations), "jobId", job.id as unknown)
          })
      })
      FiberMap.unsafeSet(fibers, job.id, fiber)
    }

    /** Starts waiting jobs, in submission order, while there are free slots. */
    const dispatch: Effect.Effect<void> = Effect.suspend(() => {
      while (!closing && running < maxConcurrentJobs) {
        const job = MutableList.shift(waiting)
        if (job === undefined) return Effect.void
        // A job no longer pending, or replaced, is not started.
        if (job.status.state !== "pending" || live.get(job.id) !== job) continue
        const previous = FiberMap.unsafeGet(fibers, job.id)
        if (previous._tag === "Some") {
          // Its previous run here (lost, then queued again) is still stopping: it is queued again once that ends.
          return Effect.zipRight(
            FiberSet.run(
              background,
              Effect.zipRight(Fiber.await(previous.value), Effect.suspend(() => {
                MutableList.append(waiting, job)
                return dispatch
              }))
            ),
            dispatch
          )
        }
        running++
        JobMetrics.jobsRunning.unsafeUpdate(running, [])
        forkJob(job)
      }
      return Effect.void
    })

    /** Queues a stored `pending` job owned by this manager (under the lease of `status`). */
    const enqueue = (spec: JobSpec, status: JobStatus): Effect.Effect<void> =>
      Effect.suspend(() => {
        queue(spec, status)
        return dispatch
      })

    /** Adds a stored `pending` job of this manager to the queue (`dispatch` starts it). */
    const queue = (spec: JobSpec, status: JobStatus): void => {
      const job = new LiveJob(status.id, spec, status)
      live.set(job.id, job)
      MutableList.append(waiting, job)
    }

    /**
     * Queues a job this manager has just taken over (claimed, resumed or queued again). The job is this
     * manager's in the store from then on, and no other manager claims it while this one heartbeats, so when
     * it cannot be read it is read again in the background until the store answers.
     */
    const adopt = (id: JobId): Effect.Effect<void> => {
      const read = Effect.gen(function*() {
        const [status, spec] = yield* Effect.all([repository.get(id), repository.getSpec(id)])
        if (Option.isSome(status) && Option.isSome(spec) && status.value.state === "pending") {
          yield* enqueue(spec.value, status.value)
        }
      })
      return Effect.catchAllCause(read, (cause) =>
        Effect.zipRight(
          Effect.logWarning(`effect-jobs: could not read job ${id} to queue it; retrying until the store answers`, cause),
          FiberSet.run(background, Effect.interruptible(retryingStore(`reading job ${id} to queue it`, read)))
        ))
    }

    // --- The operations ---

    /** The job's chunk results, read a page at a time as the stream is pulled. */
    const resultsOf = (id: JobId): Stream.Stream<ChunkResult, JobNotFound | RepositoryError> =>
      Stream.paginateChunkEffect(-1, (after: number) =>
        Effect.map(repository.chunkResults(id, { after, limit: resultsPage }), (results) => {
          const last = results[results.length - 1]
          return [
            Chunk.unsafeFromArray(results as Array<ChunkResult>),
            results.length < resultsPage || last === undefined ? Option.none<number>() : Option.some(last.id)
          ] as const
        }))

    /**
     * The chunks of a job from the store; for a job this manager runs, its chunks in flight show as `running`
     * (they are merged into the page in id order, up to where the store's page ends).
     */
    const listChunks = fn("JobManager.listChunks")(function*(id: string, input?: ListChunksQueryInput) {
      const jobId = yield* parseJobId(id)
      const query = yield* decodeChunksQuery(input)
      const view = live.get(jobId)?.execution
      if (view === undefined) return yield* client.listChunks(jobId, query)
      const after = yield* decodeChunkCursor(query.cursor)
      const limit = query.limit ?? 100
      const states = statesOf(query)
      const inFlight = new Map(view.inFlight().filter((chunk) => chunk.id > after).map((chunk) => [chunk.id, chunk]))
      const stored: Array<ChunkState> = ["completed", "failed", "pending"]
      const others = stored.filter((state) => states.has(state) || (states.has("running") && state === "pending"))
      const page = yield* client.listChunks(jobId, { ...query, state: others })
      const chunks: Array<ChunkInfo> = page.chunks.filter((chunk) => !inFlight.has(chunk.id) && states.has(chunk.state))
      if (states.has("running")) {
        const end = page.nextCursor === undefined ? Number.POSITIVE_INFINITY : page.chunks[page.chunks.length - 1]!.id
        for (const chunk of inFlight.values()) {
          if (chunk.id > end) continue
          chunks.push({
            id: chunk.id,
            state: "running",
            attempts: chunk.attempts,
            startedAt: new Date(chunk.startedAt),
            progress: chunk.progress
          })
        }
        chunks.sort((a, b) => a.id - b.id)
      }
      if (chunks.length > limit) {
        const kept = chunks.slice(0, limit)
        return { chunks: kept, nextCursor: encodeChunkCursor(kept[kept.length - 1]!.id) } satisfies ChunkPage
      }
      return (page.nextCursor === undefined ? { chunks } : { chunks, nextCursor: page.nextCursor }) satisfies ChunkPage
    })

    /**
     * A valid spec whose finalize step and stream source (if any) this manager knows, or `InvalidJobSpec`
     * naming the path.
     */
    const checkSpec = (input: unknown): Effect.Effect<JobSpec, InvalidJobSpec> =>
      Effect.flatMap(validateSpec(input, specLimits), (spec) => {
        const unknownName = (path: ReadonlyArray<string>, what: string, name: string, known: object, hint = "") =>
          Effect.fail(
            new InvalidJobSpec({
              path,
              detail: `no ${what} named ${JSON.stringify(name)} (known: ${
                Object.keys(known).length === 0 ? "none" : Object.keys(known).join(", ")
              })${hint}`
            })
          )
        if (isStreamSource(spec.chunks) && !Object.hasOwn(sources, spec.chunks.source)) {
          return unknownName(["chunks", "source"], "source", spec.chunks.source, sources, "; register it in the manager's `sources`")
        }
        if (spec.finalize === undefined || Object.hasOwn(finalizers, spec.finalize.name)) return Effect.succeed(spec)
        return unknownName(["finalize", "name"], "finalizer", spec.finalize.name, finalizers)
      })

    // Every job takes this path: written as a chain of steps (a generator costs a few more per call).
    const submitJob = traced("JobManager.submitJob", (input: JobSpecInput) =>
      Effect.flatMap(checkSpec(input), (spec) =>
        Effect.flatMap(
          repository.create({ id: makeJobId(clock.unsafeCurrentTimeMillis()), spec, totalChunks: totalChunks(spec), owner }),
          (status) => Effect.as(enqueue(spec, status), status.id)
        )))

    const submitBatch = fn("JobManager.submitBatch")(function*(inputs: unknown) {
      if (!Array.isArray(inputs)) {
        return yield* new InvalidJobSpec({ path: [], detail: "submitBatch takes an array of job specs" })
      }
      const specs: Array<JobSpec> = []
      for (let index = 0; index < inputs.length; index++) {
        specs.push(
          yield* Effect.mapError(checkSpec(inputs[index]), (error) =>
            new InvalidJobSpec({ path: [index, ...error.path], detail: error.detail }))
        )
      }
      const now = yield* Clock.currentTimeMillis
      const statuses = yield* repository.createMany(
        specs.map((spec) => ({ id: makeJobId(now), spec, totalChunks: totalChunks(spec), owner }))
      )
      statuses.forEach((status, index) => queue(specs[index]!, status))
      yield* dispatch
      return statuses.map((status) => status.id)
    })

    /** Statuses of a job of this manager, until it ends here; then, if it is not terminal, from the store. */
    const watchJob = (id: string): Stream.Stream<JobStatus, JobNotFound | RepositoryError> =>
      Stream.unwrap(Effect.map(parseJobId(id), (jobId) => {
        const job = live.get(jobId)
        if (job === undefined) return client.watchJob(jobId)
        let last: JobStatus | undefined
        // After each status, wait out `watchInterval` (cut short by the job's end), then for a change.
        const pause = watchInterval === 0 ? Effect.void : Effect.raceFirst(Effect.sleep(watchInterval), job.awaitEnd)
        const here = Stream.unfoldEffect(-1, (seen: number) =>
          Effect.zipRight(
            seen === -1 ? Effect.void : pause,
            Effect.map(job.changedSince(seen), () => {
              const version = job.version
              if (version === seen || (last !== undefined && isTerminal(last.state))) return Option.none()
              last = job.status
              return Option.some([last, version] as const)
            })
          ))
        const afterwards = Stream.suspend(() =>
          last !== undefined && isTerminal(last.state) ? Stream.empty : client.watchJob(jobId)
        )
        return Stream.concat(here, afterwards).pipe(
          Stream.changesWith(JobClient.sameChange)
        )
      }))

    const awaitJob = fn("JobManager.awaitJob")(function*(id: string) {
      const jobId = yield* parseJobId(id)
      const job = live.get(jobId)
      if (job !== undefined) {
        yield* job.awaitEnd
        if (isTerminal(job.status.state)) return job.status
      }
      // Not here (or paused / handed over / lost): follow it in the store.
      const follow = Effect.flatMap(
        Stream.runLast(client.watchJob(jobId)),
        (last) => Option.isSome(last) ? Effect.succeed(last.value) : client.getJob(jobId)
      )
      if (job === undefined) return yield* follow
      // A job of this manager (stopped here while the store was out of reach, say) is known to exist: store
      // faults are waited out, so its waiters see its end once the store answers.
      return yield* retryingStore(`following job ${jobId}`, follow, (error) => error._tag === "JobNotFound")
    })

    /**
     * Interrupts a job fiber of this manager for `reason` and waits until its end is stored (or, for a job
     * whose end write waits for the store, until it is). `false`: no fiber of this job runs here.
     */
    const stopLocal = (id: JobId, reason: StopReason): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const job = live.get(id)
        if (!FiberMap.unsafeHas(fibers, id) || job === undefined) return Effect.succeed(false)
        // A cancel wins over a pause or a shutdown under way; otherwise the first reason stands.
        if (reason === "cancel" && job.stopReason !== "lost") job.stopReason = reason
        else job.stopReason ??= reason
        return Effect.as(Effect.zipRight(FiberMap.remove(fibers, id), job.awaitEnd), true)
      })

    /** Removes a job that another transition took out of the queue. */
    const dropQueued = (status: JobStatus): Effect.Effect<void> =>
      Effect.suspend(() => {
        const job = live.get(status.id)
        if (job === undefined) return Effect.void
        finish(job, status)
        // A fiber may have been started for it; it finds the job's state changed and ends without running.
        return FiberMap.remove(fibers, status.id)
      })

    const cancelJob = fn("JobManager.cancelJob")(function*(id: string) {
      const jobId = yield* parseJobId(id)
      const fromWaiting = yield* repository.transition(jobId, ["pending", "paused"], "cancelled")
      if (fromWaiting.applied) {
        yield* dropQueued(fromWaiting.status)
        return fromWaiting.status
      }
      if (fromWaiting.status.state !== "running") return fromWaiting.status
      // Interrupts the job fiber and waits for it: its finalizer has stored `cancelled` when this returns
      // (or `paused`, when a pause got there first: then the cancel applies to the paused job).
      const stopped = (yield* stopLocal(jobId, "cancel"))
        ? yield* client.getJob(jobId)
        : yield* client.stopRunning(fromWaiting.status, "cancel")
      if (stopped.state === "running") return yield* client.stopRunning(stopped, "cancel") // lost here meanwhile
      if (stopped.state !== "paused") return stopped
      return (yield* repository.transition(jobId, ["paused"], "cancelled")).status
    })

    const pauseJob = fn("JobManager.pauseJob")(function*(id: string) {
      const jobId = yield* parseJobId(id)
      const held = yield* repository.transition(jobId, ["pending"], "paused", { owner: null })
      if (held.applied) {
        yield* dropQueued(held.status)
        return held.status
      }
      if (held.status.state !== "running") return held.status
      const stopped = (yield* stopLocal(jobId, "pause")) ? yield* client.getJob(jobId) : held.status
      return stopped.state === "running" ? yield* client.stopRunning(stopped, "pause") : stopped
    })

    const resumeJob = fn("JobManager.resumeJob")(function*(id: string) {
      const jobId = yield* parseJobId(id)
      const resumed = yield* repository.transition(jobId, ["paused"], "pending", { owner })
      if (resumed.applied) yield* adopt(jobId)
      return resumed.status
    })

    const retryJob = fn("JobManager.retryJob")(function*(id: string) {
      const { spec, status } = yield* client.redrive(id, owner)
      yield* enqueue(spec, status)
      return status
    })

    const runJob = fn("JobManager.runJob")(function*(input: JobSpecInput) {
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(submitJob(input), (id) =>
          restore(awaitJob(id)).pipe(
            Effect.onInterrupt(() => Effect.ignore(cancelJob(id)))
          ))
      )
    })

    // --- Ownership: heartbeats that check the leases held, recovery of orphans, stop requests ---

    /** Queues again the jobs stopped for lack of proof, under a new lease, unless another manager took them. */
    const requeueUnproven = Effect.suspend(() =>
      Effect.forEach([...unproven], ([id, lease]) =>
        Effect.gen(function*() {
          const result = yield* repository.transition(id, ["running", "pending"], "pending", { owner, lease }).pipe(
            Effect.catchTag("JobNotFound", () => Effect.succeed(undefined))
          )
          unproven.delete(id)
          if (result !== undefined && landed(result, lease, "pending")) yield* adopt(id)
        }), { discard: true })
    )

    const heartbeat = Effect.gen(function*() {
      const at = clock.unsafeCurrentTimeMillis()
      const lost = yield* repository.heartbeat(owner, heldLeases())
      // The losses are acted on before the renewal lets the pulls of the other jobs go on.
      yield* Effect.forEach(lost, (id) => loseById(id, "another manager or process changed it"), { discard: true })
      proof.renewed(at)
      if (unproven.size > 0) yield* requeueUnproven
    }).pipe(
      Effect.tapErrorCause(() =>
        Effect.suspend(() => {
          if (proof.isFresh()) return Effect.void
          // No heartbeat for `staleAfter`: another manager may take the jobs over now. Stop them here.
          return Effect.forEach(live.values(), (job) => {
            if (!FiberMap.unsafeHas(fibers, job.id) || job.stopReason === "lost" || job.status.state !== "running") {
              return Effect.void
            }
            unproven.set(job.id, job.lease)
            return lose(job, `this manager could not reach the store for ${staleAfter} ms`)
          }, { discard: true })
        })
      )
    )

    /** Takes over the jobs of no owner or of managers that stopped heartbeating, and queues them. */
    const claimOrphans = Effect.gen(function*() {
      const staleBefore = (yield* Clock.currentTimeMillis) - staleAfter
      const claimed = yield* repository.claimOrphans(owner, staleBefore)
      yield* Effect.forEach(claimed, adopt, { discard: true })
      return staleBefore
    })

    /**
     * Claims orphans as soon as the store signals that a job may have become claimable (stored without an
     * owner, e.g. by `Cluster.submitJob` or another process's client; resumed by a client; its owner
     * retired), instead of waiting for the next recovery. The claim is the same atomic one: of the managers
     * that react at once, one gets each job.
     */
    let seenClaimable = repository.claimable.version
    const claimWhenSignalled = Effect.zipRight(
      Effect.suspend(() => repository.claimable.changedSince(seenClaimable)),
      Effect.suspend(() => {
        seenClaimable = repository.claimable.version
        // A manager shutting down starts nothing: the job is left to the others.
        return closing ? Effect.void : claimOrphans
      })
    )

    /**
     * Takes over the jobs of managers that stopped heartbeating, and queues them. Then queues again any job of
     * this manager that no fiber of it runs and that has not changed for `staleAfter` (a claim, start or
     * requeue whose answer was lost left it so): no job stays `pending` or `running` under a live manager.
     */
    const recover = Effect.gen(function*() {
      const staleBefore = yield* claimOrphans
      const mine = yield* repository.activeJobsOf(owner)
      yield* Effect.forEach(mine, (status) => {
        if (live.has(status.id) || status.updatedAt.getTime() >= staleBefore) return Effect.void
        if (status.state === "pending") return adopt(status.id)
        return repository.transition(status.id, ["running"], "pending", { owner, lease: status.lease }).pipe(
          Effect.flatMap((result) => result.applied ? adopt(status.id) : Effect.void),
          Effect.catchTag("JobNotFound", () => Effect.void) // deleted meanwhile
        )
      }, { discard: true })
    })

    /** Carries out stop requests stored by any process for jobs whose fiber runs here (each on its own). */
    const listenForStops = repository.stopRequests.pipe(
      Stream.runForEach((request) =>
        FiberMap.unsafeHas(fibers, request.id)
          ? FiberSet.run(background, Effect.asVoid(stopLocal(request.id, request.kind)))
          : Effect.void
      )
    )

    // The first heartbeat and recovery fail the layer if the store cannot be reached.
    const startedAt = clock.unsafeCurrentTimeMillis()
    yield* repository.heartbeat(owner)
    proof.renewed(startedAt)
    yield* recover
    const ownership = yield* Effect.all([
      Effect.forkScoped(loop(heartbeat, { module: "JobManager", name: "heartbeat", spacing: heartbeatInterval, delayFirst: true })),
      Effect.forkScoped(loop(recover, { module: "JobManager", name: "recovery of orphaned jobs", spacing: heartbeatInterval, delayFirst: true })),
      Effect.forkScoped(loop(listenForStops, { module: "JobManager", name: "listening for stop requests", spacing: heartbeatInterval })),
      Effect.forkScoped(loop(claimWhenSignalled, { module: "JobManager", name: "claiming signalled orphans", spacing: 0 }))
    ])
    if (retention !== undefined) yield* Retention.sweep(repository, retention)
    yield* Effect.forkScoped(loop(writePartialProgress, {
      module: "JobManager",
      name: "writing in-chunk progress",
      spacing: 0
    }))

    // --- Shutdown ---

    // Finalizers run in reverse order: this one runs before the FiberMap's and the background fibers'.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closing = true
        const jobs = [...live.values()]
        for (const job of jobs) {
          job.stopReason ??= "shutdown"
          job.draining = true
        }
        if (repository.durable && shutdownGracePeriod > 0) {
          // Draining jobs end on their own once their chunks in flight are done; the heartbeat goes on
          // meanwhile. (Finalizers run uninterruptibly: the wait must be made interruptible for the timeout
          // to cut it short.)
          yield* Effect.forEach(jobs, (job) => Effect.ignore(Effect.flatMap(FiberMap.get(fibers, job.id), Fiber.await)), {
            concurrency: "unbounded",
            discard: true
          }).pipe(Effect.interruptible, Effect.timeout(shutdownGracePeriod), Effect.ignore)
        }
        yield* FiberMap.clear(fibers)
        // No heartbeat may land after the owner is retired.
        yield* Fiber.interruptAll(ownership)
        yield* logFailure("could not retire this manager")(repository.retire(owner))
      })
    )

    return JobManager.of({
      submitJob,
      submitBatch,
      runJob,
      getJob: traced("JobManager.getJob", client.getJob),
      listJobs: traced("JobManager.listJobs", client.listJobs),
      listChunks,
      cancelJob,
      pauseJob,
      resumeJob,
      retryJob,
      deleteJob: traced("JobManager.deleteJob", client.deleteJob),
      pruneJobs: traced("JobManager.pruneJobs", client.pruneJobs),
      awaitJob,
      watchJob,
      owner
    })
  })

/**
 * The manager as a layer; it needs a `JobRepository` and a `ChunkWorker`. Invalid options fail the layer
 * with `InvalidOption`.
 *
 * @since 0.1.0
 */
export const layer = (
  options?: ManagerOptions
): Layer.Layer<JobManager, InvalidOption | RepositoryError, JobRepository | ChunkWorker> =>
  Layer.scoped(JobManager, make(options))
