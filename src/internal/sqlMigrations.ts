/**
 * The tables of the SQL job store and the migrations that create them. Each migration runs in one
 * transaction (the Migrator's), so a store is at one version or the next, never in between.
 *
 * Schema version 1:
 * - `effect_jobs`: one row per job. Times are integer milliseconds since the epoch. `spec` is the job spec
 *   as JSON, exactly as submitted (a range plan stays a range plan). `owner`, `heartbeat_at`, `checkpoint`
 *   and `cancel_requested` were reserved and unused.
 * - `effect_jobs_meta`: key/value rows; `application` = `effect-jobs` marks the store as ours and
 *   `schema_version` records the version of these tables.
 * - `effect_jobs_migrations`: the `@effect/sql` Migrator's bookkeeping.
 *
 * Schema version 2 (jobs run by several managers, resumable from checkpoints):
 * - `effect_jobs` gains `phase` (`finalizing` or NULL), `retry_of` (the failed job a re-drive repeats),
 *   `stop_requested` (`cancel` or `pause`: a stop request for the owner of a running job) and
 *   `stop_request_id` (a fresh id per stored request, so its owner acts on each request once).
 *   `owner` now holds the manager that runs the job; `checkpoint` holds the completed chunk ids as
 *   `RangeSet` text (`0-99,120`; NULL is empty). The unused `heartbeat_at` and `cancel_requested` go.
 * - `effect_jobs_owners`: one row per live manager, `heartbeat_at` its last heartbeat (millis).
 *
 * Schema version 3 (fenced ownership):
 * - `effect_jobs` gains `lease` (0 when created, incremented by every change of state): every write of a
 *   job's owner names the lease it holds, so a stale owner's writes match no row.
 * - The spec moves to `effect_jobs_specs` (`id`, `spec`), written once when the job is created: SQLite
 *   rewrites a whole row on every update, and a job's row is updated on every progress flush.
 * - Stop requests are read by job, not by owner: the partial index on `owner` becomes one on
 *   `(created_at, id)` of the jobs with a request; a partial index on `owner` of the `pending` and `running`
 *   jobs serves claims and a manager's look at its own jobs.
 *
 * Schema version 4 (chunk results and history):
 * - `effect_jobs_chunks`: one row per chunk that has something to keep beyond the checkpoint (a result, a
 *   failure, more than one attempt): `job_id`, `chunk_id`, `state` (`completed` or `failed`), `attempts`,
 *   `result` (JSON or NULL), `error`, `started_at`, `finished_at`; keyed by `(job_id, chunk_id)`. Chunks
 *   completed at their first attempt without a result stay ids in the checkpoint only.
 * - `effect_jobs_specs` gains `metadata` (the spec's metadata as JSON, NULL when it has none), so a job's
 *   metadata is read without its spec.
 * - `effect_jobs` gains `partial_chunks`: the in-chunk progress of its running chunks (the sum of the
 *   fractions they reported), written with the buffered progress.
 *
 * Schema version 5 (streamed jobs, resumable):
 * - `effect_jobs` gains `streaming` (1 while a streamed job's stream has not ended: its `total_chunks` is
 *   then 0 and means nothing; 0 otherwise).
 * - `effect_jobs_pulled`: the chunks pulled from a streamed job's stream and not completed (`job_id`,
 *   `chunk_id`, `payload` as JSON), keyed by `(job_id, chunk_id)`, written with the checkpoint by the same
 *   flush; a chunk's row goes in the flush that adds its id to the checkpoint. A resumed job runs these again,
 *   then pulls its stream again skipping the ids of the checkpoint and of these rows.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"

/** The value of the `application` meta row of every effect-jobs store. */
export const applicationName = "effect-jobs"

/** The newest schema version this code knows; a store with a newer one is refused. */
export const schemaVersion = 5

export interface Tables {
  readonly jobs: string
  readonly specs: string
  readonly chunks: string
  readonly pulled: string
  readonly owners: string
  readonly meta: string
  readonly migrations: string
  /** Qualifies the name of another object of the store (an index). */
  readonly qualify: (name: string) => string
}

/** The (schema-qualified, when `schema` is given) names of the store's tables. */
export const tablesIn = (schema: string | undefined): Tables => {
  const qualify = (name: string) => (schema === undefined ? name : `${schema}.${name}`)
  return {
    jobs: qualify("effect_jobs"),
    specs: qualify("effect_jobs_specs"),
    chunks: qualify("effect_jobs_chunks"),
    pulled: qualify("effect_jobs_pulled"),
    owners: qualify("effect_jobs_owners"),
    meta: qualify("effect_jobs_meta"),
    migrations: qualify("effect_jobs_migrations"),
    qualify
  }
}

/** The unqualified table names, as catalogs list them. */
export const tableNames: ReadonlyArray<string> = [
  "effect_jobs",
  "effect_jobs_chunks",
  "effect_jobs_meta",
  "effect_jobs_migrations",
  "effect_jobs_owners",
  "effect_jobs_pulled",
  "effect_jobs_specs"
]

