/**
 * The CLI's commands: how each declares its arguments and options, how a command line is parsed into them
 * (usage errors name the option: `effect-jobs: --limit: must be ...`), and the help text. A command is a
 * value of {@link Command}; `src/cli.ts` lists them.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { parseArgs } from "node:util"

/** A command line the CLI cannot act on: exit code 2, `effect-jobs: <subject>: <problem>` on stderr. */
export class UsageError extends Data.TaggedError("UsageError")<{
  /** The option, argument or command at fault, as the user wrote it (`--limit`, `<job>`). */
  readonly subject: string
  readonly problem: string
  /** More lines printed after the first (e.g. the candidates of an ambiguous name). */
  readonly details?: ReadonlyArray<string> | undefined
}> {
  override get message(): string {
    return `${this.subject}: ${this.problem}`
  }
}

/** An error that is not the user's syntax (an unknown job, a refused operation): exit code 1. */
export class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

/** An option of a command. */
export interface OptionSpec {
  readonly type: "string" | "boolean"
  /** May be given several times (values are collected in order). */
  readonly multiple?: boolean
  /** The value's placeholder in the help (`FILE`, `N`). */
  readonly value?: string
  readonly description: string
}

/** What a command line holds, after parsing. */
export interface Input {
  readonly values: { readonly [name: string]: string | boolean | ReadonlyArray<string> | undefined }
  readonly positionals: ReadonlyArray<string>
}

/** A command: its name, its help, what it takes, and what it does. */
export interface Command {
  readonly name: string
  /** One line, shown in the list of commands. */
  readonly summary: string
  /** Positional arguments, in order (all required). */
  readonly args?: ReadonlyArray<{ readonly name: string; readonly description: string }>
  readonly options: { readonly [name: string]: OptionSpec }
  /** Paragraphs of the command's help after the options. */
  readonly notes?: ReadonlyArray<string>
  readonly run: (input: Input) => Effect.Effect<void, unknown>
}

const helpOption: OptionSpec = { type: "boolean", description: "show this help (also -h)" }

/**
 * Parses the arguments after the command name. Unknown options, missing values, missing or extra
 * arguments are usage errors naming them.
 */
export const parse = (command: Command, argv: ReadonlyArray<string>): Effect.Effect<Input, UsageError> =>
  Effect.suspend(() => {
    const options: { readonly [name: string]: OptionSpec } = { ...command.options, help: helpOption }
    // `--limit -1` would be refused as ambiguous: a negative number is the option's value.
    const args: Array<string> = []
    for (let index = 0; index < argv.length; index++) {
      const arg = argv[index] === "-h" ? "--help" : argv[index]!
      const next = argv[index + 1]
      const spec = arg.startsWith("--") ? options[arg.slice(2)] : undefined
      if (spec?.type === "string" && next !== undefined && /^-\d/.test(next)) {
        args.push(`${arg}=${next}`)
        index++
      } else {
        args.push(arg)
      }
    }
    let parsed: ReturnType<typeof parseArgs>
    try {
      parsed = parseArgs({
        args,
        options: Object.fromEntries(
          Object.entries(options).map(([name, spec]) => [name, { type: spec.type, multiple: spec.multiple ?? false }])
        ),
        strict: true,
        allowPositionals: true
      })
    } catch (error) {
      return Effect.fail(parseFailure(command, error))
    }
    if (parsed.values["help"] === true) return Effect.succeed<Input>({ values: { help: true }, positionals: [] })
    const expected = command.args ?? []
    const missing = expected[parsed.positionals.length]
    if (missing !== undefined) {
      return Effect.fail(new UsageError({ subject: `<${missing.name}>`, problem: `missing (${missing.description})` }))
    }
    const extra = parsed.positionals[expected.length]
    if (extra !== undefined) {
      return Effect.fail(new UsageError({ subject: extra, problem: `unexpected argument (see effect-jobs ${command.name} --help)` }))
    }
    return Effect.succeed({ values: parsed.values as Input["values"], positionals: parsed.positionals })
  })

