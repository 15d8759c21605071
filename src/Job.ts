/**
 * Domain data of effect-jobs: ids, states, chunks, specs and statuses, all as Schema.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as AST from "effect/SchemaAST"
import type { ParseOptions } from "effect/SchemaAST"
import { isChunkStream, ownChunks } from "./internal/iterables.js"
import { copyJson, type JsonIssue, type Layout } from "./internal/json.js"
import { makeStatus } from "./internal/jobStatus.js"
import { firstIssue, InvalidJobSpec } from "./JobError.js"

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
  // The first ten hex digits of a random UUID (`xxxxxxxx-xx…`), without its dash.
  const uuid = crypto.randomUUID()
  const random = uuid.slice(0, 8) + uuid.slice(9, 11)
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

const jsonIssue = (ast: AST.AST, input: unknown, issue: JsonIssue): ParseResult.ParseIssue => {
  const type = new ParseResult.Type(ast, input, issue.detail)
  const [first, ...rest] = issue.path
  return first === undefined ? type : new ParseResult.Pointer([first, ...rest], input, type)
}

/** A schema that decodes and encodes with the same check, which returns a checked copy. */
const checkedSchema = <A>(
  check: (input: unknown, options: ParseOptions | undefined, ast: AST.AST) => Either.Either<A, ParseResult.ParseIssue>,
  annotations: Schema.Annotations.Schema<A>
): Schema.Schema<A> => Schema.declare([], { decode: () => check, encode: () => check }, annotations)

const decodeJson = (input: unknown, _options: ParseOptions | undefined, ast: AST.AST) =>
  Either.mapLeft(copyJson(input), (issue) => jsonIssue(ast, input, issue))

/**
 * Decoding (and encoding) checks the value is plain JSON at most 64 levels deep, with no key that could
 * reach a prototype (`__proto__`, `constructor.prototype`), and returns a fresh plain copy: see
 * `internal/json.ts` for what is refused. The issue's path points at the offending value.
 *
 * @since 0.1.0
 */
export const Json: Schema.Schema<Json> = checkedSchema(decodeJson, {
  identifier: "Json",
  description: "plain JSON: null, a boolean, a finite number, a string, an array or a plain object",
  jsonSchema: {
    anyOf: [
      { type: "null" },
      { type: "boolean" },
      { type: "number" },
      { type: "string" },
      { type: "array" },
      { type: "object" }
    ]
  }
})

/** The rule of {@link ChunkId} as a plain predicate (`Schema.is` costs about half a microsecond a chunk). */
const isChunkId = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/**
 * A chunk id: a non-negative integer, unique within its job.
 *
 * @since 0.1.0
 */
export const ChunkId = Schema.Number.pipe(
  Schema.filter(isChunkId, {
    identifier: "ChunkId",
    description: "a chunk id: a non-negative integer",
    jsonSchema: { type: "integer", minimum: 0 }
  })
)

/**
 * One unit of work sent to a worker.
 *
 * @since 0.1.0
 */
export interface Chunk {
  readonly id: number
  readonly payload: Json
}

const chunkLayout: Layout = { payload: "json" }

/**
 * Checks one chunk of a copy made by `copyJson` (so plain data): `{ id, payload }` with a valid id. Extra
 * keys are an issue when `onExcessProperty` is `"error"`, else left out, as a Struct would.
 */
