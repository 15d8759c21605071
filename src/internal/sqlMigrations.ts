/**
 * The tables of the SQL job store and the migrations that create them.
 *
 * Schema version 1:
 * - `effect_jobs`: one row per job. Times are integer milliseconds since the epoch. `spec` is the job spec
 *   as JSON, exactly as submitted (a range plan stays a range plan). `owner`, `heartbeat_at`, `checkpoint`
 *   (the completed chunks as compact ranges) and `cancel_requested` are reserved for running jobs from
 *   several processes and stay at their defaults for now.
 * - `effect_jobs_meta`: key/value rows; `application` = `effect-jobs` marks the store as ours and
 *   `schema_version` records the version of these tables.
 * - `effect_jobs_migrations`: the `@effect/sql` Migrator's bookkeeping.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"

/** The value of the `application` meta row of every effect-jobs store. */
export const applicationName = "effect-jobs"

/** The newest schema version this code knows; a store with a newer one is refused. */
export const schemaVersion = 1

export interface Tables {
  readonly jobs: string
  readonly meta: string
  readonly migrations: string
}

/** The (schema-qualified, when `schema` is given) names of the store's tables. */
export const tablesIn = (schema: string | undefined): Tables => {
  const qualify = (name: string) => (schema === undefined ? name : `${schema}.${name}`)
  return { jobs: qualify("effect_jobs"), meta: qualify("effect_jobs_meta"), migrations: qualify("effect_jobs_migrations") }
}

/** The unqualified table names, as catalogs list them. */
export const tableNames: ReadonlyArray<string> = ["effect_jobs", "effect_jobs_meta", "effect_jobs_migrations"]

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
        { key: "schema_version", value: String(schemaVersion) }
      ])
    }`
  })

/** The migrations, in order; the last one leaves `schema_version` at {@link schemaVersion}. */
export const migrations = (tables: Tables): Migrator.Loader =>
  Migrator.fromRecord({
    "1_create_jobs": createTables(tables)
  })
