/** The local PostgreSQL server the benchmarks use when it answers (`.ci/run` starts it). */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"

export const pgUrl = process.env["EFFECT_JOBS_BENCH_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"

const withClient = <A>(use: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.flatMap(SqlClient.SqlClient, use).pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl), connectTimeout: "2 seconds" })),
    Effect.scoped
  )

/** Whether the server answers within 2 seconds. */
export const postgresAvailable = (): Promise<boolean> =>
  Effect.runPromise(withClient((sql) => sql`SELECT 1`).pipe(Effect.as(true), Effect.orElseSucceed(() => false)))

/** Drops a schema a benchmark made, with everything in it. */
export const dropPgSchema = (schema: string): Promise<void> =>
  Effect.runPromise(withClient((sql) => sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`).pipe(Effect.ignore))

/** Creates an empty database `name` on the server and returns its URL. */
export const createPgDatabase = async (name: string): Promise<string> => {
  await Effect.runPromise(withClient((sql) => sql`CREATE DATABASE ${sql(name)}`))
  const url = new URL(pgUrl)
  url.pathname = `/${name}`
  return url.toString()
}

/** Drops a database a benchmark made (its connections are closed first). */
export const dropPgDatabase = (name: string): Promise<void> =>
  Effect.runPromise(withClient((sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`).pipe(Effect.ignore))