const checkChunk = (
  chunk: Json | undefined,
  options: ParseOptions | undefined,
  ast: AST.AST
): Either.Either<Chunk, ParseResult.ParseIssue> => {
  if (typeof chunk !== "object" || chunk === null || Array.isArray(chunk)) {
    return Either.left(new ParseResult.Type(ast, chunk, "expected a chunk: an object { id, payload }"))
  }
  const record = chunk as { readonly [key: string]: Json }
  for (const key of ["id", "payload"] as const) {
    if (!Object.hasOwn(record, key)) {
      return Either.left(new ParseResult.Pointer(key, chunk, new ParseResult.Type(ast, undefined, "is missing")))
    }
  }
  const id = record.id
  if (!isChunkId(id)) {
    return Either.left(new ParseResult.Pointer(
      "id",
      chunk,
      new ParseResult.Type(ast, id, `expected a chunk id (a non-negative integer), got ${String(id)}`)
    ))
  }
  const keys = Object.keys(record)
  if (keys.length === 2) return Either.right(record as unknown as Chunk)
  if (options?.onExcessProperty === "error") {
    const extra = keys.find((key) => key !== "id" && key !== "payload")!
    return Either.left(new ParseResult.Pointer(extra, chunk, new ParseResult.Unexpected(record[extra])))
  }
  return Either.right({ id, payload: record.payload! })
}

/**
 * Checks the chunks of an array copied by `copyJson`, and refuses duplicate ids; returns the same array
 * when no chunk had keys to leave out.
 */
const checkChunks = (
  copies: ReadonlyArray<Json>,
  options: ParseOptions | undefined,
  ast: AST.AST
): Either.Either<ReadonlyArray<Chunk>, ParseResult.ParseIssue> => {
  let trimmed: Array<Chunk> | undefined
  // Ids that only increase cannot repeat: the Set (costly for a million ids) is made only once they do not.
  let last = -1
  let seen: Set<number> | undefined
  for (let index = 0; index < copies.length; index++) {
    const checked = checkChunk(copies[index], options, ast)
    if (Either.isLeft(checked)) return Either.left(new ParseResult.Pointer(index, copies, checked.left))
    const chunk = checked.right
    if (seen === undefined && chunk.id > last) {
      last = chunk.id
    } else {
      seen ??= new Set(copies.slice(0, index).map((earlier) => (earlier as unknown as Chunk).id))
      if (seen.has(chunk.id)) {
        const duplicate = new ParseResult.Type(ast, chunk.id, `duplicate chunk id ${chunk.id}`)
        return Either.left(new ParseResult.Pointer([index, "id"], copies, duplicate))
      }
      seen.add(chunk.id)
    }
    if (trimmed === undefined && chunk !== (copies[index] as unknown)) {
      trimmed = copies.slice(0, index) as unknown as Array<Chunk>
    }
    if (trimmed !== undefined) trimmed.push(chunk)
  }
  return Either.right(trimmed ?? copies as unknown as ReadonlyArray<Chunk>)
}

const copyAs = (input: unknown, layout: Layout, ast: AST.AST) =>
  Either.mapLeft(copyJson(input, { layout }), (issue) => jsonIssue(ast, input, issue))

const decodeChunk = (input: unknown, options: ParseOptions | undefined, ast: AST.AST) =>
  Either.flatMap(copyAs(input, chunkLayout, ast), (copy) => checkChunk(copy, options, ast))

/**
 * One unit of work sent to a worker: `{ id, payload }`, the payload checked and copied as {@link Json}.
 *
 * @since 0.1.0
 */
export const Chunk: Schema.Schema<Chunk> = checkedSchema(decodeChunk, {
  identifier: "Chunk",
  description: "a chunk: an object { id, payload }"
})

/**
 * An explicit chunk array, checked in plain code rather than as an array of Structs: a million chunks
 * cost one `copyJson` walk and one loop, several times less than a million Struct decodes.
 */
const decodeChunkList = (input: unknown, options: ParseOptions | undefined, ast: AST.AST) =>
  Either.flatMap(copyAs(input, [chunkLayout], ast), (copy) =>
    Array.isArray(copy)
      ? checkChunks(copy, options, ast)
      : Either.left(new ParseResult.Type(ast, input, "expected an array of chunks")))

const ChunkList = checkedSchema(decodeChunkList, {
  identifier: "ChunkList",
  description: "an array of chunks with distinct ids"
})

