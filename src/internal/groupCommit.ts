/**
 * Group commit: writes that arrive in the same turn of the event loop share one write (one transaction),
 * so a burst of submits, or of jobs starting or ending, pays one commit instead of one each.
 *
 * The first caller of a group leads it: it lets the event loop finish its turn (every caller already woken
 * in that turn joins the group), waits for the previous group's write to end (callers arriving meanwhile join
 * too), then writes the whole group and hands each caller its own outcome. Nothing runs in the background:
 * the leader is a caller, and its part is uninterruptible, so a group is always written and answered even
 * when its leader's caller is interrupted. A caller interrupted while it waits for its group is still
 * written; only the answer is dropped.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { nextTurn } from "./macrotaskYield.js"

export interface GroupCommit<A, B, E> {
  /** Adds `item` to the current group and waits for the group's write: this item's outcome. */
  readonly submit: (item: A) => Effect.Effect<B, E>
}

/**
 * A caller in a group. Its outcome is handed over through a resume callback rather than a `Deferred`: made
 * for every submit, a `Deferred` (a copy of the whole Effect prototype each) was ~5% of the bytes allocated
 * per job in the SQLite end-to-end benchmark.
 */
interface Waiting<A, B, E> {
  readonly item: A
  /** Set once the group is written. */
  outcome: Exit.Exit<B, E> | undefined
  /** The caller's resume while it waits for the outcome. */
  resume: ((outcome: Exit.Exit<B, E>) => void) | undefined
}

const answer = <A, B, E>(waiting: Waiting<A, B, E>, outcome: Exit.Exit<B, E>): void => {
  waiting.outcome = outcome
  const resume = waiting.resume
  waiting.resume = undefined
  if (resume !== undefined) resume(outcome)
}

/** Waits for the outcome of `waiting` (interruptible: the outcome is then dropped). */
const outcomeOf = <A, B, E>(waiting: Waiting<A, B, E>): Effect.Effect<B, E> =>
  Effect.async<B, E>((resume) => {
    if (waiting.outcome !== undefined) return resume(waiting.outcome)
    waiting.resume = resume
    return Effect.sync(() => {
      waiting.resume = undefined
    })
  })

/**
 * A group commit over `write`, which writes a group and returns one outcome (an `Exit`: a failure or a
 * defect of that item alone) per item, in order. When `write` itself fails (or dies), every item of the
 * group fails with that cause.
 */
export const make = <A, B, E>(
  write: (group: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<Exit.Exit<B, E>>, E>
): Effect.Effect<GroupCommit<A, B, E>> =>
  Effect.map(Effect.makeSemaphore(1), (writing) => {
    let group: Array<Waiting<A, B, E>> = []
    let led = false

    const writeGroup = Effect.suspend(() => {
      const taken = group
      group = []
      led = false
      return Effect.flatMap(Effect.exit(write(taken.map((waiting) => waiting.item))), (exit) =>
        Effect.sync(() => {
          for (let index = 0; index < taken.length; index++) {
            const waiting = taken[index]!
            if (Exit.isFailure(exit)) {
              answer(waiting, Exit.failCause(exit.cause))
              continue
            }
            answer(
              waiting,
              exit.value[index] ?? Exit.die(new Error("group commit: the write returned no outcome for an item"))
            )
          }
        }))
    })
    const lead = Effect.uninterruptible(Effect.zipRight(nextTurn, writing.withPermits(1)(writeGroup)))

    return {
      // Joining the group and entering `lead` are one uninterruptible step (interrupted between the two, a leader
      // would leave its group unwritten and `led` set: every later caller would wait forever); only the wait for
      // the answer is interruptible.
      submit: (item) =>
        Effect.uninterruptibleMask((restore) => {
          const waiting: Waiting<A, B, E> = { item, outcome: undefined, resume: undefined }
          group.push(waiting)
          if (led) return restore(outcomeOf(waiting))
          led = true
          return Effect.zipRight(lead, restore(outcomeOf(waiting)))
        })
    }
  })
