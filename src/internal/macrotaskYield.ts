/**
 * Turns to the event loop's macrotask queue at least every few milliseconds of continuous work.
 *
 * A job whose chunks settle in microtasks (a Promise worker that resolves at once, or any worker faster than
 * the event loop's turn) would otherwise keep Node in its microtask phase for the whole job: no timer fires
 * and no I/O callback runs, so heartbeats stop (another manager takes the job over), a cancel scheduled by a
 * timer never runs, and a server on the same process stops answering. Effect's own scheduler yields to
 * microtasks only. The worker loops of one execution share one `MacrotaskYield`: when a yield is due every
 * loop parks on the same `setImmediate` before its next pull, so the microtask queue empties and the event
 * loop takes a full turn (timers, I/O, then the check phase resumes the loops). Measured by real time
 * (`performance.now`), not by the Effect `Clock`: it is about the real event loop. A turn is taken only after
 * `minPulls` pulls as well, so a job of a few chunks (or of slow ones, which leave the event loop turning
 * anyway) never waits for one.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"

export class MacrotaskYield {
  #last = Number.NaN
  #pulls = 0
  #turn: Deferred.Deferred<void> | undefined = undefined

  constructor(readonly everyMillis: number, readonly minPulls: number) {}

  /** What a loop waits on before its next pull when a turn is due (or under way); `undefined` otherwise. */
  due(): Effect.Effect<void> | undefined {
    const turn = this.#turn
    if (turn !== undefined) return Deferred.await(turn)
    if (++this.#pulls < this.minPulls) return undefined
    const now = performance.now()
    if (Number.isNaN(this.#last)) this.#last = now
    if (now - this.#last < this.everyMillis) return undefined
    const next = Deferred.unsafeMake<void>(FiberId.none)
    this.#turn = next
    setImmediate(() => {
      this.#turn = undefined
      this.#pulls = 0
      this.#last = performance.now()
      Deferred.unsafeDone(next, Exit.void)
    })
    return Deferred.await(next)
  }
}
