/**
 * Captures what effect-jobs logs (level, message, cause, annotations), so a test can check that a fault
 * was reported, at which level, and naming which job.
 */
import * as Cause from "effect/Cause"
import * as HashMap from "effect/HashMap"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"

export interface LogEntry {
  readonly level: string
  /** The message parts as text (an error as its message, without its stack: rendering stacks is slow). */
  readonly text: string
  readonly cause: Cause.Cause<unknown>
  readonly annotations: Readonly<Record<string, unknown>>
}

export class CapturedLogs {
  readonly entries: Array<LogEntry> = []

  /**
   * Captures the logs (instead of printing them) of the effect it is provided to, and of every fiber that
   * effect forks: provide it to the effect that builds the manager and its store.
   */
  readonly layer: Layer.Layer<never> = Logger.replace(Logger.defaultLogger, Logger.make(({ annotations, cause, logLevel, message }) => {
    const parts: ReadonlyArray<unknown> = Array.isArray(message) ? message : [message]
    this.entries.push({
      level: logLevel.label,
      text: parts.map(String).join(" "),
      cause,
      annotations: Object.fromEntries(HashMap.toEntries(annotations))
    })
  }))

  /** Entries at WARNING or above whose text or annotations name `needle` (a job id, a loop name). */
  warnings(needle?: string): Array<LogEntry> {
    return this.entries.filter((entry) =>
      (entry.level === "WARN" || entry.level === "ERROR" || entry.level === "FATAL") &&
      (needle === undefined || entry.text.includes(needle) ||
        Object.values(entry.annotations).some((value) => String(value).includes(needle)))
    )
  }
}

/** Runs `body` with the logs of everything it builds captured (and not printed). */
export const withLogs = <A, E, R>(body: (logs: CapturedLogs) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const logs = new CapturedLogs()
  return Effect.provide(body(logs), logs.layer)
}
