/**
 * The job lifecycle: submit, run, get, list, cancel, await and watch jobs.
 *
 * A running job is a fiber in a `FiberMap` owned by the layer's scope; cancelling a job interrupts that
 * fiber. The fiber's `Exit` is mapped to the stored state in one place ({@link make}'s `settle`): success
 * -> `completed`, interruption only -> `cancelled`, any failure -> `failed` with the error's message.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as MutableList from "effect/MutableList"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { ChunkWorker } from "./ChunkWorker.js"
import type { JobPage, JobSpec, JobState } from "./Job.js"
import { isTerminal, JobId, JobSpec as JobSpecSchema, ListQuery, makeJobId, totalChunks } from "./Job.js"
import type { JobStatus } from "./Job.js"
import {
  describeCause,
  firstIssue,
  InvalidJobSpec,
  InvalidOption,
  JobNotFound,
  type RepositoryError
} from "./JobError.js"
import type { ChunkSettled, ExecutionOptions, ExecutionSummary } from "./JobExecutor.js"
import * as JobExecutor from "./JobExecutor.js"
import { JobRepository, withProgress } from "./JobRepository.js"

/**
 * Options of a manager: how each job's chunks run, and how many jobs run at once.
 *
 * @since 0.1.0
 */
export const ManagerOptions = Schema.Struct({
  ...JobExecutor.ExecutionOptions.fields,
  /** Jobs running at once (default: no limit); the others wait as `pending`, started in submission order. */
  maxConcurrentJobs: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /** How often a watcher re-reads a job that runs in another process (default 500 ms). */
  pollInterval: Schema.optional(Schema.Int.pipe(Schema.positive()))
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
   * and nothing is stored.
   */
  readonly submitJob: (spec: unknown) => Effect.Effect<JobId, InvalidJobSpec | RepositoryError>
  /**
   * Submits the job and waits for its terminal status (`completed`, `failed` or `cancelled`).
   * Interrupting the caller cancels the job, and the interruption completes once `cancelled` is stored.
   */
  readonly runJob: (spec: unknown) => Effect.Effect<JobStatus, InvalidJobSpec | JobNotFound | RepositoryError>
  readonly getJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /** Newest first, filtered by state, paged by cursor (see `ListQuery`). */
  readonly listJobs: (query?: unknown) => Effect.Effect<JobPage, InvalidOption | RepositoryError>
  /**
   * Cancels a job and returns its status:
   * - `pending`: stored `cancelled`; it never starts a chunk.
   * - `running`: its fiber is interrupted, every in-flight chunk is interrupted (its `AbortSignal` fires),
   *   and this returns once `cancelled` is stored; no chunk starts after it returns.
   * - `paused`: stored `cancelled`.
   * - terminal: nothing changes; the status is returned as it is. Cancelling twice is the same as once.
   * If the job completes or fails as it is being cancelled, exactly one terminal state is stored and
   * returned, and it never changes afterwards.
   */
  readonly cancelJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /** Waits for the job's terminal status. Interrupting the caller does not cancel the job. */
  readonly awaitJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /**
   * The job's status now, then each change, ending with its terminal status. A slow consumer skips
   * intermediate statuses (it always gets the newest), never the terminal one.
   */
  readonly watchJob: (id: string) => Stream.Stream<JobStatus, JobNotFound | RepositoryError>
}>() {}

/** A job submitted to this manager and not yet settled. */
interface LiveJob {
  readonly id: JobId
  readonly spec: JobSpec
  /** The newest status, chunk counts included. */
  status: JobStatus
  /** Completed when `status` next changes; made only while someone waits. */
  changed: Deferred.Deferred<void> | undefined
}

const decodeSpec = Schema.decodeUnknown(JobSpecSchema, { onExcessProperty: "error" })
const decodeQuery = Schema.decodeUnknown(ListQuery, { onExcessProperty: "error" })
const decodeOptions = Schema.decodeUnknown(ManagerOptions, { onExcessProperty: "error" })
const decodeId = Schema.decodeUnknownOption(JobId)

/**
 * Validates manager options; a bad option fails with `InvalidOption` naming it.
 *
 * @since 0.1.0
 */
export const validateOptions = (input: unknown): Effect.Effect<ManagerOptions, InvalidOption> =>
  Effect.mapError(decodeOptions(input ?? {}), (error) => new InvalidOption(firstIssue(error)))

const nextStatus = (job: LiveJob, last: JobStatus | undefined): Effect.Effect<JobStatus> =>
  Effect.suspend(() => {
    if (job.status !== last) return Effect.succeed(job.status)
    job.changed ??= Deferred.unsafeMake<void>(FiberId.none)
    return Effect.zipRight(Deferred.await(job.changed), nextStatus(job, last))
  })

/**
 * Builds a manager in the current scope. Closing the scope interrupts every running job (stored
 * `cancelled`) and leaves no fiber behind; jobs still waiting for a slot stay `pending`.
 *
 * @since 0.1.0
 */
export const make = (
  options?: ManagerOptions
): Effect.Effect<JobManager["Type"], InvalidOption, JobRepository | ChunkWorker | Scope.Scope> =>
  Effect.gen(function*() {
    const validated = yield* validateOptions(options)
    const { maxConcurrentJobs = Number.POSITIVE_INFINITY, pollInterval = 500, ...execution } = validated
    const executionOptions: ExecutionOptions = execution
    const repository = yield* JobRepository
    const worker = yield* ChunkWorker
    const fibers = yield* FiberMap.make<JobId, ExecutionSummary | undefined, unknown>()
    const live = new Map<JobId, LiveJob>()
    const waiting = MutableList.empty<LiveJob>()
    let running = 0
    let closing = false
    // Runs before the FiberMap's own finalizer (finalizers run in reverse order): no job starts once the
    // scope is closing.
    yield* Effect.addFinalizer(() => Effect.sync(() => (closing = true)))

    const publish = (job: LiveJob, status: JobStatus): void => {
      job.status = status
      const changed = job.changed
      if (changed !== undefined) {
        job.changed = undefined
        Deferred.unsafeDone(changed, Exit.void)
      }
    }

    const onChunkSettled = (job: LiveJob) => (event: ChunkSettled): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        publish(job, withProgress(job.status, event, new Date(now)))
        return Effect.catchAll(
          repository.updateProgress(job.id, event),
          (error) => Effect.logWarning("could not record progress", error)
        )
      })

    /** The one place where a job fiber's Exit becomes a stored state. */
    const settle = (job: LiveJob, exit: Exit.Exit<ExecutionSummary | undefined, unknown>): Effect.Effect<void> => {
      const counts = { completedChunks: job.status.completedChunks, failedChunks: job.status.failedChunks }
      const target: { readonly from: ReadonlyArray<JobState>; readonly to: JobState; readonly error?: string } | undefined =
        Exit.isSuccess(exit)
          ? exit.value === undefined ? undefined : { from: ["running"], to: "completed" }
          : Cause.isInterruptedOnly(exit.cause)
          ? { from: ["pending", "running", "paused"], to: "cancelled" }
          : { from: ["pending", "running"], to: "failed", error: describeCause(exit.cause) }
      const stored = target === undefined
        ? Effect.map(repository.get(job.id), Option.getOrElse(() => job.status))
        : Effect.map(
          repository.transition(job.id, target.from, target.to, { ...counts, error: target.error }),
          (result) => result.status
        )
      return stored.pipe(
        Effect.tap((status) => Effect.sync(() => publish(job, status))),
        Effect.catchAll((error) => Effect.logError("could not record the end of a job", error)),
        Effect.ensuring(Effect.sync(() => live.delete(job.id))),
        Effect.annotateLogs("jobId", job.id)
      )
    }

    const jobFiber = (job: LiveJob): Effect.Effect<ExecutionSummary | undefined, unknown> =>
      Effect.gen(function*() {
        const started = yield* repository.transition(job.id, ["pending"], "running")
        if (!started.applied) return undefined
        publish(job, started.status)
        return yield* JobExecutor.executeValidated(job.spec, {
          ...executionOptions,
          jobId: job.id,
          onChunkSettled: onChunkSettled(job)
        })
      }).pipe(
        Effect.provideService(ChunkWorker, worker),
        Effect.onExit((exit) => settle(job, exit)),
        Effect.ensuring(Effect.suspend(() => {
          running--
          return dispatch
        })),
        Effect.annotateLogs("jobId", job.id)
      )

    /** Starts waiting jobs, in submission order, while there are free slots. */
    const dispatch: Effect.Effect<void> = Effect.suspend(() => {
      if (closing || running >= maxConcurrentJobs) return Effect.void
      const job = MutableList.shift(waiting)
      if (job === undefined) return Effect.void
      if (job.status.state !== "pending") return dispatch
      running++
      return Effect.zipRight(FiberMap.run(fibers, job.id, jobFiber(job), { onlyIfMissing: true }), dispatch)
    })

    const parseId = (id: string): Effect.Effect<JobId, JobNotFound> =>
      Option.match(decodeId(id), {
        onNone: () => Effect.fail(new JobNotFound({ jobId: String(id) })),
        onSome: Effect.succeed
      })

    const getJob = Effect.fn("JobManager.getJob")(function*(id: string) {
      const jobId = yield* parseId(id)
      const status = yield* repository.get(jobId)
      if (Option.isNone(status)) return yield* new JobNotFound({ jobId })
      return status.value
    })

    const submitJob = Effect.fn("JobManager.submitJob")(function*(input: unknown) {
      const spec = yield* Effect.mapError(decodeSpec(input), (error) => new InvalidJobSpec(firstIssue(error)))
      const id = makeJobId(yield* Clock.currentTimeMillis)
      const status = yield* repository.create({ id, spec, totalChunks: totalChunks(spec) })
      const job: LiveJob = { id, spec, status, changed: undefined }
      live.set(id, job)
      MutableList.append(waiting, job)
      yield* dispatch
      return id
    })

    const pollStatus = (id: JobId): Stream.Stream<JobStatus, JobNotFound | RepositoryError> =>
      Stream.paginateEffect(true, (first: boolean) =>
        Effect.gen(function*() {
          if (!first) yield* Effect.sleep(pollInterval)
          const status = yield* getJob(id)
          return [status, isTerminal(status.state) ? Option.none() : Option.some(false)] as const
        })).pipe(Stream.changesWith((a, b) => a.updatedAt.getTime() === b.updatedAt.getTime() && a.state === b.state))

    const watchJob = (id: string): Stream.Stream<JobStatus, JobNotFound | RepositoryError> =>
      Stream.unwrap(Effect.map(parseId(id), (jobId) => {
        const job = live.get(jobId)
        if (job === undefined) return pollStatus(jobId)
        return Stream.paginateEffect(undefined as JobStatus | undefined, (last) =>
          Effect.map(nextStatus(job, last), (status) =>
            [status, isTerminal(status.state) ? Option.none() : Option.some(status)] as const))
      }))

    const awaitJob = Effect.fn("JobManager.awaitJob")(function*(id: string) {
      const last = yield* Stream.runLast(watchJob(id))
      return Option.isSome(last) ? last.value : yield* getJob(id)
    })

    const cancelJob = Effect.fn("JobManager.cancelJob")(function*(id: string) {
      const jobId = yield* parseId(id)
      const fromWaiting = yield* repository.transition(jobId, ["pending", "paused"], "cancelled")
      const job = live.get(jobId)
      if (fromWaiting.applied) {
        if (job !== undefined) {
          publish(job, fromWaiting.status)
          live.delete(jobId)
        }
        // A fiber may have been started for it; it finds the job cancelled and ends without running.
        yield* FiberMap.remove(fibers, jobId)
        return fromWaiting.status
      }
      if (fromWaiting.status.state === "running") {
        // Interrupts the job fiber and waits for it: its finalizer has stored `cancelled` when this returns.
        yield* FiberMap.remove(fibers, jobId)
        return yield* getJob(jobId)
      }
      return fromWaiting.status
    })

    const runJob = Effect.fn("JobManager.runJob")(function*(input: unknown) {
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(submitJob(input), (id) =>
          restore(awaitJob(id)).pipe(
            Effect.onInterrupt(() => Effect.ignore(cancelJob(id)))
          ))
      )
    })

    return JobManager.of({
      submitJob,
      runJob,
      getJob,
      listJobs: Effect.fn("JobManager.listJobs")(function*(input?: unknown) {
        const query = yield* Effect.mapError(decodeQuery(input ?? {}), (error) => new InvalidOption(firstIssue(error)))
        return yield* repository.list(query)
      }),
      cancelJob,
      awaitJob,
      watchJob
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
): Layer.Layer<JobManager, InvalidOption, JobRepository | ChunkWorker> => Layer.scoped(JobManager, make(options))