const parseFailure = (command: Command, error: unknown): UsageError => {
  const message = error instanceof Error ? error.message : String(error)
  const code = (error as { readonly code?: unknown }).code
  const option = /'(-[^' ]+)/.exec(message)?.[1] ?? "(arguments)"
  const problem = code === "ERR_PARSE_ARGS_UNKNOWN_OPTION"
    ? `unknown option (see effect-jobs ${command.name} --help)`
    : /does not take an argument/.test(message)
    ? "takes no value"
    : "needs a value"
  return new UsageError({ subject: option, problem })
}

/** The string value of an option given at most once (the last one counts if it was given several times). */
export const stringValue = (input: Input, name: string): string | undefined => {
  const value = input.values[name]
  return typeof value === "string" ? value : undefined
}

/** The values of an option that may be repeated; each may also be a comma-separated list. */
export const listValue = (input: Input, name: string): ReadonlyArray<string> => {
  const value = input.values[name]
  const given = typeof value === "string" ? [value] : Array.isArray(value) ? value : []
  return given.flatMap((item: string) => item.split(",")).map((item) => item.trim()).filter((item) => item !== "")
}

/** An integer option within `min..max`. */
export const integerValue = (
  input: Input,
  name: string,
  range: { readonly min: number; readonly max: number; readonly fallback: number }
): Effect.Effect<number, UsageError> => {
  const text = stringValue(input, name)
  if (text === undefined) return Effect.succeed(range.fallback)
  const value = Number(text)
  return /^-?\d+$/.test(text.trim()) && value >= range.min && value <= range.max
    ? Effect.succeed(value)
    : Effect.fail(
      new UsageError({ subject: `--${name}`, problem: `must be an integer from ${range.min} to ${range.max}, got ${text}` })
    )
}

/** A choice among `allowed`, for each value of a repeatable option. */
export const choices = <const A extends string>(
  input: Input,
  name: string,
  allowed: ReadonlyArray<A>,
  what: string
): Effect.Effect<ReadonlyArray<A>, UsageError> =>
  Effect.forEach(listValue(input, name), (value) =>
    (allowed as ReadonlyArray<string>).includes(value)
      ? Effect.succeed(value as A)
      : Effect.fail(
        new UsageError({
          subject: `--${name}`,
          problem: `${JSON.stringify(value)} is not ${what} (one of ${allowed.join(", ")})`
        })
      ))

const optionLines = (options: { readonly [name: string]: OptionSpec }): Array<string> => {
  const entries = Object.entries({ ...options, help: helpOption }).map(([name, spec]) => [
    `--${name}${spec.value === undefined ? "" : ` ${spec.value}`}`,
    spec.description
  ] as const)
  const width = Math.max(...entries.map(([flag]) => flag.length))
  return entries.map(([flag, description]) => `  ${flag.padEnd(width)}  ${description}`)
}

/** The help of one command (plain text: no terminal escapes). */
export const commandHelp = (command: Command): string => {
  const args = (command.args ?? []).map((arg) => ` <${arg.name}>`).join("")
  const lines = [`Usage: effect-jobs ${command.name}${args} [options]`, "", `${command.summary}.`]
  if (command.args !== undefined && command.args.length > 0) {
    lines.push("", "Arguments:")
    const width = Math.max(...command.args.map((arg) => arg.name.length + 2))
    for (const arg of command.args) lines.push(`  ${`<${arg.name}>`.padEnd(width)}  ${arg.description}`)
  }
  lines.push("", "Options:", ...optionLines(command.options))
  for (const note of command.notes ?? []) lines.push("", note)
  return lines.join("\n")
}

/** The help of the program: its commands. */
export const programHelp = (commands: ReadonlyArray<Command>): string => {
  const width = Math.max(...commands.map((command) => command.name.length))
  return [
    "Usage: effect-jobs <command> [options]",
    "",
    "Controls the jobs of an effect-jobs store (SQLite file or PostgreSQL), whichever process runs them.",
    "",
    "Commands:",
    ...commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
    "",
    "Run effect-jobs <command> --help for its options. --version prints the version.",
    "Exit codes: 0 done, 1 failed (unknown job, refused operation, store error), 2 usage error."
  ].join("\n")
}