const maxRangeChunks = 2 ** 31

/**
 * A range plan: the inclusive range `start..end` cut into chunks of `size` (the last one may be shorter).
 * Chunk `i` has id `i` and payload `{ start, end }` (inclusive). It is expanded lazily, one chunk at a
 * time, so a plan of a million chunks costs no memory up front. `start`, `end` and `size` are safe
 * integers, and a plan has at most 2^31 chunks.
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
    (plan.end - plan.start) / plan.size < maxRangeChunks || {
      path: ["size"],
      message: `a range plan may have at most 2^31 chunks; this one has ${
        Math.floor((plan.end - plan.start) / plan.size) + 1
      } (use a larger size)`
    }
  )
).annotations({ identifier: "RangePlan" })
/** @since 0.1.0 */
export type RangePlan = typeof RangePlan.Type

/**
 * A chunk stream named by the source that makes it: `source` names one of the manager's `sources` (functions
 * of `payload` returning a `Stream` or an `AsyncIterable` of chunks), so the stream can be made again after a
 * restart. Only a manager with that source runs such a spec.
 *
 * @since 0.2.0
 */
export const StreamSource = Schema.Struct({
  source: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)),
  payload: Schema.optional(Json)
}).annotations({ identifier: "StreamSource" })
/** @since 0.2.0 */
export type StreamSource = typeof StreamSource.Type

type JsonRecord = { readonly [key: string]: Json }

const decodeJsonObject = (input: unknown, options: ParseOptions | undefined, ast: AST.AST) =>
  Either.flatMap(decodeJson(input, options, ast), (value): Either.Either<JsonRecord, ParseResult.ParseIssue> =>
    typeof value === "object" && value !== null && !Array.isArray(value)
      ? Either.right(value as JsonRecord)
      : Either.left(new ParseResult.Type(ast, input, "expected an object of JSON values")))

/** A JSON object (job metadata): {@link Json} that is an object. */
const JsonObject = checkedSchema(decodeJsonObject, {
  identifier: "JsonObject",
  description: "an object of JSON values",
  jsonSchema: { type: "object" }
})

/**
 * What a user submits: an optional name and metadata, the chunks (an explicit array or a
 * {@link RangePlan}), an optional concurrency of its own, and an optional finalize step. Metadata and payloads are {@link Json}.
 *
 * Decoding this schema checks the shape; {@link validateSpec} also bounds the spec's size and the
 * number of explicit chunks, and is what the manager and `executeJob` use.
 *
 * @since 0.1.0
 */
export const JobSpec = Schema.Struct({
  name: Schema.optional(Schema.String.pipe(Schema.maxLength(256))),
  metadata: Schema.optional(JsonObject),
  chunks: Schema.Union(ChunkList, RangePlan, StreamSource),
  /**
   * Chunks of this job in flight at once (1..10,000), instead of its manager's `concurrency`; in cluster mode,
   * across the cluster.
   */
  concurrency: Schema.optional(Schema.Int.pipe(Schema.between(1, 10_000))),
  /** The finalize step to run after the chunks: a finalizer the manager knows by `name`. */
  finalize: Schema.optional(Schema.Struct({
    name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)),
    payload: Schema.optional(Json)
  }))
}).annotations({ identifier: "JobSpec" })
/** @since 0.1.0 */
export type JobSpec = typeof JobSpec.Type
/**
 * What a caller may pass as a spec before it is validated: the shape of {@link JobSpec}, so a misspelt or
 * missing field is a compile error. (The value is still validated at run time, for JavaScript callers.)
 *
 * @since 0.1.0
 */
export type JobSpecInput = typeof JobSpec.Encoded

/**
 * Limits on a submitted spec: options of the manager and of `executeJob`.
 *
 * @since 0.1.0
 */
