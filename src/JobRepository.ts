/**
 * Where job statuses are kept. Every change of state is one atomic compare-and-set, so racing changes
 * (cancel against completion, cancel against cancel) have exactly one winner and a terminal state, once
 * stored, never changes.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { compareNewestFirst, decodeCursor, encodeCursor, isAfterCursor } from "./internal/cursor.js"
import type { JobId, JobPage, JobSpec, JobState, ListQuery } from "./Job.js"
import { canTransition, isTerminal, JobStatus, progressOf } from "./Job.js"
import type { InvalidOption, RepositoryError } from "./JobError.js"
import { JobNotFound } from "./JobError.js"

/**
 * A job to store, in state `pending`.
 *
 * @since 0.1.0
 */
export interface NewJob {
  readonly id: JobId
  readonly spec: JobSpec
  readonly totalChunks: number
}

/**
 * Fields written together with a change of state.
 *
 * @since 0.1.0
 */
export interface TransitionPatch {
  readonly error?: string | undefined
  readonly completedChunks?: number | undefined
  readonly failedChunks?: number | undefined
}

/**
 * The outcome of a compare-and-set: whether it applied, and the stored status either way.
 *
 * @since 0.1.0
 */
export interface TransitionResult {
  readonly applied: boolean
  readonly status: JobStatus
}

/**
 * Chunk counts of a job that is not yet terminal.
 *
 * @since 0.1.0
 */
export interface ProgressUpdate {
  readonly completedChunks: number
  readonly failedChunks: number
}

/**
 * The job store service.
 *
 * @since 0.1.0
 */
export class JobRepository extends Context.Tag("effect-jobs/JobRepository")<JobRepository, {
  /** Stores a new `pending` job (with its spec as given) and returns its status. */
  readonly create: (job: NewJob) => Effect.Effect<JobStatus, RepositoryError>
  readonly get: (id: JobId) => Effect.Effect<Option.Option<JobStatus>, RepositoryError>
  /** The spec the job was created with. */
  readonly getSpec: (id: JobId) => Effect.Effect<Option.Option<JobSpec>, RepositoryError>
  /** Newest first, filtered by state, paged by an opaque cursor (see `ListQuery`). */
  readonly list: (query: ListQuery) => Effect.Effect<JobPage, InvalidOption | RepositoryError>
  /**
   * Atomic compare-and-set: moves the job to `to` (writing `patch`) only if its current state is in `from`
   * and the move is legal (see `transitions`). Returns the stored status whether or not it applied.
   * Sets `startedAt` on the first move to `running` and `finishedAt` on a move to a terminal state.
   */
  readonly transition: (
    id: JobId,
    from: ReadonlyArray<JobState>,
    to: JobState,
    patch?: TransitionPatch
  ) => Effect.Effect<TransitionResult, JobNotFound | RepositoryError>
  /**
   * Records chunk counts of a job that is not terminal (ignored once it is). A store may coalesce these
   * writes; a transition always writes the counts it is given.
   */
  readonly updateProgress: (id: JobId, progress: ProgressUpdate) => Effect.Effect<void, RepositoryError>
  /** Removes a job; `false` if there was none. */
  readonly delete: (id: JobId) => Effect.Effect<boolean, RepositoryError>
}>() {}

/**
 * The status a transition leads to: the same job with the new state, the patch applied, the timestamps
 * set and the progress recomputed. Shared by every store so they agree on what a transition writes.
 *
 * @since 0.1.0
 */
export const applyTransition = (
  status: JobStatus,
  to: JobState,
  patch: TransitionPatch | undefined,
  now: Date
): JobStatus => {
  const completedChunks = patch?.completedChunks ?? status.completedChunks
  const failedChunks = patch?.failedChunks ?? status.failedChunks
  const error = patch?.error ?? status.error
  const startedAt = status.startedAt ?? (to === "running" ? now : undefined)
  const finishedAt = to === "completed" || to === "failed" || to === "cancelled" ? now : undefined
  return new JobStatus({
    id: status.id,
    ...(status.name === undefined ? {} : { name: status.name }),
    state: to,
    totalChunks: status.totalChunks,
    completedChunks,
    failedChunks,
    progress: progressOf(status.totalChunks, completedChunks, failedChunks, to),
    ...(error === undefined ? {} : { error }),
    createdAt: status.createdAt,
    updatedAt: now,
    ...(startedAt === undefined ? {} : { startedAt }),
    ...(finishedAt === undefined ? {} : { finishedAt })
  }, true)
}

