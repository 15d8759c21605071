/**
 * Chunk timeouts without a fiber per attempt. Each worker loop of an execution owns one slot (it runs one
 * attempt at a time); an attempt arms its slot with a deadline and a callback, and disarms it when it
 * settles. One watchdog fiber per execution sleeps (on the Effect `Clock`, so `TestClock` drives it) until
 * the earliest armed deadline and fires the expired slots. The cost per attempt is two field writes.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"

export interface DeadlineSlot {
  /** Calls `onExpire` once `millis` from now have passed, unless disarmed first. */
  readonly arm: (millis: number, onExpire: () => void) => void
  /** Calls `onExpire` once the `Clock` reads `deadline` (epoch millis) or later, unless disarmed first. */
  readonly armAt: (deadline: number, onExpire: () => void) => void
  readonly disarm: () => void
}

export interface Deadlines {
  readonly slots: ReadonlyArray<DeadlineSlot>
  /** The watchdog: runs until interrupted. */
  readonly watchdog: Effect.Effect<never>
}

interface SlotState {
  deadline: number
  onExpire: (() => void) | undefined
}

export const make = (slots: number): Effect.Effect<Deadlines> =>
  Effect.map(Effect.clock, (clock) => {
    const all: Array<SlotState> = Array.from({ length: slots }, () => ({ deadline: 0, onExpire: undefined }))
    let idle: Deferred.Deferred<void> | undefined

    /** Fires expired slots; the time until the next deadline, or undefined when none is armed. */
    const sweep = (): number | undefined => {
      const now = clock.unsafeCurrentTimeMillis()
      let next: number | undefined
      for (const slot of all) {
        const onExpire = slot.onExpire
        if (onExpire === undefined) continue
        if (slot.deadline <= now) {
          slot.onExpire = undefined
          onExpire()
        } else if (next === undefined || slot.deadline < next) {
          next = slot.deadline
        }
      }
      return next === undefined ? undefined : next - now
    }

    const watchdog: Effect.Effect<never> = Effect.suspend(() => {
      const wait = sweep()
      if (wait !== undefined) return Effect.zipRight(Clock.sleep(wait), watchdog)
      const wake = Deferred.unsafeMake<void>(FiberId.none)
      idle = wake
      return Effect.zipRight(Deferred.await(wake), watchdog)
    })

    const slotOf = (state: SlotState): DeadlineSlot => {
      const armAt = (deadline: number, onExpire: () => void) => {
        state.deadline = deadline
        state.onExpire = onExpire
        const wake = idle
        if (wake !== undefined) {
          idle = undefined
          Deferred.unsafeDone(wake, Exit.void)
        }
      }
      return {
        arm: (millis, onExpire) => armAt(clock.unsafeCurrentTimeMillis() + millis, onExpire),
        armAt,
        disarm: () => {
          state.onExpire = undefined
        }
      }
    }

    return { slots: all.map(slotOf), watchdog }
  })
