/**
 * Controls the jobs of a store without running any: read, list, watch, cancel, pause, resume, re-drive and
 * delete jobs that managers in this or other processes run. The CLI and the dashboard server are built on
 * it, and `JobManager` uses it for the jobs it does not run itself.
 *
 * A job running elsewhere is stopped by a request stored in the repository, which its owner carries out
 * (`JobRepository.stopRequests`); when the owner has stopped heartbeating for `staleAfter`, the change is
 * applied directly instead.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { ChunkPage, JobPage, JobSpec, JobState, JobStatus, ListChunksQueryInput, ListQueryInput } from "./Job.js"
import { isStreamSource, isTerminal, JobId, ListChunksQuery, ListQuery, makeJobId } from "./Job.js"
import type { RepositoryError } from "./JobError.js"
import { firstIssue, InvalidJobState, InvalidOption, JobNotFound } from "./JobError.js"
import type { StopRequest } from "./JobRepository.js"
import { JobRepository } from "./JobRepository.js"
import { prune, type PruneOptions } from "./internal/retention.js"

/**
 * What `pruneJobs` takes: `{ olderThan, states? }`. `olderThan` is a duration (milliseconds, or a string such
 * as `"7 days"`) or a `Date`; `states` (default: all three) lists `"completed"`, `"failed"`, `"cancelled"`.
 *
 * @since 0.1.0
 */
export type PruneOptionsInput = typeof PruneOptions.Encoded

/**
 * Timings of a client, in milliseconds.
 *
 * @since 0.1.0
 */
export interface ClientOptions {
  /**
   * The longest a watcher or a stop waits before it re-reads the job (default 500). They re-read sooner
   * whenever the store signals a change (see `JobRepository.changes`): this is the safety net.
   */
  readonly pollInterval?: number | undefined
  /** The shortest time between two statuses a watcher receives (default 50; 0 for every change seen). */
  readonly watchInterval?: number | undefined
  /** An owner silent this long is gone (default 5,000): its jobs are stopped directly. */
  readonly staleAfter?: number | undefined
}

/**
 * A job client.
 *
 * @since 0.1.0
 */
export interface JobClient {
  readonly getJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  readonly listJobs: (query?: ListQueryInput) => Effect.Effect<JobPage, InvalidOption | RepositoryError>
  /**
   * One page of the job's chunks in chunk-id order, as the store has them (see `JobRepository.listChunks`:
   * a chunk in flight shows as `pending`; the manager that runs the job shows it as `running`).
   */
  readonly listChunks: (
    id: string,
    query?: ListChunksQueryInput
  ) => Effect.Effect<ChunkPage, JobNotFound | InvalidOption | RepositoryError>
  /**
   * The job's status now, then each change the store signals (at most one per `watchInterval`, and at least
   * a look every `pollInterval`), ending with its terminal status.
   */
  readonly watchJob: (id: string) => Stream.Stream<JobStatus, JobNotFound | RepositoryError>
  /**
   * `pending` or `paused`: stored `cancelled`. `running`: the owner is asked to interrupt it, and this
   * returns once `cancelled` (or another terminal state that won the race) is stored. Terminal: unchanged.
   */
  readonly cancelJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /** `pending`: held as `paused`. `running`: the owner is asked to pause it; returns once it has. */
  readonly pauseJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /**
   * `paused`: queued again as `pending` without an owner; a running manager sharing the store claims it
   * (at once when the store signals it, see `JobRepository.claimable`; else at its next recovery, within its
   * `heartbeatInterval`) and runs the chunks missing from its checkpoint. Other states: unchanged.
   */
  readonly resumeJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
  /**
   * Re-drives a `failed` job as a new `pending` job without an owner (its `retryOf` names the failed one,
   * which keeps its terminal state): a running manager sharing the store claims it (as `resumeJob` says)
   * and runs only the chunks that failed or never ran. A job that did not fail fails
   * with `InvalidJobState`.
   */
  readonly retryJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | InvalidJobState | RepositoryError>
  /**
   * Deletes a `completed`, `failed` or `cancelled` job (status, spec and checkpoint) and returns its last
   * status. Any other state fails with `InvalidJobState` and changes nothing (cancel the job first).
   */
  readonly deleteJob: (id: string) => Effect.Effect<JobStatus, JobNotFound | InvalidJobState | RepositoryError>
  /**
   * Deletes the finished jobs that `options` names (see `PruneOptions`: `{ olderThan: "7 days", states?:
   * ["completed"] }`) and returns how many. Bad options fail with `InvalidOption` and delete nothing.
   */
  readonly pruneJobs: (options: PruneOptionsInput) => Effect.Effect<number, InvalidOption | RepositoryError>
  /**
   * The owners of `running` jobs among `statuses` that are gone (no heartbeat for `staleAfter`), each with
   * the milliseconds since its last heartbeat (`undefined` when it has none). A job of a gone owner is not
   * running any more, whatever its stored state; a live manager takes it over.
   */
  readonly goneOwners: (
    statuses: Iterable<JobStatus>
  ) => Effect.Effect<ReadonlyMap<string, number | undefined>, RepositoryError>
  /**
   * Stores the re-drive of a `failed` job (see `retryJob`), owned by `owner` (none: any manager claims it),
   * and returns it with the spec it runs.
   */
  readonly redrive: (
    id: string,
    owner: string | undefined
  ) => Effect.Effect<{ readonly status: JobStatus; readonly spec: JobSpec }, JobNotFound | InvalidJobState | RepositoryError>
  /**
   * Stops a `running` job owned by another manager: stores the request and waits until the owner has
   * stored the job's new state; applies it directly when the owner is gone. Returns the status.
   */
  readonly stopRunning: (
    status: JobStatus,
    kind: StopRequest["kind"]
  ) => Effect.Effect<JobStatus, JobNotFound | RepositoryError>
}

