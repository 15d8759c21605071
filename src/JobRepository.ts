/**
 * Where job statuses are kept. Every change of state is one atomic compare-and-set, so racing changes
 * (cancel against completion, cancel against cancel) have exactly one winner and a terminal state, once
 * stored, never changes.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Stream from "effect/Stream"
import type { CursorKey } from "./internal/cursor.js"
import { compareNewestFirst, decodeCursor, encodeCursor, isAfterCursor } from "./internal/cursor.js"
import { LazyStatus } from "./internal/lazyStatus.js"
import { makeStatus } from "./internal/jobStatus.js"
import { RangeSet } from "./internal/rangeSet.js"
import { StateBlocks } from "./internal/stateBlocks.js"
import { VersionSignal } from "./internal/versionSignal.js"
import { chunkIdsOf, pageChunks, recordsAfter, streamedIds } from "./internal/chunkListing.js"
import type {
  Chunk,
  ChunkPage,
  ChunkResult,
  JobId,
  JobPage,
  JobSpec,
  JobState,
  Json,
  ListChunksQuery,
  ListQuery
} from "./Job.js"
import { canTransition, isStreamSource, isTerminal, JobStatus, progressOf } from "./Job.js"
import type { InvalidOption } from "./JobError.js"
import { InvalidJobState, JobNotFound, LeaseLost, RepositoryError } from "./JobError.js"

/**
 * A job to store, in state `pending`.
 *
 * @since 0.1.0
 */
export interface NewJob {
  readonly id: JobId
  readonly spec: JobSpec
  /** `undefined` for a streamed job (see `StreamSource`): its total is recorded once its stream has ended. */
  readonly totalChunks: number | undefined
  /** The manager instance that will run it. */
  readonly owner?: string | undefined
  /** The failed job this one re-drives; its checkpoint is `completed`. */
  readonly retryOf?: JobId | undefined
  /** Chunks already completed (a re-drive starts from the failed job's checkpoint). */
  readonly completed?: RangeSet | undefined
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
  /** A new owner, or `null` to clear it (the job is then free for any manager to claim). */
  readonly owner?: string | null | undefined
  /** `"finalizing"` while the finalize step runs, `null` to clear it. */
  readonly phase?: "finalizing" | null | undefined
  /**
   * Fencing: the transition applies only while the job's lease is this one. An owner passes the lease it
   * holds; a result that did not apply and whose status has another lease means the owner lost the job.
   */
  readonly lease?: number | undefined
}

/**
 * The outcome of a compare-and-set: whether it applied, and the stored status either way (with the new
 * lease when it applied).
 *
 * @since 0.1.0
 */
export interface TransitionResult {
  readonly applied: boolean
  readonly status: JobStatus
}

/**
 * What is kept of one settled chunk beyond the checkpoint: written for a chunk that has a result, failed,
 * or needed more than one attempt (a chunk completed at its first attempt without a result is only an id in
 * the job's compact checkpoint). Times are epoch millis.
 *
 * @since 0.2.0
 */
export interface ChunkRecord {
  readonly id: number
  readonly state: "completed" | "failed"
  readonly attempts: number
  /** What the worker returned (plain JSON, already checked). */
  readonly result?: Json | undefined
  /** The last error of a failed chunk. */
  readonly error?: string | undefined
  readonly startedAt: number
  readonly finishedAt: number
}

/**
 * Which results `chunkResults` reads: those of chunks after `after` (a chunk id), at most `limit`.
 *
 * @since 0.2.0
 */
export interface ResultsQuery {
  readonly after?: number | undefined
  readonly limit: number
}

/**
 * Chunk counts of a job that is not yet terminal.
 *
 * @since 0.1.0
 */
export interface ProgressUpdate {
  readonly completedChunks: number
  readonly failedChunks: number
  /** Set when the job enters its finalize step. */
  readonly phase?: "finalizing" | undefined
  /**
   * The work done by the chunks in flight, in chunks (the sum of the fractions they reported, see
   * `ChunkContext.reportProgress`): counted in the job's `progress` until its next change of state.
   */
  readonly partialChunks?: number | undefined
  /**
   * Chunks just pulled from a streamed job's stream: recorded with the checkpoint, in the same write, so that a
   * resumed job re-runs those that did not complete without the stream (a chunk's record goes once it has
   * completed) and skips every recorded id when it pulls the stream again.
   */
  readonly pulled?: ReadonlyArray<Chunk> | undefined
  /** A streamed job's total, once its stream has ended (the job then has a `totalChunks`). */
  readonly totalChunks?: number | undefined
  /** The chunks that completed since the last update (one or several): added to the job's checkpoint. */
  readonly completedChunkIds?: ReadonlyArray<number> | undefined
  /**
   * The records of the chunks that settled since the last update, those that have one to keep (see
   * {@link ChunkRecord}): stored with the checkpoint, in the same write.
   */
  readonly chunks?: ReadonlyArray<ChunkRecord> | undefined
  /** Fencing: the lease the writer holds; the update is refused (`LeaseLost`) once the job's lease moved on. */
  readonly lease?: number | undefined
}

