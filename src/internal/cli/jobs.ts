/**
 * The commands that read and control the jobs of a store: list, show, watch, cancel, pause, resume, retry,
 * delete and prune. Each works on the store named by `--db` / `--pg`, whichever process runs the jobs.
 */
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { ChunkPage, JobStatus } from "../../Job.js"
import { ChunkState, JobState } from "../../Job.js"
import type { JobClient } from "../../JobClient.js"
import * as JobClientModule from "../../JobClient.js"
import { InvalidOption } from "../../JobError.js"
import { JobRepository } from "../../JobRepository.js"
import type { Control } from "../control.js"
import { control } from "../control.js"
import { RateMeter } from "../rate.js"
import { TerminalState } from "../retention.js"
import { describeState, renderProgressLine, renderTable } from "../terminal.js"
import type { Command, Input, OptionSpec } from "./command.js"
import { choices, CommandFailed, integerValue, stringValue, UsageError } from "./command.js"
import { isTerminal as isTerminalOutput, note, printChunkJson, printJson, when } from "./output.js"
import { resolveJob } from "./resolve.js"
import { repositoryOf, storeOptions } from "./store.js"

const json: OptionSpec = { type: "boolean", description: "print one JSON object per line" }

const jobArg = [{
  name: "job",
  description: "a job id, a unique prefix of one (6 characters or more), or a job name"
}] as const

/** Runs `body` with a client and the repository of the store named on the command line. */
const withStore = <A, E>(
  input: Input,
  body: (client: JobClient, repository: JobRepository["Type"]) => Effect.Effect<A, E>
) =>
  Effect.flatMap(repositoryOf(input), (layer) =>
    Effect.gen(function*() {
      const repository = yield* JobRepository
      // Watch and a cancel waiting for the owner re-read the job when the store signals a change, and at least
      // every 100 ms.
      const client = yield* JobClientModule.make({ pollInterval: 100 })
      return yield* body(client, repository)
    }).pipe(Effect.provide(layer)))

/** Runs `body` on the job named by the `<job>` argument. */
const withJob = <A, E>(
  input: Input,
  body: (client: JobClient, status: JobStatus) => Effect.Effect<A, E>
) => withStore(input, (client, repository) => Effect.flatMap(resolveJob(repository, input.positionals[0]!), (status) => body(client, status)))

/** A bad listing option (a cursor that is not one) is the user's: a usage error naming it. */
const asUsageError = <A, E, R>(effect: Effect.Effect<A, E | InvalidOption, R>): Effect.Effect<A, E | UsageError, R> =>
  Effect.catchIf(
    effect,
    (error): error is InvalidOption => error instanceof InvalidOption,
    (error) => Effect.fail(new UsageError({ subject: `--${error.path.join(".")}`, problem: error.detail }))
  ) as Effect.Effect<A, E | UsageError, R>

/** The owners of running jobs that are gone, with how long they have been silent (`null`: never beat). */
const silences = (client: JobClient, statuses: ReadonlyArray<JobStatus>) =>
  Effect.map(client.goneOwners(statuses), (gone) => (status: JobStatus): number | null | undefined =>
    status.state !== "running" || status.owner === undefined || !gone.has(status.owner)
      ? undefined
      : gone.get(status.owner) ?? null)

export const list: Command = {
  name: "list",
  summary: "list jobs, newest first",
  options: {
    state: {
      type: "string",
      multiple: true,
      value: "STATE",
      description: `only jobs in this state (repeat, or separate with commas: ${JobState.literals.join(", ")})`
    },
    limit: { type: "string", value: "N", description: "at most N jobs (1 to 1000, default 20)" },
    cursor: { type: "string", value: "CURSOR", description: "the next page of a listing (printed after a full page)" },
    json,
    ...storeOptions
  },
  run: (input) =>
    Effect.gen(function*() {
      const query = yield* pageQuery(input, JobState.literals, "a job state", 20)
      yield* withStore(input, (client) =>
        Effect.gen(function*() {
          const page = yield* client.listJobs(query).pipe(asUsageError)
          const more = page.nextCursor === undefined ? undefined : `more jobs: add --cursor ${page.nextCursor}`
          if (input.values["json"] === true) {
            yield* Effect.forEach(page.jobs, printJson, { discard: true })
            if (more !== undefined) yield* note(more)
            return
          }
          const silence = yield* silences(client, page.jobs)
          yield* Console.log(renderTable(
            ["id", "name", "state", "progress", "chunks", "created"],
            page.jobs.map((job) => [
              job.id,
              job.name ?? "-",
              describeState(job, silence(job)),
              `${job.progress}%`,
              `${job.completedChunks}/${job.totalChunks ?? "?"}`,
              when(job.createdAt)
            ])
          ))
          if (more !== undefined) yield* Console.log(`(${more})`)
        }))
    })
}

