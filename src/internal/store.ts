/** The job store a facade or CLI user names: memory, an SQLite file, or a PostgreSQL URL. */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { describeError, RepositoryError } from "../JobError.js"
import type { JobRepository } from "../JobRepository.js"
import * as JobRepositoryModule from "../JobRepository.js"

/** `"memory"`, `{ sqlite: "jobs.db" }`, `{ postgres: "postgres://…" }`, or a `postgres://` URL string. */
export const StoreOption = Schema.Union(
  Schema.Literal("memory"),
  Schema.String.pipe(Schema.pattern(/^postgres(ql)?:\/\//, { message: () => "expected a postgres:// URL" })),
  Schema.Struct({ sqlite: Schema.String.pipe(Schema.minLength(1)) }),
  Schema.Struct({ postgres: Schema.String.pipe(Schema.pattern(/^postgres(ql)?:\/\//)) })
)
export type StoreOption = typeof StoreOption.Type

/**
 * The repository layer of a store option; opening failures are `RepositoryError`s. The SQL module (and
 * its native SQLite driver) is loaded only when a SQL store is asked for. `create: false` opens only a
 * database that already is an effect-jobs store, and writes nothing to any other.
 */
export const storeLayer = (
  store: StoreOption | undefined,
  options: { readonly create?: boolean | undefined } = {}
): Layer.Layer<JobRepository, RepositoryError> => {
  if (store === undefined || store === "memory") return JobRepositoryModule.layerMemory
  const load = Effect.tryPromise({
    try: () => import("../SqlJobRepository.js"),
    catch: (error) =>
      new RepositoryError({ operation: "open", detail: `could not load the SQL store: ${describeError(error)}` })
  })
  return Layer.unwrapEffect(Effect.map(load, (Sql) => {
    const opened = typeof store === "string"
      ? Sql.layerPg({ url: store, create: options.create })
      : "sqlite" in store
      ? Sql.layerSqlite({ filename: store.sqlite, create: options.create })
      : Sql.layerPg({ url: store.postgres, create: options.create })
    return Layer.mapError(opened, (error) =>
      error._tag === "InvalidOption" ? new RepositoryError({ operation: "open", detail: error.message }) : error)
  }))
}