const createTables = (tables: Tables) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const jobs = sql(tables.jobs)
    const meta = sql(tables.meta)
    yield* sql.onDialectOrElse({
      pg: () =>
        sql`CREATE TABLE ${jobs} (
          id TEXT COLLATE "C" PRIMARY KEY,
          name TEXT,
          state TEXT NOT NULL
            CHECK (state IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
          spec TEXT NOT NULL,
          total_chunks BIGINT NOT NULL CHECK (total_chunks >= 0),
          completed_chunks BIGINT NOT NULL DEFAULT 0 CHECK (completed_chunks >= 0),
          failed_chunks BIGINT NOT NULL DEFAULT 0 CHECK (failed_chunks >= 0),
          error TEXT,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          started_at BIGINT,
          finished_at BIGINT,
          owner TEXT,
          heartbeat_at BIGINT,
          checkpoint TEXT,
          cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
        )`,
      orElse: () =>
        sql`CREATE TABLE ${jobs} (
          id TEXT PRIMARY KEY NOT NULL,
          name TEXT,
          state TEXT NOT NULL
            CHECK (state IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
          spec TEXT NOT NULL,
          total_chunks INTEGER NOT NULL CHECK (total_chunks >= 0),
          completed_chunks INTEGER NOT NULL DEFAULT 0 CHECK (completed_chunks >= 0),
          failed_chunks INTEGER NOT NULL DEFAULT 0 CHECK (failed_chunks >= 0),
          error TEXT,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          started_at INTEGER,
          finished_at INTEGER,
          owner TEXT,
          heartbeat_at INTEGER,
          checkpoint TEXT,
          cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1))
        ) STRICT`
    })
    yield* sql`CREATE INDEX effect_jobs_newest ON ${jobs} (created_at DESC, id DESC)`
    yield* sql`CREATE INDEX effect_jobs_state_newest ON ${jobs} (state, created_at DESC, id DESC)`
    yield* sql`CREATE TABLE ${meta} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)`
    yield* sql`INSERT INTO ${meta} ${
      sql.insert([
        { key: "application", value: applicationName },
        { key: "schema_version", value: "1" }
      ])
    }`
  })

const addOwnersCheckpointsAndStops = (tables: Tables) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const jobs = sql(tables.jobs)
    const statements = [
      sql`ALTER TABLE ${jobs} ADD COLUMN phase TEXT CHECK (phase IN ('finalizing'))`,
      sql`ALTER TABLE ${jobs} ADD COLUMN retry_of TEXT`,
      sql`ALTER TABLE ${jobs} ADD COLUMN stop_requested TEXT CHECK (stop_requested IN ('cancel', 'pause'))`,
      sql`ALTER TABLE ${jobs} ADD COLUMN stop_request_id TEXT`,
      sql`ALTER TABLE ${jobs} DROP COLUMN heartbeat_at`,
      sql`ALTER TABLE ${jobs} DROP COLUMN cancel_requested`,
      // What `stopRequests` reads: the few jobs with a request, by owner.
      sql`CREATE INDEX effect_jobs_stop_requests ON ${jobs} (owner) WHERE stop_requested IS NOT NULL`,
      sql.onDialectOrElse({
        pg: () =>
          sql`CREATE TABLE ${sql(tables.owners)} (
            owner TEXT COLLATE "C" PRIMARY KEY,
            heartbeat_at BIGINT NOT NULL
          )`,
        orElse: () =>
          sql`CREATE TABLE ${sql(tables.owners)} (
            owner TEXT PRIMARY KEY NOT NULL,
            heartbeat_at INTEGER NOT NULL
          ) STRICT`
      }),
      sql`UPDATE ${sql(tables.meta)} SET value = '2' WHERE key = 'schema_version'`
    ]
    for (const statement of statements) yield* statement
  })

const addLeasesAndSpecs = (tables: Tables) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const jobs = sql(tables.jobs)
    const specs = sql(tables.specs)
    const statements = [
      sql.onDialectOrElse({
        pg: () => sql`ALTER TABLE ${jobs} ADD COLUMN lease BIGINT NOT NULL DEFAULT 0 CHECK (lease >= 0)`,
        orElse: () => sql`ALTER TABLE ${jobs} ADD COLUMN lease INTEGER NOT NULL DEFAULT 0 CHECK (lease >= 0)`
      }),
      sql.onDialectOrElse({
        pg: () => sql`CREATE TABLE ${specs} (id TEXT COLLATE "C" PRIMARY KEY, spec TEXT NOT NULL)`,
        orElse: () => sql`CREATE TABLE ${specs} (id TEXT PRIMARY KEY NOT NULL, spec TEXT NOT NULL) STRICT`
      }),
      sql`INSERT INTO ${specs} (id, spec) SELECT id, spec FROM ${jobs}`,
      sql`ALTER TABLE ${jobs} DROP COLUMN spec`,
      sql`DROP INDEX ${sql(tables.qualify("effect_jobs_stop_requests"))}`,
      sql`CREATE INDEX effect_jobs_stop_requested ON ${jobs} (created_at, id) WHERE stop_requested IS NOT NULL`,
      // What claims and a manager's look at its own jobs read: the few jobs not yet settled, by owner.
      sql`CREATE INDEX effect_jobs_active_owner ON ${jobs} (owner) WHERE state IN ('pending', 'running')`,
      sql`UPDATE ${sql(tables.meta)} SET value = '3' WHERE key = 'schema_version'`
    ]
    for (const statement of statements) yield* statement
  })