/**
 * A request, stored by any process, that the job's owner stop running it.
 *
 * @since 0.1.0
 */
export interface StopRequest {
  readonly id: JobId
  readonly kind: "cancel" | "pause"
}

/**
 * A job an owner runs, and the lease it runs it under.
 *
 * @since 0.2.0
 */
export interface HeldLease {
  readonly id: JobId
  readonly lease: number
}

/**
 * A sign that jobs in a store may have changed, from this process or any other sharing the store: read
 * `version`, read what you watch, then `changedSince(version)` completes at the next change (at once if one
 * happened in between). How soon another process's change is seen depends on the store (see each one).
 *
 * @since 0.2.0
 */
export interface ChangeSignal {
  readonly version: number
  readonly changedSince: (version: number) => Effect.Effect<void>
}

/**
 * A state a job may be deleted in.
 *
 * @since 0.1.0
 */
export type TerminalState = Extract<JobState, "completed" | "failed" | "cancelled">

/**
 * Which jobs `prune` removes: those in one of `states` that finished before `finishedBefore` (epoch millis).
 *
 * @since 0.1.0
 */
export interface PruneQuery {
  readonly states: ReadonlyArray<TerminalState>
  readonly finishedBefore: number
}

/**
 * Which jobs `find` returns: those whose id starts with `idPrefix` or whose name is `name` (either may be
 * left out), newest first, at most `limit`.
 *
 * @since 0.1.0
 */
export interface FindQuery {
  readonly idPrefix?: string | undefined
  readonly name?: string | undefined
  readonly limit: number
}

/**
 * The job store service.
 *
 * @since 0.1.0
 */