export const SpecLimits = Schema.Struct({
  /**
   * The largest spec, in bytes of its JSON encoding (UTF-8; default 16 MiB). It is counted as the spec is
   * walked, and the walk stops at the limit.
   */
  maxSpecBytes: Schema.optional(Schema.Int.pipe(Schema.between(1, 2 ** 30))),
  /**
   * The most chunks an explicit chunk array may have (default 1,000,000); checked on the array's length
   * before anything else. Range plans are not limited by it.
   */
  maxExplicitChunks: Schema.optional(Schema.Int.pipe(Schema.between(0, maxRangeChunks)))
}).annotations({ identifier: "SpecLimits" })
/** @since 0.1.0 */
export type SpecLimits = typeof SpecLimits.Type

const defaultLimits = { maxSpecBytes: 16 * 1024 * 1024, maxExplicitChunks: 1_000_000 } as const

const specLayout: Layout = { metadata: "json", chunks: [chunkLayout], finalize: { payload: "json" } }

const decodeSpecShape = Schema.decodeUnknownEither(JobSpec, { onExcessProperty: "error" })

/** The spec's explicit chunk array, read without calling a getter or a proxy trap. */
const explicitChunks = (spec: unknown): ReadonlyArray<Json> | undefined => {
  const chunks = ownChunks(spec)
  return Array.isArray(chunks) ? chunks : undefined
}

/** The error for a spec whose chunks are a stream, read without calling a getter or a proxy trap. */
const streamedChunks = (spec: unknown): InvalidJobSpec | undefined =>
  !isChunkStream(ownChunks(spec)) ? undefined : new InvalidJobSpec({
    path: ["chunks"],
    detail: "a chunk stream (a Stream or an iterable) cannot be stored as a spec, nor made again after a " +
      "restart: register a function that makes it in the manager's `sources` and submit " +
      "{ chunks: { source: name, payload } }, or run the stream with executeJob (Promise) or " +
      "JobExecutor.executeStream (Effect)"
  })

/**
 * Validates a spec: a fresh plain copy of it, or `InvalidJobSpec` naming the path of the first problem.
 *
 * Limits: an explicit chunk array longer than `maxExplicitChunks` is refused on its length, before it is
 * walked; the spec is then walked once (see {@link Json} for what it may hold), its JSON size counted on
 * the way, and the walk stops as soon as the size passes `maxSpecBytes`. So a refusal costs time in
 * proportion to the limits, never to the input.
 *
 * @since 0.1.0
 */
export const validateSpec = (
  input: unknown,
  limits?: SpecLimits
): Effect.Effect<JobSpec, InvalidJobSpec> =>
  Effect.suspend(() => {
    const maxBytes = limits?.maxSpecBytes ?? defaultLimits.maxSpecBytes
    const maxChunks = limits?.maxExplicitChunks ?? defaultLimits.maxExplicitChunks
    const countChunks = (spec: unknown): InvalidJobSpec | undefined => {
      const count = explicitChunks(spec)?.length ?? 0
      return count <= maxChunks ? undefined : new InvalidJobSpec({
        path: ["chunks"],
        detail: `${count} explicit chunks, more than maxExplicitChunks (${maxChunks}); use a range plan or a ` +
          "chunk stream for more, or raise maxExplicitChunks"
      })
    }
    const before = countChunks(input) ?? streamedChunks(input)
    if (before !== undefined) return Effect.fail(before)
    const copied = copyJson(input, {
      layout: specLayout,
      maxBytes: {
        bytes: maxBytes,
        message: `the spec passes maxSpecBytes (${maxBytes} bytes of JSON) here; raise maxSpecBytes, or keep ` +
          "bulky data out of the spec (e.g. pass a reference to it)"
      }
    })
    if (Either.isLeft(copied)) return Effect.fail(new InvalidJobSpec(copied.left))
    const copy = copied.right
    // A getter may have handed out another array than the one counted above.
    const after = countChunks(copy)
    if (after !== undefined) return Effect.fail(after)
    // The chunks are already copied: only their shape and ids are left to check, once.
    const chunks = explicitChunks(copy)
    const shape = decodeSpecShape(chunks === undefined ? copy : { ...(copy as object), chunks: [] })
    if (Either.isLeft(shape)) return Effect.fail(new InvalidJobSpec(firstIssue(shape.left)))
    if (chunks === undefined) return Effect.succeed(shape.right)
    const checked = checkChunks(chunks, { onExcessProperty: "error" }, ChunkList.ast)
    if (Either.isRight(checked)) return Effect.succeed({ ...shape.right, chunks: checked.right })
    const issue = new ParseResult.Pointer("chunks", copy, checked.left)
    return Effect.fail(new InvalidJobSpec(firstIssue(ParseResult.parseError(issue))))
  })

