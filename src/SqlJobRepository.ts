/**
 * The job store on `@effect/sql`: an SQLite file (the embedded default: one file, nothing to set up) or
 * PostgreSQL (several orchestrator processes sharing one store). It passes the same contract as the memory
 * store.
 *
 * Guarantees:
 * - Every change of state is one `UPDATE ... WHERE id = ? AND state IN (...)` statement: an atomic
 *   compare-and-set, also between processes sharing the database, so racing changes have exactly one
 *   winner and a stored terminal state never changes.
 * - Progress is coalesced: `updateProgress` only records the latest counts in memory; a background fiber
 *   writes every job with new counts in one transaction each `flushInterval`, and once more when the layer
 *   closes. `get` and `list` of the same process return the latest counts, and a transition writes them
 *   (or the counts it is given) in its own statement, so closing the layer loses no progress. Counts not yet
 *   written are lost only if the process dies.
 * - Opening refuses (with a `RepositoryError`, before writing anything) a database that is not an
 *   effect-jobs store: a file that is not SQLite, an SQLite file holding another application's tables, a
 *   table named like ours that we did not create, or a store written by a newer version of effect-jobs.
 *
 * @since 0.1.0
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { decodeCursor, encodeCursor } from "./internal/cursor.js"
import type { Tables } from "./internal/sqlMigrations.js"
import { applicationName, migrations, schemaVersion, tableNames, tablesIn } from "./internal/sqlMigrations.js"
import type { JobId, JobPage, JobState, ListQuery } from "./Job.js"
import {
  canTransition,
  isTerminal,
  JobId as JobIdSchema,
  JobSpec,
  JobState as JobStateSchema,
  JobStatus,
  progressOf,
  terminalStates
} from "./Job.js"
import { describeError, InvalidOption, JobNotFound, RepositoryError } from "./JobError.js"
import type { NewJob, ProgressUpdate, TransitionPatch, TransitionResult } from "./JobRepository.js"
import { defaultListLimit, JobRepository, newJobStatus, withProgress } from "./JobRepository.js"

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
}

const defaultFlushInterval = Duration.millis(200)
const defaultConnectTimeout = Duration.seconds(5)

/** How a store is opened: what to call it in errors, whether it must hold nothing else, and its journal. */
interface OpenOptions {
  readonly label: string
  readonly exclusive: boolean
  readonly wal: boolean
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
  finished_at: Schema.NullOr(Integer)
})
type JobRow = typeof JobRow.Type

const jobColumns =
  "id, name, state, total_chunks, completed_chunks, failed_chunks, error, created_at, updated_at, started_at, finished_at"

const decodeJobRow = Schema.decodeUnknown(JobRow)
const encodeSpec = Schema.encode(Schema.parseJson(JobSpec))
const decodeSpec = Schema.decodeUnknown(Schema.parseJson(JobSpec))

/** The constructor validates every field (integers, progress within 0..100, ...). */
const statusOf = (row: JobRow) =>
  Effect.try({
    try: () =>
      new JobStatus({
        id: row.id,
        ...(row.name === null ? {} : { name: row.name }),
        state: row.state,
        totalChunks: row.total_chunks,
        completedChunks: row.completed_chunks,
        failedChunks: row.failed_chunks,
        progress: progressOf(row.total_chunks, row.completed_chunks, row.failed_chunks, row.state),
        ...(row.error === null ? {} : { error: row.error }),
        createdAt: new Date(row.created_at),
        updatedAt: new Date(row.updated_at),
        ...(row.started_at === null ? {} : { startedAt: new Date(row.started_at) }),
        ...(row.finished_at === null ? {} : { finishedAt: new Date(row.finished_at) })
      }),
    catch: (cause) => cause
  })

const decodeStatus = (operation: string, row: unknown): Effect.Effect<JobStatus, RepositoryError> =>
  decodeJobRow(row).pipe(
    Effect.flatMap(statusOf),
    Effect.mapError((cause) =>
      new RepositoryError({ operation, detail: `a stored job does not decode: ${describeError(cause)}`, cause })
    )
  )

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
  name: "flushInterval" | "connectTimeout",
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
}

