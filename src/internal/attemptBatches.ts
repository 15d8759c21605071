/**
 * Chunk attempts sent to another runner in batches: the two ends of the chunk entity's protocol.
 *
 * Every message between runners costs about a millisecond of CPU on each side (the cluster's envelope, the
 * RPC layer, the socket), far more than a short chunk's own bookkeeping; and chunks of equal size that start
 * together end together. So one message carries every attempt a dispatcher sends to one chunk entity in one
 * turn of the event loop, and one reply carries every attempt that settled there in one turn:
 * - `run(start, awaiting)` starts the attempts `start` on the runner and waits until any of them, or of the
 *   attempts `awaiting` (started earlier), settles; it answers each settled one (once), and leaves the
 *   others running; the dispatcher waits for those in its next request (at once, with what it sends next).
 *   An attempt the runner does not know (the entity moved to another runner, the runner restarted) is
 *   answered `"lost"`. Each attempt is still answered on its own, as soon as it settles: nothing waits for
 *   the slowest of a batch.
 *   Once the runner is leaving (its slots closing), a request waits for all its attempts instead: the
 *   dispatcher's next request would be refused.
 * - `interrupt(keys)` interrupts those attempts, all at once (their `AbortSignal`s fire), and answers once
 *   they ended.
 *
 * Ownership: an attempt running on a runner belongs to the request that waits for it; interrupting that
 * request (the dispatcher's scope closing, the entity moving away) interrupts its attempts. Every
 * `orphanAfter / 2` a sweep answers the requests that have waited that long, even with nothing settled (a
 * live dispatcher waits again at once), so a request whose dispatcher died or lost its connection does not
 * keep its attempts; it interrupts the attempts no request has waited for during `orphanAfter`, and drops
 * the answers nobody collected within `orphanAfter`: what a dead dispatcher sent is stopped within
 * `2.5 × orphanAfter`.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberMap from "effect/FiberMap"
import * as FiberSet from "effect/FiberSet"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { describeError } from "../JobError.js"
import { nextTurn } from "./macrotaskYield.js"

/**
 * How an attempt ended on a runner: `"done"`; `"busy"` (refused: the runner was full or leaving);
 * `"failure"`, `"non-retryable"`, `"defect"` (the worker's outcome, with its message); `"interrupted"` (the
 * runner interrupted it: its entity moved away or the runner left); `"lost"` (the runner does not know it).
 */
export const Outcome = Schema.Literal("done", "busy", "failure", "non-retryable", "defect", "interrupted", "lost")
export type Outcome = typeof Outcome.Type

/** One attempt's answer in a reply. */
export const Settled = Schema.Struct({
  key: Schema.String,
  outcome: Outcome,
  message: Schema.optional(Schema.String)
})
export type Settled = typeof Settled.Type

/** What running an attempt on a runner's slots gives (an interruption is an interruption, not an outcome). */
export interface SlotResult {
  readonly outcome: "done" | "busy" | "failure" | "non-retryable" | "defect"
  readonly message?: string | undefined
}

/** A reply to `run`: the runner's address and capacity (for the dispatcher's view) and what settled. */
export interface RunReply {
  readonly runner: string
  readonly capacity: number
  readonly settled: ReadonlyArray<Settled>
}

// --- The runner's end ---

/** One chunk entity's attempts on a runner (see the module's comment). */
export interface AttemptTable<A extends { readonly key: string }> {
  readonly run: (start: ReadonlyArray<A>, awaiting: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Settled>>
  readonly interrupt: (keys: ReadonlyArray<string>) => Effect.Effect<void>
}

/**
 * The attempts of one chunk entity, run with `runSlot`, in the entity's scope: closing it (the entity
 * stops) interrupts them all.
 */
export const makeAttemptTable = <A extends { readonly key: string }>(
  runSlot: (attempt: A) => Effect.Effect<SlotResult>,
  options: {
    readonly orphanAfter: Duration.DurationInput
    /** Whether the runner is leaving: requests then wait for all their attempts. */
    readonly leaving: () => boolean
  }
): Effect.Effect<AttemptTable<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const orphanAfter = Duration.toMillis(options.orphanAfter)
    const fibers = yield* FiberMap.make<string>()
    const running = new Set<string>()
    /** Answers not collected yet, with when they settled. */
    const settled = new Map<string, { readonly answer: Settled; readonly at: number }>()
    /** Running attempts no request waits for, since when. */
    const unwatched = new Map<string, number>()
    /** Attempts interrupted before they were started here (the interrupt overtook the start), since when. */
    const cancelled = new Map<string, number>()
    /** The requests waiting for an answer: each checks its attempts (`due`: it has waited long enough). */
    const waiters = new Map<(due: boolean) => void, number>()

    const settle = (answer: Settled) => {
      running.delete(answer.key)
      unwatched.delete(answer.key)
      settled.set(answer.key, { answer, at: clock.unsafeCurrentTimeMillis() })
      for (const waiter of waiters.keys()) waiter(false)
    }

