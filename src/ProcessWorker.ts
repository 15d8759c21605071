/**
 * A `ChunkWorker` that runs one child process per chunk attempt, with `@effect/platform` `Command`.
 *
 * The program and its arguments are passed to the operating system as an array: no shell ever sees them,
 * so shell metacharacters in a chunk's payload reach the program verbatim. It needs a `CommandExecutor`
 * that starts each process as the leader of a new process group, as the Node one (`NodeContext.layer`)
 * does on POSIX systems: every signal goes to the whole group (a wrapper script's children included), and
 * no process of the group outlives its attempt.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ChunkContext } from "./ChunkWorker.js"
import { ChunkWorker } from "./ChunkWorker.js"
import type { Chunk } from "./Job.js"
import { describeError, firstIssue, formatPath, InvalidOption, NonRetryable } from "./JobError.js"
import * as ProcessGroup from "./internal/processGroup.js"
import { DurationInput, FunctionInput } from "./internal/schemas.js"

/**
 * A chunk attempt's process failed. `reason` says how:
 * - `"ExitCode"`: it exited with a non-zero `exitCode`;
 * - `"Signal"`: a signal not sent by the worker ended it;
 * - `"Spawn"`: it could not be started (a missing program or working directory fails the chunk at once,
 *   wrapped in `NonRetryable`);
 * - `"Output"`: reading its output failed;
 * - `"InvalidCommand"`: the `command` function threw or returned an invalid command (always wrapped in
 *   `NonRetryable`: another attempt would build the same command).
 *
 * `stderrTail` holds the end of what the process wrote to stderr (at most `maxOutputBytes`).
 *
 * @since 0.1.0
 */
export class ProcessFailed extends Schema.TaggedError<ProcessFailed>()("ProcessFailed", {
  reason: Schema.Literal("ExitCode", "Signal", "Spawn", "Output", "InvalidCommand"),
  command: Schema.String,
  exitCode: Schema.optional(Schema.Number),
  stderrTail: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    const program = JSON.stringify(this.command)
    switch (this.reason) {
      case "ExitCode": {
        const lastLine = this.stderrTail.trimEnd().split(/\r?\n|\r/).pop() ?? ""
        const hint = lastLine === "" ? "" : `: ${lastLine.slice(-300)}`
        return `process ${program} exited with code ${this.exitCode}${hint}`
      }
      case "Signal":
        return `process ${program} was ended by a signal: ${this.detail}`
      case "Spawn":
        return `could not start process ${program}: ${this.detail}`
      case "Output":
        return `reading the output of process ${program} failed: ${this.detail}`
      case "InvalidCommand":
        return `invalid command for the chunk: ${this.detail}`
    }
  }
}

/**
 * The process to run for one chunk attempt. `args` are passed as they are, never through a shell.
 * `env` is added to the worker's environment (and wins over it); `cwd` overrides the worker's.
 *
 * @since 0.1.0
 */
export interface ProcessCommand {
  readonly command: string
  readonly args?: ReadonlyArray<string> | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
  readonly cwd?: string | undefined
}

/**
 * One line a process wrote, as given to the `onOutput` sink. Lines are split at `\n`, `\r\n` and `\r`
 * (progress output such as ffmpeg's ends lines with `\r`); empty lines are skipped, and a line longer
 * than `maxOutputBytes` characters is delivered in pieces of that size.
 *
 * @since 0.1.0
 */
export interface OutputLine {
  readonly stream: "stdout" | "stderr"
  readonly line: string
  readonly chunk: Chunk
  readonly context: ChunkContext
}

/**
 * What a successful attempt returns: the tails of the process's output (at most `maxOutputBytes` each),
 * and whether anything was cut from their start.
 *
 * @since 0.1.0
 */
export interface ProcessOutput {
  readonly stdout: string
  readonly stderr: string
  readonly stdoutTruncated: boolean
  readonly stderrTruncated: boolean
}

/**
 * Options of a process worker.
 *
 * @since 0.1.0
 */
export interface Options {
  /** The process to run for an attempt. A throw fails the chunk with a `NonRetryable` `InvalidCommand`. */
  readonly command: (chunk: Chunk, context: ChunkContext) => ProcessCommand
  /** Variables added to the environment of every process. */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** Whether processes inherit this process's environment (default true). */
  readonly extendEnv?: boolean | undefined
  /** Working directory of every process (default: this process's). */
  readonly cwd?: string | undefined
  /**
   * How much of stdout and of stderr (each) is kept, from the end (default 16 KiB). The tails are the
   * attempt's result, which the job stores: the default keeps both within the default `maxResultBytes`
   * (64 KiB of JSON); raise both together.
   */
  readonly maxOutputBytes?: number | undefined
  /** Receives each line of output while the process runs, in order per stream. */
  readonly onOutput?: ((output: OutputLine) => Effect.Effect<void>) | undefined
  /**
   * How long the processes of an attempt's group may take to exit after SIGTERM before they get SIGKILL
   * (default 2 s); also how long output left open by a process outside the group is waited for.
   */
  readonly killGracePeriod?: Duration.DurationInput | undefined
}