/** @since 0.1.0 */
export const isRangePlan = (chunks: JobSpec["chunks"]): chunks is RangePlan =>
  !Array.isArray(chunks) && !Object.hasOwn(chunks, "source")

/**
 * Whether a spec's chunks are a stream named by its source (see {@link StreamSource}).
 *
 * @since 0.2.0
 */
export const isStreamSource = (chunks: JobSpec["chunks"]): chunks is StreamSource =>
  !Array.isArray(chunks) && Object.hasOwn(chunks, "source")

/**
 * The number of chunks a spec describes, without expanding it; `undefined` for a stream (its total is
 * known once it has ended).
 *
 * @since 0.1.0
 */
export const totalChunks = (spec: JobSpec): number | undefined => {
  const chunks = spec.chunks
  return Array.isArray(chunks)
    ? chunks.length
    : isRangePlan(chunks)
    ? Math.floor((chunks.end - chunks.start) / chunks.size) + 1
    : undefined
}

/**
 * The chunk at `index` (0-based) of a spec. Range plans build it on demand.
 *
 * @since 0.1.0
 */
export const chunkAt = (spec: JobSpec, index: number): Chunk => {
  const chunks = spec.chunks as ReadonlyArray<Chunk> | RangePlan
  if (!isRangePlan(chunks)) return (chunks as ReadonlyArray<Chunk>)[index]!
  const start = chunks.start + index * chunks.size
  return { id: index, payload: { start, end: Math.min(start + chunks.size - 1, chunks.end) } }
}

/**
 * The progress of a job, 0..100: the share of its chunks that have settled (succeeded or failed for good).
 * A job with no chunks is at 0 until it completes, then at 100; a streamed job whose total is not known yet
 * (`total` undefined) is at 0 (its `completedChunks` count what is done).
 *
 * @since 0.1.0
 */
export const progressOf = (
  total: number | undefined,
  completed: number,
  failed: number,
  state: JobState,
  partial = 0
): number =>
  total === undefined
    ? 0
    : total === 0
    ? (state === "completed" ? 100 : 0)
    : Math.min(100, Math.floor(((completed + failed + (isTerminal(state) ? 0 : partial)) * 100) / total))

/**
 * The stored status of a job.
 *
 * @since 0.1.0
 */
export class JobStatus extends Schema.Class<JobStatus>("effect-jobs/JobStatus")({
  id: JobId,
  name: Schema.optional(Schema.String),
  state: JobState,
  /**
   * The job's number of chunks. Absent for a streamed job (see {@link StreamSource}) until its stream has
   * ended: `completedChunks` and `failedChunks` count what is done, and `progress` stays 0 until then.
   */
  totalChunks: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
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
  retryOf: Schema.optional(JobId),
  /**
   * The metadata the job was submitted with. Present on a status read on its own (`getJob`); listings and
   * the statuses of a watch may leave it out.
   */
  metadata: Schema.optional(JsonObject)
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
    /** The fractions reported by the chunks in flight, summed (see `ChunkContext.reportProgress`). */
    readonly partialChunks?: number | undefined
    /** A streamed job's total, once its stream has ended. */
    readonly totalChunks?: number | undefined
  },
  now: Date
): JobStatus =>
  makeStatus({
    ...status,
    totalChunks: progress.totalChunks ?? status.totalChunks,
    completedChunks: progress.completedChunks,
    failedChunks: progress.failedChunks,
    progress: progressOf(
      progress.totalChunks ?? status.totalChunks,
      progress.completedChunks,
      progress.failedChunks,
      status.state,
      progress.partialChunks
    ),
    updatedAt: now,
    phase: progress.phase ?? status.phase
  })

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
 * What a caller may pass as a listing query before it is validated: `{ state?, limit?, cursor? }`.
 *
 * @since 0.1.0
 */
