/**
 * The job store on `@effect/sql`: an SQLite file (the embedded default: one file, nothing to set up) or
 * PostgreSQL (several orchestrator processes sharing one store). It passes the same contract as the memory
 * store, and its jobs outlive the process (`durable: true`).
 *
 * Guarantees:
 * - Every change of state is one `UPDATE ... WHERE id = ? AND state IN (...)` statement (and `lease = ?` when
 *   the caller holds a lease): an atomic compare-and-set, also between processes sharing the database, so
 *   racing changes have exactly one winner, a write under a stale lease never lands, and a stored terminal
 *   state never changes. It clears any stop request of the job. The changes of one turn of the event loop
 *   that write nothing else (of distinct jobs) are one `UPDATE ... FROM (VALUES ...)`, a row each under the
 *   same conditions, each answered on its own: one refused leaves the others applied. On PostgreSQL that
 *   statement also sends the group's `NOTIFY`, and so does a group of creates, itself one statement.
 * - Progress is coalesced: `updateProgress` only records the latest counts, and the completed chunk ids
 *   since the last write, in memory; a background fiber writes every job with news in one transaction each
 *   `flushInterval`, and once more when the layer closes. The checkpoint (a job's completed chunk ids) is
 *   kept as compact ranges (`0-99,120`), so a job of a million chunks completed mostly in order stays a
 *   record of a few bytes. `get`, `list` and `getCheckpoint` of the same process see the buffered progress,
 *   and a transition writes it (or the counts it is given) in the same transaction, so closing the layer
 *   loses no progress. A crash loses at most one flush window.
 * - Chunk records (a chunk's result, failure and attempts; see `ChunkRecord`) are buffered with the progress
 *   and written by the same flush or transition, in its transaction, into `effect_jobs_chunks`: no transaction
 *   per chunk. `listChunks` and `chunkResults` of the same process see the buffered ones.
 * - A checkpoint that does not read back (a corrupt record) fails the operation that needs it with a
 *   `RepositoryError`; it is never taken as empty, nor overwritten.
 * - `claimOrphans` is one `UPDATE ... RETURNING` statement, so managers claiming at once never share a job.
 * - A stop request is stored on the job (only a `running` job with an owner takes one; any transition
 *   clears it). A request already stored is kept as it is, except that a cancel replaces a pause. Each
 *   stored request reaches each `stopRequests` stream of the job's owner once, from any process, also when
 *   it was stored before the stream started: SQLite looks for requests when the file changed
 *   (`PRAGMA data_version`, every `stopPollInterval`) and at once after a request made through the same
 *   store; PostgreSQL is notified (`LISTEN`/`NOTIFY` on a channel per schema) and also looks every
 *   `stopPollInterval` in case a notification was lost. A failed look is logged and tried again.
 * - `claimable` is bumped when a job is stored without an owner, a client resumes a job (it is left without
 *   an owner) or an owner retires: by this store, and on PostgreSQL by the other stores of the schema too
 *   (notified; a lost notification is not made up, the managers' periodic recovery claims the job then).
 *   On SQLite only this store's own writes bump it.
 * - Opening refuses (with a `RepositoryError`, before writing anything) a database that is not an
 *   effect-jobs store: a file that is not SQLite, an SQLite file holding another application's tables, a
 *   table named like ours that we did not create, or a store written by a newer version of effect-jobs.
 *   A store written by an older version is migrated in place, in one transaction.
 *
 * @since 0.1.0
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import { existsSync } from "node:fs"
import { defaultIdleTransactionTimeout, withIdleTransactionTimeout } from "./internal/pgSession.js"
import * as ChangeFeed from "./internal/changeFeed.js"
import type { RecordWindow } from "./internal/chunkListing.js"
import { chunkIdsOf, pageChunks, recordsAfter, streamedIds } from "./internal/chunkListing.js"
import * as GroupCommit from "./internal/groupCommit.js"
import { makeStatus } from "./internal/jobStatus.js"
import type { CursorKey } from "./internal/cursor.js"
import { decodeCursor, encodeCursor } from "./internal/cursor.js"
import type { Taken } from "./internal/progressBuffer.js"
import { ProgressBuffer } from "./internal/progressBuffer.js"
import { RangeSet } from "./internal/rangeSet.js"
import { importPeer } from "./internal/optionalPeer.js"
import { logFailure, loop } from "./internal/supervised.js"
import { fn } from "./internal/tracing.js"
import type { Tables } from "./internal/sqlMigrations.js"
import { applicationName, migrations, schemaVersion, tableNames, tablesIn } from "./internal/sqlMigrations.js"
import type { Chunk, ChunkResult, JobId, JobPage, JobState, ListChunksQuery, ListQuery } from "./Job.js"
import {
  canTransition,
  isStreamSource,
  Json,
  isTerminal,
  JobId as JobIdSchema,
  JobSpec,
  JobState as JobStateSchema,
  JobStatus,
  progressOf,
  terminalStates
} from "./Job.js"
import { describeError, InvalidOption, JobNotFound, LeaseLost, RepositoryError } from "./JobError.js"
import type {
  ChunkRecord,
  FindQuery,
  HeldLease,
  NewJob,
  ProgressUpdate,
  PruneQuery,
  ResultsQuery,
  StopRequest,
  TransitionPatch,
  TransitionResult
} from "./JobRepository.js"
import {
  countsOverTotal,
  defaultListLimit,
  duplicateJob,
  invalidCounts,
  invalidNewJob,
  JobRepository,
  newJobStatus,
  notDeletable
} from "./JobRepository.js"

/**
 * Options of {@link make} and {@link layerWith}.
 *
 * @since 0.1.0
 */
export interface MakeOptions {
  /** How often buffered progress is written (default 200 millis). A positive, finite duration. */
  readonly flushInterval?: Duration.DurationInput | undefined
  /**
   * PostgreSQL only: the schema that holds the tables, created if missing (default: the connection's
   * current schema). 1 to 63 characters of `A-Z`, `a-z`, `0-9` or `_`, not starting with a digit.
   */
  readonly schema?: string | undefined
  /**
   * How often `stopRequests` looks for requests made by other processes: SQLite checks whether the file
   * changed this often (default 10 millis); PostgreSQL, which is notified of them, re-reads them this
   * often in case a notification was lost (default 1 second). A positive, finite duration.
   */
  readonly stopPollInterval?: Duration.DurationInput | undefined
}

/**
 * Options of {@link layerSqlite}.
 *
 * @since 0.1.0
 */
export interface SqliteOptions {
  /** The database file, created and migrated on first use (its directory must exist). */
  readonly filename: string
  /** How often buffered progress is written (default 200 millis). */
  readonly flushInterval?: Duration.DurationInput | undefined
  /** How often other processes' stop requests are looked for (default 10 millis). */
  readonly stopPollInterval?: Duration.DurationInput | undefined
  /**
   * `false`: only open a file that already is an effect-jobs store; a missing file, an empty one (zero bytes
   * included) or any other database is refused with a `RepositoryError` and nothing is written to it (as
   * the CLI does). Default `true`: a missing or empty file becomes a store.
   */
  readonly create?: boolean | undefined
  /**
   * SQLite's `synchronous` setting for the store's connection: when a commit waits for the disk.
   * - `"normal"` (the default): a commit writes to the write-ahead log without waiting for the disk. A crash
   *   of the process loses nothing that was committed: every job a `submitJob` acknowledged, every change of
   *   state, is in the file. A power loss or an operating-system crash may lose the last transactions
   *   committed before it (the file stays consistent: they are lost whole, never torn).
   * - `"full"`: every commit waits until the log is on the disk, so a power loss loses nothing committed
   *   either, at the cost of one disk flush per commit (grouped submits share one).
   */
  readonly synchronous?: "normal" | "full" | undefined
}

/**
 * Options of {@link layerPg}.
 *
 * @since 0.1.0
 */
export interface PgOptions {
  /** A connection URL, e.g. `postgres://user:password@host:5432/database`. */
  readonly url: string
  /** The schema that holds the tables, created if missing (default: the connection's current schema). */
  readonly schema?: string | undefined
  /** How long connecting may take before the layer fails (default 5 seconds). */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** How often buffered progress is written (default 200 millis). */
  readonly flushInterval?: Duration.DurationInput | undefined
  /** How often stop requests are re-read in case a notification was lost (default 1 second). */
  readonly stopPollInterval?: Duration.DurationInput | undefined
  /**
   * `false`: only open a schema that already holds an effect-jobs store; anything else is refused with a
   * `RepositoryError` and nothing is created (as the CLI does). Default `true`.
   */
  readonly create?: boolean | undefined
}

const defaultFlushInterval = Duration.millis(200)
const defaultConnectTimeout = Duration.seconds(5)
const defaultStopPollInterval = { sqlite: Duration.millis(10), pg: Duration.seconds(1) } as const
/** The most jobs one statement of `prune` deletes. */
const pruneBatch = 1_000
/** The most jobs one INSERT statement writes (12 values each: well within SQLite's and PostgreSQL's limits). */
const insertBatch = 500
/** The most transitions one grouped statement writes (16 values each). */
const transitionBatch = 500

/** How a store is opened: what to call it in errors, whether it must hold nothing else, and its journal. */
interface OpenOptions {
  readonly label: string
  readonly exclusive: boolean
  readonly wal: boolean
  /** Whether a database without a store becomes one (else it is refused, and nothing is written). */
  readonly create: boolean
  /** SQLite: the `synchronous` setting of the connection (left as it is when absent). */
  readonly synchronous?: "normal" | "full" | undefined
}

type Dialect = "sqlite" | "pg"

// PostgreSQL returns BIGINT columns as strings.
const Integer = Schema.Union(Schema.Number, Schema.NumberFromString)

const JobRow = Schema.Struct({
  id: JobIdSchema,
  name: Schema.NullOr(Schema.String),
  state: JobStateSchema,
  total_chunks: Integer,
  completed_chunks: Integer,
  failed_chunks: Integer,
  error: Schema.NullOr(Schema.String),
  created_at: Integer,
  updated_at: Integer,
  started_at: Schema.NullOr(Integer),
  finished_at: Schema.NullOr(Integer),
  owner: Schema.NullOr(Schema.String),
  phase: Schema.NullOr(Schema.Literal("finalizing")),
  retry_of: Schema.NullOr(JobIdSchema),
  lease: Integer,
  partial_chunks: Schema.Number,
  streaming: Integer
})
type JobRow = typeof JobRow.Type

const jobColumns = "id, name, state, total_chunks, completed_chunks, failed_chunks, error, created_at, updated_at," +
  " started_at, finished_at, owner, phase, retry_of, lease, partial_chunks, streaming"

const decodeJobRow = Schema.decodeUnknown(JobRow)

/** The columns a grouped transition returns (`jobColumns`, then the checkpoint), in order. */
const groupedColumns = [...jobColumns.split(", "), "checkpoint"]

/** A row a grouped transition returned as an array of values, as an object by column. */
const returnedRow = (values: ReadonlyArray<unknown>): Record<string, unknown> => {
  const row: Record<string, unknown> = {}
  for (let index = 0; index < groupedColumns.length; index++) row[groupedColumns[index]!] = values[index]
  return row
}

/** A new job checked and ready to insert: its encoded spec and the status it is stored with. */
interface Prepared {
  readonly job: NewJob
  readonly spec: string
  readonly status: JobStatus
}

/** A compare-and-set asked of the store: from one of `allowed` to `to`, with `patch`. */
interface TransitionRequest {
  readonly id: JobId
  readonly allowed: ReadonlyArray<JobState>
  readonly to: JobState
  readonly patch: TransitionPatch | undefined
}

const encodeSpec = Schema.encode(Schema.parseJson(JobSpec))
const decodeSpec = Schema.decodeUnknown(Schema.parseJson(JobSpec))

/**
 * The status of a row (both decoding paths end here, so they cannot disagree on a column). `checked`: the
 * values were already checked by hand, so the validating constructor is skipped.
 */
