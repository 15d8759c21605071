/**
 * Lets the event loop take a turn at least every few milliseconds of continuous work.
 *
 * A job whose chunks settle in microtasks (a Promise worker that resolves at once, or any worker faster than
 * the event loop's turn) would otherwise keep Node in its microtask phase for the whole job: no timer fires
 * and no I/O callback runs, so heartbeats stop (another manager takes the job over), a cancel scheduled by a
 * timer never runs, and a server on the same process stops answering. Effect's own scheduler yields to
 * microtasks only.
 *
 * The worker loops of one execution share one `MacrotaskYield`. A probe (`setImmediate`) notes each turn the
 * event loop takes on its own; a job whose chunks wait for I/O or timers lets it turn all the time and never
 * waits here. When the probe has not fired for `everyMillis` of real time (`performance.now`: this is about
 * the real event loop, not the Effect `Clock`), every loop parks on one `setImmediate` before its next pull,
 * so the microtask queue empties and the event loop takes a full turn (timers, I/O), then the loops go on.
 * The clock is read once every `checkEvery` pulls, so a pull costs a counter increment.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"

/** Resumes after the current turn of the event loop (its I/O callbacks, timers and microtasks). */
export const nextTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

export class MacrotaskYield {
  /** When the event loop last took a turn, as far as this knows (NaN: not yet looked). */
  #lastTurn = Number.NaN
  #pulls = 0
  #probing = false
  #turn: Turn | undefined = undefined

  constructor(readonly everyMillis: number, readonly checkEvery: number) {}

  /** What a loop waits on before its next pull when a turn is due (or under way); `undefined` otherwise. */
  due(): Effect.Effect<void> | undefined {
    const turn = this.#turn ?? this.#startIfDue()
    return turn === undefined ? undefined : Deferred.await(turn.done)
  }

  /**
   * {@link due} for a loop outside Effect (a Promise lane): when a turn is due (or under way), `resume` is
   * called once it has been taken, and the answer is true; otherwise false, and the loop goes on.
   */
  deferIfDue(resume: () => void): boolean {
    const turn = this.#turn ?? this.#startIfDue()
    if (turn === undefined) return false
    turn.waiting.push(resume)
    return true
  }

  #startIfDue(): Turn | undefined {
    if (++this.#pulls % this.checkEvery !== 0) return undefined
    const now = performance.now()
    if (Number.isNaN(this.#lastTurn)) this.#lastTurn = now
    if (!this.#probing) this.#probe()
    if (now - this.#lastTurn < this.everyMillis) return undefined
    const turn: Turn = { done: Deferred.unsafeMake<void>(FiberId.none), waiting: [] }
    this.#turn = turn
    setImmediate(() => {
      this.#turn = undefined
      this.#lastTurn = performance.now()
      Deferred.unsafeDone(turn.done, Exit.void)
      for (const resume of turn.waiting) resume()
    })
    return turn
  }

  #probe(): void {
    this.#probing = true
    setImmediate(() => {
      this.#probing = false
      this.#lastTurn = performance.now()
    })
  }
}

/** A turn of the event loop the loops wait for: fibers on `done`, Promise lanes in `waiting`. */
interface Turn {
  readonly done: Deferred.Deferred<void>
  readonly waiting: Array<() => void>
}