export class JobRepository extends Context.Tag("effect-jobs/JobRepository")<JobRepository, {
  /**
   * Stores a new `pending` job (with its spec as given, and lease 0) and returns its status. An id that is
   * already stored, or a `completed` checkpoint larger than `totalChunks`, fails with `RepositoryError` and
   * changes nothing.
   */
  readonly create: (job: NewJob) => Effect.Effect<JobStatus, RepositoryError>
  /**
   * Stores several new jobs at once, all or none: when one cannot be stored (see `create`; an id repeated
   * in `jobs` too), it fails with a `RepositoryError` naming that job and stores none of them. Returns the
   * statuses in the order of `jobs`.
   */
  readonly createMany: (jobs: ReadonlyArray<NewJob>) => Effect.Effect<ReadonlyArray<JobStatus>, RepositoryError>
  readonly get: (id: JobId) => Effect.Effect<Option.Option<JobStatus>, RepositoryError>
  /** The spec the job was created with. */
  readonly getSpec: (id: JobId) => Effect.Effect<Option.Option<JobSpec>, RepositoryError>
  /** Newest first, filtered by state, paged by an opaque cursor (see `ListQuery`). */
  readonly list: (query: ListQuery) => Effect.Effect<JobPage, InvalidOption | RepositoryError>
  /**
   * Atomic compare-and-set: moves the job to `to` (writing `patch`) only if its current state is in `from`,
   * the move is legal (see `transitions`) and, when `patch.lease` is given, the job's lease is that one.
   * Returns the stored status whether or not it applied. An applied transition increments the lease, sets
   * `startedAt` on the first move to `running` and `finishedAt` on a move to a terminal state, and clears
   * any stop request. Counts that are not non-negative integers, or that would exceed the job's total (with
   * its current counts for those the patch leaves out), fail with `RepositoryError`.
   */
  readonly transition: (
    id: JobId,
    from: ReadonlyArray<JobState>,
    to: JobState,
    patch?: TransitionPatch
  ) => Effect.Effect<TransitionResult, JobNotFound | RepositoryError>
  /**
   * Records chunk counts of a job that is not terminal (ignored once it is) and adds `completedChunkIds` to
   * its checkpoint (with the records `chunks`). A store may coalesce these writes (a crash then loses at most
   * one flush window); reads in the same process always see them, and a transition writes them first. With `lease`, nothing
   * is recorded once the job's lease has moved on: the update fails with `LeaseLost` when the store knows it
   * (a coalesced write that finds it later drops what it held, and the next update fails). Counts or a chunk
   * id that are not non-negative integers, or counts adding up to more than the job's total, fail with
   * `RepositoryError`.
   */
  readonly updateProgress: (id: JobId, progress: ProgressUpdate) => Effect.Effect<void, LeaseLost | RepositoryError>
  /** The ids of the job's completed chunks, as recorded so far. */
  readonly getCheckpoint: (id: JobId) => Effect.Effect<RangeSet, JobNotFound | RepositoryError>
  /**
   * The chunks recorded as pulled from a streamed job's stream (see `ProgressUpdate.pulled`) that have not
   * completed, in chunk-id order: what a resumed job runs again before it pulls its stream again. Empty for a
   * job that is not streamed.
   */
  readonly pulledChunks: (id: JobId) => Effect.Effect<ReadonlyArray<Chunk>, JobNotFound | RepositoryError>
  /**
   * One page of the job's chunks in chunk-id order (see `ListChunksQuery`), as recorded so far (buffered
   * progress of this process included): `completed`, `failed` or `pending`; a store cannot tell a running
   * chunk from a pending one, so a filter on `running` alone matches nothing here. Paging costs the same on
   * any page of a range job, and memory for one page.
   */
  readonly listChunks: (
    id: JobId,
    query: ListChunksQuery
  ) => Effect.Effect<ChunkPage, JobNotFound | InvalidOption | RepositoryError>
  /** The results of the job's chunks after `query.after`, in chunk-id order, at most `query.limit`. */
  readonly chunkResults: (
    id: JobId,
    query: ResultsQuery
  ) => Effect.Effect<ReadonlyArray<ChunkResult>, JobNotFound | RepositoryError>
  /**
   * Removes a terminal job (its status, spec and checkpoint) and returns its last status. A job that is not
   * terminal fails with `InvalidJobState` and is left as it is (it may still run); an unknown id fails with
   * `JobNotFound`.
   */
  readonly delete: (id: JobId) => Effect.Effect<JobStatus, JobNotFound | InvalidJobState | RepositoryError>
  /**
   * Removes every job in one of `query.states` that finished before `query.finishedBefore`, and returns how
   * many. A store may remove them in several batches; a failure leaves the jobs of the batches before it
   * removed and the others as they were.
   */
  readonly prune: (query: PruneQuery) => Effect.Effect<number, RepositoryError>
  /** Looks jobs up by id prefix or exact name (see `FindQuery`), newest first. */
  readonly find: (query: FindQuery) => Effect.Effect<ReadonlyArray<JobStatus>, RepositoryError>
  /** Whether jobs outlive the process (a file or a server), so a stopped manager's jobs can be resumed. */
  readonly durable: boolean
  /**
   * Records that `owner` is alive now, and returns the ids of the `held` jobs whose lease is no longer the
   * one given (another manager took them over, another process stopped them, or they were deleted).
   */
  readonly heartbeat: (
    owner: string,
    held?: ReadonlyArray<HeldLease>
  ) => Effect.Effect<ReadonlyArray<JobId>, RepositoryError>
  /** Forgets `owner`'s heartbeat (a manager shutting down): its pending and running jobs become claimable. */
  readonly retire: (owner: string) => Effect.Effect<void, RepositoryError>
  /** The time of `owner`'s last heartbeat (epoch millis), if it has one. */
  readonly lastHeartbeat: (owner: string) => Effect.Effect<Option.Option<number>, RepositoryError>
  /**
   * Atomically takes over every `pending` or `running` job whose owner is not `owner` and has no heartbeat
   * since `staleBefore` (or no owner at all): each becomes `pending`, owned by `owner`, under a new lease.
   * Returns their ids, oldest first. Two managers claiming at once never get the same job.
   */
  readonly claimOrphans: (owner: string, staleBefore: number) => Effect.Effect<ReadonlyArray<JobId>, RepositoryError>
  /**
   * The `pending` and `running` jobs owned by `owner`. A manager compares them with the jobs it runs, to
   * queue again one that no fiber of it runs (left by a claim or start whose answer was lost).
   */
  readonly activeJobsOf: (owner: string) => Effect.Effect<ReadonlyArray<JobStatus>, RepositoryError>
  /** Stores a request that the owner of a running job stop it (the owner sees it in `stopRequests`). */
  readonly requestStop: (request: StopRequest) => Effect.Effect<void, RepositoryError>
  /**
   * The stop requests of running jobs, whoever owns them, as they are made (from any process sharing the
   * store). Keyed by job, not by owner, so an owner that lost a job it still runs hears them too.
   */
  readonly stopRequests: Stream.Stream<StopRequest, RepositoryError>
  /** Signals that jobs may have changed (see {@link ChangeSignal}). */
  readonly changes: ChangeSignal
  /**
   * Signals that a job may have become claimable without any owner going stale: a job stored without an
   * owner, a job left `pending` without an owner by a transition (a client's resume), an owner retired. A
   * manager claims orphans when it changes, besides its periodic recovery. Which processes' writes it sees
   * depends on the store (see each one); writes that leave no job claimable do not change it.
   */
  readonly claimable: ChangeSignal
}>() {}