    const startOne = (attempt: A): Effect.Effect<void> => {
      const { key } = attempt
      if (running.has(key) || settled.has(key)) return Effect.void
      if (cancelled.delete(key)) return Effect.sync(() => settle({ key, outcome: "interrupted" }))
      running.add(key)
      return FiberMap.run(
        fibers,
        key,
        runSlot(attempt).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() =>
              settle(
                Exit.isSuccess(exit)
                  ? { key, ...exit.value }
                  : Cause.isInterruptedOnly(exit.cause)
                  ? { key, outcome: "interrupted" }
                  : { key, outcome: "defect", message: describeError(Cause.squash(exit.cause)) }
              )
            )
          )
        )
      ).pipe(Effect.asVoid)
    }

    const interrupt = (keys: ReadonlyArray<string>): Effect.Effect<void> =>
      Effect.forEach(keys, (key) => {
        if (running.has(key)) return FiberMap.remove(fibers, key)
        if (!settled.delete(key)) cancelled.set(key, clock.unsafeCurrentTimeMillis())
        return Effect.void
      }, { concurrency: "unbounded", discard: true })

    const run = (start: ReadonlyArray<A>, awaiting: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Settled>> => {
      const keys = [...start.map((attempt) => attempt.key), ...awaiting]
      const isAnswered = (key: string) => settled.has(key) || !running.has(key)
      const answerable = () => options.leaving() ? keys.every(isAnswered) : keys.some(isAnswered)
      return Effect.forEach(start, startOne, { discard: true }).pipe(
        Effect.zipRight(Effect.sync(() => {
          for (const key of keys) unwatched.delete(key)
        })),
        Effect.zipRight(Effect.async<void>((resume) => {
          if (answerable()) return resume(Effect.void)
          const waiter = (due: boolean) => {
            if (!due && !answerable()) return
            waiters.delete(waiter)
            resume(Effect.void)
          }
          waiters.set(waiter, clock.unsafeCurrentTimeMillis())
          return Effect.sync(() => waiters.delete(waiter))
        })),
        // What settles in the same turn goes in the same reply.
        Effect.zipRight(nextTurn),
        Effect.map(() => {
          const answers: Array<Settled> = []
          const now = clock.unsafeCurrentTimeMillis()
          for (const key of keys) {
            const entry = settled.get(key)
            if (entry !== undefined) {
              settled.delete(key)
              answers.push(entry.answer)
            } else if (running.has(key)) {
              unwatched.set(key, now)
            } else {
              answers.push({ key, outcome: "lost" })
            }
          }
          return answers
        }),
        // The request is given up (its dispatcher went away, or the entity stops): so are its attempts.
        Effect.onInterrupt(() => interrupt(keys.filter((key) => running.has(key))))
      )
    }

    const sweep = Effect.sync(() => {
      const now = clock.unsafeCurrentTimeMillis()
      const before = now - orphanAfter
      // Answered by the sweep rather than a timer each: a request costs no timer.
      for (const [waiter, since] of waiters) if (since <= now - orphanAfter / 2) waiter(true)
      const orphans: Array<string> = []
      for (const [key, since] of unwatched) if (since <= before) orphans.push(key)
      for (const [key, entry] of settled) if (entry.at <= before) settled.delete(key)
      for (const [key, since] of cancelled) if (since <= before) cancelled.delete(key)
      return orphans
    }).pipe(Effect.flatMap(interrupt))
    yield* sweep.pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(Math.max(1, orphanAfter / 2)))),
      Effect.interruptible,
      Effect.forkScoped
    )

    return { run, interrupt }
  })

// --- The dispatcher's end ---

/** How a dispatcher reaches chunk entities (the cluster's entity client, or a stand-in in tests). */
export interface Transport<A extends { readonly key: string }> {
  readonly run: (entityId: string, start: ReadonlyArray<A>, awaiting: ReadonlyArray<string>) => Effect.Effect<RunReply, unknown>
  readonly interrupt: (entityId: string, keys: ReadonlyArray<string>) => Effect.Effect<void, unknown>
}

/** What a dispatcher learns of one attempt: the runner's answer, or `"lost"` when no runner answered. */
export type Answer =
  | { readonly outcome: Exclude<Outcome, "lost">; readonly message?: string | undefined; readonly runner: string; readonly capacity: number }
  | { readonly outcome: "lost"; readonly cause?: Cause.Cause<unknown> | undefined }

/** The dispatcher's end: sends attempts in batches per entity and hands each its answer. */
export interface Batcher<P> {
  /**
   * Sends `attempt` to the chunk entity `entityId` (with the others sent to it in the same turn) and waits
   * for its answer. Interrupting it interrupts the attempt on the runner (its `AbortSignal` fires there)
   * and waits until the runner answers the interrupt, at most `confirmWithin`.
   */
  readonly submit: (entityId: string, attempt: P) => Effect.Effect<Answer>
}

