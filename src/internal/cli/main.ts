/**
 * The program: which command a command line names, and how it ends. Every error becomes one line on stderr
 * (`effect-jobs: ...`, plus the details of a usage error) and an exit code: 2 for a usage error, 1 for
 * anything else.
 */
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { describeCause } from "../../JobError.js"
import type { Command } from "./command.js"
import { commandHelp, parse, programHelp, UsageError } from "./command.js"
import { runner, submit } from "./cluster.js"
import * as Jobs from "./jobs.js"
import { serve } from "./serve.js"

const version = "0.1.0"

/** Every command, in the order the help lists them. */
export const commands: ReadonlyArray<Command> = [
  Jobs.list,
  Jobs.show,
  Jobs.watch,
  Jobs.cancel,
  Jobs.pause,
  Jobs.resume,
  Jobs.retry,
  Jobs.remove,
  Jobs.prune,
  serve,
  runner,
  submit
]

const dispatch = (argv: ReadonlyArray<string>): Effect.Effect<void, unknown> => {
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

/**
 * Runs the command line `argv` (the arguments after the program's name) and returns its exit code, having
 * printed why it failed. Interruption (Ctrl+C) is left to the caller.
 */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  dispatch(argv).pipe(
    Effect.as(0),
    Effect.catchAllCause((cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
      const failure = Cause.failureOption(cause)
      const error = failure._tag === "Some" ? failure.value : undefined
      return error instanceof UsageError
        ? Effect.as(Console.error([`effect-jobs: ${error.message}`, ...(error.details ?? [])].join("\n")), 2)
        : Effect.as(Console.error(`effect-jobs: ${describeCause(cause)}`), 1)
    }),
    Effect.orDie
  )
