/**
 * The one shape of every background loop of effect-jobs: run a step, log any failure or defect of it (a
 * defect too: `catchAll` would let a throw or an `orDie` end the loop without a word, since the runtime
 * reports a dead forked fiber below the default log level), wait, and go again. Only interruption stops it.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/** Runs `step`, logging (at WARNING, with the cause) instead of failing or dying. */
export const logFailure = (message: string) => <A, E, R>(step: Effect.Effect<A, E, R>): Effect.Effect<void, never, R> =>
  step.pipe(
    Effect.asVoid,
    Effect.catchAllCause((cause) => Effect.logWarning(`effect-jobs: ${message}`, cause))
  )

/**
 * `step` forever, `spacing` apart (the first run after `spacing` when `delayFirst`), each failure logged as
 * `"<name> failed"`, logs annotated with the module and loop name. Fork it into the owning scope.
 */
export const loop = <R>(
  step: Effect.Effect<unknown, unknown, R>,
  options: {
    readonly module: string
    readonly name: string
    readonly spacing: Duration.DurationInput
    readonly delayFirst?: boolean | undefined
  }
): Effect.Effect<never, never, R> => {
  const guarded = logFailure(`${options.name} failed; it is tried again`)(step)
  const repeated = Effect.repeat(guarded, Schedule.spaced(options.spacing))
  return (options.delayFirst === true ? Effect.delay(repeated, options.spacing) : repeated).pipe(
    Effect.zipRight(Effect.never),
    Effect.annotateLogs({ package: "effect-jobs", module: options.module, fiber: options.name }),
    Effect.interruptible
  )
}
