/**
 * Domain data of effect-jobs: ids, states, chunks, specs and statuses, all as Schema.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * A job id: 1..128 characters of `[A-Za-z0-9_-]`. Ids made by {@link makeJobId} sort in creation order.
 *
 * @since 0.1.0
 */
export const JobId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_-]{1,128}$/, {
    message: () => "a job id is 1 to 128 characters of A-Z, a-z, 0-9, '_' or '-'"
  }),
  Schema.brand("JobId")
)
/** @since 0.1.0 */
export type JobId = typeof JobId.Type

let lastIdMillis = -1
let idSequence = 0

/**
 * Makes a new job id: `job_` + creation time + a per-process sequence + randomness, so ids made by one
 * process sort in the order they were made, even within one millisecond.
 *
 * @since 0.1.0
 */
export const makeJobId = (nowMillis: number): JobId => {
  if (nowMillis === lastIdMillis) {
    idSequence++
  } else {
    lastIdMillis = nowMillis
    idSequence = 0
  }
  const time = Math.max(0, Math.floor(nowMillis)).toString(36).padStart(9, "0")
  const sequence = idSequence.toString(36).padStart(4, "0")
  const random = crypto.randomUUID().replaceAll("-", "").slice(0, 10)
  return `job_${time}${sequence}${random}` as JobId
}

/**
 * The states of a job. `completed`, `failed` and `cancelled` are terminal.
 *
 * @since 0.1.0
 */
export const JobState = Schema.Literal("pending", "running", "paused", "completed", "failed", "cancelled")
/** @since 0.1.0 */
export type JobState = typeof JobState.Type

/**
 * The legal transitions, as data: `transitions[from]` lists the states `from` may move to.
 * Terminal states have none, so a stored terminal state never changes.
 *
 * - `pending -> paused` holds a queued job; `paused -> pending` (resume) queues it again, and it continues
 *   from its checkpoint when it next runs.
 * - `running -> pending` re-queues a job whose manager shut down gracefully or whose owner stopped
 *   heartbeating; it continues from its checkpoint.
 *
 * @since 0.1.0
 */
export const transitions: { readonly [From in JobState]: ReadonlyArray<JobState> } = {
  pending: ["running", "paused", "cancelled", "failed"],
  running: ["pending", "paused", "completed", "failed", "cancelled"],
  paused: ["pending", "cancelled"],
  completed: [],
  failed: [],
  cancelled: []
}

/** @since 0.1.0 */
export const terminalStates: ReadonlyArray<JobState> = ["completed", "failed", "cancelled"]

/** @since 0.1.0 */
export const isTerminal = (state: JobState): boolean =>
  state === "completed" || state === "failed" || state === "cancelled"

/** @since 0.1.0 */
export const canTransition = (from: JobState, to: JobState): boolean => transitions[from].includes(to)

/**
 * A JSON value: what a chunk payload and job metadata may hold (they are stored and sent over the wire).
 *
 * @since 0.1.0
 */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

/** @since 0.1.0 */
export const Json: Schema.Schema<Json> = Schema.Union(
  Schema.Null,
  Schema.Boolean,
  Schema.Number.pipe(Schema.finite()),
  Schema.String,
  Schema.Array(Schema.suspend(() => Json)),
  Schema.Record({ key: Schema.String, value: Schema.suspend(() => Json) })
).annotations({ identifier: "Json" })

/**
 * A chunk id: a non-negative integer, unique within its job.
 *
 * @since 0.1.0
 */
export const ChunkId = Schema.Int.pipe(Schema.nonNegative())

/**
 * One unit of work sent to a worker.
 *
 * @since 0.1.0
 */
export const Chunk = Schema.Struct({
  id: ChunkId,
  payload: Json
}).annotations({ identifier: "Chunk" })
/** @since 0.1.0 */
export type Chunk = typeof Chunk.Type

/**
 * A range plan: the inclusive range `start..end` cut into chunks of `size` (the last one may be shorter).
 * Chunk `i` has id `i` and payload `{ start, end }` (inclusive). It is expanded lazily, one chunk at a
 * time, so a plan of a million chunks costs no memory up front.
 *
 * @since 0.1.0
 */
export const RangePlan = Schema.Struct({
  start: Schema.Int,
  end: Schema.Int,
  size: Schema.Int.pipe(Schema.positive())
}).pipe(
  Schema.filter((plan) =>
    plan.end >= plan.start ||
    { path: ["end"], message: `end (${plan.end}) must not be before start (${plan.start})` }
  ),
  Schema.filter((plan) =>
    (plan.end - plan.start) / plan.size < 2 ** 32 ||
    { path: ["size"], message: "a range plan may have at most 2^32 chunks" }
  )
).annotations({ identifier: "RangePlan" })
/** @since 0.1.0 */
export type RangePlan = typeof RangePlan.Type

const ChunkList = Schema.Array(Chunk).pipe(
  Schema.filter((chunks) => {
    const seen = new Set<number>()
    for (let index = 0; index < chunks.length; index++) {
      const id = chunks[index]!.id
      if (seen.has(id)) return { path: [index, "id"], message: `duplicate chunk id ${id}` }
      seen.add(id)
    }
    return true
  })
)