/** The `--state` (repeatable), `--limit` and `--cursor` of a listing command, as its query. */
const pageQuery = <const A extends string>(
  input: Input,
  states: ReadonlyArray<A>,
  what: string,
  defaultLimit: number
) =>
  Effect.gen(function*() {
    const state = yield* choices(input, "state", states, what)
    const limit = yield* integerValue(input, "limit", { min: 1, max: 1000, fallback: defaultLimit })
    const cursor = stringValue(input, "cursor")
    return { ...(state.length === 0 ? {} : { state }), limit, ...(cursor === undefined ? {} : { cursor }) }
  })

/** A value shown in a table cell: JSON cut to `width` characters. */
const cell = (value: unknown, width: number): string => {
  if (value === undefined) return "-"
  const text = typeof value === "string" ? value : JSON.stringify(value)
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`
}

/** `show <job> --chunks`: one page of the job's chunks. */
const showChunks = (input: Input, client: JobClient, status: JobStatus) =>
  Effect.gen(function*() {
    const query = yield* pageQuery(input, ChunkState.literals, "a chunk state", 100)
    const page: ChunkPage = yield* client.listChunks(status.id, query).pipe(asUsageError)
    const more = page.nextCursor === undefined ? undefined : `more chunks: add --cursor ${page.nextCursor}`
    if (input.values["json"] === true) {
      yield* Effect.forEach(page.chunks, printChunkJson, { discard: true })
      if (more !== undefined) yield* note(more)
      return
    }
    yield* Console.log(renderTable(
      ["chunk", "state", "attempts", "finished", "result", "error"],
      page.chunks.map((chunk) => [
        String(chunk.id),
        chunk.progress === undefined ? chunk.state : `${chunk.state} ${Math.floor(chunk.progress * 100)}%`,
        String(chunk.attempts),
        when(chunk.finishedAt),
        cell(chunk.result, 40),
        cell(chunk.error, 60)
      ])
    ))
    if (more !== undefined) yield* Console.log(`(${more})`)
  })

export const show: Command = {
  name: "show",
  summary: "show one job, or a page of its chunks",
  args: jobArg,
  options: {
    chunks: { type: "boolean", description: "list the job's chunks (state, attempts, result, last error)" },
    state: {
      type: "string",
      multiple: true,
      value: "STATE",
      description: `with --chunks: only chunks in this state (${ChunkState.literals.join(", ")})`
    },
    limit: { type: "string", value: "N", description: "with --chunks: at most N chunks (1 to 1000, default 100)" },
    cursor: { type: "string", value: "CURSOR", description: "with --chunks: the next page (printed after a full page)" },
    json,
    ...storeOptions
  },
  notes: [
    "A chunk in flight shows as pending here: only the process that runs the job knows which chunks run now."
  ],
  run: (input) =>
    withJob(input, (client, found) =>
      Effect.gen(function*() {
        const chunkOnly = ["state", "limit", "cursor"].find((name) => input.values[name] !== undefined)
        if (input.values["chunks"] === true) return yield* showChunks(input, client, found)
        if (chunkOnly !== undefined) {
          return yield* new UsageError({ subject: `--${chunkOnly}`, problem: "only with --chunks" })
        }
        // Read on its own, the job comes with its metadata.
        const status = yield* client.getJob(found.id)
        if (input.values["json"] === true) return yield* printJson(status)
        const silence = (yield* silences(client, [status]))(status)
        const owner = status.owner === undefined
          ? "-"
          : silence === undefined
          ? status.owner
          : `${status.owner} (gone)`
        yield* Console.log(renderTable(["field", "value"], [
          ["id", status.id],
          ["name", status.name ?? "-"],
          ["state", describeState(status, silence)],
          ["chunks", `${status.completedChunks}/${status.totalChunks ?? "?"} done, ${status.failedChunks} failed`],
          ["progress", `${status.progress}%`],
          ["error", status.error ?? "-"],
          ["owner", owner],
          ["created", when(status.createdAt)],
          ["started", when(status.startedAt)],
          ["finished", when(status.finishedAt)],
          ...(status.retryOf === undefined ? [] : [["retry of", status.retryOf] as [string, string]]),
          ...(status.metadata === undefined ? [] : [["metadata", cell(status.metadata, 200)] as [string, string]])
        ], false))
      }))
}

export const watch: Command = {
  name: "watch",
  summary: "follow a job's progress (with its rate and ETA) until it ends",
  args: jobArg,
  options: { json, ...storeOptions },
  notes: ["Exits with 0 when the job completed, 1 when it failed or was cancelled."],
  run: (input) =>
    withJob(input, (client, first) => {
      const asJson = input.values["json"] === true
      const redraw = isTerminalOutput() && !asJson
      const meter = new RateMeter()
      return client.watchJob(first.id).pipe(
        Stream.runFoldEffect(first, (_, status) =>
          Effect.gen(function*() {
            if (asJson) {
              yield* printJson(status)
              return status
            }
            meter.observe(status)
            const now = yield* Clock.currentTimeMillis
            const line = renderProgressLine(status, { rate: meter.rate(now), etaSeconds: meter.etaSeconds(status, now) })
            yield* redraw ? Effect.sync(() => process.stdout.write(`\r\x1b[2K${line}`)) : Console.log(line)
            return status
          })),
        Effect.tap(() => (redraw ? Console.log("") : Effect.void)),
        Effect.flatMap((last) =>
          last.state === "completed"
            ? Effect.void
            : Effect.fail(
              new CommandFailed({
                message: `job ${last.id} ${last.state}${last.error === undefined ? "" : `: ${last.error}`}`
              })
            )
        )
      )
    })
}

const controlCommand = (action: Control, summary: string): Command => ({
  name: action,
  summary,
  args: jobArg,
  options: { json, ...storeOptions },
  notes: [
    action === "cancel"
      ? "Cancelling a job that has already ended changes nothing and exits with 0."
      : `A job that has ended cannot be ${action === "pause" ? "paused" : "resumed"}: exit code 1.`
  ],
  run: (input) =>
    withJob(input, (client, before) =>
      Effect.gen(function*() {
        const outcome = yield* control(client, action, before)
        yield* input.values["json"] === true
          ? printJson(outcome.status)
          : Console.log(`${outcome.status.id} ${outcome.status.state}`)
        if (outcome.note !== undefined) yield* note(outcome.note)
      }))
})

export const cancel = controlCommand(
  "cancel",
  "cancel a job (a running one is interrupted by the process that runs it)"
)
export const pause = controlCommand("pause", "pause a job; its completed chunks are kept")
export const resume = controlCommand(
  "resume",
  "queue a paused job again; a job manager running on the store picks it up"
)

export const retry: Command = {
  name: "retry",
  summary: "re-run a failed job's failed and never-run chunks as a new job",
  args: jobArg,
  options: { json, ...storeOptions },
  notes: ["The new job waits as pending until a job manager running on the store picks it up."],
  run: (input) =>
    withJob(input, (client, failed) =>
      Effect.gen(function*() {
        const status = yield* client.retryJob(failed.id)
        yield* input.values["json"] === true ? printJson(status) : Console.log(`${status.id} ${status.state}`)
        yield* note(`job ${status.id} re-drives job ${failed.id}; a job manager running on this store will pick it up`)
      }))
}

export const remove: Command = {
  name: "delete",
  summary: "delete a job that has ended (completed, failed or cancelled)",
  args: jobArg,
  options: { json, ...storeOptions },
  run: (input) =>
    withJob(input, (client, status) =>
      Effect.flatMap(
        client.deleteJob(status.id),
        (deleted) => input.values["json"] === true ? printJson(deleted) : Console.log(`${deleted.id} deleted`)
      ))
}

/** `30m`, `12h`, `7d`, `2w` (or Effect's `7 days`) as milliseconds. */
const parseAge = (text: string): Option.Option<number> => {
  const short = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(text.trim())
  if (short !== null) {
    const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[short[2]!]!
    return Option.some(Number(short[1]) * unit)
  }
  return Option.filter(
    Option.map(Duration.decodeUnknown(text), Duration.toMillis),
    (millis) => Number.isFinite(millis) && millis >= 0 && /[a-z]/.test(text)
  )
}

export const prune: Command = {
  name: "prune",
  summary: "delete the jobs that ended more than a given time ago",
  options: {
    "older-than": { type: "string", value: "AGE", description: "e.g. 30m, 12h, 7d, 2w (required)" },
    state: {
      type: "string",
      multiple: true,
      value: "STATE",
      description: "only jobs in this state (repeat: completed, failed, cancelled; default all three)"
    },
    ...storeOptions
  },
  notes: ["Jobs that have not ended are never deleted."],
  run: (input) =>
    Effect.gen(function*() {
      const text = stringValue(input, "older-than")
      if (text === undefined) {
        return yield* new UsageError({ subject: "--older-than", problem: "required (e.g. --older-than 7d)" })
      }
      const age = parseAge(text)
      if (Option.isNone(age)) {
        return yield* new UsageError({
          subject: "--older-than",
          problem: `${JSON.stringify(text)} is not an age (e.g. 30m, 12h, 7d, 2w)`
        })
      }
      const states = yield* choices(input, "state", TerminalState.literals, "a state of a job that has ended")
      const removed = yield* withStore(input, (client) =>
        client.pruneJobs({ olderThan: age.value, ...(states.length === 0 ? {} : { states }) }))
      yield* Console.log(`deleted ${removed} job${removed === 1 ? "" : "s"}`)
    })
}