const statusFromRow = (row: JobRow, metadata: JobStatus["metadata"], checked: boolean): JobStatus => {
  const status = makeStatus({
    id: row.id,
    name: row.name ?? undefined,
    state: row.state,
    // A streamed job has no total until its stream has ended.
    totalChunks: row.streaming === 1 ? undefined : row.total_chunks,
    completedChunks: row.completed_chunks,
    failedChunks: row.failed_chunks,
    progress: progressOf(
      row.streaming === 1 ? undefined : row.total_chunks,
      row.completed_chunks,
      row.failed_chunks,
      row.state,
      row.partial_chunks
    ),
    error: row.error ?? undefined,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    startedAt: row.started_at === null ? undefined : new Date(row.started_at),
    finishedAt: row.finished_at === null ? undefined : new Date(row.finished_at),
    owner: row.owner ?? undefined,
    lease: row.lease,
    phase: row.phase ?? undefined,
    retryOf: row.retry_of ?? undefined,
    metadata
  })
  // Unchecked values go through the validating constructor.
  return checked ? status : new JobStatus(status)
}

/** The constructor validates every field (integers, progress within 0..100, metadata an object, ...). */
const statusOf = (row: JobRow, metadata: string | null) =>
  Effect.try({
    try: () => statusFromRow(row, metadata === null ? undefined : JSON.parse(metadata), false),
    catch: (cause) => cause
  })

const jobIdPattern = /^[A-Za-z0-9_-]{1,128}$/
const stateNames: ReadonlySet<unknown> = new Set(JobStateSchema.literals)

/** A non-negative integer column (PostgreSQL returns BIGINT as a string); `undefined` otherwise. */
const countOf = (value: unknown): number | undefined => {
  const number = typeof value === "number" ? value : typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : -1
  return Number.isSafeInteger(number) && number >= 0 ? number : undefined
}
const textOf = (value: unknown): string | undefined | false =>
  value === null ? undefined : typeof value === "string" ? value : false

/**
 * The status of a well-formed row, checked column by column by hand (a row is read on every transition and
 * every listed job: the Schema decode and the validating constructor were a tenth of the time of a job).
 * `undefined` when anything is unusual; the Schema path then decodes it, or names what is wrong.
 */
