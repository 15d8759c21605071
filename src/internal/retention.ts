/**
 * Retention: how long finished jobs are kept, and the pruning that enforces it (`pruneJobs` and the
 * manager's background sweep).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { firstIssue, InvalidOption, type RepositoryError } from "../JobError.js"
import type { JobRepository } from "../JobRepository.js"
import { DurationInput } from "./schemas.js"
import { loop } from "./supervised.js"

/** The states a job may be pruned in. */
export const TerminalState = Schema.Literal("completed", "failed", "cancelled")

/**
 * What `pruneJobs` removes: the jobs in one of `states` (default: all three terminal states) that finished
 * more than `olderThan` ago (a duration), or before `olderThan` (a `Date`).
 */
export const PruneOptions = Schema.Struct({
  olderThan: Schema.Union(DurationInput, Schema.DateFromSelf),
  states: Schema.optional(Schema.Array(TerminalState).pipe(Schema.minItems(1)))
}).annotations({ identifier: "PruneOptions" })
export type PruneOptions = typeof PruneOptions.Type

/**
 * How long a manager keeps finished jobs, by state; a state left out is kept forever. `sweepInterval`
 * (default 1 minute) is how often the manager prunes.
 */
export const Retention = Schema.Struct({
  completed: Schema.optional(DurationInput),
  failed: Schema.optional(DurationInput),
  cancelled: Schema.optional(DurationInput),
  sweepInterval: Schema.optional(DurationInput.pipe(
    Schema.filter((input) => Duration.toMillis(Duration.decode(input)) > 0 || "must be longer than zero")
  ))
}).annotations({ identifier: "Retention" })
export type Retention = typeof Retention.Type

const decodePrune = Schema.decodeUnknown(PruneOptions, { onExcessProperty: "error" })

/** Validates and applies `pruneJobs` options; returns how many jobs were removed. */
export const prune = (
  repository: JobRepository["Type"],
  input: unknown
): Effect.Effect<number, InvalidOption | RepositoryError> =>
  Effect.gen(function*() {
    const options = yield* Effect.mapError(decodePrune(input), (error) => new InvalidOption(firstIssue(error)))
    const finishedBefore = options.olderThan instanceof Date
      ? options.olderThan.getTime()
      : (yield* Clock.currentTimeMillis) - Duration.toMillis(Duration.decode(options.olderThan))
    return yield* repository.prune({ states: options.states ?? TerminalState.literals, finishedBefore })
  })

/** One pass of a retention policy: each state with a retention loses its jobs that finished longer ago. */
const sweepOnce = (repository: JobRepository["Type"], retention: Retention) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    let removed = 0
    for (const state of TerminalState.literals) {
      const keep = retention[state]
      if (keep === undefined) continue
      removed += yield* repository.prune({
        states: [state],
        finishedBefore: now - Duration.toMillis(Duration.decode(keep))
      })
    }
    if (removed > 0) yield* Effect.logDebug(`retention: removed ${removed} finished jobs`)
  })

/**
 * Runs the retention policy now and then every `sweepInterval` in the current scope. A failed pass is
 * logged as a warning and the next one runs as planned; closing the scope stops it.
 */
export const sweep = (
  repository: JobRepository["Type"],
  retention: Retention
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.asVoid(Effect.forkScoped(loop(sweepOnce(repository, retention), {
    module: "JobManager",
    name: "pruning finished jobs",
    spacing: Duration.decode(retention.sweepInterval ?? "1 minute")
  })))