/**
 * The status a transition leads to: the same job with the new state, the patch applied, the timestamps
 * set, the progress recomputed and the next lease. Shared by every store so they agree on what a
 * transition writes.
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
  const owner = patch?.owner === null ? undefined : patch?.owner ?? status.owner
  const phase = patch?.phase === null || to !== "running" ? undefined : patch?.phase ?? status.phase
  const startedAt = status.startedAt ?? (to === "running" ? now : undefined)
  const finishedAt = isTerminal(to) ? now : undefined
  return makeStatus({
    id: status.id,
    name: status.name,
    state: to,
    totalChunks: status.totalChunks,
    completedChunks,
    failedChunks,
    progress: progressOf(status.totalChunks, completedChunks, failedChunks, to),
    error,
    createdAt: status.createdAt,
    updatedAt: now,
    startedAt,
    finishedAt,
    owner,
    lease: status.lease + 1,
    phase,
    retryOf: status.retryOf,
    metadata: status.metadata
  })
}

/**
 * The status of a job that was just created.
 *
 * @since 0.1.0
 */
export const newJobStatus = (job: NewJob, now: Date): JobStatus => {
  const completedChunks = job.completed?.size ?? 0
  return makeStatus({
    id: job.id,
    name: job.spec.name,
    state: "pending",
    totalChunks: job.totalChunks,
    completedChunks,
    failedChunks: 0,
    progress: progressOf(job.totalChunks, completedChunks, 0, "pending"),
    error: undefined,
    createdAt: now,
    updatedAt: now,
    startedAt: undefined,
    finishedAt: undefined,
    owner: job.owner,
    lease: 0,
    phase: undefined,
    retryOf: job.retryOf,
    metadata: job.spec.metadata
  })
}

/**
 * The error for counts that no job can have: a count, or a chunk id, that is not a non-negative integer;
 * `undefined` when they are fine. Shared by every store, which check them before anything else.
 *
 * @since 0.1.0
 */
export const invalidCounts = (
  operation: string,
  counts: {
    readonly completedChunks?: number | undefined
    readonly failedChunks?: number | undefined
    readonly completedChunkIds?: ReadonlyArray<number> | undefined
  } | undefined
): RepositoryError | undefined => {
  if (counts === undefined) return undefined
  for (const field of ["completedChunks", "failedChunks"] as const) {
    const value = counts[field]
    if (value !== undefined && !isCount(value)) {
      return new RepositoryError({ operation, detail: `${field} must be a non-negative integer, got ${value}` })
    }
  }
  const ids = counts.completedChunkIds
  if (ids !== undefined) {
    if (!Array.isArray(ids)) {
      return new RepositoryError({ operation, detail: `completedChunkIds must be an array of chunk ids, got ${ids}` })
    }
    for (let index = 0; index < ids.length; index++) {
      if (!isCount(ids[index])) {
        return new RepositoryError({
          operation,
          detail: `completedChunkIds[${index}] must be a non-negative integer, got ${ids[index]}`
        })
      }
    }
  }
  return undefined
}

const isCount = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 0

/**
 * The error for counts that add up to more than the job's total; `undefined` when they do not.
 *
 * @since 0.1.0
 */
