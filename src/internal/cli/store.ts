/**
 * The store a command works on: `--db FILE` (default `./jobs.db`) or `--pg URL`. The CLI never creates a
 * store, nor writes to a database that is not one.
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { RepositoryError } from "../../JobError.js"
import type { JobRepository } from "../../JobRepository.js"
import type { StoreOption } from "../store.js"
import { storeLayer } from "../store.js"
import type { Input, OptionSpec } from "./command.js"
import { stringValue, UsageError } from "./command.js"

/** The options that name the store, shared by every command. */
export const storeOptions: { readonly [name: string]: OptionSpec } = {
  db: { type: "string", value: "FILE", description: "the SQLite job store (default ./jobs.db)" },
  pg: {
    type: "string",
    value: "URL",
    description: "a PostgreSQL job store, e.g. postgres://user@host:5432/db (instead of --db)"
  }
}

const isPostgresUrl = (text: string): boolean => {
  try {
    const url = new URL(text)
    return (url.protocol === "postgres:" || url.protocol === "postgresql:") && url.hostname !== ""
  } catch {
    return false
  }
}

/** The store named by `--db` / `--pg`; both, an empty file name or a malformed URL is a usage error. */
export const storeOf = (input: Input): Effect.Effect<StoreOption, UsageError> => {
  const db = stringValue(input, "db")
  const pg = stringValue(input, "pg")
  if (db !== undefined && pg !== undefined) {
    return Effect.fail(new UsageError({ subject: "--db", problem: "give --db FILE or --pg URL, not both" }))
  }
  if (pg !== undefined) {
    return isPostgresUrl(pg)
      ? Effect.succeed(pg)
      : Effect.fail(
        new UsageError({
          subject: "--pg",
          problem: `${JSON.stringify(pg)} is not a PostgreSQL URL (expected postgres://user@host:5432/database)`
        })
      )
  }
  if (db === "") return Effect.fail(new UsageError({ subject: "--db", problem: "needs a file name" }))
  return Effect.succeed({ sqlite: db ?? "jobs.db" })
}

/** The repository of the store named on the command line, opened without creating anything. */
export const repositoryOf = (input: Input): Effect.Effect<Layer.Layer<JobRepository, RepositoryError>, UsageError> =>
  Effect.map(storeOf(input), (store) => storeLayer(store, { create: false }))

/** A human-readable name of the store, for messages. */
export const storeLabel = (store: StoreOption): string =>
  typeof store === "string"
    ? redactUrl(store)
    : "sqlite" in store
    ? store.sqlite
    : redactUrl(store.postgres)

/** A URL without its password. */
const redactUrl = (text: string): string => {
  try {
    const url = new URL(text)
    if (url.password !== "") url.password = "***"
    return url.toString()
  } catch {
    return text
  }
}