const decodeOptions = (options: MakeOptions): Effect.Effect<Settings, InvalidOption> =>
  Effect.all({
    flushInterval: decodeDuration("flushInterval", options.flushInterval, defaultFlushInterval),
    schema: decodeSchemaName(options.schema)
  })

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

interface Buffered {
  readonly completedChunks: number
  readonly failedChunks: number
  /** When the counts were reported (millis). */
  readonly at: number
  /** `false` once the counts are in the database; kept until no read that may have missed them is running. */
  readonly dirty: boolean
}

const checkCounts = (operation: string, counts: TransitionPatch | undefined) => {
  for (const field of ["completedChunks", "failedChunks"] as const) {
    const value = counts?.[field]
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
      return Effect.fail(
        new RepositoryError({ operation, detail: `${field} must be a non-negative integer, got ${value}` })
      )
    }
  }
  return Effect.void
}

const makeService = (sql: SqlClient.SqlClient, tables: Tables, flushInterval: Duration.Duration) =>
  Effect.gen(function*() {
    const jobs = sql(tables.jobs)
    const columns = sql.literal(jobColumns)
    const notTerminal = sql`NOT (${sql.in("state", terminalStates)})`

    // Latest progress per job, written by the flush fiber. Entries already written stay while a read is
    // running, so a read whose SELECT ran before the write still returns them and progress never goes back.
    const buffer = new Map<JobId, Buffered>()
    let readers = 0
    const prune = () => {
      if (readers > 0) return
      for (const [id, entry] of buffer) {
        if (!entry.dirty) buffer.delete(id)
      }
    }
    const overlay = (status: JobStatus): JobStatus => {
      const buffered = buffer.get(status.id)
      return buffered === undefined || isTerminal(status.state)
        ? status
        : withProgress(status, buffered, new Date(buffered.at))
    }
    const reading = <A, E>(read: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          readers++
        }),
        () => read,
        () =>
          Effect.sync(() => {
            readers--
            prune()
          })
      )
    // Serializes flushes and transitions of this process, so a flush never writes counts older than a
    // transition's.
    const writeLock = yield* Effect.makeSemaphore(1)

    const selectStatus = (operation: string, id: JobId) =>
      reading(Effect.gen(function*() {
        const rows = yield* sql`SELECT ${columns} FROM ${jobs} WHERE id = ${id}`.pipe(
          Effect.mapError(sqlFailure(operation))
        )
        return rows[0] === undefined
          ? Option.none<JobStatus>()
          : Option.some(overlay(yield* decodeStatus(operation, rows[0])))
      }))

    const flush = writeLock.withPermits(1)(Effect.suspend(() => {
      prune()
      const batch = Array.from(buffer).filter(([, entry]) => entry.dirty)
      if (batch.length === 0) return Effect.void
      return sql.withTransaction(Effect.forEach(batch, ([id, entry]) =>
        sql`UPDATE ${jobs}
          SET completed_chunks = ${entry.completedChunks}, failed_chunks = ${entry.failedChunks},
            updated_at = ${entry.at}
          WHERE id = ${id} AND ${notTerminal}
          RETURNING id`)).pipe(
          Effect.map((results) => {
            batch.forEach(([id, entry], index) => {
              if (buffer.get(id) !== entry) return
              // No row: the job is terminal or gone, and its counts are moot.
              if (results[index]!.length === 0) buffer.delete(id)
              else buffer.set(id, { ...entry, dirty: false })
            })
            prune()
          })
        )
    }))
    const flushOrWarn = flush.pipe(
      Effect.catchAll((error) =>
        Effect.logWarning("effect-jobs: writing buffered progress failed; it stays buffered", error)
      )
    )
    // Finalizers run last-added first: the flush fiber is interrupted, then the final flush runs.
    yield* Effect.addFinalizer(() => flushOrWarn)
    yield* Effect.forkScoped(Effect.forever(Effect.delay(flushOrWarn, flushInterval)))

    const applyTransition = (
      id: JobId,
      allowed: ReadonlyArray<JobState>,
      to: JobState,
      patch: TransitionPatch | undefined
    ) =>
      writeLock.withPermits(1)(Effect.gen(function*() {
        const buffered = buffer.get(id)
        const now = yield* Clock.currentTimeMillis
        const rows = yield* sql`UPDATE ${jobs} SET
            state = ${to},
            completed_chunks = COALESCE(${patch?.completedChunks ?? buffered?.completedChunks ?? null}, completed_chunks),
            failed_chunks = COALESCE(${patch?.failedChunks ?? buffered?.failedChunks ?? null}, failed_chunks),
            error = COALESCE(${patch?.error ?? null}, error),
            updated_at = ${now},
            started_at = COALESCE(started_at, ${to === "running" ? now : null}),
            finished_at = ${isTerminal(to) ? now : null}
          WHERE id = ${id} AND ${sql.in("state", allowed)}
          RETURNING ${columns}`.pipe(Effect.mapError(sqlFailure("transition")))
        if (rows[0] === undefined) return Option.none<JobStatus>()
        const status = yield* decodeStatus("transition", rows[0])
        if (buffered !== undefined && buffer.get(id) === buffered) {
          buffer.set(id, {
            completedChunks: status.completedChunks,
            failedChunks: status.failedChunks,
            at: now,
            dirty: false
          })
        }
        return Option.some(status)
      }))

    return JobRepository.of({
      create: Effect.fn("SqlJobRepository.create")(function*(job: NewJob) {
        const spec = yield* encodeSpec(job.spec).pipe(
          Effect.mapError((cause) =>
            new RepositoryError({
              operation: "create",
              detail: `the spec of job ${job.id} does not encode: ${describeError(cause)}`,
              cause
            })
          )
        )
        const now = yield* Clock.currentTimeMillis
        yield* sql`INSERT INTO ${jobs} ${
          sql.insert({
            id: job.id,
            name: job.spec.name ?? null,
            state: "pending",
            spec,
            total_chunks: job.totalChunks,
            completed_chunks: 0,
            failed_chunks: 0,
            created_at: now,
            updated_at: now
          })
        }`.pipe(Effect.mapError(sqlFailure("create")))
        return newJobStatus(job, new Date(now))
      }),
      get: Effect.fn("SqlJobRepository.get")(function*(id: JobId) {
        return yield* selectStatus("get", id)
      }),
      getSpec: Effect.fn("SqlJobRepository.getSpec")(function*(id: JobId) {
        const rows = yield* sql<{ readonly spec: string }>`SELECT spec FROM ${jobs} WHERE id = ${id}`.pipe(
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
      list: Effect.fn("SqlJobRepository.list")(function*(query: ListQuery) {
        const cursor = query.cursor === undefined ? undefined : yield* decodeCursor(query.cursor)
        const limit = query.limit ?? defaultListLimit
        const conditions: Array<Fragment> = []
        if (query.state !== undefined) {
          conditions.push(sql.in("state", typeof query.state === "string" ? [query.state] : query.state))
        }
        if (cursor !== undefined) {
          conditions.push(sql`(created_at, id) < (${cursor.createdAt}, ${cursor.id})`)
        }
        const statuses = yield* reading(Effect.gen(function*() {
          const rows = yield* sql`SELECT ${columns} FROM ${jobs} WHERE ${sql.and(conditions)}
            ORDER BY created_at DESC, id DESC LIMIT ${limit + 1}`.pipe(Effect.mapError(sqlFailure("list")))
          return yield* Effect.forEach(rows, (row) => Effect.map(decodeStatus("list", row), overlay))
        }))
        const page = statuses.slice(0, limit)
        const last = page[page.length - 1]
        const result: JobPage = statuses.length > limit && last !== undefined
          ? { jobs: page, nextCursor: encodeCursor({ createdAt: last.createdAt.getTime(), id: last.id }) }
          : { jobs: page }
        return result
      }),
      transition: Effect.fn("SqlJobRepository.transition")(function*(
        id: JobId,
        from: ReadonlyArray<JobState>,
        to: JobState,
        patch?: TransitionPatch
      ) {
        yield* checkCounts("transition", patch)
        const allowed = from.filter((state) => canTransition(state, to))
        const applied = allowed.length === 0
          ? Option.none<JobStatus>()
          : yield* applyTransition(id, allowed, to, patch)
        if (Option.isSome(applied)) return { applied: true, status: applied.value } satisfies TransitionResult
        const current = yield* selectStatus("transition", id)
        if (Option.isNone(current)) return yield* new JobNotFound({ jobId: id })
        return { applied: false, status: current.value } satisfies TransitionResult
      }),
      updateProgress: Effect.fn("SqlJobRepository.updateProgress")(function*(id: JobId, progress: ProgressUpdate) {
        yield* checkCounts("updateProgress", progress)
        const at = yield* Clock.currentTimeMillis
        buffer.set(id, {
          completedChunks: progress.completedChunks,
          failedChunks: progress.failedChunks,
          at,
          dirty: true
        })
      }),
      delete: Effect.fn("SqlJobRepository.delete")(function*(id: JobId) {
        const rows = yield* sql`DELETE FROM ${jobs} WHERE id = ${id} RETURNING id`.pipe(
          Effect.mapError(sqlFailure("delete"))
        )
        buffer.delete(id)
        return rows.length > 0
      })
    })
  })

const build = ({ flushInterval, schema }: Settings, open: OpenOptions) =>
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
    if (schema !== undefined) {
      yield* sql`CREATE SCHEMA IF NOT EXISTS ${sql(schema)}`.pipe(
        Effect.mapError(sqlFailure("open", `${open.label}: cannot create schema ${schema}`))
      )
    }
    yield* verifyStore(sql, dialect, schema, tables, open)
    if (open.wal) {
      yield* sql`PRAGMA journal_mode = WAL`.pipe(Effect.mapError(sqlFailure("open", `${open.label}: cannot enable WAL`)))
    }
    yield* Migrator.make({})({ loader: migrations(tables), table: tables.migrations }).pipe(
      // The Migrator reports a failing migration as a defect.
      Effect.catchAllDefect(Effect.fail),
      Effect.mapError((cause) =>
        new RepositoryError({ operation: "migrate", detail: `${open.label}: ${explain(cause)}`, cause })
      )
    )
    return yield* makeService(sql, tables, flushInterval)
  })