const defaults = {
  maxOutputBytes: 16 * 1024,
  killGracePeriod: Duration.seconds(2)
} as const

/** How often a process group being ended is looked at: soon at first, then every 100 ms. */
const groupPoll = Schedule.union(Schedule.exponential("5 millis"), Schedule.spaced("100 millis"))

const NoNul = Schema.String.pipe(
  Schema.filter((value) => !value.includes("\u0000") || "must not contain a NUL character")
)
const Env = Schema.Record({ key: NoNul, value: NoNul })
const AnyFunction = FunctionInput<(...args: ReadonlyArray<never>) => unknown>("a function")

const OptionsSchema = Schema.Struct({
  command: AnyFunction,
  env: Schema.optional(Env),
  extendEnv: Schema.optional(Schema.Boolean),
  cwd: Schema.optional(Schema.NonEmptyString.pipe(Schema.compose(NoNul))),
  maxOutputBytes: Schema.optional(Schema.Int.pipe(Schema.between(1, 2 ** 30))),
  onOutput: Schema.optional(AnyFunction),
  killGracePeriod: Schema.optional(DurationInput)
})
const validateOptions = Schema.decodeUnknown(OptionsSchema, { onExcessProperty: "error" })

const CommandSchema = Schema.Struct({
  command: Schema.NonEmptyString.pipe(Schema.compose(NoNul)),
  args: Schema.optional(Schema.Array(NoNul)),
  env: Schema.optional(Env),
  cwd: Schema.optional(Schema.NonEmptyString.pipe(Schema.compose(NoNul)))
})
const validateCommand = Schema.decodeUnknown(CommandSchema, { onExcessProperty: "error" })

/** Keeps the last `max` bytes written to it, and (when asked) splits them into lines. */
class OutputCapture {
  private readonly parts: Array<Uint8Array> = []
  private size = 0
  truncated = false
  private readonly decoder: TextDecoder | undefined
  private pending = ""

  constructor(private readonly max: number, splitLines: boolean) {
    this.decoder = splitLines ? new TextDecoder() : undefined
  }

  /** Records `bytes`; returns the lines they completed (none unless splitting lines). */
  write(bytes: Uint8Array): ReadonlyArray<string> {
    this.keep(bytes)
    return this.decoder === undefined ? [] : this.split(this.pending + this.decoder.decode(bytes, { stream: true }))
  }

  /** The last line, if the output did not end with a line break. */
  end(): ReadonlyArray<string> {
    if (this.decoder === undefined) return []
    const rest = this.pending + this.decoder.decode()
    this.pending = ""
    return rest === "" ? [] : [rest]
  }

  text(): string {
    return Buffer.concat(this.parts).toString("utf8")
  }

  private keep(bytes: Uint8Array): void {
    if (bytes.length >= this.max) {
      this.truncated = this.truncated || this.size > 0 || bytes.length > this.max
      this.parts.length = 0
      this.parts.push(bytes.slice(bytes.length - this.max))
      this.size = this.max
      return
    }
    this.parts.push(bytes)
    this.size += bytes.length
    while (this.size > this.max) {
      this.truncated = true
      const first = this.parts[0]!
      const excess = this.size - this.max
      if (first.length <= excess) {
        this.parts.shift()
        this.size -= first.length
      } else {
        this.parts[0] = first.slice(excess)
        this.size -= excess
      }
    }
  }

  private split(text: string): ReadonlyArray<string> {
    const pieces = text.split(/\r\n|\r|\n/)
    let last = pieces.pop()!
    const lines = pieces.filter((line) => line !== "")
    while (last.length > this.max) {
      lines.push(last.slice(0, this.max))
      last = last.slice(this.max)
    }
    this.pending = last
    return lines
  }
}

const invalidCommand = (detail: string): NonRetryable =>
  new NonRetryable({
    cause: new ProcessFailed({ reason: "InvalidCommand", command: "", stderrTail: "", detail })
  })

