#!/usr/bin/env node
/**
 * `effect-jobs`: list, show, watch, cancel, pause and resume the jobs of a store, whichever process runs
 * them.
 *
 *     effect-jobs list [--state running] [--limit 20] [--db jobs.db | --pg URL] [--json]
 *     effect-jobs show <id> | watch <id> | cancel <id> | pause <id> | resume <id>
 *
 * Errors (an unknown id, a missing or foreign store, an unreachable server) print one line on stderr and
 * exit with code 1; usage errors exit with code 2.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { existsSync } from "node:fs"
import { storeLayer } from "./internal/store.js"
import { renderProgressLine, renderTable } from "./internal/terminal.js"
import type { JobStatus } from "./Job.js"
import { JobState, JobStatus as JobStatusSchema } from "./Job.js"
import type { JobClient } from "./JobClient.js"
import * as JobClientModule from "./JobClient.js"
import { RepositoryError } from "./JobError.js"
import type { JobRepository } from "./JobRepository.js"

const db = Options.text("db").pipe(
  Options.withDescription("the SQLite job store (default ./jobs.db)"),
  Options.withDefault("jobs.db")
)
const pg = Options.text("pg").pipe(
  Options.withDescription("a PostgreSQL job store, e.g. postgres://user@host:5432/db (instead of --db)"),
  Options.optional
)
const json = Options.boolean("json").pipe(Options.withDescription("print one JSON object per line"))
const store = { db, pg, json }
const jobId = Args.text({ name: "id" }).pipe(Args.withDescription("a job id"))

type StoreOptions = { readonly db: string; readonly pg: Option.Option<string>; readonly json: boolean }

/** The store named on the command line; an SQLite file must exist (the CLI never creates a store). */
const cliStore = (options: StoreOptions): Layer.Layer<JobRepository, RepositoryError> =>
  Option.match(options.pg, {
    onSome: (postgres) => storeLayer({ postgres }),
    onNone: () =>
      existsSync(options.db)
        ? storeLayer({ sqlite: options.db })
        : Layer.fail(
          new RepositoryError({ operation: "open", detail: `no job store at ${options.db} (use --db FILE or --pg URL)` })
        )
  })

const encodeStatus = Schema.encodeSync(JobStatusSchema)
const printJson = (status: JobStatus) => Console.log(JSON.stringify(encodeStatus(status)))

const when = (date: Date | undefined): string => date === undefined ? "-" : date.toISOString().replace("T", " ").slice(0, 19)

const printStatus = (status: JobStatus, asJson: boolean) =>
  asJson
    ? printJson(status)
    : Console.log(renderTable(
      ["field", "value"],
      [
        ["id", status.id],
        ["name", status.name ?? "-"],
        ["state", status.phase === undefined ? status.state : `${status.state} (${status.phase})`],
        ["chunks", `${status.completedChunks}/${status.totalChunks} done, ${status.failedChunks} failed`],
        ["progress", `${status.progress}%`],
        ["error", status.error ?? "-"],
        ["owner", status.owner ?? "-"],
        ["created", when(status.createdAt)],
        ["started", when(status.startedAt)],
        ["finished", when(status.finishedAt)],
        ...(status.retryOf === undefined ? [] : [["retry of", status.retryOf] as [string, string]])
      ]
    ))

/** Runs `body` with a client of the chosen store. */
const withClient = <A, E>(options: StoreOptions, body: (client: JobClient) => Effect.Effect<A, E>) =>
  Effect.flatMap(JobClientModule.make(), body).pipe(Effect.provide(cliStore(options)))

const list = Command.make("list", {
  ...store,
  state: Options.choice("state", JobState.literals).pipe(Options.repeated),
  limit: Options.integer("limit").pipe(Options.withDefault(20))
}, (options) =>
  withClient(options, (client) =>
    Effect.gen(function*() {
      const page = yield* client.listJobs({
        ...(options.state.length === 0 ? {} : { state: options.state }),
        limit: options.limit
      })
      if (options.json) return yield* Effect.forEach(page.jobs, printJson, { discard: true })
      yield* Console.log(renderTable(
        ["id", "name", "state", "progress", "chunks", "created"],
        page.jobs.map((job) => [
          job.id,
          job.name ?? "-",
          job.state,
          `${job.progress}%`,
          `${job.completedChunks}/${job.totalChunks}`,
          when(job.createdAt)
        ])
      ))
      if (page.nextCursor !== undefined) yield* Console.log(`(more: raise --limit to see older jobs)`)
    }))).pipe(Command.withDescription("list jobs, newest first"))

const show = Command.make("show", { ...store, id: jobId }, (options) =>
  withClient(options, (client) => Effect.flatMap(client.getJob(options.id), (status) => printStatus(status, options.json))))
  .pipe(Command.withDescription("show one job"))

const watch = Command.make("watch", { ...store, id: jobId }, (options) =>
  withClient(options, (client) => {
    const tty = process.stdout.isTTY === true && !options.json
    return client.watchJob(options.id).pipe(
      Stream.runForEach((status) =>
        options.json
          ? printJson(status)
          : tty
          ? Effect.sync(() => process.stdout.write(`\r\x1b[2K${renderProgressLine(status)}`))
          : Console.log(renderProgressLine(status))
      ),
      Effect.zipRight(tty ? Console.log("") : Effect.void)
    )
  })).pipe(Command.withDescription("follow a job's progress until it ends"))

const control = (name: "cancel" | "pause" | "resume", description: string) =>
  Command.make(name, { ...store, id: jobId }, (options) =>
    withClient(options, (client) =>
      Effect.flatMap(
        name === "cancel" ? client.cancelJob(options.id) : name === "pause" ? client.pauseJob(options.id) : client.resumeJob(options.id),
        (status) => options.json ? printJson(status) : Console.log(`${status.id} ${status.state}`)
      ))).pipe(Command.withDescription(description))

const cli = Command.make("effect-jobs").pipe(
  Command.withDescription("control the jobs of an effect-jobs store"),
  Command.withSubcommands([
    list,
    show,
    watch,
    control("cancel", "cancel a job (a running one is interrupted by the process that runs it)"),
    control("pause", "pause a job; its completed chunks are kept"),
    control("resume", "queue a paused job again; a running manager on the store picks it up")
  ])
)

const run = Command.run(cli, { name: "effect-jobs", version: "0.1.0" })

run(process.argv).pipe(
  Effect.catchAll((error) =>
    ValidationError.isValidationError(error)
      ? Effect.sync(() => (process.exitCode = 2)) // @effect/cli has printed the usage error
      : Effect.zipRight(
        Console.error(`effect-jobs: ${error.message}`),
        Effect.sync(() => (process.exitCode = 1))
      )
  ),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