/**
 * The status of a job that was just created.
 *
 * @since 0.1.0
 */
export const newJobStatus = (job: NewJob, now: Date): JobStatus =>
  new JobStatus({
    id: job.id,
    ...(job.spec.name === undefined ? {} : { name: job.spec.name }),
    state: "pending",
    totalChunks: job.totalChunks,
    completedChunks: 0,
    failedChunks: 0,
    progress: 0,
    createdAt: now,
    updatedAt: now
  }, true)

/**
 * The same status with new chunk counts (state unchanged).
 *
 * @since 0.1.0
 */
export const withProgress = (status: JobStatus, progress: ProgressUpdate, now: Date): JobStatus =>
  new JobStatus({
    ...status,
    completedChunks: progress.completedChunks,
    failedChunks: progress.failedChunks,
    progress: progressOf(status.totalChunks, progress.completedChunks, progress.failedChunks, status.state),
    updatedAt: now
  }, true)

/** The default page size of a listing. @since 0.1.0 */
export const defaultListLimit = 50

const statesOf = (query: ListQuery): ReadonlySet<JobState> | undefined =>
  query.state === undefined ? undefined : new Set(typeof query.state === "string" ? [query.state] : query.state)

/**
 * An in-memory store: fast, and gone with the process. Each operation runs without yielding, so every
 * compare-and-set is atomic.
 *
 * @since 0.1.0
 */
export const makeMemory: Effect.Effect<JobRepository["Type"]> = Effect.sync(() => {
  const jobs = new Map<JobId, { status: JobStatus; readonly spec: JobSpec }>()
  const now = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis))

  const transition = (id: JobId, from: ReadonlyArray<JobState>, to: JobState, patch?: TransitionPatch) =>
    Effect.flatMap(now, (date) => {
      const entry = jobs.get(id)
      if (entry === undefined) return Effect.fail(new JobNotFound({ jobId: id }))
      const current = entry.status.state
      if (!from.includes(current) || !canTransition(current, to)) {
        return Effect.succeed<TransitionResult>({ applied: false, status: entry.status })
      }
      entry.status = applyTransition(entry.status, to, patch, date)
      return Effect.succeed<TransitionResult>({ applied: true, status: entry.status })
    })

  return JobRepository.of({
    create: (job) =>
      Effect.map(now, (date) => {
        const status = newJobStatus(job, date)
        jobs.set(job.id, { status, spec: job.spec })
        return status
      }),
    get: (id) => Effect.sync(() => Option.fromNullable(jobs.get(id)?.status)),
    getSpec: (id) => Effect.sync(() => Option.fromNullable(jobs.get(id)?.spec)),
    list: (query) =>
      Effect.map(
        query.cursor === undefined ? Effect.succeed(undefined) : decodeCursor(query.cursor),
        (cursor) => {
          const states = statesOf(query)
          const limit = query.limit ?? defaultListLimit
          const keyOf = (status: JobStatus) => ({ createdAt: status.createdAt.getTime(), id: status.id })
          const matching: Array<JobStatus> = []
          for (const { status } of jobs.values()) {
            if (states !== undefined && !states.has(status.state)) continue
            if (cursor !== undefined && !isAfterCursor(keyOf(status), cursor)) continue
            matching.push(status)
          }
          matching.sort((a, b) => compareNewestFirst(keyOf(a), keyOf(b)))
          const page = matching.slice(0, limit)
          const last = page[page.length - 1]
          return matching.length > limit && last !== undefined
            ? { jobs: page, nextCursor: encodeCursor(keyOf(last)) }
            : { jobs: page }
        }
      ),
    transition,
    updateProgress: (id, progress) =>
      Effect.map(now, (date) => {
        const entry = jobs.get(id)
        if (entry === undefined || isTerminal(entry.status.state)) return
        entry.status = withProgress(entry.status, progress, date)
      }),
    delete: (id) => Effect.sync(() => jobs.delete(id))
  })
})

/**
 * A layer with an empty in-memory store.
 *
 * @since 0.1.0
 */
export const layerMemory: Layer.Layer<JobRepository> = Layer.effect(JobRepository, makeMemory)