/**
 * Whether two statuses of a job record the same change (same state, update time and progress: progress
 * reported inside chunks moves without a new update time): a watcher that reads a job from several sources
 * emits such a status once.
 *
 * @since 0.1.0
 */
export const sameChange = (a: JobStatus, b: JobStatus): boolean =>
  a === b ||
  (a.state === b.state && a.updatedAt.getTime() === b.updatedAt.getTime() && a.progress === b.progress)

const decodeId = Schema.decodeUnknownOption(JobId)
const decodeQuery = Schema.decodeUnknown(ListQuery, { onExcessProperty: "error" })

const decodeChunks = Schema.decodeUnknown(ListChunksQuery, { onExcessProperty: "error" })

/**
 * Validates a chunk listing query; a bad field fails with `InvalidOption` naming it.
 *
 * @since 0.2.0
 */
export const decodeChunksQuery = (input: unknown): Effect.Effect<ListChunksQuery, InvalidOption> =>
  Effect.mapError(decodeChunks(input ?? {}), (error) => new InvalidOption(firstIssue(error)))

/**
 * A malformed id names no job: it fails with `JobNotFound`.
 *
 * @since 0.1.0
 */
export const parseJobId = (id: string): Effect.Effect<JobId, JobNotFound> =>
  Option.match(decodeId(id), {
    onNone: () => Effect.fail(new JobNotFound({ jobId: String(id) })),
    onSome: Effect.succeed
  })

/**
 * Makes a client of the store in context.
 *
 * @since 0.1.0
 */