const fastStatus = (input: unknown): JobStatus | undefined => {
  if (typeof input !== "object" || input === null) return undefined
  const row = input as Record<string, unknown>
  const { id, state } = row
  if (typeof id !== "string" || !jobIdPattern.test(id) || !stateNames.has(state)) return undefined
  const total = countOf(row["total_chunks"])
  const completed = countOf(row["completed_chunks"])
  const failed = countOf(row["failed_chunks"])
  const created = countOf(row["created_at"])
  const updated = countOf(row["updated_at"])
  const lease = countOf(row["lease"])
  const streaming = countOf(row["streaming"])
  const started = row["started_at"] === null ? null : countOf(row["started_at"])
  const finished = row["finished_at"] === null ? null : countOf(row["finished_at"])
  const name = textOf(row["name"])
  const error = textOf(row["error"])
  const owner = textOf(row["owner"])
  const retryOf = textOf(row["retry_of"])
  const phase = row["phase"]
  // PostgreSQL returns a DOUBLE PRECISION as a number, SQLite a REAL as a number.
  const partial = row["partial_chunks"]
  const metadataText = row["metadata"]
  let metadata: JobStatus["metadata"] = undefined
  if (typeof metadataText === "string") {
    let parsed: unknown
    try {
      parsed = JSON.parse(metadataText)
    } catch {
      return undefined
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined
    metadata = parsed as JobStatus["metadata"]
  } else if (metadataText !== undefined && metadataText !== null) return undefined
  if (
    typeof partial !== "number" || !Number.isFinite(partial) || partial < 0 ||
    total === undefined || completed === undefined || failed === undefined || created === undefined ||
    updated === undefined || lease === undefined || started === undefined || finished === undefined ||
    (streaming !== 0 && streaming !== 1) ||
    name === false || error === false || owner === false || retryOf === false ||
    (retryOf !== undefined && !jobIdPattern.test(retryOf)) || (phase !== null && phase !== "finalizing") ||
    (streaming === 0 && completed + failed > total)
  ) return undefined
  return statusFromRow({
    id: id as JobId,
    name: name ?? null,
    state: state as JobState,
    total_chunks: total,
    completed_chunks: completed,
    failed_chunks: failed,
    error: error ?? null,
    created_at: created,
    updated_at: updated,
    started_at: started,
    finished_at: finished,
    owner: owner ?? null,
    phase,
    retry_of: (retryOf ?? null) as JobId | null,
    lease,
    partial_chunks: partial,
    streaming
  }, metadata, true)
}

const decodeStatus = (operation: string, row: unknown): Effect.Effect<JobStatus, RepositoryError> => {
  const fast = fastStatus(row)
  return fast !== undefined ? Effect.succeed(fast) : decodeStatusSlowly(operation, row)
}

const decodeStatusSlowly = (operation: string, row: unknown): Effect.Effect<JobStatus, RepositoryError> =>
  decodeJobRow(row).pipe(
    Effect.flatMap((decoded) =>
      statusOf(decoded, Predicate.hasProperty(row, "metadata") && typeof row.metadata === "string" ? row.metadata : null)
    ),
    Effect.mapError((cause) =>
      new RepositoryError({ operation, detail: `a stored job does not decode: ${describeError(cause)}`, cause })
    )
  )

const ChunkRow = Schema.Struct({
  chunk_id: Integer,
  state: Schema.Literal("completed", "failed"),
  attempts: Integer,
  result: Schema.NullOr(Schema.String),
  error: Schema.NullOr(Schema.String),
  started_at: Integer,
  finished_at: Integer
})
const decodeChunkRows = Schema.decodeUnknown(Schema.Array(ChunkRow))

/**
 * Stored and buffered records after the same id, merged in id order (a buffered record is newer), cut where
 * either window stops being known.
 */
const mergeRecords = (stored: RecordWindow, buffered: RecordWindow, limit: number): RecordWindow => {
  if (buffered.records.length === 0 && buffered.complete) return stored
  const byId = new Map<number, ChunkRecord>()
  for (const record of stored.records) byId.set(record.id, record)
  for (const record of buffered.records) byId.set(record.id, record)
  const lastOf = (window: RecordWindow) =>
    window.complete ? Number.POSITIVE_INFINITY : window.records[window.records.length - 1]?.id ?? Number.POSITIVE_INFINITY
  const known = Math.min(lastOf(stored), lastOf(buffered))
  const records = [...byId.values()].filter((record) => record.id <= known).sort((a, b) => a.id - b.id).slice(0, limit)
  const complete = known === Number.POSITIVE_INFINITY && byId.size <= limit
  return { records, complete }
}
const decodeResult = Schema.decodeUnknown(Schema.parseJson(Json))
const encodeResult = Schema.encodeSync(Schema.parseJson(Json))

/** A stored chunk record; its result is decoded (and checked) as JSON. */
const recordOf = (operation: string, id: JobId) => (row: typeof ChunkRow.Type): Effect.Effect<ChunkRecord, RepositoryError> =>
  Effect.map(
    row.result === null
      ? Effect.succeed(undefined)
      : Effect.mapError(decodeResult(row.result), rowFailure(operation, `the result of chunk ${row.chunk_id} of job ${id}`)),
    (result): ChunkRecord => ({
      id: row.chunk_id,
      state: row.state,
      attempts: row.attempts,
      ...(result === undefined ? {} : { result }),
      ...(row.error === null ? {} : { error: row.error }),
      startedAt: row.started_at,
      finishedAt: row.finished_at
    })
  )

/** The rows of chunk records, for an insert. */
const chunkRows = (id: JobId, records: Iterable<ChunkRecord>) =>
  Array.from(records, (record) => ({
    job_id: id,
    chunk_id: record.id,
    state: record.state,
    attempts: record.attempts,
    result: record.result === undefined ? null : encodeResult(record.result),
    error: record.error ?? null,
    started_at: record.startedAt,
    finished_at: record.finishedAt
  }))

/** How many jobs' chunk ids a store keeps for listings. */
const chunkIdsCached = 8

/** The most chunk records one insert writes (8 parameters each). */
const recordBatch = 500

const TotalRow = Schema.Struct({ total_chunks: Integer, state: JobStateSchema, streaming: Integer })

const PulledRow = Schema.Struct({ chunk_id: Integer, payload: Schema.String })
const decodePulledRows = Schema.decodeUnknown(Schema.Array(PulledRow))

/** The most ranges of chunk ids one DELETE of pulled chunks names (2 parameters each). */
const rangeBatch = 200
const decodeTotalRow = Schema.decodeUnknown(TotalRow)

const HeartbeatRow = Schema.Struct({ heartbeat_at: Integer })
const decodeHeartbeatRow = Schema.decodeUnknown(HeartbeatRow)

const ClaimedRow = Schema.Struct({ id: JobIdSchema, created_at: Integer })
const decodeClaimedRows = Schema.decodeUnknown(Schema.Array(ClaimedRow))

const LeaseRow = Schema.Struct({ id: JobIdSchema, lease: Integer })
const decodeLeaseRows = Schema.decodeUnknown(Schema.Array(LeaseRow))

const StopRow = Schema.Struct({
  id: JobIdSchema,
  stop_requested: Schema.Literal("cancel", "pause"),
  stop_request_id: Schema.String
})
const decodeStopRows = Schema.decodeUnknown(Schema.Array(StopRow))

const rowFailure = (operation: string, what: string) => (cause: unknown) =>
  new RepositoryError({ operation, detail: `${what} does not decode: ${describeError(cause)}`, cause })

/**
 * The stored checkpoint of a job: NULL is empty; text that is not a well-formed range list is an error,
 * never an empty set.
 */
const readCheckpoint = (operation: string, id: JobId, stored: unknown): Effect.Effect<RangeSet, RepositoryError> => {
  if (stored === null || stored === undefined) return Effect.succeed(RangeSet.empty())
  const parsed = typeof stored === "string" ? RangeSet.parse(stored) : undefined
  if (parsed !== undefined) return Effect.succeed(parsed)
  const shown = typeof stored === "string" ? JSON.stringify(stored.slice(0, 100)) : typeof stored
  return Effect.fail(
    new RepositoryError({ operation, detail: `the stored checkpoint of job ${id} is corrupt: ${shown}` })
  )
}

/** An error's message followed by the messages of its causes. */
const explain = (error: unknown): string => {
  const messages: Array<string> = []
  let current = error
  while (current !== undefined && messages.length < 4) {
    messages.push(describeError(current))
    current = Predicate.hasProperty(current, "cause") ? current.cause : undefined
  }
  return messages.join(": ")
}

const sqlFailure = (operation: string, context?: string) => (error: SqlError) =>
  new RepositoryError({
    operation,
    detail: context === undefined ? explain(error) : `${context}: ${explain(error)}`,
    cause: error
  })

const decodeDuration = (
  name: "flushInterval" | "connectTimeout" | "stopPollInterval",
  input: Duration.DurationInput | undefined,
  fallback: Duration.Duration
) => {
  const decoded = input === undefined ? Option.some(fallback) : Duration.decodeUnknown(input)
  return Option.isSome(decoded) && Duration.isFinite(decoded.value) &&
      Duration.greaterThan(decoded.value, Duration.zero)
    ? Effect.succeed(decoded.value)
    : Effect.fail(new InvalidOption({ path: [name], detail: "must be a positive, finite duration" }))
}

const schemaNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

const decodeSchemaName = (schema: string | undefined) =>
  schema === undefined || schemaNamePattern.test(schema)
    ? Effect.succeed(schema)
    : Effect.fail(
      new InvalidOption({
        path: ["schema"],
        detail: "a schema name is 1 to 63 characters of A-Z, a-z, 0-9 or '_', not starting with a digit"
      })
    )

/** Options, validated before anything is opened. */
interface Settings {
  readonly flushInterval: Duration.Duration
  readonly schema: string | undefined
  /** `undefined`: the dialect's default. */
  readonly stopPollInterval: Duration.Duration | undefined
}

const decodeOptions = (options: MakeOptions): Effect.Effect<Settings, InvalidOption> =>
  Effect.all({
    flushInterval: decodeDuration("flushInterval", options.flushInterval, defaultFlushInterval),
    schema: decodeSchemaName(options.schema),
    stopPollInterval: options.stopPollInterval === undefined
      ? Effect.succeed(undefined)
      : decodeDuration("stopPollInterval", options.stopPollInterval, Duration.zero)
  })

/**
 * The PostgreSQL channel on which the stores of a schema announce changes (channel names are identifiers:
 * at most 63 bytes).
 */
const changeChannel = (schema: string): string => {
  const name = `effect_jobs_changes_${schema}`
  return /^[A-Za-z0-9_]{1,63}$/.test(name)
    ? name
    : `effect_jobs_changes_${createHash("sha256").update(schema).digest("hex").slice(0, 40)}`
}
/**
 * Checks, reading only, that the database is empty or an effect-jobs store this code can use.
 */
const verifyStore = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  schema: string | undefined,
  tables: Tables,
  open: OpenOptions
) =>
  Effect.gen(function*() {
    const refuse = (detail: string) => new RepositoryError({ operation: "open", detail: `${open.label}: ${detail}` })
    const listed = yield* (dialect === "pg"
      ? sql<{ readonly name: string }>`SELECT table_name AS name FROM information_schema.tables
          WHERE table_schema = ${schema ?? sql.literal("current_schema()")}`
      : sql<{ readonly name: string }>`SELECT name FROM sqlite_master
          WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).pipe(
        Effect.mapError(sqlFailure(
          "open",
          dialect === "pg" ? `${open.label}: cannot list its tables` : `${open.label} is not a readable SQLite database`
        ))
      )
    const names = new Set(listed.map((row) => row.name))
    if (names.has("effect_jobs_meta")) {
      const rows = yield* sql<{ readonly key: string; readonly value: string }>`SELECT key, value FROM ${
        sql(tables.meta)
      }`.pipe(Effect.mapError(() => refuse("its table effect_jobs_meta was not created by effect-jobs")))
      const meta = new Map(rows.map((row) => [row.key, row.value]))
      if (meta.get("application") !== applicationName) {
        return yield* refuse("its table effect_jobs_meta was not created by effect-jobs")
      }
      const version = Number(meta.get("schema_version"))
      if (!Number.isSafeInteger(version) || version < 1) {
        return yield* refuse(`its schema version ${JSON.stringify(meta.get("schema_version"))} is not a version`)
      }
      if (version > schemaVersion) {
        return yield* refuse(
          `it was written by a newer effect-jobs (schema version ${version}; this version knows up to ${schemaVersion});` +
            " upgrade effect-jobs to use it"
        )
      }
      return
    }
    if (!open.create) {
      return yield* refuse(
        `it is not an effect-jobs store${names.size === 0 ? " (it is empty)" : ""}; a job manager creates one on first use`
      )
    }
    // The migrations table alone may be left over from an interrupted first start; it is ours.
    if (names.has("effect_jobs")) {
      return yield* refuse("it holds a table effect_jobs that effect-jobs did not create")
    }
    const others = Array.from(names).filter((name) => !tableNames.includes(name)).sort()
    if (open.exclusive && others.length > 0) {
      return yield* refuse(
        `it holds tables of another application (${others.join(", ")}); an effect-jobs store needs a file of its own`
      )
    }
  })

const makeService = (
  sql: SqlClient.SqlClient,
  tables: Tables,
  flushInterval: Duration.Duration,
  source: ChangeFeed.ChangeSource
) =>
  Effect.gen(function*() {
    const jobs = sql(tables.jobs)
    const specs = sql(tables.specs)
    const chunkTable = sql(tables.chunks)
    const pulledTable = sql(tables.pulled)
    const owners = sql(tables.owners)
    const columns = sql.literal(jobColumns)
    const notTerminal = sql`NOT (${sql.in("state", terminalStates)})`

    const buffer = new ProgressBuffer()
    // The totals of jobs this process knows not to be terminal (a total never changes), so that
    // `updateProgress` can check its counts without a read.
    const totals = new Map<JobId, number>()
    /**
     * Jobs whose stored checkpoint this process knows to be empty, with the lease they had when it was: set when
     * this process creates a job without one and carried over by its own transitions that add no chunk; dropped
     * whenever chunk ids are written, the job is claimed, or anything else could have written them.
     */
    const emptyCheckpoints = new Map<JobId, number>()
    const feed = yield* ChangeFeed.make(sql, source)

    const reading = <A, E>(read: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.acquireUseRelease(
        Effect.sync(() => buffer.startRead()),
        () => read,
        () => Effect.sync(() => buffer.endRead())
      )
    // On SQLite every statement runs synchronously, on the one thread: a transaction that yielded to another
    // fiber between its statements could leave a second connection to the same file (another store in this
    // process) blocked on the thread until its busy timeout. So a transaction runs without yielding.
    const transaction = <A, E, R>(
      operation: string,
      effect: Effect.Effect<A, E, R>
    ): Effect.Effect<A, Exclude<E, SqlError> | RepositoryError, R> =>
      (source.dialect === "sqlite"
        ? Effect.withMaxOpsBeforeYield(sql.withTransaction(effect), Number.MAX_SAFE_INTEGER)
        : sql.withTransaction(effect)).pipe(
          Effect.mapError((error) =>
            Predicate.isTagged(error, "SqlError")
              ? sqlFailure(operation)(error as SqlError)
              : error as Exclude<E, SqlError>
          )
        )
    // Serializes flushes, transitions and checkpoint reads of this process: a flush never writes counts older
    // than a transition's, and a checkpoint read sees every chunk id either stored or buffered.
    const writeLock = yield* Effect.makeSemaphore(1)

    const selectStatus = (operation: string, id: JobId) =>
      reading(Effect.gen(function*() {
        const rows = yield* sql`SELECT ${columns}, (SELECT s.metadata FROM ${specs} AS s WHERE s.id = j.id) AS metadata
          FROM ${jobs} AS j WHERE id = ${id}`.pipe(
          Effect.mapError(sqlFailure(operation))
        )
        return rows[0] === undefined
          ? Option.none<JobStatus>()
          : Option.some(buffer.overlay(yield* decodeStatus(operation, rows[0])))
      }))

    /** Merges chunk ids into the stored checkpoint of a job whose row the current transaction has locked. */
    const mergeCheckpoint = (operation: string, id: JobId, stored: unknown, chunks: RangeSet) =>
      Effect.flatMap(readCheckpoint(operation, id, stored), (checkpoint) =>
        sql`UPDATE ${jobs} SET checkpoint = ${checkpoint.union(chunks).toString()} WHERE id = ${id}`.pipe(
          Effect.mapError(sqlFailure(operation))
        ))

    /** Writes chunk records (a new record of a chunk replaces its older one). */
    const writeRecords = (operation: string, id: JobId, records: Map<number, ChunkRecord>) => {
      const rows = chunkRows(id, records.values())
      return Effect.forEach(
        Array.from({ length: Math.ceil(rows.length / recordBatch) }, (_, index) =>
          rows.slice(index * recordBatch, (index + 1) * recordBatch)),
        (part) =>
          sql`INSERT INTO ${chunkTable} ${sql.insert(part)} ON CONFLICT (job_id, chunk_id) DO UPDATE SET
            state = excluded.state, attempts = excluded.attempts, result = excluded.result, error = excluded.error,
            started_at = excluded.started_at, finished_at = excluded.finished_at`.pipe(
            Effect.mapError(sqlFailure(operation))
          ),
        { discard: true }
      )
    }

    /**
     * Writes the chunks a streamed job's write takes as pulled (a row each), in the caller's transaction.
     * Nothing for another job.
     */
    const writePulled = (operation: string, id: JobId, taken: Taken) =>
      Effect.gen(function*() {
        if (!taken.streamed) return
        const rows = taken.pulled === undefined ? [] : Array.from(taken.pulled.values(), (chunk) => ({
          job_id: id,
          chunk_id: chunk.id,
          payload: JSON.stringify(chunk.payload)
        }))
        for (let offset = 0; offset < rows.length; offset += recordBatch) {
          yield* sql`INSERT INTO ${pulledTable} ${sql.insert(rows.slice(offset, offset + recordBatch))}
            ON CONFLICT (job_id, chunk_id) DO NOTHING`.pipe(Effect.mapError(sqlFailure(operation)))
        }
      })

    /**
     * Removes the pulled rows of the chunks a streamed job's write takes as completed (by ranges of ids), in
     * the caller's transaction, once their ids are in the checkpoint: a chunk is always in one or the other.
     */
    const deleteCompletedPulled = (operation: string, id: JobId, taken: Taken) =>
      Effect.gen(function*() {
        if (!taken.streamed) return
        const ranges = [...taken.chunks.ranges()]
        for (let offset = 0; offset < ranges.length; offset += rangeBatch) {
          const part = ranges.slice(offset, offset + rangeBatch)
          yield* sql`DELETE FROM ${pulledTable} WHERE job_id = ${id} AND (${
            sql.or(part.map(([start, end]) => sql`chunk_id BETWEEN ${start} AND ${end}`))
          })`.pipe(Effect.mapError(sqlFailure(operation)))
        }
      })

    /** The condition that a write holds `lease` (none for an unfenced write). */
    const fenced = (lease: number | undefined): ReadonlyArray<Fragment> => lease === undefined ? [] : [sql`lease = ${lease}`]

    // --- Progress flush: the buffered progress of every job, in one transaction each `flushInterval` ---

    /**
     * Writes one job's progress, fenced by the lease it was reported under: its counts unless it is terminal,
     * and its chunk ids into its checkpoint in any state (they completed before it ended). The first statement
     * writes, so on SQLite the transaction holds the write lock before it reads the checkpoint. `"lost"`: the
     * job's lease moved on, and nothing was written.
     */
    const writeProgress = (taken: Taken) =>
      Effect.gen(function*() {
        const rows = yield* sql<{ readonly state: JobState; readonly checkpoint: unknown }>`UPDATE ${jobs} SET
            completed_chunks = CASE WHEN ${notTerminal} THEN ${taken.completedChunks} ELSE completed_chunks END,
            failed_chunks = CASE WHEN ${notTerminal} THEN ${taken.failedChunks} ELSE failed_chunks END,
            partial_chunks = CASE WHEN ${notTerminal} THEN ${taken.partialChunks} ELSE partial_chunks END,
            updated_at = CASE WHEN ${notTerminal} THEN ${taken.at} ELSE updated_at END,
            phase = CASE WHEN ${notTerminal} THEN COALESCE(${taken.phase ?? null}, phase) ELSE phase END${
          taken.totalChunks === undefined ? sql`` : sql`, total_chunks = ${taken.totalChunks}, streaming = 0`
        }
          WHERE ${sql.and([sql`id = ${taken.id}`, ...fenced(taken.lease)])}
          RETURNING state, checkpoint`.pipe(Effect.mapError(sqlFailure("flush")))
        const row = rows[0]
        if (row === undefined) {
          if (taken.lease === undefined) return { taken, outcome: "gone" } as const
          const exists = yield* sql`SELECT id FROM ${jobs} WHERE id = ${taken.id}`.pipe(Effect.mapError(sqlFailure("flush")))
          return { taken, outcome: exists.length === 0 ? "gone" : "lost" } as const
        }
        if (taken.records !== undefined) yield* writeRecords("flush", taken.id, taken.records)
        yield* writePulled("flush", taken.id, taken)
        if (taken.chunks.size > 0) {
          const merged = yield* Effect.either(mergeCheckpoint("flush", taken.id, row.checkpoint, taken.chunks))
          // A corrupt checkpoint keeps its chunk ids buffered, and their pulled rows stored (it is reported); the
          // other jobs are written.
          if (merged._tag === "Left") return { taken, outcome: "failed", error: merged.left } as const
          yield* deleteCompletedPulled("flush", taken.id, taken)
        }
        return { taken, outcome: isTerminal(row.state) ? "terminal" : "written" } as const
      })

    const flush = writeLock.withPermits(1)(Effect.suspend(() => {
      const batch = buffer.takeNews()
      if (batch.length === 0) return Effect.void
      for (const taken of batch) if (taken.chunks.size > 0) emptyCheckpoints.delete(taken.id)
      const ids = batch.map((taken) => taken.id).join(",")
      return transaction("flush", Effect.forEach(batch, writeProgress)).pipe(
        // Any failure, a defect included (a failed COMMIT is one), gives the batch back for the next flush; the
        // caller logs the cause, this names the jobs.
        Effect.onError((cause) =>
          Effect.zipRight(
            Effect.sync(() => batch.forEach((taken) => buffer.giveBack(taken))),
            Cause.isInterruptedOnly(cause)
              ? Effect.void
              : Effect.logWarning(`effect-jobs: the progress of jobs ${ids} could not be written; it stays buffered`)
          )
        ),
        Effect.annotateLogs("jobIds", ids),
        Effect.flatMap((results) => {
          const failures: Array<RepositoryError> = []
          const lost: Array<JobId> = []
          for (const result of results) {
            const taken = result.taken
            switch (result.outcome) {
              case "gone": {
                buffer.forget(taken.id, taken.entry)
                totals.delete(taken.id)
                break
              }
              case "lost": {
                buffer.markLost(taken.id, taken.lease!)
                totals.delete(taken.id)
                lost.push(taken.id)
                break
              }
              case "failed": {
                // The counts are written; the chunk ids stay, and are tried again with the next report.
                buffer.giveBack(taken)
                buffer.markWritten(taken)
                failures.push(result.error)
                break
              }
              case "terminal": {
                totals.delete(taken.id)
                buffer.markWritten(taken)
                break
              }
              case "written": {
                buffer.markWritten(taken)
              }
            }
          }
          buffer.prune()
          return Effect.all([
            feed.announce("*"),
            failures.length === 0 ? Effect.void : Effect.logWarning(
              "effect-jobs: some checkpoints could not be written; their chunk ids stay buffered",
              failures
            ),
            lost.length === 0 ? Effect.void : Effect.logWarning(
              `effect-jobs: jobs ${lost.join(", ")} are held by a newer lease (another manager took them over);` +
                " this process's progress of them is dropped"
            )
          ], { discard: true })
        })
      )
    }))
    // Uninterruptible: a shutdown waits for a flush under way instead of cutting it off.
    const flushNow = Effect.uninterruptible(flush)
    // Finalizers run last-added first: the flush fiber is interrupted, then the final flush runs.
    yield* Effect.addFinalizer(() =>
      logFailure("writing buffered progress at shutdown failed; the last flush window is lost")(flushNow)
    )
    yield* Effect.forkScoped(
      loop(flushNow, { module: "SqlJobRepository", name: "writing buffered progress", spacing: flushInterval, delayFirst: true })
    )

    // --- Transitions: one compare-and-set each, fenced when the caller holds a lease; those of one turn of the
    // event loop share a transaction, and those that need no statement of their own share one statement ---

    /**
     * A transition made ready to write, with this process's buffered progress of the job (reported under the
     * same lease) taken: its counts (unless the patch has its own) go in the compare-and-set, its chunk ids are
     * merged into the checkpoint in the same transaction. A result of `none`: it did not apply (the state is
     * not in `allowed`, the lease is not the patch's, the job is gone, or the counts would exceed the total).
     * Written under the write lock:
     * - `grouped`: its values in the grouped compare-and-set (see `writeGrouped`), when its compare-and-set is
     *   all it writes (no chunk record, no pulled chunk, no chunk id to merge into a stored checkpoint);
     * - `inline`: whether its chunk ids become the checkpoint in its compare-and-set (see below);
     * - `fromGroup`: its result once the grouped statement returned its row (`undefined`: it did not apply, or
     *   with `inline`, in a transaction, the stored checkpoint was not empty: then it is made again the usual way);
     * - `alone`: its result from statements of its own, in its group's transaction or (`single`) in a
     *   transaction of its own only when it makes more than one statement;
     * - then `committed` (the bookkeeping of the write here) or `rolledBack` (the buffered progress it took
     *   goes back), whichever the transaction did.
     */
    const planTransition = ({ allowed, id, patch, to }: TransitionRequest) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = buffer.get(id)
        const sameLease = entry !== undefined &&
          (patch?.lease === undefined || entry.lease === undefined || entry.lease === patch.lease)
        const taken = entry !== undefined && sameLease && ProgressBuffer.isPending(entry) ? buffer.take(id, entry) : undefined
        const completed = patch?.completedChunks ?? taken?.completedChunks
        const failed = patch?.failedChunks ?? taken?.failedChunks
        // `undefined`: the stored one is kept.
        const ownerValue = patch?.owner === undefined ? undefined : patch.owner
        const phaseValue = to !== "running" || patch?.phase === null ? null : patch?.phase ?? taken?.phase
        const chunks = taken !== undefined && taken.chunks.size > 0 ? taken.chunks : undefined
        const records = taken?.records
        const pulled = taken !== undefined && taken.streamed && ((taken.pulled?.size ?? 0) > 0 || chunks !== undefined)
          ? taken
          : undefined
        const startedAt = to === "running" ? now : null
        const finishedAt = isTerminal(to) ? now : null
        // A checkpoint known to be empty (see `emptyCheckpoints`) is written inline, in the compare-and-set, which
        // then applies only while the stored checkpoint is empty; if it turns out not to be (another process
        // wrote it), the transition is made again the usual way.
        const inline = chunks !== undefined && records === undefined && pulled === undefined &&
            patch?.lease !== undefined && emptyCheckpoints.get(id) === patch.lease
          ? chunks.toString()
          : undefined
        /** The compare-and-set (with `inline`, the chunk ids become the checkpoint), then the other statements. */
        const write = (inline: string | undefined) =>
          Effect.gen(function*() {
            // Its fragments are made here, when it is written alone (most transitions are grouped).
            const completedValue = completed === undefined ? sql`completed_chunks` : sql`${completed}`
            const failedValue = failed === undefined ? sql`failed_chunks` : sql`${failed}`
            // A streamed job whose stream has not ended has no total to check against.
            const withinTotal = completed !== undefined && failed !== undefined
              ? [sql`(streaming = 1 OR ${completed + failed} <= total_chunks)`]
              : completed !== undefined || failed !== undefined
              ? [sql`(streaming = 1 OR ${completedValue} + ${failedValue} <= total_chunks)`]
              : []
            const owner = ownerValue === undefined ? sql`owner` : sql`${ownerValue}`
            const phase = phaseValue === undefined ? sql`phase` : sql`${phaseValue}`
            const total = taken?.totalChunks === undefined ? sql`` : sql`total_chunks = ${taken.totalChunks}, streaming = 0,`
            const rows = yield* sql`UPDATE ${jobs} SET
                ${inline === undefined ? sql`` : sql`checkpoint = ${inline},`}
                ${total}
                state = ${to},
                completed_chunks = ${completedValue},
                failed_chunks = ${failedValue},
                error = COALESCE(${patch?.error ?? null}, error),
                owner = ${owner},
                phase = ${phase},
                lease = lease + 1,
                partial_chunks = 0,
                stop_requested = NULL,
                stop_request_id = NULL,
                updated_at = ${now},
                started_at = COALESCE(started_at, ${startedAt}),
                finished_at = ${finishedAt}
              WHERE ${
              sql.and([
                sql`id = ${id}`,
                sql.in("state", allowed),
                ...fenced(patch?.lease),
                ...withinTotal,
                ...(inline === undefined ? [] : [sql`checkpoint IS NULL`])
              ])
            }
              RETURNING ${columns}, checkpoint`.pipe(Effect.mapError(sqlFailure("transition")))
            const row = rows[0]
            if (row === undefined) return Option.none<JobStatus>()
            if (records !== undefined) yield* writeRecords("transition", id, records)
            if (pulled !== undefined) yield* writePulled("transition", id, pulled)
            if (chunks !== undefined && inline === undefined) {
              yield* mergeCheckpoint("transition", id, row["checkpoint"], chunks)
            }
            if (pulled !== undefined) yield* deleteCompletedPulled("transition", id, pulled)
            return Option.some(yield* decodeStatus("transition", row))
          })
        const giveBack = () => {
          if (taken !== undefined) buffer.giveBack(taken)
        }
        /** Once the transaction committed: the bookkeeping of the write here. */
        const committed = (result: Option.Option<JobStatus>) => {
          if (Option.isNone(result)) return giveBack()
          const status = result.value
          if (isTerminal(status.state)) totals.delete(id)
          else totals.set(id, status.totalChunks ?? Number.POSITIVE_INFINITY)
          if (
            !isTerminal(status.state) && chunks === undefined && patch?.lease !== undefined &&
            emptyCheckpoints.get(id) === patch.lease
          ) emptyCheckpoints.set(id, status.lease)
          else emptyCheckpoints.delete(id)
          // The buffered counts (read by `overlay`) become the stored ones, unless newer ones came in meanwhile.
          if (
            entry !== undefined && buffer.get(id) === entry &&
            entry.version === (taken === undefined ? entry.written : taken.version)
          ) {
            entry.completedChunks = status.completedChunks
            entry.failedChunks = status.failedChunks
            entry.partialChunks = 0
            entry.at = now
            entry.phase = undefined
            entry.lease = status.lease
            entry.written = entry.version
          }
        }
        /** Once the transaction rolled back (or a statement of it failed): the buffered progress taken goes back. */
        const rolledBack = () => {
          giveBack()
          emptyCheckpoints.delete(id)
        }
        /** After the inline compare-and-set did not apply: the usual way. */
        const withoutInline = (single: boolean) => {
          emptyCheckpoints.delete(id)
          return single ? transaction("transition", write(undefined)) : write(undefined)
        }
        const alone = (single: boolean) =>
          inline === undefined
            ? single && (chunks !== undefined || records !== undefined || pulled !== undefined)
              ? transaction("transition", write(undefined))
              : write(undefined)
            : Effect.flatMap(write(inline), (inlined) => Option.isSome(inlined) ? Effect.succeed(inlined) : withoutInline(single))
        const fromGroup = (row: unknown) =>
          row !== undefined
            ? Effect.asSome(decodeStatus("transition", row))
            : inline !== undefined
            ? withoutInline(false)
            : Effect.succeed(Option.none<JobStatus>())
        const grouped = records === undefined && pulled === undefined && (chunks === undefined || inline !== undefined)
          ? groupedRow(
            id,
            `|${allowed.join("|")}|`,
            to,
            patch?.lease ?? null,
            completed ?? null,
            failed ?? null,
            patch?.error ?? null,
            ownerValue === undefined ? 1 : 0,
            ownerValue ?? null,
            phaseValue === undefined ? 1 : 0,
            phaseValue ?? null,
            taken?.totalChunks ?? null,
            inline ?? null,
            now,
            startedAt,
            finishedAt
          )
          : undefined
        return { id, grouped, inline: inline !== undefined, fromGroup, alone, committed, rolledBack }
      })
    type PlannedTransition = Effect.Effect.Success<ReturnType<typeof planTransition>>

    /**
     * A row of the grouped statement's `VALUES` (see `writeGrouped`), each parameter typed (PostgreSQL would take
     * an untyped one in `VALUES` as text): one fragment per row, as it is made for every job that starts or ends.
     * The allowed states go as `|pending|paused|` (state names are lowercase letters).
     */
    const groupedRow = (
      id: string,
      allowed: string,
      to: string,
      lease: number | null,
      completed: number | null,
      failed: number | null,
      error: string | null,
      keepOwner: number,
      owner: string | null,
      keepPhase: number,
      phase: string | null,
      total: number | null,
      inline: string | null,
      now: number,
      startedAt: number | null,
      finishedAt: number | null
    ) =>
      sql`(CAST(${id} AS TEXT), CAST(${allowed} AS TEXT), CAST(${to} AS TEXT), CAST(${lease} AS BIGINT),
        CAST(${completed} AS BIGINT), CAST(${failed} AS BIGINT), CAST(${error} AS TEXT), CAST(${keepOwner} AS INTEGER),
        CAST(${owner} AS TEXT), CAST(${keepPhase} AS INTEGER), CAST(${phase} AS TEXT), CAST(${total} AS BIGINT),
        CAST(${inline} AS TEXT), CAST(${now} AS BIGINT), CAST(${startedAt} AS BIGINT), CAST(${finishedAt} AS BIGINT))`

    /**
     * The compare-and-sets of `plans` (distinct jobs, each with `grouped` values) as one statement (per
     * `transitionBatch` of them): each row of `VALUES` applies to its job under exactly the conditions of the
     * statement it would make alone (`write`). With `notification` (see `ChangeFeed`), each statement also
     * selects it. Returns the rows written, by job id.
     */
    const writeGrouped = (plans: ReadonlyArray<PlannedTransition>, notification?: Fragment) =>
      Effect.gen(function*() {
        const written = new Map<string, unknown>()
        for (let offset = 0; offset < plans.length; offset += transitionBatch) {
          const part = plans.slice(offset, offset + transitionBatch)
          const values = sql`v (x_id, x_allowed, x_to, x_lease, x_completed, x_failed, x_error, x_keep_owner,
              x_owner, x_keep_phase, x_phase, x_total, x_inline, x_now, x_started, x_finished)
            AS (VALUES ${sql.csv(part.map((plan) => plan.grouped!))})`
          const update = sql`UPDATE ${jobs} SET
              checkpoint = COALESCE(x_inline, checkpoint),
              total_chunks = COALESCE(x_total, total_chunks),
              streaming = CASE WHEN x_total IS NULL THEN streaming ELSE 0 END,
              state = x_to,
              completed_chunks = COALESCE(x_completed, completed_chunks),
              failed_chunks = COALESCE(x_failed, failed_chunks),
              error = COALESCE(x_error, error),
              owner = CASE WHEN x_keep_owner = 1 THEN owner ELSE x_owner END,
              phase = CASE WHEN x_keep_phase = 1 THEN phase ELSE x_phase END,
              lease = lease + 1,
              partial_chunks = 0,
              stop_requested = NULL,
              stop_request_id = NULL,
              updated_at = x_now,
              started_at = COALESCE(started_at, x_started),
              finished_at = x_finished
            FROM v
            WHERE id = x_id
              AND x_allowed LIKE '%|' || state || '|%'
              AND (x_lease IS NULL OR lease = x_lease)
              AND (streaming = 1 OR (x_completed IS NULL AND x_failed IS NULL)
                OR COALESCE(x_completed, completed_chunks) + COALESCE(x_failed, failed_chunks) <= total_chunks)
              AND (x_inline IS NULL OR checkpoint IS NULL)
            RETURNING ${columns}, checkpoint`
          // Read as arrays: on SQLite, better-sqlite3 makes an object of the 18 columns of each row at ~40% of the
          // statement's time; here it is made in JavaScript.
          const rows = yield* (notification === undefined
            ? sql`WITH ${values} ${update}`
            : sql`WITH ${values}, written AS (${update}) SELECT written.*, ${notification} AS notified FROM written`)
            .values.pipe(Effect.mapError(sqlFailure("transition")))
          for (const row of rows) written.set(String(row[0]), returnedRow(row))
        }
        return written
      })

    /** Plans the requests of distinct jobs; one of a job named twice is planned in turn, when it is written. */
    const planDistinct = (requests: ReadonlyArray<TransitionRequest>) =>
      Effect.suspend(() => {
        const named = new Map<JobId, number>()
        for (const request of requests) named.set(request.id, (named.get(request.id) ?? 0) + 1)
        return Effect.forEach(requests, (request) =>
          named.get(request.id)! > 1 ? Effect.succeed(undefined) : planTransition(request))
      })

    /**
     * Writes `requests`, planned as `planned` (by `planDistinct`), several in one transaction: the outcome of
     * each, in order, once committed; when any statement fails (or the commit does), the transaction is rolled
     * back and nothing of it is kept here either. Of several, those that need no statement of their own are
     * written first, in one statement; the others follow one by one, in order.
     */
    const writeTransitions = (
      requests: ReadonlyArray<TransitionRequest>,
      planned: ReadonlyArray<PlannedTransition | undefined>
    ): Effect.Effect<Exit.Exit<Array<Option.Option<JobStatus>>, RepositoryError>> =>
      Effect.suspend(() => {
        // Every plan made, so that a failure gives back what each took, and the result of each request.
        const made = planned.flatMap((plan, index) => plan === undefined ? [] : [[index, plan] as const])
        const results: Array<Option.Option<JobStatus> | undefined> = Array.from({ length: requests.length })
        const single = requests.length === 1
        const all = Effect.gen(function*() {
          const grouped = planned.flatMap((plan, index) => plan?.grouped === undefined ? [] : [index])
          if (grouped.length > 1) {
            const written = yield* writeGrouped(grouped.map((index) => planned[index]!))
            for (const index of grouped) {
              results[index] = yield* planned[index]!.fromGroup(written.get(requests[index]!.id))
            }
          }
          for (let index = 0; index < requests.length; index++) {
            if (results[index] !== undefined) continue
            let own = planned[index]
            if (own === undefined) {
              own = yield* planTransition(requests[index]!)
              made.push([index, own])
            }
            results[index] = yield* own.alone(single)
          }
        })
        return Effect.flatMap(Effect.exit(single ? all : transaction("transition", all)), (exit) => {
          if (Exit.isFailure(exit)) {
            for (const [, plan] of made) plan.rolledBack()
            const failed: Exit.Exit<Array<Option.Option<JobStatus>>, RepositoryError> = Exit.failCause(exit.cause)
            return Effect.succeed(failed)
          }
          const outcomes = results.map((result) => result!)
          for (const [index, plan] of made) plan.committed(outcomes[index]!)
          const changed = outcomes.filter(Option.isSome).length
          // A job left pending without an owner (resumed by a client) may be claimed by any manager at once.
          const claimable = outcomes.some((outcome) =>
            Option.isSome(outcome) && outcome.value.state === "pending" && outcome.value.owner === undefined
          )
          const announce = claimable ? feed.announceClaimable : feed.announce
          return Effect.as(
            changed === 0 ? Effect.void : announce(requests.length === 1 ? requests[0]!.id : "*"),
            Exit.succeed(outcomes)
          )
        })
      })

    type Outcomes = ReadonlyArray<Exit.Exit<Option.Option<JobStatus>, RepositoryError>>

    /** Writes each request alone: its failure is its own. */
    const writeOneByOne = (requests: ReadonlyArray<TransitionRequest>): Effect.Effect<Outcomes> =>
      Effect.forEach(requests, (request) =>
        Effect.flatMap(planDistinct([request]), (planned) =>
          Effect.map(writeTransitions([request], planned), Exit.map((results) => results[0]!))))

    /**
     * Writes a group whose every request is in the grouped statement (at most `transitionBatch`): that
     * statement alone (atomic by itself), without a transaction around it. A request whose inline checkpoint
     * did not apply is written again alone; when the statement fails, each request is.
     */
    const writeGroupedOnly = (
      requests: ReadonlyArray<TransitionRequest>,
      planned: ReadonlyArray<PlannedTransition>
    ): Effect.Effect<Outcomes> => {
      // The statement tells the other processes itself (no statement of `announce`); a job it may leave
      // pending without an owner is announced claimable.
      const claimable = requests.some((request) => request.to === "pending" && typeof request.patch?.owner !== "string")
      const notification = feed.notification("*", claimable)
      return Effect.flatMap(Effect.exit(writeGrouped(planned, notification)), (exit) => {
        if (Exit.isFailure(exit)) {
          for (const plan of planned) plan.rolledBack()
          return writeOneByOne(requests)
        }
        let changed = false
        return Effect.tap(
          Effect.forEach(planned, (plan, index): Effect.Effect<Outcomes[number]> => {
            const row = exit.value.get(plan.id)
            if (row === undefined && plan.inline) {
              plan.rolledBack()
              return Effect.map(writeOneByOne([requests[index]!]), (outcomes) => outcomes[0]!)
            }
            return Effect.map(Effect.exit(plan.fromGroup(row)), (outcome) => {
              if (Exit.isFailure(outcome)) {
                plan.rolledBack()
                return outcome
              }
              plan.committed(outcome.value)
              changed ||= Option.isSome(outcome.value)
              return outcome
            })
          }),
          () =>
            !changed
              ? Effect.void
              : notification !== undefined
              ? feed.bump(claimable)
              : claimable
              ? feed.announceClaimable("*")
              : feed.announce("*")
        )
      })
    }

    /**
     * The transitions of one turn of the event loop, under the write lock: in one statement when none needs
     * statements of its own, else in one transaction. When that transaction fails, each of a group of several
     * is written again alone, so that a request's failure is its own.
     */
    const transitions = yield* GroupCommit.make((group: ReadonlyArray<TransitionRequest>) =>
      writeLock.withPermits(1)(Effect.flatMap(planDistinct(group), (planned): Effect.Effect<Outcomes> => {
        // More than `transitionBatch` would be several statements: they need the transaction.
        if (group.length > 1 && group.length <= transitionBatch && planned.every((plan) => plan?.grouped !== undefined)) {
          return writeGroupedOnly(group, planned as ReadonlyArray<PlannedTransition>)
        }
        return Effect.flatMap(writeTransitions(group, planned), (exit) => {
          if (Exit.isSuccess(exit)) return Effect.succeed(exit.value.map((result) => Exit.succeed(result)))
          if (group.length === 1) return Effect.succeed([Exit.failCause(exit.cause)])
          return writeOneByOne(group)
        })
      }))
    )

    /** The stored records of a job after the chunk `after` (only those with a result when `results`). */
    const selectRecords = (operation: string, id: JobId, after: number, limit: number, results: boolean) =>
      sql`SELECT chunk_id, state, attempts, result, error, started_at, finished_at FROM ${chunkTable}
        WHERE ${sql.and([sql`job_id = ${id}`, sql`chunk_id > ${after}`, ...(results ? [sql`result IS NOT NULL`] : [])])}
        ORDER BY chunk_id LIMIT ${limit}`.pipe(
        Effect.mapError(sqlFailure(operation)),
        Effect.flatMap((rows) => Effect.mapError(decodeChunkRows(rows), rowFailure(operation, `a chunk record of job ${id}`))),
        Effect.flatMap((rows) => Effect.forEach(rows, recordOf(operation, id))),
        Effect.map((records) => ({ records, complete: records.length < limit }))
      )

    // The chunk ids of the jobs listed lately (a job's chunks never change), with the creation time of the job
    // they belong to (an id may be used again after a delete): the spec of a job of a million explicit chunks is
    // read and decoded once, not for every page.
    // A streamed job's ids change as its stream is pulled: `"streamed"` stands for them (see `streamedIds`).
    type ChunkIds = ((after: number) => number | undefined) | "streamed"
    const chunkIdCache = new Map<JobId, { readonly createdAt: string; readonly ids: ChunkIds }>()

    const chunkIdsOfJob = (
      id: JobId,
      createdAt: string
    ): Effect.Effect<ChunkIds, JobNotFound | RepositoryError> =>
      Effect.suspend(() => {
        const cached = chunkIdCache.get(id)
        if (cached !== undefined && cached.createdAt === createdAt) {
          chunkIdCache.delete(id)
          chunkIdCache.set(id, cached)
          return Effect.succeed(cached.ids)
        }
        return sql<{ readonly spec: string }>`SELECT spec FROM ${specs} WHERE id = ${id}`.pipe(
          Effect.mapError(sqlFailure("listChunks")),
          Effect.flatMap((rows): Effect.Effect<JobSpec, JobNotFound | RepositoryError> =>
            rows[0] === undefined
              ? Effect.fail(new JobNotFound({ jobId: id }))
              : Effect.mapError(decodeSpec(rows[0].spec), rowFailure("listChunks", `the stored spec of job ${id}`))
          ),
          Effect.map((spec) => {
            const ids: ChunkIds = isStreamSource(spec.chunks) ? "streamed" : chunkIdsOf(spec, () => RangeSet.empty())
            chunkIdCache.delete(id)
            if (chunkIdCache.size >= chunkIdsCached) chunkIdCache.delete(chunkIdCache.keys().next().value!)
            chunkIdCache.set(id, { createdAt, ids })
            return ids
          })
        )
      })

    /** A job's checkpoint as this process knows it: `stored` and the chunk ids it has buffered since. */
    const withBuffered = (id: JobId, stored: RangeSet): RangeSet => {
      const entry = buffer.get(id)
      return entry === undefined ? stored : stored.union(entry.chunks)
    }

    /**
     * A job's checkpoint, stored and buffered (see `withBuffered`); `JobNotFound` for an unknown id. Run under
     * the write lock, so no chunk id is in a flush under way.
     */
    const checkpointOf = (operation: string, id: JobId) =>
      Effect.gen(function*() {
        const rows = yield* sql<{ readonly checkpoint: unknown }>`SELECT checkpoint FROM ${jobs} WHERE id = ${id}`.pipe(
          Effect.mapError(sqlFailure(operation))
        )
        if (rows[0] === undefined) return yield* new JobNotFound({ jobId: id })
        return withBuffered(id, yield* readCheckpoint(operation, id, rows[0].checkpoint))
      })

    /**
     * A streamed job's chunks pulled and not completed, in id order: the stored rows and this process's buffered
     * ones, less those completed (stored or buffered). Run under the write lock, so none is in a flush under way.
     */
    const selectPulled = (operation: string, id: JobId, checkpoint: RangeSet) =>
      Effect.gen(function*() {
        const rows = yield* sql`SELECT chunk_id, payload FROM ${pulledTable} WHERE job_id = ${id} ORDER BY chunk_id`.pipe(
          Effect.mapError(sqlFailure(operation)),
          Effect.flatMap((rows) => Effect.mapError(decodePulledRows(rows), rowFailure(operation, `a pulled chunk of job ${id}`)))
        )
        const byId = new Map<number, Chunk>()
        for (const row of rows) {
          const payload = yield* Effect.mapError(
            decodeResult(row.payload),
            rowFailure(operation, `the payload of pulled chunk ${row.chunk_id} of job ${id}`)
          )
          byId.set(row.chunk_id, { id: row.chunk_id, payload })
        }
        const buffered = buffer.get(id)?.pulled
        if (buffered !== undefined) for (const [chunkId, chunk] of buffered) byId.set(chunkId, chunk)
        return [...byId.values()].filter((chunk) => !checkpoint.has(chunk.id)).sort((a, b) => a.id - b.id)
      })

    /** Deleted jobs: nothing of them stays buffered or cached. */
    const forget = (ids: Iterable<JobId>) => {
      for (const id of ids) {
        buffer.forget(id)
        totals.delete(id)
        chunkIdCache.delete(id)
        emptyCheckpoints.delete(id)
      }
    }

    /** The total of a job that is not terminal; `undefined` for a terminal or unknown job. */
    const totalOf = (id: JobId): Effect.Effect<number | undefined, RepositoryError> => {
      const known = totals.get(id)
      if (known !== undefined) return Effect.succeed(known)
      return sql`SELECT total_chunks, state, streaming FROM ${jobs} WHERE id = ${id}`.pipe(
        Effect.mapError(sqlFailure("updateProgress")),
        Effect.flatMap((rows) =>
          rows[0] === undefined
            ? Effect.succeed(undefined)
            : Effect.map(
              Effect.mapError(decodeTotalRow(rows[0]), rowFailure("updateProgress", `the total of job ${id}`)),
              (row) => {
                if (isTerminal(row.state)) return undefined
                // A streamed job whose stream has not ended has no total to check counts against.
                const total = row.streaming === 1 ? Number.POSITIVE_INFINITY : row.total_chunks
                totals.set(id, total)
                return total
              }
            )
        )
      )
    }

    const record = (
      id: JobId,
      progress: ProgressUpdate,
      total: number
    ): Effect.Effect<void, LeaseLost | RepositoryError> => {
      const over = countsOverTotal(
        "updateProgress",
        id,
        progress.completedChunks,
        progress.failedChunks,
        progress.totalChunks ?? total
      )
      if (progress.totalChunks !== undefined && over === undefined) totals.set(id, progress.totalChunks)
      if (over !== undefined) return Effect.fail(over)
      return Effect.flatMap(Clock.currentTimeMillis, (at) =>
        buffer.record(id, progress, at) ? Effect.void : Effect.fail(new LeaseLost({ jobId: id, lease: progress.lease! })))
    }

    // --- Ownership: heartbeats (which also check the leases an owner holds) and claims ---

    const leasesOf = (held: ReadonlyArray<HeldLease>) =>
      Effect.forEach(
        Array.from({ length: Math.ceil(held.length / 500) }, (_, index) => held.slice(index * 500, index * 500 + 500)),
        (part) =>
          sql`SELECT id, lease FROM ${jobs} WHERE ${sql.in("id", part.map((job) => job.id))}`.pipe(
            Effect.mapError(sqlFailure("heartbeat")),
            Effect.flatMap((rows) => Effect.mapError(decodeLeaseRows(rows), rowFailure("heartbeat", "a job's lease")))
          )
      ).pipe(Effect.map((parts) => new Map(parts.flat().map((row) => [row.id, row.lease]))))

    const claim = (owner: string, staleBefore: number) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        // One statement: two managers claiming at once are serialized by the database (on PostgreSQL the
        // second re-checks each row the first changed, and finds it owned by a live manager).
        const rows = yield* sql`UPDATE ${jobs} AS j SET
            state = 'pending',
            owner = ${owner},
            phase = NULL,
            lease = lease + 1,
            partial_chunks = 0,
            stop_requested = NULL,
            stop_request_id = NULL,
            updated_at = ${now},
            finished_at = NULL
          WHERE j.state IN ('pending', 'running') AND (
            j.owner IS NULL OR (
              j.owner <> ${owner} AND NOT EXISTS (
                SELECT 1 FROM ${owners} AS o WHERE o.owner = j.owner AND o.heartbeat_at >= ${staleBefore}
              )
            )
          )
          RETURNING id, created_at`.pipe(Effect.mapError(sqlFailure("claimOrphans")))
        const claimed = yield* decodeClaimedRows(rows).pipe(Effect.mapError(rowFailure("claimOrphans", "a claimed job")))
        for (const row of claimed) {
          emptyCheckpoints.delete(row.id)
          // The claim cleared the phase; a phase buffered here is older.
          const entry = buffer.get(row.id)
          if (entry !== undefined) entry.phase = undefined
        }
        if (claimed.length > 0) yield* feed.announce("*")
        return [...claimed]
          .sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
          .map((row) => row.id)
      })

    // --- Stop requests: read by job whenever the store may have changed ---

    const selectStopRequests = sql`SELECT id, stop_requested, stop_request_id FROM ${jobs}
      WHERE stop_requested IS NOT NULL AND state = 'running'
      ORDER BY created_at, id`.pipe(
      Effect.mapError(sqlFailure("stopRequests")),
      Effect.flatMap((rows) => Effect.mapError(decodeStopRows(rows), rowFailure("stopRequests", "a stored stop request")))
    )

    const stopRequests: Stream.Stream<StopRequest, RepositoryError> = Stream.suspend(() => {
      // The ids of the stored requests already emitted; a request is emitted once.
      let emitted = new Set<string>()
      let seen: number | undefined
      const check = selectStopRequests.pipe(
        Effect.map((rows) => {
          const fresh = rows.filter((row) => !emitted.has(row.stop_request_id))
          emitted = new Set(rows.map((row) => row.stop_request_id))
          return fresh.map((row): StopRequest => ({ id: row.id, kind: row.stop_requested }))
        }),
        // A failed look is retried at the next change: the stream outlives a passing database error.
        Effect.catchAllCause((cause) =>
          Effect.as(Effect.logWarning("effect-jobs: reading stop requests failed", cause), [])
        )
      )
      const next = Effect.suspend(() => {
        const wait = seen === undefined ? Effect.void : feed.stopSignal.changedSince(seen)
        return Effect.zipRight(wait, Effect.suspend(() => {
          seen = feed.stopSignal.version
          return check
        }))
      })
      return Stream.repeatEffect(next).pipe(Stream.flattenIterables)
    })

    // --- Listing: every page is read from an index, whatever the store holds ---

    const newestFirst = sql`ORDER BY created_at DESC, id DESC`
    /**
     * The rows of a listing page, newest first, read from the index on `(created_at, id)` or, for states,
     * the one on `(state, created_at, id)`: a page costs its own rows, not the store's. Several states are
     * read as one indexed page per state, merged (an `IN` over the states would sort all their jobs).
     */
    const selectPage = (states: ReadonlyArray<JobState> | undefined, cursor: CursorKey | undefined, rows: number) => {
      const after = cursor === undefined ? [] : [sql`(created_at, id) < (${cursor.createdAt}, ${cursor.id})`]
      const page = (state: JobState | undefined) =>
        sql`SELECT ${columns} FROM ${jobs} WHERE ${sql.and([...(state === undefined ? [] : [sql`state = ${state}`]), ...after])}
          ${newestFirst} LIMIT ${rows}`
      const statement = states === undefined
        ? page(undefined)
        : states.length === 1
        ? page(states[0])
        : states.length === 0
        ? sql`SELECT ${columns} FROM ${jobs} WHERE 1 = 0`
        : sql`SELECT ${columns} FROM (${
          sql.join(" UNION ALL ", false)(states.map((state, index) => sql`SELECT * FROM (${page(state)}) AS ${sql(`p${index}`)}`))
        }) AS pages ${newestFirst} LIMIT ${rows}`
      return statement.pipe(Effect.mapError(sqlFailure("list")))
    }

    // --- Creating jobs: concurrent creates share one transaction (group commit) ---

    /** Checks a new job and encodes its spec, before anything is written. */
    const prepare = (job: NewJob, now: number): Effect.Effect<Prepared, RepositoryError> => {
      const invalid = invalidNewJob(job)
      if (invalid !== undefined) return Effect.fail(invalid)
      return encodeSpec(job.spec).pipe(
        Effect.mapError((cause) =>
          new RepositoryError({
            operation: "create",
            detail: `the spec of job ${job.id} does not encode: ${describeError(cause)}`,
            cause
          })
        ),
        Effect.map((spec) => ({ job, spec, status: newJobStatus(job, new Date(now)) }))
      )
    }

    /**
     * Inserts jobs (distinct ids) and their specs, a few hundred rows per statement, in the caller's
     * transaction; returns the ids inserted (an id already stored is skipped, its spec not written). On
     * PostgreSQL a job and its spec are one statement, so `insertBatch` jobs or fewer need no transaction.
     */
    const insertJobs = (prepared: ReadonlyArray<Prepared>, notification?: Fragment) =>
      Effect.gen(function*() {
        const inserted = new Set<JobId>()
        for (let offset = 0; offset < prepared.length; offset += insertBatch) {
          const part = prepared.slice(offset, offset + insertBatch)
          const jobRows = sql.insert(part.map(({ job, status }) => ({
              id: job.id,
              name: job.spec.name ?? null,
              state: "pending",
              total_chunks: job.totalChunks ?? 0,
              streaming: job.totalChunks === undefined ? 1 : 0,
              completed_chunks: status.completedChunks,
              failed_chunks: 0,
              created_at: status.createdAt.getTime(),
              updated_at: status.createdAt.getTime(),
              owner: job.owner ?? null,
              retry_of: job.retryOf ?? null,
              checkpoint: job.completed === undefined || job.completed.size === 0 ? null : job.completed.toString(),
              lease: 0
            })))
          const specRow = ({ job, spec }: Prepared) => ({
            id: job.id,
            spec,
            metadata: job.spec.metadata === undefined ? null : JSON.stringify(job.spec.metadata)
          })
          if (source.dialect === "pg") {
            const rows = yield* sql<{ readonly id: JobId }>`WITH inserted AS (
                INSERT INTO ${jobs} ${jobRows} ON CONFLICT (id) DO NOTHING RETURNING id
              ), spec AS (
                INSERT INTO ${specs} (id, spec, metadata) SELECT v.id, v.spec, v.metadata FROM (VALUES ${
              sql.csv(part.map((prepared) => {
                const row = specRow(prepared)
                return sql`(${row.id}, ${row.spec}, ${row.metadata})`
              }))
            }) AS v (id, spec, metadata) WHERE v.id IN (SELECT i.id FROM inserted AS i)
              )
              SELECT i.id${notification === undefined ? sql`` : sql`, ${notification} AS notified`} FROM inserted AS i`
            for (const row of rows) inserted.add(row.id)
            continue
          }
          const rows = yield* sql<{ readonly id: JobId }>`INSERT INTO ${jobs} ${jobRows} ON CONFLICT (id) DO NOTHING RETURNING id`
          const fresh = new Set(rows.map((row) => row.id))
          const specRows = part.filter(({ job }) => fresh.has(job.id)).map(specRow)
          if (specRows.length > 0) yield* sql`INSERT INTO ${specs} ${sql.insert(specRows)}`
          for (const id of fresh) inserted.add(id)
        }
        return inserted
      })

    /**
     * The creates of one turn of the event loop, in one transaction (on PostgreSQL one statement). Each gets
     * its own answer: its status, or a `RepositoryError` for an id already stored (or repeated in the group); a
     * failed transaction fails all.
     */
    const creates = yield* GroupCommit.make((group: ReadonlyArray<Prepared>) => {
      const distinct = new Map<JobId, Prepared>()
      for (const prepared of group) if (!distinct.has(prepared.job.id)) distinct.set(prepared.job.id, prepared)
      const toInsert = [...distinct.values()]
      // A job stored without an owner may be claimed by any manager at once.
      const claimable = toInsert.some(({ job }) => job.owner === undefined)
      const notification = source.dialect === "pg" && toInsert.length <= insertBatch
        ? feed.notification(toInsert.length === 1 ? toInsert[0]!.job.id : "*", claimable)
        : undefined
      return (source.dialect === "pg" && toInsert.length <= insertBatch
        ? Effect.mapError(insertJobs(toInsert, notification), sqlFailure("create"))
        : transaction("create", insertJobs(toInsert))).pipe(
        Effect.tap((inserted) =>
          Effect.suspend(() => {
            for (const id of inserted) {
              const { job } = distinct.get(id)!
              totals.set(id, job.totalChunks ?? Number.POSITIVE_INFINITY)
              if (job.completed === undefined || job.completed.size === 0) emptyCheckpoints.set(id, 0)
            }
            if (inserted.size === 0) return Effect.void
            if (notification !== undefined) return feed.bump(claimable)
            const announce = claimable ? feed.announceClaimable : feed.announce
            return announce(inserted.size === 1 ? [...inserted][0]! : "*")
          })
        ),
        // The first of a repeated id is the one inserted.
        Effect.map((inserted) =>
          group.map(({ job, status }): Exit.Exit<JobStatus, RepositoryError> =>
            inserted.delete(job.id) ? Exit.succeed(status) : Exit.fail(duplicateJob(job.id))
          )
        )
      )
    })

    return JobRepository.of({
      create: fn("SqlJobRepository.create")(function*(job: NewJob) {
        return yield* creates.submit(yield* prepare(job, yield* Clock.currentTimeMillis))
      }),
      createMany: fn("SqlJobRepository.createMany")(function*(batch: ReadonlyArray<NewJob>) {
        const now = yield* Clock.currentTimeMillis
        const prepared = yield* Effect.forEach(batch, (job) => prepare(job, now))
        const ids = new Set<JobId>()
        for (const { job } of prepared) {
          if (ids.has(job.id)) return yield* duplicateJob(job.id)
          ids.add(job.id)
        }
        yield* transaction(
          "create",
          Effect.gen(function*() {
            const inserted = yield* insertJobs(prepared)
            const taken = prepared.find(({ job }) => !inserted.has(job.id))
            // Failing inside the transaction rolls every insert of the batch back.
            if (taken !== undefined) return yield* duplicateJob(taken.job.id)
          })
        )
        for (const { job } of prepared) {
          totals.set(job.id, job.totalChunks ?? Number.POSITIVE_INFINITY)
          if (job.completed === undefined || job.completed.size === 0) emptyCheckpoints.set(job.id, 0)
        }
        if (prepared.length > 0) {
          yield* (prepared.some(({ job }) => job.owner === undefined) ? feed.announceClaimable : feed.announce)("*")
        }
        return prepared.map(({ status }) => status)
      }),
      get: fn("SqlJobRepository.get")(function*(id: JobId) {
        return yield* selectStatus("get", id)
      }),
      getSpec: fn("SqlJobRepository.getSpec")(function*(id: JobId) {
        const rows = yield* sql<{ readonly spec: string }>`SELECT spec FROM ${specs} WHERE id = ${id}`.pipe(
          Effect.mapError(sqlFailure("getSpec"))
        )
        if (rows[0] === undefined) return Option.none<JobSpec>()
        const spec = yield* decodeSpec(rows[0].spec).pipe(
          Effect.mapError((cause) =>
            new RepositoryError({
              operation: "getSpec",
              detail: `the stored spec of job ${id} does not decode: ${describeError(cause)}`,
              cause
            })
          )
        )
        return Option.some(spec)
      }),
      list: fn("SqlJobRepository.list")(function*(query: ListQuery) {
        const cursor = query.cursor === undefined ? undefined : yield* decodeCursor(query.cursor)
        const limit = query.limit ?? defaultListLimit
        const states = query.state === undefined
          ? undefined
          : [...new Set(typeof query.state === "string" ? [query.state] : query.state)]
        const statuses = yield* reading(Effect.gen(function*() {
          const rows = yield* selectPage(states, cursor, limit + 1)
          return yield* Effect.forEach(rows, (row) => Effect.map(decodeStatus("list", row), (status) => buffer.overlay(status)))
        }))
        const page = statuses.slice(0, limit)
        const last = page[page.length - 1]
        const result: JobPage = statuses.length > limit && last !== undefined
          ? { jobs: page, nextCursor: encodeCursor({ createdAt: last.createdAt.getTime(), id: last.id }) }
          : { jobs: page }
        return result
      }),
      transition: fn("SqlJobRepository.transition")(function*(
        id: JobId,
        from: ReadonlyArray<JobState>,
        to: JobState,
        patch?: TransitionPatch
      ) {
        const invalid = invalidCounts("transition", patch)
        if (invalid !== undefined) return yield* invalid
        const allowed = from.filter((state) => canTransition(state, to))
        // Another process may change the job between the compare-and-set and the read that explains why it
        // did not apply; then it is tried again.
        for (let attempt = 1;; attempt++) {
          const applied = allowed.length === 0
            ? Option.none<JobStatus>()
            : yield* transitions.submit({ id, allowed, to, patch })
          if (Option.isSome(applied)) return { applied: true, status: applied.value } satisfies TransitionResult
          const current = yield* selectStatus("transition", id)
          if (Option.isNone(current)) return yield* new JobNotFound({ jobId: id })
          const status = current.value
          if (patch?.lease !== undefined && status.lease !== patch.lease) {
            // The caller lost the job: what it buffered under its lease must never land.
            buffer.markLost(id, patch.lease)
            return { applied: false, status } satisfies TransitionResult
          }
          if (!allowed.includes(status.state)) return { applied: false, status } satisfies TransitionResult
          const over = countsOverTotal(
            "transition",
            id,
            patch?.completedChunks ?? status.completedChunks,
            patch?.failedChunks ?? status.failedChunks,
            status.totalChunks
          )
          if (over !== undefined) return yield* over
          if (attempt >= 5) {
            return yield* new RepositoryError({
              operation: "transition",
              detail: `job ${id} kept changing while it was being moved to ${to}`
            })
          }
        }
      }),
      // The hot path (one call per chunk): no span, no I/O once the job's total is known.
      updateProgress: (id, progress) =>
        Effect.suspend((): Effect.Effect<void, LeaseLost | RepositoryError> => {
          const invalid = invalidCounts("updateProgress", progress)
          if (invalid !== undefined) return Effect.fail(invalid)
          if (buffer.isLost(id, progress.lease)) return Effect.fail(new LeaseLost({ jobId: id, lease: progress.lease! }))
          const known = totals.get(id)
          if (known !== undefined) return record(id, progress, known)
          return Effect.flatMap(totalOf(id), (total) => total === undefined ? Effect.void : record(id, progress, total))
        }),
      getCheckpoint: fn("SqlJobRepository.getCheckpoint")(function*(id: JobId) {
        return yield* writeLock.withPermits(1)(checkpointOf("getCheckpoint", id))
      }),
      listChunks: fn("SqlJobRepository.listChunks")(function*(id: JobId, query: ListChunksQuery) {
        // Under the write lock: every chunk is either stored or buffered, none is in a flush under way.
        return yield* writeLock.withPermits(1)(Effect.gen(function*() {
          const rows = yield* sql<{ readonly checkpoint: unknown; readonly created_at: unknown }>`SELECT checkpoint,
            created_at FROM ${jobs} WHERE id = ${id}`.pipe(Effect.mapError(sqlFailure("listChunks")))
          if (rows[0] === undefined) return yield* new JobNotFound({ jobId: id })
          const checkpoint = withBuffered(id, yield* readCheckpoint("listChunks", id, rows[0].checkpoint))
          const cached = yield* chunkIdsOfJob(id, String(rows[0].created_at))
          const entry = buffer.get(id)
          const ids = cached !== "streamed" ? cached : yield* Effect.map(
            selectPulled("listChunks", id, checkpoint),
            (pulled) => {
              const known = streamedIds(checkpoint, pulled.map((chunk) => chunk.id))
              return (after: number) => known.nextAfter(after)
            }
          )
          const buffered = entry?.records === undefined
            ? []
            : [...entry.records.values()].sort((a, b) => a.id - b.id)
          return yield* pageChunks(query, ids, checkpoint, (after, limit) =>
            Effect.map(selectRecords("listChunks", id, after, limit, false), (read) =>
              mergeRecords(read, recordsAfter(buffered, after, limit), limit)))
        }))
      }),
      pulledChunks: fn("SqlJobRepository.pulledChunks")(function*(id: JobId) {
        return yield* writeLock.withPermits(1)(
          Effect.flatMap(checkpointOf("pulledChunks", id), (checkpoint) => selectPulled("pulledChunks", id, checkpoint))
        )
      }),
      chunkResults: fn("SqlJobRepository.chunkResults")(function*(id: JobId, query: ResultsQuery) {
        return yield* writeLock.withPermits(1)(Effect.gen(function*() {
          const exists = yield* sql`SELECT id FROM ${jobs} WHERE id = ${id}`.pipe(Effect.mapError(sqlFailure("chunkResults")))
          if (exists.length === 0) return yield* new JobNotFound({ jobId: id })
          const after = query.after ?? -1
          const entry = buffer.get(id)
          const buffered = entry?.records === undefined
            ? []
            : [...entry.records.values()].filter((record) => record.result !== undefined).sort((a, b) => a.id - b.id)
          const read = yield* selectRecords("chunkResults", id, after, query.limit, true)
          const merged = mergeRecords(read, recordsAfter(buffered, after, query.limit), query.limit)
          return merged.records.flatMap((record): Array<ChunkResult> =>
            record.result === undefined ? [] : [{ id: record.id, result: record.result }]
          )
        }))
      }),
      delete: fn("SqlJobRepository.delete")(function*(id: JobId) {
        // A terminal state never changes: a job found terminal after the DELETE missed it is deleted next time.
        for (let attempt = 1;; attempt++) {
          const rows = yield* transaction(
            "delete",
            Effect.gen(function*() {
              const deleted = yield* sql`DELETE FROM ${jobs} WHERE id = ${id} AND ${sql.in("state", terminalStates)}
                RETURNING ${columns}`
              if (deleted.length > 0) {
                yield* sql`DELETE FROM ${specs} WHERE id = ${id}`
                yield* sql`DELETE FROM ${chunkTable} WHERE job_id = ${id}`
                yield* sql`DELETE FROM ${pulledTable} WHERE job_id = ${id}`
              }
              return deleted
            })
          )
          if (rows[0] !== undefined) {
            forget([id])
            yield* feed.announce(id)
            return yield* decodeStatus("delete", rows[0])
          }
          const current = yield* selectStatus("delete", id)
          if (Option.isNone(current)) return yield* new JobNotFound({ jobId: id })
          if (!isTerminal(current.value.state) || attempt >= 2) return yield* notDeletable(current.value)
        }
      }),
      prune: fn("SqlJobRepository.prune")(function*(query: PruneQuery) {
        if (query.states.length === 0) return 0
        // In batches, so that no statement holds the write lock for long.
        let removed = 0
        for (;;) {
          const rows = yield* transaction(
            "prune",
            Effect.gen(function*() {
              const deleted = yield* sql<{ readonly id: JobId }>`DELETE FROM ${jobs} WHERE id IN (
                  SELECT id FROM ${jobs}
                  WHERE ${sql.in("state", query.states)} AND finished_at < ${query.finishedBefore}
                  LIMIT ${pruneBatch}
                ) RETURNING id`
              if (deleted.length > 0) {
                const ids = deleted.map((row) => row.id)
                yield* sql`DELETE FROM ${specs} WHERE ${sql.in("id", ids)}`
                yield* sql`DELETE FROM ${chunkTable} WHERE ${sql.in("job_id", ids)}`
                yield* sql`DELETE FROM ${pulledTable} WHERE ${sql.in("job_id", ids)}`
              }
              return deleted
            })
          )
          forget(rows.map((row) => row.id))
          removed += rows.length
          if (rows.length > 0) yield* feed.announce("*")
          if (rows.length < pruneBatch) return removed
        }
      }),
      find: fn("SqlJobRepository.find")(function*(query: FindQuery) {
        const conditions: Array<Fragment> = []
        // Ids are ASCII below "~", so the ids starting with the prefix are exactly those in this range.
        if (query.idPrefix !== undefined) {
          conditions.push(sql`(id >= ${query.idPrefix} AND id < ${`${query.idPrefix}~`})`)
        }
        if (query.name !== undefined) conditions.push(sql`name = ${query.name}`)
        if (conditions.length === 0) return []
        return yield* reading(Effect.gen(function*() {
          const rows = yield* sql`SELECT ${columns} FROM ${jobs} WHERE ${sql.or(conditions)}
            ORDER BY created_at DESC, id DESC LIMIT ${query.limit}`.pipe(Effect.mapError(sqlFailure("find")))
          return yield* Effect.forEach(rows, (row) => Effect.map(decodeStatus("find", row), (status) => buffer.overlay(status)))
        }))
      }),
      durable: true,
      heartbeat: fn("SqlJobRepository.heartbeat")(function*(owner: string, held: ReadonlyArray<HeldLease> = []) {
        const now = yield* Clock.currentTimeMillis
        const beat = sql`INSERT INTO ${owners} ${sql.insert({ owner, heartbeat_at: now })}
          ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`.pipe(
          Effect.mapError(sqlFailure("heartbeat"))
        )
        if (held.length === 0) {
          yield* beat
          return []
        }
        // The leases are read after the beat, in its transaction: a claim that saw this owner stale has either
        // committed before (and is seen here) or finds the fresh beat and claims nothing.
        const leases = yield* transaction("heartbeat", Effect.zipRight(beat, leasesOf(held)))
        const lost = held.filter((job) => leases.get(job.id) !== job.lease)
        for (const job of lost) buffer.markLost(job.id, job.lease)
        return lost.map((job) => job.id)
      }),
      retire: fn("SqlJobRepository.retire")(function*(owner: string) {
        yield* sql`DELETE FROM ${owners} WHERE owner = ${owner}`.pipe(Effect.mapError(sqlFailure("retire")))
        yield* feed.announceClaimable("*")
      }),
      lastHeartbeat: fn("SqlJobRepository.lastHeartbeat")(function*(owner: string) {
        const rows = yield* sql`SELECT heartbeat_at FROM ${owners} WHERE owner = ${owner}`.pipe(
          Effect.mapError(sqlFailure("lastHeartbeat"))
        )
        if (rows[0] === undefined) return Option.none<number>()
        const row = yield* decodeHeartbeatRow(rows[0]).pipe(
          Effect.mapError(rowFailure("lastHeartbeat", `the heartbeat of ${owner}`))
        )
        return Option.some(row.heartbeat_at)
      }),
      claimOrphans: fn("SqlJobRepository.claimOrphans")(function*(owner: string, staleBefore: number) {
        // Under the write lock, so no flush writes a phase this process buffered for a job it claims.
        return yield* writeLock.withPermits(1)(claim(owner, staleBefore))
      }),
      activeJobsOf: fn("SqlJobRepository.activeJobsOf")(function*(owner: string) {
        return yield* reading(Effect.gen(function*() {
          const rows = yield* sql`SELECT ${columns} FROM ${jobs}
            WHERE owner = ${owner} AND state IN ('pending', 'running')`.pipe(Effect.mapError(sqlFailure("activeJobsOf")))
          return yield* Effect.forEach(rows, (row) =>
            Effect.map(decodeStatus("activeJobsOf", row), (status) => buffer.overlay(status)))
        }))
      }),
      requestStop: fn("SqlJobRepository.requestStop")(function*(request: StopRequest) {
        // A request already stored is kept (and not delivered again); a cancel replaces a pause.
        const replaceable = request.kind === "cancel"
          ? sql`(stop_requested IS NULL OR stop_requested = 'pause')`
          : sql`stop_requested IS NULL`
        const rows = yield* sql`UPDATE ${jobs}
          SET stop_requested = ${request.kind}, stop_request_id = ${crypto.randomUUID()}
          WHERE id = ${request.id} AND state = 'running' AND owner IS NOT NULL AND ${replaceable}
          RETURNING id`.pipe(Effect.mapError(sqlFailure("requestStop")))
        // The request is stored: if the announcement is lost, the owner's poll still finds it.
        if (rows.length > 0) yield* feed.announceStop(request.id)
      }),
      stopRequests,
      changes: feed.signal,
      claimable: feed.claimSignal
    })
  })

/** `@effect/sql-pg`, an optional peer dependency: loaded only for PostgreSQL. */
const loadPg = importPeer("@effect/sql-pg", "the PostgreSQL store", () => import("@effect/sql-pg/PgClient"))

const build = ({ flushInterval, schema, stopPollInterval }: Settings, open: OpenOptions) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const dialect = sql.onDialectOrElse({
      sqlite: (): Dialect | undefined => "sqlite",
      pg: (): Dialect | undefined => "pg",
      orElse: (): Dialect | undefined => undefined
    })
    if (dialect === undefined) {
      return yield* new RepositoryError({
        operation: "open",
        detail: `${open.label}: effect-jobs keeps jobs in SQLite or PostgreSQL only`
      })
    }
    if (schema !== undefined && dialect !== "pg") {
      return yield* new InvalidOption({ path: ["schema"], detail: "only PostgreSQL stores have a schema" })
    }
    const tables = tablesIn(schema)
    if (schema !== undefined && open.create) {
      yield* sql`CREATE SCHEMA IF NOT EXISTS ${sql(schema)}`.pipe(
        Effect.mapError(sqlFailure("open", `${open.label}: cannot create schema ${schema}`))
      )
    }
    yield* verifyStore(sql, dialect, schema, tables, open)
    // An existing store keeps its journal mode (a store made by `layerSqlite` is in WAL mode already).
    if (open.wal && open.create) {
      yield* sql`PRAGMA journal_mode = WAL`.pipe(Effect.mapError(sqlFailure("open", `${open.label}: cannot enable WAL`)))
    }
    if (open.synchronous !== undefined) {
      yield* sql`PRAGMA synchronous = ${sql.literal(open.synchronous === "full" ? "FULL" : "NORMAL")}`.pipe(
        Effect.mapError(sqlFailure("open", `${open.label}: cannot set synchronous`))
      )
    }
    yield* Migrator.make({})({ loader: migrations(tables), table: tables.migrations }).pipe(
      // The Migrator reports a failing migration as a defect.
      Effect.catchAllDefect(Effect.fail),
      Effect.mapError((cause) =>
        new RepositoryError({ operation: "migrate", detail: `${open.label}: ${explain(cause)}`, cause })
      )
    )
    let notify: ChangeFeed.ChangeSource["notify"] = undefined
    if (dialect === "pg") {
      // A PostgreSQL client that is not `@effect/sql-pg`'s (so that package may be missing) is polled.
      const pg = yield* Effect.flatMap(
        Effect.option(loadPg),
        Option.match({ onNone: () => Effect.succeedNone, onSome: (PgClient) => Effect.serviceOption(PgClient.PgClient) })
      )
      if (Option.isSome(pg)) {
        const current = schema ?? (yield* sql<{ readonly name: string | null }>`SELECT current_schema() AS name`.pipe(
          Effect.map((rows) => rows[0]?.name ?? "public"),
          Effect.mapError(sqlFailure("open", `${open.label}: cannot read the current schema`))
        ))
        notify = { channel: changeChannel(current), listen: pg.value.listen }
      }
    }
    return yield* makeService(sql, tables, flushInterval, {
      dialect,
      // Without notifications PostgreSQL is polled as often as SQLite.
      pollInterval: stopPollInterval ??
        (dialect === "pg" && notify !== undefined ? defaultStopPollInterval.pg : defaultStopPollInterval.sqlite),
      notify
    })
  })

/**
 * Builds the store on the `SqlClient` in context (SQLite or PostgreSQL): checks the database (see the module
 * guarantees), creates or migrates the tables, and starts the progress flush fiber in the current scope.
 * Closing the scope writes the buffered progress. On PostgreSQL, stop requests are notified when the
 * `PgClient` is in context too (as with `PgClient.layer`), and polled every `stopPollInterval` otherwise.
 *
 * @since 0.1.0
 */
export const make = (
  options: MakeOptions = {}
): Effect.Effect<JobRepository["Type"], RepositoryError | InvalidOption, SqlClient.SqlClient | Scope.Scope> =>
  Effect.flatMap(decodeOptions(options), (settings) =>
    build(settings, { label: "the database", exclusive: false, wal: false, create: true }))

/**
 * The store on the `SqlClient` in context, with default options.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<JobRepository, RepositoryError | InvalidOption, SqlClient.SqlClient> = Layer.scoped(
  JobRepository,
  make()
)

/**
 * The store on the `SqlClient` in context.
 *
 * @since 0.1.0
 */
export const layerWith = (
  options: MakeOptions
): Layer.Layer<JobRepository, RepositoryError | InvalidOption, SqlClient.SqlClient> =>
  Layer.scoped(JobRepository, make(options))

/** Any failure (or defect) of opening a client becomes a `RepositoryError`. */
const openClient = <ROut, E>(label: string, client: Layer.Layer<ROut, E>): Layer.Layer<ROut, RepositoryError> =>
  Layer.catchAllCause(client, (cause) => {
    const error = Cause.squash(cause)
    return Layer.fail(new RepositoryError({ operation: "open", detail: `cannot open ${label}: ${explain(error)}`, cause: error }))
  })

/**
 * The embedded default: the store in one SQLite file, in WAL mode, created and migrated on first use.
 * A file that is not SQLite, or holds another application's tables, or was written by a newer effect-jobs,
 * fails the layer with a `RepositoryError` and is left untouched.
 *
 * @since 0.1.0
 */
export const layerSqlite = (options: SqliteOptions): Layer.Layer<JobRepository, RepositoryError | InvalidOption> => {
  const label = `SQLite file ${JSON.stringify(options.filename)}`
  const create = options.create ?? true
  const synchronous = options.synchronous ?? "normal"
  return Layer.unwrapEffect(Effect.map(
    Effect.zipLeft(
      decodeOptions({ flushInterval: options.flushInterval, stopPollInterval: options.stopPollInterval }),
      synchronous === "normal" || synchronous === "full"
        ? Effect.void
        : Effect.fail(new InvalidOption({ path: ["synchronous"], detail: `must be "normal" or "full"` }))
    ).pipe(Effect.zipLeft(
      // Opening a missing file would create it.
      create || existsSync(options.filename)
        ? Effect.void
        : Effect.fail(new RepositoryError({
            operation: "open",
            detail: `no job store at ${options.filename} (a job manager creates one on first use)`
          }))
    )),
    (settings) =>
      Layer.scoped(JobRepository, build(settings, { label, exclusive: true, wal: true, create, synchronous })).pipe(
        // WAL is switched on by the store, once the file is known to be ours: switching rewrites the header.
        Layer.provide(openClient(label, SqliteClient.layer({ filename: options.filename, disableWAL: true })))
      )
  ))
}

/**
 * The store in PostgreSQL, for several orchestrator processes sharing one store. Tables go into `schema`
 * (created if missing) or the connection's current schema. An unreachable server fails the layer with a
 * `RepositoryError` within `connectTimeout`. It needs the optional peer dependency `@effect/sql-pg`: without it
 * the layer fails with a `RepositoryError` saying `npm install @effect/sql-pg@0.53`.
 *
 * Unless the URL sets its own `options`, the store's sessions get `idle_in_transaction_session_timeout` = 5 s:
 * a process stopped inside a transaction (SIGSTOP, a frozen VM) would otherwise keep the rows it locked, and
 * the managers taking its jobs over would wait on them until it resumed; its transaction is rolled back.
 *
 * @since 0.1.0
 */
export const layerPg = (options: PgOptions): Layer.Layer<JobRepository, RepositoryError | InvalidOption> => {
  const label = options.schema === undefined ? "PostgreSQL" : `PostgreSQL schema ${options.schema}`
  return Layer.unwrapEffect(Effect.map(
    Effect.all([
      decodeOptions(options),
      decodeDuration("connectTimeout", options.connectTimeout, defaultConnectTimeout),
      loadPg
    ]),
    ([settings, connectTimeout, PgClient]) =>
      Layer.scoped(
        JobRepository,
        build(settings, { label, exclusive: false, wal: false, create: options.create ?? true })
      ).pipe(
        Layer.provide(openClient(
          label,
          PgClient.layer({
            url: Redacted.make(withIdleTransactionTimeout(options.url, defaultIdleTransactionTimeout)),
            connectTimeout
          })
        ))
      )
  ))
}