const spawnFailed = (command: string, error: PlatformError): ProcessFailed | NonRetryable => {
  const failure = new ProcessFailed({ reason: "Spawn", command, stderrTail: "", detail: error.message })
  return error._tag === "SystemError" && (error.reason === "NotFound" || error.reason === "PermissionDenied")
    ? new NonRetryable({ cause: failure })
    : failure
}

/**
 * Makes a process worker (the options are validated first; a bad one fails with `InvalidOption`).
 *
 * Each attempt spawns `command(chunk, context)` with stdin closed, captures the tails of stdout and
 * stderr, streams their lines to `onOutput`, and succeeds with a {@link ProcessOutput} when the process
 * exits with code 0. A non-zero exit code, a signal, or a failure to start fails the attempt with
 * {@link ProcessFailed}.
 *
 * Every attempt ends its process's group, however it ends: when the process exits (with any code), or when
 * the attempt is interrupted or fails first, the group gets SIGTERM, and SIGKILL once `killGracePeriod` is
 * over if a process of it is still alive. Then the output is read to its end. The attempt, and so its
 * interruption, completes only once the process has exited and no process of its group is alive: no
 * descendant outlives it, not one that ignores SIGTERM nor one whose parent exited first. A process that
 * left the group (`setsid`, a daemon's double fork) is out of reach; if it still holds stdout or stderr
 * open `killGracePeriod` after the group ended, the attempt fails with an `"Output"` {@link ProcessFailed}.
 *
 * @since 0.1.0
 */
