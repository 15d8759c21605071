#!/usr/bin/env node
/**
 * `effect-jobs`: list, show, watch, cancel, pause, resume, retry, delete and prune the jobs of a store, and
 * serve its dashboard, whichever process runs the jobs.
 *
 *     effect-jobs list [--state running] [--limit 20] [--db jobs.db | --pg URL] [--json]
 *     effect-jobs show|watch|cancel|pause|resume|retry|delete <job>
 *     effect-jobs prune --older-than 7d [--state completed]
 *     effect-jobs serve [--host 127.0.0.1] [--port 8080] [--token T]
 *
 * `<job>` is an id, a unique prefix of one (6 characters or more) or a job name. Exit codes: 0 done; 1 an
 * unknown job, a refused operation or a store error (one line on stderr, `effect-jobs: <message>`); 2 a
 * usage error (`effect-jobs: <option>: <problem>`). Nothing is coloured or redrawn unless stdout is a
 * terminal.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { Command } from "./internal/cli/command.js"
import { commandHelp, parse, programHelp, UsageError } from "./internal/cli/command.js"
import * as Jobs from "./internal/cli/jobs.js"
import * as Serve from "./internal/cli/serve.js"
import { describeCause } from "./JobError.js"

const version = "0.1.0"

/** Every command, in the order the help lists them. */
const commands: ReadonlyArray<Command> = [
  Jobs.list,
  Jobs.show,
  Jobs.watch,
  Jobs.cancel,
  Jobs.pause,
  Jobs.resume,
  Jobs.retry,
  Jobs.remove,
  Jobs.prune,
  Serve.serve
]

const main = (argv: ReadonlyArray<string>): Effect.Effect<void, unknown> => {
  const [name, ...rest] = argv
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    return Console.log(programHelp(commands))
  }
  if (name === "--version") return Console.log(version)
  const command = commands.find((candidate) => candidate.name === name)
  if (command === undefined) {
    return Effect.fail(
      new UsageError({
        subject: name,
        problem: `unknown command (commands: ${commands.map((candidate) => candidate.name).join(", ")})`
      })
    )
  }
  return Effect.flatMap(parse(command, rest), (input) =>
    input.values["help"] === true ? Console.log(commandHelp(command)) : command.run(input))
}

/** Prints why the command failed and sets the exit code: 2 for a usage error, 1 for anything else. */
const report = (cause: Cause.Cause<unknown>): Effect.Effect<void> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.void
  const failure = Cause.failureOption(cause)
  const error = failure._tag === "Some" ? failure.value : undefined
  if (error instanceof UsageError) {
    return Effect.zipRight(
      Console.error([`effect-jobs: ${error.message}`, ...(error.details ?? [])].join("\n")),
      Effect.sync(() => (process.exitCode = 2))
    )
  }
  return Effect.zipRight(
    Console.error(`effect-jobs: ${describeCause(cause)}`),
    Effect.sync(() => (process.exitCode = 1))
  )
}

main(process.argv.slice(2)).pipe(
  Effect.onExit((exit) => Exit.isFailure(exit) ? report(exit.cause) : Effect.void),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // Ctrl+C: 130, unless the command set its own code (serve stops cleanly with 0).
    teardown: (exit, onExit) =>
      onExit(
        process.exitCode !== undefined
          ? Number(process.exitCode)
          : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
          ? 130
          : 0
      )
  })
)
