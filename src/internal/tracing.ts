/**
 * Spans that cost nothing unless a tracer is installed. `Effect.fn(name)` and `Effect.withSpan` make a span on
 * every call (random ids, a clock read, a captured stack) even when the tracer is Effect's built-in one, which
 * exports nothing; on a path taken once per job or per chunk that is a measurable share of the time. These
 * helpers look at the tracer when the operation runs and add the span only when it is another one.
 */
import * as Effect from "effect/Effect"
import type * as Tracer from "effect/Tracer"
import type { YieldWrap } from "effect/Utils"

/** The tracer every fiber has unless one is installed (`Effect.withTracer`, an OpenTelemetry layer, ...). */
const builtInTracer: Tracer.Tracer = Effect.runSync(Effect.tracer)

/** Whether `tracer` records spans somewhere (it is not the built-in one). */
export const isTracing = (tracer: Tracer.Tracer): boolean => tracer !== builtInTracer

/** `effect` in a span named `name` when a tracer is installed; `effect` itself otherwise. */
export const withSpan = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  name: string,
  options?: Tracer.SpanOptions
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) => tracer === builtInTracer ? effect : Effect.withSpan(effect, name, options))

/** An operation whose every call gets a span named `name` when a tracer is installed. */
export const traced = <Args extends Array<any>, A, E, R>(
  name: string,
  body: (...args: Args) => Effect.Effect<A, E, R>
) =>
(...args: Args): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) => tracer === builtInTracer ? body(...args) : Effect.withSpan(body(...args), name))

/** `Effect.fn(name)(body)` for a generator body, with the span only when a tracer is installed. */
export const fn = (name: string) =>
<Eff extends YieldWrap<Effect.Effect<any, any, any>>, AEff, Args extends Array<any>>(
  body: (...args: Args) => Generator<Eff, AEff, never>
) => traced(name, Effect.fnUntraced(body))