/**
 * What a user submits: an optional name and metadata, the chunks (an explicit array or a
 * {@link RangePlan}), and an optional finalize step.
 *
 * @since 0.1.0
 */
export const JobSpec = Schema.Struct({
  name: Schema.optional(Schema.String.pipe(Schema.maxLength(256))),
  metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Json })),
  chunks: Schema.Union(ChunkList, RangePlan),
  /** The finalize step to run after the chunks: a finalizer the manager knows by `name`. */
  finalize: Schema.optional(Schema.Struct({
    name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)),
    payload: Schema.optional(Json)
  }))
}).annotations({ identifier: "JobSpec" })
/** @since 0.1.0 */
export type JobSpec = typeof JobSpec.Type
/** What a caller may pass as a spec before it is validated. @since 0.1.0 */
export type JobSpecInput = typeof JobSpec.Encoded

/** @since 0.1.0 */
export const isRangePlan = (chunks: JobSpec["chunks"]): chunks is RangePlan => !Array.isArray(chunks)

/**
 * The number of chunks a spec describes, without expanding it.
 *
 * @since 0.1.0
 */
export const totalChunks = (spec: JobSpec): number => {
  const chunks = spec.chunks
  return isRangePlan(chunks) ? Math.floor((chunks.end - chunks.start) / chunks.size) + 1 : chunks.length
}

/**
 * The chunk at `index` (0-based) of a spec. Range plans build it on demand.
 *
 * @since 0.1.0
 */
export const chunkAt = (spec: JobSpec, index: number): Chunk => {
  const chunks = spec.chunks
  if (!isRangePlan(chunks)) return chunks[index]!
  const start = chunks.start + index * chunks.size
  return { id: index, payload: { start, end: Math.min(start + chunks.size - 1, chunks.end) } }
}

/**
 * The progress of a job, 0..100: the share of its chunks that have settled (succeeded or failed for good).
 * A job with no chunks is at 0 until it completes, then at 100.
 *
 * @since 0.1.0
 */
export const progressOf = (total: number, completed: number, failed: number, state: JobState): number =>
  total === 0 ? (state === "completed" ? 100 : 0) : Math.floor(((completed + failed) * 100) / total)

/**
 * The stored status of a job.
 *
 * @since 0.1.0
 */
export class JobStatus extends Schema.Class<JobStatus>("effect-jobs/JobStatus")({
  id: JobId,
  name: Schema.optional(Schema.String),
  state: JobState,
  totalChunks: Schema.Int.pipe(Schema.nonNegative()),
  completedChunks: Schema.Int.pipe(Schema.nonNegative()),
  failedChunks: Schema.Int.pipe(Schema.nonNegative()),
  progress: Schema.Number.pipe(Schema.between(0, 100)),
  error: Schema.optional(Schema.String),
  createdAt: Schema.Date,
  updatedAt: Schema.Date,
  startedAt: Schema.optional(Schema.Date),
  finishedAt: Schema.optional(Schema.Date),
  /** The manager instance that runs (or last ran) the job: `host:pid:random`. */
  owner: Schema.optional(Schema.String),
  /**
   * The job's fencing token: 0 when created, incremented by every change of state (start, takeover, resume,
   * stop). An owner holds the lease it started the job with, and the store refuses its writes once the
   * lease has moved on, so a stalled owner can never overwrite the work of the one that took over.
   */
  lease: Schema.Int.pipe(Schema.nonNegative()),
  /** Set while the job runs its finalize step, after every chunk succeeded. */
  phase: Schema.optional(Schema.Literal("finalizing")),
  /** The failed job this one re-drives (see `retryJob`). */
  retryOf: Schema.optional(JobId)
}) {}

/**
 * The same status with new chunk counts (and phase), as of `now`; its state is unchanged.
 *
 * @since 0.1.0
 */
export const withProgress = (
  status: JobStatus,
  progress: {
    readonly completedChunks: number
    readonly failedChunks: number
    readonly phase?: "finalizing" | undefined
  },
  now: Date
): JobStatus =>
  new JobStatus({
    ...status,
    completedChunks: progress.completedChunks,
    failedChunks: progress.failedChunks,
    progress: progressOf(status.totalChunks, progress.completedChunks, progress.failedChunks, status.state),
    updatedAt: now,
    ...(progress.phase === undefined ? {} : { phase: progress.phase })
  }, true)

/**
 * Filters and paging of a job listing. Jobs come newest first (by `createdAt`, then by id), `limit` at a
 * time (default 50, at most 1000); pass the `nextCursor` of a page as `cursor` to get the next one.
 * Paging while jobs are added never repeats or skips a job that existed when paging began.
 *
 * @since 0.1.0
 */
export const ListQuery = Schema.Struct({
  state: Schema.optional(Schema.Union(JobState, Schema.Array(JobState))),
  limit: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000))),
  cursor: Schema.optional(Schema.String)
}).annotations({ identifier: "ListQuery" })
/** @since 0.1.0 */
export type ListQuery = typeof ListQuery.Type

/**
 * One page of a job listing; `nextCursor` is absent on the last page.
 *
 * @since 0.1.0
 */
export interface JobPage {
  readonly jobs: ReadonlyArray<JobStatus>
  readonly nextCursor?: string | undefined
}