interface Channel<A> {
  readonly entityId: string
  /** Attempts to start, sent at the end of this turn. */
  readonly start: Array<A>
  /** Attempts running there that no request in flight waits for. */
  readonly unwatched: Set<string>
  /** Interrupts to send at the end of this turn, each with its caller's confirmation. */
  readonly interrupts: Array<{ readonly key: string; readonly confirmed: () => void }>
  flushing: boolean
}

/**
 * A batcher whose requests are fibers of the scope: closing it interrupts them (and so the attempts they
 * wait for, on their runners). `keyPrefix` makes this dispatcher's attempt keys unique in the cluster.
 */
export const makeBatcher = <P>(
  transport: Transport<P & { readonly key: string }>,
  options: { readonly keyPrefix: string; readonly confirmWithin: Duration.DurationInput }
): Effect.Effect<Batcher<P>, never, Scope.Scope> =>
  Effect.gen(function*() {
    type A = P & { readonly key: string }
    const runFork = yield* FiberSet.makeRuntime<never>()
    const channels = new Map<string, Channel<A>>()
    const callers = new Map<string, (answer: Effect.Effect<Answer>) => void>()
    let counter = 0
    // Closing: the requests are interrupted (and with them their attempts, on the runners); an attempt still
    // waiting here is interrupted too, rather than left without an answer.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        const waiting = [...callers.values()]
        callers.clear()
        for (const resume of waiting) resume(Effect.interrupt)
      })
    )

    const answer = (key: string, value: Answer) => {
      const resume = callers.get(key)
      if (resume === undefined) return
      callers.delete(key)
      resume(Effect.succeed(value))
    }

    const flushSoon = (channel: Channel<A>) => {
      if (channel.flushing) return
      channel.flushing = true
      setImmediate(() => flush(channel))
    }

    const flush = (channel: Channel<A>) => {
      channel.flushing = false
      if (channel.interrupts.length > 0) {
        const interrupts = channel.interrupts.splice(0)
        runFork(transport.interrupt(channel.entityId, interrupts.map((entry) => entry.key)).pipe(
          Effect.ignore,
          Effect.ensuring(Effect.sync(() => {
            for (const entry of interrupts) entry.confirmed()
          }))
        ))
      }
      if (channel.start.length === 0 && channel.unwatched.size === 0) return
      const start = channel.start.splice(0)
      const awaiting = [...channel.unwatched]
      channel.unwatched.clear()
      const keys = [...start.map((attempt) => attempt.key), ...awaiting]
      runFork(transport.run(channel.entityId, start, awaiting).pipe(
        Effect.matchCause({
          onSuccess: (reply) => {
            const answered = new Set<string>()
            for (const { key, message, outcome } of reply.settled) {
              answered.add(key)
              answer(
                key,
                outcome === "lost" ? { outcome } : { outcome, message, runner: reply.runner, capacity: reply.capacity }
              )
            }
            for (const key of keys) if (!answered.has(key) && callers.has(key)) channel.unwatched.add(key)
            if (channel.unwatched.size > 0) flushSoon(channel)
          },
          onFailure: (cause) => {
            for (const key of keys) answer(key, { outcome: "lost", cause })
            // The runner may still run them (the connection dropped, the request was given up): they will be
            // sent elsewhere, so stop them there if it can be reached at once.
            runFork(transport.interrupt(channel.entityId, keys).pipe(Effect.timeout(options.confirmWithin), Effect.ignore))
          }
        })
      ))
    }

    const channelOf = (entityId: string): Channel<A> => {
      let channel = channels.get(entityId)
      if (channel === undefined) {
        channel = { entityId, start: [], unwatched: new Set(), interrupts: [], flushing: false }
        channels.set(entityId, channel)
      }
      return channel
    }

    const submit = (entityId: string, attempt: P): Effect.Effect<Answer> =>
      Effect.async<Answer>((resume) => {
        const key = `${options.keyPrefix}${++counter}`
        const channel = channelOf(entityId)
        callers.set(key, resume)
        channel.start.push({ ...attempt, key })
        flushSoon(channel)
        return Effect.suspend(() => {
          if (!callers.delete(key)) return Effect.void
          const queued = channel.start.findIndex((entry) => entry.key === key)
          if (queued >= 0) {
            channel.start.splice(queued, 1)
            return Effect.void
          }
          channel.unwatched.delete(key)
          // A canceler runs uninterruptibly: the wait for the runner's answer is made interruptible so that
          // the timeout can end it (a runner that hangs or died never answers).
          return Effect.async<void>((confirmed) => {
            channel.interrupts.push({ key, confirmed: () => confirmed(Effect.void) })
            flushSoon(channel)
          }).pipe(Effect.interruptible, Effect.timeout(options.confirmWithin), Effect.ignore)
        })
      })

    return { submit }
  })