export const countsOverTotal = (
  operation: string,
  id: JobId,
  completedChunks: number,
  failedChunks: number,
  totalChunks: number | undefined
): RepositoryError | undefined =>
  totalChunks !== undefined && completedChunks + failedChunks > totalChunks
    ? new RepositoryError({
      operation,
      detail: `job ${id} has ${totalChunks} chunks; ${completedChunks} completed and ${failedChunks} failed is more`
    })
    : undefined

/**
 * The error for a new job that cannot be stored as given (its id aside); `undefined` when it can.
 *
 * @since 0.1.0
 */
export const invalidNewJob = (job: NewJob): RepositoryError | undefined => {
  if (job.totalChunks === undefined) {
    return isStreamSource(job.spec.chunks) ? undefined : new RepositoryError({
      operation: "create",
      detail: `job ${job.id}: only a streamed job may have no totalChunks`
    })
  }
  if (!(Number.isSafeInteger(job.totalChunks) && job.totalChunks >= 0)) {
    return new RepositoryError({
      operation: "create",
      detail: `totalChunks must be a non-negative integer, got ${job.totalChunks}`
    })
  }
  const completed = job.completed?.size ?? 0
  return completed > job.totalChunks
    ? new RepositoryError({
      operation: "create",
      detail: `job ${job.id} has ${job.totalChunks} chunks; a checkpoint of ${completed} completed is more`
    })
    : undefined
}

/**
 * The error for creating a job whose id is already stored.
 *
 * @since 0.1.0
 */
export const duplicateJob = (id: JobId): RepositoryError =>
  new RepositoryError({ operation: "create", detail: `a job with id ${id} already exists` })

/**
 * The error for deleting a job that has not ended.
 *
 * @since 0.1.0
 */
export const notDeletable = (status: JobStatus): InvalidJobState =>
  new InvalidJobState({
    jobId: status.id,
    state: status.state,
    operation: "delete",
    detail: "only a completed, failed or cancelled job can be deleted (cancel it first)"
  })

/** Whether a job matches a `find` query. */
const matchesFind = (query: FindQuery, status: JobStatus): boolean =>
  (query.idPrefix !== undefined && status.id.startsWith(query.idPrefix)) ||
  (query.name !== undefined && status.name === query.name)

/** The default page size of a listing. @since 0.1.0 */
export const defaultListLimit = 50

const statesOf = (query: ListQuery): ReadonlySet<JobState> | undefined =>
  query.state === undefined ? undefined : new Set(typeof query.state === "string" ? [query.state] : query.state)

/** The sort key of a job in a listing. */
const keyOf = (status: JobStatus): CursorKey => ({ createdAt: status.createdAt.getTime(), id: status.id })

interface MemoryEntry {
  readonly status: LazyStatus
  readonly spec: JobSpec
  readonly checkpoint: RangeSet
  /** Chunk records in id order (chunks mostly settle in id order, so a new one is mostly appended). */
  readonly records: Array<ChunkRecord>
  /** A streamed job's chunks recorded as pulled and not completed, by id. */
  readonly pulled: Map<number, Chunk>
  /** Its index in the store's listing order; -1 when it is not in it. */
  position: number
}

/** Adds or replaces a record in an id-ordered array. */
const putRecord = (records: Array<ChunkRecord>, record: ChunkRecord): void => {
  const last = records[records.length - 1]
  if (last === undefined || last.id < record.id) {
    records.push(record)
    return
  }
  let low = 0
  let high = records.length
  while (low < high) {
    const middle = (low + high) >> 1
    if (records[middle]!.id < record.id) low = middle + 1
    else high = middle
  }
  if (records[low]?.id === record.id) records[low] = record
  else records.splice(low, 0, record)
}

/** The results of an id-ordered array of records after `query.after`, at most `query.limit`. */
const resultsOf = (
  records: ReadonlyArray<ChunkRecord>,
  query: ResultsQuery
): ReadonlyArray<ChunkResult> => {
  const results: Array<ChunkResult> = []
  let after = query.after ?? -1
  while (results.length < query.limit) {
    const window = recordsAfter(records, after, query.limit)
    for (const record of window.records) {
      if (record.result !== undefined && results.length < query.limit) results.push({ id: record.id, result: record.result })
      after = record.id
    }
    if (window.complete) break
  }
  return results
}

/**
 * An in-memory store: fast, and gone with the process (`durable: false`). Each operation runs without
 * yielding, so every compare-and-set is atomic. Managers sharing one memory store in a process see each
 * other's stop requests.
 *
 * @since 0.1.0
 */
