/**
 * The jobs a user names on the command line: a full id, a unique prefix of one (6 characters or more), or
 * the exact name of a job.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { JobStatus } from "../../Job.js"
import { JobId } from "../../Job.js"
import type { RepositoryError } from "../../JobError.js"
import type { JobRepository } from "../../JobRepository.js"
import { describeState, renderTable } from "../terminal.js"
import { CommandFailed, UsageError } from "./command.js"
import { when } from "./output.js"

/** The shortest id prefix taken as one. */
const minimumPrefix = 6

/** Candidates listed when a name or prefix is ambiguous. */
const shown = 10

const isId = Schema.is(JobId)

/**
 * The job `text` names. None: `CommandFailed` (exit 1). Several: a `UsageError` (exit 2) listing them,
 * newest first.
 */
export const resolveJob = (
  repository: JobRepository["Type"],
  text: string
): Effect.Effect<JobStatus, UsageError | CommandFailed | RepositoryError> =>
  Effect.gen(function*() {
    if (isId(text)) {
      const exact = yield* repository.get(text)
      if (Option.isSome(exact)) return exact.value
    }
    const prefix = isId(text) && text.length >= minimumPrefix ? text : undefined
    const found = yield* repository.find({ idPrefix: prefix, name: text, limit: shown + 1 })
    const [only, ...others] = found
    if (only !== undefined && others.length === 0) return only
    if (only === undefined) {
      const short = isId(text) && text.length < minimumPrefix
        ? ` (an id prefix needs at least ${minimumPrefix} characters)`
        : ""
      return yield* new CommandFailed({ message: `no job with id, id prefix or name ${JSON.stringify(text)}${short}` })
    }
    const table = renderTable(
      ["id", "name", "state", "created"],
      found.slice(0, shown).map((status) => [status.id, status.name ?? "-", describeState(status), when(status.createdAt)])
    ).split("\n").map((line) => `  ${line}`)
    return yield* new UsageError({
      subject: text,
      problem: `names ${found.length > shown ? `more than ${shown}` : found.length} jobs; give an id (or a longer prefix):`,
      details: found.length > shown ? [...table, "  ..."] : table
    })
  })