const addChunksAndMetadata = (tables: Tables) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const jobs = sql(tables.jobs)
    const specs = sql(tables.specs)
    const statements = [
      sql.onDialectOrElse({
        pg: () =>
          sql`CREATE TABLE ${sql(tables.chunks)} (
            job_id TEXT COLLATE "C" NOT NULL,
            chunk_id BIGINT NOT NULL CHECK (chunk_id >= 0),
            state TEXT NOT NULL CHECK (state IN ('completed', 'failed')),
            attempts INTEGER NOT NULL CHECK (attempts >= 1),
            result TEXT,
            error TEXT,
            started_at BIGINT NOT NULL,
            finished_at BIGINT NOT NULL,
            PRIMARY KEY (job_id, chunk_id)
          )`,
        orElse: () =>
          sql`CREATE TABLE ${sql(tables.chunks)} (
            job_id TEXT NOT NULL,
            chunk_id INTEGER NOT NULL CHECK (chunk_id >= 0),
            state TEXT NOT NULL CHECK (state IN ('completed', 'failed')),
            attempts INTEGER NOT NULL CHECK (attempts >= 1),
            result TEXT,
            error TEXT,
            started_at INTEGER NOT NULL,
            finished_at INTEGER NOT NULL,
            PRIMARY KEY (job_id, chunk_id)
          ) STRICT, WITHOUT ROWID`
      }),
      sql`ALTER TABLE ${specs} ADD COLUMN metadata TEXT`,
      sql.onDialectOrElse({
        pg: () => sql`UPDATE ${specs} SET metadata = (spec::jsonb -> 'metadata')::text WHERE spec::jsonb -> 'metadata' IS NOT NULL`,
        orElse: () => sql`UPDATE ${specs} SET metadata = json_extract(spec, '$.metadata') WHERE json_type(spec, '$.metadata') = 'object'`
      }),
      sql.onDialectOrElse({
        pg: () => sql`ALTER TABLE ${jobs} ADD COLUMN partial_chunks DOUBLE PRECISION NOT NULL DEFAULT 0`,
        orElse: () => sql`ALTER TABLE ${jobs} ADD COLUMN partial_chunks REAL NOT NULL DEFAULT 0`
      }),
      sql`UPDATE ${sql(tables.meta)} SET value = '4' WHERE key = 'schema_version'`
    ]
    for (const statement of statements) yield* statement
  })

const addPulledChunks = (tables: Tables) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const statements = [
      sql`ALTER TABLE ${sql(tables.jobs)} ADD COLUMN streaming INTEGER NOT NULL DEFAULT 0 CHECK (streaming IN (0, 1))`,
      sql.onDialectOrElse({
        pg: () =>
          sql`CREATE TABLE ${sql(tables.pulled)} (
            job_id TEXT COLLATE "C" NOT NULL,
            chunk_id BIGINT NOT NULL CHECK (chunk_id >= 0),
            payload TEXT NOT NULL,
            PRIMARY KEY (job_id, chunk_id)
          )`,
        orElse: () =>
          sql`CREATE TABLE ${sql(tables.pulled)} (
            job_id TEXT NOT NULL,
            chunk_id INTEGER NOT NULL CHECK (chunk_id >= 0),
            payload TEXT NOT NULL,
            PRIMARY KEY (job_id, chunk_id)
          ) STRICT, WITHOUT ROWID`
      }),
      sql`UPDATE ${sql(tables.meta)} SET value = '5' WHERE key = 'schema_version'`
    ]
    for (const statement of statements) yield* statement
  })

/** The migrations, in order; the last one leaves `schema_version` at {@link schemaVersion}. */
export const migrations = (tables: Tables): Migrator.Loader =>
  Migrator.fromRecord({
    "1_create_jobs": createTables(tables),
    "2_owners_checkpoints_stops": addOwnersCheckpointsAndStops(tables),
    "3_leases_and_specs": addLeasesAndSpecs(tables),
    "4_chunks_and_metadata": addChunksAndMetadata(tables),
    "5_pulled_chunks": addPulledChunks(tables)
  })