export type ListQueryInput = typeof ListQuery.Encoded

/**
 * One page of a job listing; `nextCursor` is absent on the last page.
 *
 * @since 0.1.0
 */
export interface JobPage {
  readonly jobs: ReadonlyArray<JobStatus>
  readonly nextCursor?: string | undefined
}

/**
 * The state of one chunk of a job: `completed` (it succeeded), `failed` (it ran out of attempts), `running`
 * (an attempt is in flight in the manager that runs the job) or `pending` (not run yet, or to be run again).
 *
 * @since 0.2.0
 */
export const ChunkState = Schema.Literal("completed", "failed", "running", "pending")
/** @since 0.2.0 */
export type ChunkState = typeof ChunkState.Type

/**
 * One chunk of a job, as `listChunks` shows it. `attempts` is the attempts it took (0 for a chunk that has
 * not run); `result` is what its worker returned (absent when it returned nothing, `undefined` or `null`);
 * `error` is the last error of a failed chunk; `progress` (0..1) is what a running chunk last reported with
 * `reportProgress`. Times are known for chunks that have a result, failed, needed more than one attempt, or
 * run now; a chunk completed at its first attempt without a result is kept in the job's compact checkpoint
 * only, so it has none.
 *
 * @since 0.2.0
 */
export const ChunkInfo = Schema.Struct({
  id: Schema.Number,
  state: ChunkState,
  attempts: Schema.Number,
  result: Schema.optional(Json),
  error: Schema.optional(Schema.String),
  startedAt: Schema.optional(Schema.Date),
  finishedAt: Schema.optional(Schema.Date),
  progress: Schema.optional(Schema.Number)
}).annotations({ identifier: "ChunkInfo" })
/** @since 0.2.0 */
export type ChunkInfo = typeof ChunkInfo.Type

/**
 * Filters and paging of a chunk listing. Chunks come in chunk-id order, `limit` at a time (default 100, at
 * most 1000); pass the `nextCursor` of a page as `cursor` to get the next one. A page filtered by state may
 * hold fewer than `limit` chunks and still have a `nextCursor`.
 *
 * @since 0.2.0
 */
export const ListChunksQuery = Schema.Struct({
  state: Schema.optional(Schema.Union(ChunkState, Schema.Array(ChunkState))),
  limit: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000))),
  cursor: Schema.optional(Schema.String)
}).annotations({ identifier: "ListChunksQuery" })
/** @since 0.2.0 */
export type ListChunksQuery = typeof ListChunksQuery.Type
/** What a caller may pass as a chunk query (a misspelt field is a compile error). @since 0.2.0 */
export type ListChunksQueryInput = typeof ListChunksQuery.Encoded

/**
 * One page of a chunk listing; `nextCursor` is absent on the last page.
 *
 * @since 0.2.0
 */
export interface ChunkPage {
  readonly chunks: ReadonlyArray<ChunkInfo>
  readonly nextCursor?: string | undefined
}

/**
 * A chunk's result, as the finalize step reads them (in chunk-id order).
 *
 * @since 0.2.0
 */
export interface ChunkResult {
  readonly id: number
  readonly result: Json
}