export const make = (options?: ClientOptions): Effect.Effect<JobClient, never, JobRepository> =>
  Effect.map(JobRepository, (repository) => {
    const pollInterval = options?.pollInterval ?? 500
    const watchInterval = options?.watchInterval ?? 50
    const staleAfter = options?.staleAfter ?? 5_000
    const changes = repository.changes

    /** Waits until the store signals a change after `seen`, or `pollInterval` has passed. */
    const nextChange = (seen: number) => Effect.raceFirst(changes.changedSince(seen), Effect.sleep(pollInterval))

    const getJob = (id: string) =>
      Effect.flatMap(parseJobId(id), (jobId) =>
        Effect.flatMap(repository.get(jobId), Option.match({
          onNone: () => Effect.fail(new JobNotFound({ jobId })),
          onSome: Effect.succeed
        })))

    const watchJob = (id: string): Stream.Stream<JobStatus, JobNotFound | RepositoryError> =>
      Stream.paginateEffect(undefined as number | undefined, (seen: number | undefined) =>
        Effect.gen(function*() {
          if (seen !== undefined) {
            if (watchInterval > 0) yield* Effect.sleep(watchInterval)
            yield* nextChange(seen)
          }
          const version = changes.version
          const status = yield* getJob(id)
          return [status, isTerminal(status.state) ? Option.none() : Option.some(version)] as const
        })).pipe(Stream.changesWith(sameChange))

    /** How long `owner` has been silent, if it is gone: `undefined` inside when it never beat. */
    const silence = (owner: string) =>
      Effect.gen(function*() {
        const beat = yield* repository.lastHeartbeat(owner)
        if (Option.isNone(beat)) return Option.some(undefined)
        const silent = (yield* Clock.currentTimeMillis) - beat.value
        return silent > staleAfter ? Option.some(silent) : Option.none()
      })

    const ownerGone = (status: JobStatus) =>
      status.owner === undefined ? Effect.succeed(true) : Effect.map(silence(status.owner), Option.isSome)

    const goneOwners = (statuses: Iterable<JobStatus>) =>
      Effect.gen(function*() {
        const owners = new Set<string>()
        for (const status of statuses) {
          if (status.state === "running" && status.owner !== undefined) owners.add(status.owner)
        }
        const gone = new Map<string, number | undefined>()
        for (const owner of owners) {
          const silent = yield* silence(owner)
          if (Option.isSome(silent)) gone.set(owner, silent.value)
        }
        return gone as ReadonlyMap<string, number | undefined>
      })

    const redrive = (id: string, owner: string | undefined) =>
      Effect.gen(function*() {
        const failed = yield* getJob(id)
        if (failed.state !== "failed") {
          return yield* new InvalidJobState({
            jobId: failed.id,
            state: failed.state,
            operation: "retry",
            detail: "only a failed job can be re-driven"
          })
        }
        const spec = yield* repository.getSpec(failed.id)
        if (Option.isNone(spec)) return yield* new JobNotFound({ jobId: failed.id })
        const completed = yield* repository.getCheckpoint(failed.id)
        const status = yield* repository.create({
          id: makeJobId(yield* Clock.currentTimeMillis),
          spec: spec.value,
          // A streamed job's stream is made again: it has no total until that one ends.
          totalChunks: isStreamSource(spec.value.chunks) ? undefined : failed.totalChunks,
          owner,
          retryOf: failed.id,
          completed
        })
        return { status, spec: spec.value }
      })

    const stopRunning = (status: JobStatus, kind: StopRequest["kind"]) =>
      Effect.gen(function*() {
        const to: JobState = kind === "cancel" ? "cancelled" : "paused"
        let current = status
        let seen = changes.version
        let requested = false
        while (current.state === "running") {
          if (yield* ownerGone(current)) {
            // Unfenced: the transition takes a new lease, so whatever the gone owner still writes is refused.
            const forced = yield* repository.transition(current.id, ["running"], to, {
              owner: to === "paused" ? null : undefined
            })
            return forced.status
          }
          if (requested) yield* nextChange(seen)
          else yield* repository.requestStop({ id: current.id, kind })
          requested = true
          seen = changes.version
          current = yield* getJob(current.id)
        }
        return current
      })

    return {
      getJob,
      listJobs: (input) =>
        Effect.flatMap(
          Effect.mapError(decodeQuery(input ?? {}), (error) => new InvalidOption(firstIssue(error))),
          repository.list
        ),
      listChunks: (id, input) =>
        Effect.flatMap(
          Effect.all([parseJobId(id), decodeChunksQuery(input)]),
          ([jobId, query]) => repository.listChunks(jobId, query)
        ),
      watchJob,
      cancelJob: (id) =>
        Effect.gen(function*() {
          const jobId = yield* parseJobId(id)
          const result = yield* repository.transition(jobId, ["pending", "paused"], "cancelled")
          return result.status.state === "running" ? yield* stopRunning(result.status, "cancel") : result.status
        }),
      pauseJob: (id) =>
        Effect.gen(function*() {
          const jobId = yield* parseJobId(id)
          const result = yield* repository.transition(jobId, ["pending"], "paused", { owner: null })
          return result.status.state === "running" ? yield* stopRunning(result.status, "pause") : result.status
        }),
      resumeJob: (id) =>
        Effect.flatMap(parseJobId(id), (jobId) =>
          Effect.map(repository.transition(jobId, ["paused"], "pending", { owner: null }), (result) => result.status)),
      retryJob: (id) => Effect.map(redrive(id, undefined), (redriven) => redriven.status),
      deleteJob: (id) => Effect.flatMap(parseJobId(id), repository.delete),
      pruneJobs: (options) => prune(repository, options),
      goneOwners,
      redrive,
      stopRunning
    }
  })