/**
 * Builds the store on the `SqlClient` in context (SQLite or PostgreSQL): checks the database (see the module
 * guarantees), creates or migrates the tables, and starts the progress flush fiber in the current scope.
 * Closing the scope writes the buffered progress.
 *
 * @since 0.1.0
 */
export const make = (
  options: MakeOptions = {}
): Effect.Effect<JobRepository["Type"], RepositoryError | InvalidOption, SqlClient.SqlClient | Scope.Scope> =>
  Effect.flatMap(decodeOptions(options), (settings) =>
    build(settings, { label: "the database", exclusive: false, wal: false }))

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
  return Layer.unwrapEffect(Effect.map(decodeOptions({ flushInterval: options.flushInterval }), (settings) =>
    Layer.scoped(JobRepository, build(settings, { label, exclusive: true, wal: true })).pipe(
      // WAL is switched on by the store, once the file is known to be ours: switching rewrites the header.
      Layer.provide(openClient(label, SqliteClient.layer({ filename: options.filename, disableWAL: true })))
    )))
}

/**
 * The store in PostgreSQL, for several orchestrator processes sharing one store. Tables go into `schema`
 * (created if missing) or the connection's current schema. An unreachable server fails the layer with a
 * `RepositoryError` within `connectTimeout`.
 *
 * @since 0.1.0
 */
export const layerPg = (options: PgOptions): Layer.Layer<JobRepository, RepositoryError | InvalidOption> => {
  const label = options.schema === undefined ? "PostgreSQL" : `PostgreSQL schema ${options.schema}`
  return Layer.unwrapEffect(Effect.map(
    Effect.all([decodeOptions(options), decodeDuration("connectTimeout", options.connectTimeout, defaultConnectTimeout)]),
    ([settings, connectTimeout]) =>
      Layer.scoped(JobRepository, build(settings, { label, exclusive: false, wal: false })).pipe(
        Layer.provide(openClient(label, PgClient.layer({ url: Redacted.make(options.url), connectTimeout })))
      )
  ))
}