export const make = (
  options: Options
): Effect.Effect<ChunkWorker["Type"], InvalidOption, CommandExecutor.CommandExecutor> =>
  Effect.gen(function*() {
    yield* Effect.mapError(validateOptions(options), (error) =>
      new InvalidOption(firstIssue(error)))
    const executor = yield* CommandExecutor.CommandExecutor
    const maxOutputBytes = options.maxOutputBytes ?? defaults.maxOutputBytes
    const gracePeriod = options.killGracePeriod === undefined
      ? defaults.killGracePeriod
      : Duration.decode(options.killGracePeriod)
    const onOutput = options.onOutput

    const commandFor = (chunk: Chunk, context: ChunkContext): Effect.Effect<ProcessCommand, NonRetryable> =>
      Effect.try({
        try: () => options.command(chunk, context),
        catch: (error) => invalidCommand(`the command function threw: ${describeError(error)}`)
      }).pipe(
        Effect.flatMap((spec) =>
          Effect.mapError(validateCommand(spec), (error) => {
            const issue = firstIssue(error)
            return invalidCommand(`${formatPath(issue.path)}: ${issue.detail}`)
          })
        )
      )

    const toCommand = (spec: ProcessCommand): Command.Command => {
      let command = Command.env(
        Command.make(spec.command, ...(spec.args ?? [])),
        { ...options.env, ...spec.env },
        { extendEnv: options.extendEnv ?? true }
      )
      const cwd = spec.cwd ?? options.cwd
      if (cwd !== undefined) command = Command.workingDirectory(command, cwd)
      return command
    }

    /**
     * Ends the process group `child` leads: SIGTERM to the group, SIGKILL to it once `killGracePeriod` is
     * over, and returns once the leader has been reaped and no process of the group is alive, whether the
     * leader had exited before or not. It cannot be interrupted: once begun, the group is ended for good.
     */
    const endGroup = (child: CommandExecutor.Process): Effect.Effect<void> => {
      // The Node executor cannot fail to tell whether the leader runs; were it to, the group would decide.
      const leaderRunning = Effect.orElseSucceed(child.isRunning, () => false)
      const groupAlive = ProcessGroup.liveness(child.pid)
      const gone = Effect.flatMap(leaderRunning, (running) =>
        running ? Effect.succeed(false) : Effect.sync(() => !groupAlive()))
      // Polled: the descendants of the leader are not this process's children, so no exit event tells.
      const awaitGone = (deadline: number) =>
        Effect.repeat(
          Effect.zip(gone, Clock.currentTimeMillis),
          groupPoll.pipe(Schedule.whileInput(([isGone, now]) => !isGone && now < deadline), Schedule.passthrough)
        ).pipe(Effect.map(([isGone]) => isGone))
      return Effect.gen(function*() {
        yield* Effect.sync(() => ProcessGroup.signal(child.pid, "SIGTERM"))
        const graceOver = (yield* Clock.currentTimeMillis) + Duration.toMillis(gracePeriod)
        if (yield* awaitGone(graceOver)) return
        yield* Effect.sync(() => ProcessGroup.signal(child.pid, "SIGKILL"))
        yield* awaitGone(Number.POSITIVE_INFINITY)
      }).pipe(Effect.uninterruptible)
    }

    const drain = (
      stream: Stream.Stream<Uint8Array, PlatformError>,
      capture: OutputCapture,
      name: OutputLine["stream"],
      chunk: Chunk,
      context: ChunkContext
    ): Effect.Effect<void, PlatformError> => {
      if (onOutput === undefined) return Stream.runForEach(stream, (bytes) => Effect.sync(() => capture.write(bytes)))
      const emit = (lines: ReadonlyArray<string>) =>
        Effect.forEach(lines, (line) => onOutput({ stream: name, line, chunk, context }), { discard: true })
      return Effect.zipRight(
        Stream.runForEach(stream, (bytes) => emit(capture.write(bytes))),
        Effect.suspend(() => emit(capture.end()))
      )
    }

    const runProcess = (
      spec: ProcessCommand,
      chunk: Chunk,
      context: ChunkContext
    ): Effect.Effect<ProcessOutput, ProcessFailed | NonRetryable, Scope.Scope> =>
      Effect.gen(function*() {
        const name = spec.command
        const child = yield* Effect.mapError(executor.start(toCommand(spec)), (error) => spawnFailed(name, error))
        // Registered after the executor's own finalizer, so it runs first: the group is gone before that
        // one looks. Cached: the group is ended once, and never signalled again after it was seen gone.
        const endChildGroup = yield* Effect.cached(endGroup(child))
        yield* Effect.addFinalizer(() => endChildGroup)
        // Closing stdin waits for the pipe's "finish", which never comes when the process has exited first:
        // it runs beside the output and ends with the process at the latest.
        const closeStdin = Effect.raceFirst(
          Effect.ignore(Stream.run(Stream.empty, child.stdin)),
          Effect.ignore(child.exitCode)
        )
        const stdout = new OutputCapture(maxOutputBytes, onOutput !== undefined)
        const stderr = new OutputCapture(maxOutputBytes, onOutput !== undefined)
        const outputFailed = (detail: string) =>
          new ProcessFailed({ reason: "Output", command: name, stderrTail: stderr.text(), detail })
        // The order of the end: the leader exits; the rest of its group is ended then (a descendant left
        // running, such as `sleep 100 &`, would keep the output open and the attempt waiting); then the
        // output is read to its end. Only a process that left the group can still hold it open then: it
        // gets `killGracePeriod` before the attempt fails instead of waiting for it.
        const leaderExit = Effect.either(child.exitCode).pipe(Effect.zipLeft(endChildGroup))
        const output = Effect.all([
          closeStdin,
          Effect.mapError(drain(child.stdout, stdout, "stdout", chunk, context), (error) => outputFailed(error.message)),
          Effect.mapError(drain(child.stderr, stderr, "stderr", chunk, context), (error) => outputFailed(error.message))
        ], { concurrency: "unbounded", discard: true })
        const outputLeftOpen = Effect.gen(function*() {
          yield* Effect.ignore(child.exitCode)
          yield* endChildGroup
          yield* Effect.sleep(gracePeriod)
          return yield* outputFailed(
            `the output was still open ${Duration.format(gracePeriod)} after the process group ended ` +
              "(a process that left the group holds it)"
          )
        })
        const [, exit] = yield* Effect.all([Effect.raceFirst(output, outputLeftOpen), leaderExit], {
          concurrency: "unbounded"
        })
        if (Either.isLeft(exit)) {
          return yield* new ProcessFailed({
            reason: "Signal",
            command: name,
            stderrTail: stderr.text(),
            detail: exit.left.message
          })
        }
        if (exit.right !== 0) {
          return yield* new ProcessFailed({
            reason: "ExitCode",
            command: name,
            exitCode: exit.right,
            stderrTail: stderr.text(),
            detail: ""
          })
        }
        return {
          stdout: stdout.text(),
          stderr: stderr.text(),
          stdoutTruncated: stdout.truncated,
          stderrTruncated: stderr.truncated
        }
      })

    const run = Effect.fn("ProcessWorker.run")(function*(chunk: Chunk, context: ChunkContext) {
      const spec = yield* commandFor(chunk, context)
      return yield* Effect.scoped(runProcess(spec, chunk, context))
    })

    return ChunkWorker.of({ run })
  })

/**
 * A layer of {@link make}. It needs a `CommandExecutor` (`NodeContext.layer` provides one).
 *
 * @since 0.1.0
 */
export const layer = (
  options: Options
): Layer.Layer<ChunkWorker, InvalidOption, CommandExecutor.CommandExecutor> => Layer.effect(ChunkWorker, make(options))