export const makeMemory: Effect.Effect<JobRepository["Type"]> = Effect.gen(function*() {
  const jobs = new Map<JobId, MemoryEntry>()
  const heartbeats = new Map<string, number>()
  const stops = yield* PubSub.unbounded<StopRequest>()
  const changes = new VersionSignal()
  const claimable = new VersionSignal()
  // Read directly (one step per operation instead of a clock lookup and two maps), as the manager reads its own.
  const clock = yield* Effect.clock
  /** `body` run with the current time. */
  const atNow = <A, E>(body: (date: Date) => Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.suspend(() => body(new Date(clock.unsafeCurrentTimeMillis())))

  const transition = (id: JobId, from: ReadonlyArray<JobState>, to: JobState, patch?: TransitionPatch) =>
    atNow((date): Effect.Effect<TransitionResult, JobNotFound | RepositoryError> => {
      const invalid = invalidCounts("transition", patch)
      if (invalid !== undefined) return Effect.fail(invalid)
      const entry = jobs.get(id)
      if (entry === undefined) return Effect.fail(new JobNotFound({ jobId: id }))
      const current = entry.status.state
      if (
        !from.includes(current) || !canTransition(current, to) ||
        (patch?.lease !== undefined && patch.lease !== entry.status.lease)
      ) {
        return Effect.succeed<TransitionResult>({ applied: false, status: entry.status.current })
      }
      const over = countsOverTotal(
        "transition",
        id,
        patch?.completedChunks ?? entry.status.completedChunks,
        patch?.failedChunks ?? entry.status.failedChunks,
        entry.status.totalChunks
      )
      if (over !== undefined) return Effect.fail(over)
      setStatus(entry, applyTransition(entry.status.current, to, patch, date))
      changes.bump()
      if (to === "pending" && entry.status.current.owner === undefined) claimable.bump()
      return Effect.succeed<TransitionResult>({ applied: true, status: entry.status.current })
    })

  /**
   * The jobs in creation order, oldest first, for as long as each job was created after the one before (as
   * the ids and clock of one process make them): a listing then reads from the newest end, skipping a page's
   * worth of jobs, instead of sorting every job. Deleted jobs are skipped, and dropped when they pile up.
   */
  let order: Array<{ readonly key: CursorKey; readonly entry: MemoryEntry }> = []
  let ordered = true
  /** The states of the jobs in `order`, by block of it: a listing by state skips the blocks without them. */
  const blocks = new StateBlocks()

  const appendOrder = (key: CursorKey, entry: MemoryEntry) => {
    const last = order[order.length - 1]
    if (last !== undefined && compareNewestFirst(key, last.key) >= 0) ordered = false
    if (!ordered) return
    entry.position = order.length
    order.push({ key, entry })
    blocks.add(entry.position, entry.status.state)
    if (order.length > 2 * jobs.size + 1_000) {
      order = order.filter((item) => jobs.get(item.key.id) === item.entry)
      blocks.clear()
      order.forEach((item, position) => {
        item.entry.position = position
        blocks.add(position, item.entry.status.state)
      })
    }
  }

  /** Replaces the status of a stored job, keeping `blocks` up to date. */
  const setStatus = (entry: MemoryEntry, status: JobStatus) => {
    if (entry.position >= 0 && status.state !== entry.status.state) {
      blocks.remove(entry.position, entry.status.state)
      blocks.add(entry.position, status.state)
    }
    entry.status.set(status)
  }

  /** Deletes a stored job. */
  const remove = (id: JobId, entry: MemoryEntry) => {
    jobs.delete(id)
    if (entry.position >= 0) blocks.remove(entry.position, entry.status.state)
  }

  /** A page read from `order`: the `limit` newest jobs older than `cursor`, in `states`. */
  const orderedPage = (states: ReadonlySet<JobState> | undefined, cursor: CursorKey | undefined, limit: number) => {
    let index = order.length - 1
    if (cursor !== undefined) {
      // The newest position whose job comes after the cursor.
      let low = 0
      let high = order.length
      while (low < high) {
        const middle = (low + high) >> 1
        if (isAfterCursor(order[middle]!.key, cursor)) low = middle + 1
        else high = middle
      }
      index = low - 1
    }
    const page: Array<JobStatus> = []
    for (; index >= 0 && page.length < limit; index--) {
      if (states !== undefined && !blocks.holdsAny(StateBlocks.blockOf(index), states)) {
        // No job of these states in this block: on to the end of the block before it.
        index = StateBlocks.startOf(StateBlocks.blockOf(index))
        continue
      }
      const { entry, key } = order[index]!
      if (jobs.get(key.id) !== entry) continue
      if (states !== undefined && !states.has(entry.status.state)) continue
      page.push(entry.status.current)
    }
    return page
  }

  const createMany = (batch: ReadonlyArray<NewJob>) =>
    atNow((date): Effect.Effect<ReadonlyArray<JobStatus>, RepositoryError> => {
      const ids = new Set<JobId>()
      for (const job of batch) {
        const invalid = invalidNewJob(job)
        if (invalid !== undefined) return Effect.fail(invalid)
        if (jobs.has(job.id) || ids.has(job.id)) return Effect.fail(duplicateJob(job.id))
        ids.add(job.id)
      }
      const statuses = batch.map((job) => {
        const status = newJobStatus(job, date)
        const entry: MemoryEntry = {
          status: new LazyStatus(status),
          spec: job.spec,
          checkpoint: job.completed?.copy() ?? RangeSet.empty(),
          records: [],
          pulled: new Map(),
          position: -1
        }
        jobs.set(job.id, entry)
        appendOrder(keyOf(status), entry)
        return status
      })
      if (statuses.length > 0) changes.bump()
      if (batch.some((job) => job.owner === undefined)) claimable.bump()
      return Effect.succeed(statuses)
    })

  const isOrphanOf = (owner: string, staleBefore: number) => (status: JobStatus): boolean => {
    if (status.state !== "pending" && status.state !== "running") return false
    if (status.owner === undefined) return true
    if (status.owner === owner) return false
    const beat = heartbeats.get(status.owner)
    return beat === undefined || beat < staleBefore
  }

  return JobRepository.of({
    create: (job) => Effect.map(createMany([job]), (statuses) => statuses[0]!),
    createMany,
    get: (id) => Effect.sync(() => Option.fromNullable(jobs.get(id)?.status.current)),
    getSpec: (id) => Effect.sync(() => Option.fromNullable(jobs.get(id)?.spec)),
    list: (query) =>
      Effect.map(
        query.cursor === undefined ? Effect.succeed(undefined) : decodeCursor(query.cursor),
        (cursor) => {
          const states = statesOf(query)
          const limit = query.limit ?? defaultListLimit
          if (ordered) {
            const read = orderedPage(states, cursor, limit + 1)
            const page = read.slice(0, limit)
            const last = page[page.length - 1]
            return read.length > limit && last !== undefined
              ? { jobs: page, nextCursor: encodeCursor(keyOf(last)) }
              : { jobs: page }
          }
          const matching: Array<JobStatus> = []
          for (const entry of jobs.values()) {
            const status = entry.status.current
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
      Effect.suspend((): Effect.Effect<void, LeaseLost | RepositoryError> => {
        const millis = clock.unsafeCurrentTimeMillis()
        const invalid = invalidCounts("updateProgress", progress)
        if (invalid !== undefined) return Effect.fail(invalid)
        const entry = jobs.get(id)
        if (entry !== undefined && progress.lease !== undefined && progress.lease !== entry.status.lease) {
          return Effect.fail(new LeaseLost({ jobId: id, lease: progress.lease }))
        }
        if (entry === undefined || isTerminal(entry.status.state)) return Effect.void
        const over = countsOverTotal(
          "updateProgress",
          id,
          progress.completedChunks,
          progress.failedChunks,
          progress.totalChunks ?? entry.status.totalChunks
        )
        if (over !== undefined) return Effect.fail(over)
        entry.status.progress(progress, millis)
        if (progress.pulled !== undefined) {
          for (const chunk of progress.pulled) if (!entry.checkpoint.has(chunk.id)) entry.pulled.set(chunk.id, chunk)
        }
        if (progress.completedChunkIds !== undefined) {
          for (const chunkId of progress.completedChunkIds) {
            entry.checkpoint.add(chunkId)
            entry.pulled.delete(chunkId)
          }
        }
        if (progress.chunks !== undefined) for (const record of progress.chunks) putRecord(entry.records, record)
        changes.bump()
        return Effect.void
      }),
    getCheckpoint: (id) =>
      Effect.suspend(() => {
        const entry = jobs.get(id)
        return entry === undefined ? Effect.fail(new JobNotFound({ jobId: id })) : Effect.succeed(entry.checkpoint.copy())
      }),
    pulledChunks: (id) =>
      Effect.suspend(() => {
        const entry = jobs.get(id)
        return entry === undefined
          ? Effect.fail(new JobNotFound({ jobId: id }))
          : Effect.succeed([...entry.pulled.values()].sort((a, b) => a.id - b.id))
      }),
    listChunks: (id, query) =>
      Effect.suspend((): Effect.Effect<ChunkPage, JobNotFound | InvalidOption> => {
        const entry = jobs.get(id)
        if (entry === undefined) return Effect.fail(new JobNotFound({ jobId: id }))
        return pageChunks(
          query,
          chunkIdsOf(entry.spec, () => streamedIds(entry.checkpoint, entry.pulled.keys())),
          entry.checkpoint,
          (after, limit) => Effect.succeed(recordsAfter(entry.records, after, limit))
        )
      }),
    chunkResults: (id, query) =>
      Effect.suspend(() => {
        const entry = jobs.get(id)
        return entry === undefined
          ? Effect.fail(new JobNotFound({ jobId: id }))
          : Effect.succeed(resultsOf(entry.records, query))
      }),
    delete: (id) =>
      Effect.suspend((): Effect.Effect<JobStatus, JobNotFound | InvalidJobState> => {
        const entry = jobs.get(id)
        if (entry === undefined) return Effect.fail(new JobNotFound({ jobId: id }))
        const status = entry.status.current
        if (!isTerminal(status.state)) return Effect.fail(notDeletable(status))
        remove(id, entry)
        changes.bump()
        return Effect.succeed(status)
      }),
    prune: (query) =>
      Effect.sync(() => {
        const states: ReadonlySet<JobState> = new Set(query.states)
        let removed = 0
        for (const [id, entry] of jobs) {
          const finishedAt = entry.status.current.finishedAt
          if (states.has(entry.status.state) && finishedAt !== undefined && finishedAt.getTime() < query.finishedBefore) {
            remove(id, entry)
            removed++
          }
        }
        if (removed > 0) changes.bump()
        return removed
      }),
    find: (query) =>
      Effect.sync(() => {
        const found: Array<JobStatus> = []
        for (const entry of jobs.values()) {
          if (matchesFind(query, entry.status.current)) found.push(entry.status.current)
        }
        return found.sort((a, b) => compareNewestFirst(keyOf(a), keyOf(b))).slice(0, query.limit)
      }),
    durable: false,
    heartbeat: (owner, held = []) =>
      Effect.sync(() => {
        heartbeats.set(owner, clock.unsafeCurrentTimeMillis())
        return held.filter((job) => jobs.get(job.id)?.status.lease !== job.lease).map((job) => job.id)
      }),
    retire: (owner) =>
      Effect.sync(() => {
        heartbeats.delete(owner)
        claimable.bump()
      }),
    lastHeartbeat: (owner) => Effect.sync(() => Option.fromNullable(heartbeats.get(owner))),
    claimOrphans: (owner, staleBefore) =>
      atNow((date) => {
        const isOrphan = isOrphanOf(owner, staleBefore)
        const claimed: Array<JobStatus> = []
        for (const entry of jobs.values()) {
          if (!isOrphan(entry.status.current)) continue
          setStatus(entry, applyTransition(entry.status.current, "pending", { owner }, date))
          claimed.push(entry.status.current)
        }
        if (claimed.length > 0) changes.bump()
        claimed.sort((a, b) => -compareNewestFirst(
          { createdAt: a.createdAt.getTime(), id: a.id },
          { createdAt: b.createdAt.getTime(), id: b.id }
        ))
        return Effect.succeed(claimed.map((status) => status.id))
      }),
    activeJobsOf: (owner) =>
      Effect.sync(() => {
        const active: Array<JobStatus> = []
        for (const entry of jobs.values()) {
          const status = entry.status.current
          if ((status.state === "pending" || status.state === "running") && status.owner === owner) active.push(status)
        }
        return active
      }),
    requestStop: (request) =>
      Effect.suspend(() => {
        const entry = jobs.get(request.id)
        if (entry === undefined || entry.status.state !== "running" || entry.status.current.owner === undefined) {
          return Effect.void
        }
        changes.bump()
        return PubSub.publish(stops, { id: request.id, kind: request.kind })
      }),
    stopRequests: Stream.fromPubSub(stops),
    changes,
    claimable
  })
})

/**
 * A layer with an empty in-memory store.
 *
 * @since 0.1.0
 */
export const layerMemory: Layer.Layer<JobRepository> = Layer.effect(JobRepository, makeMemory)
