/**
 * A counter that waiters can wait on without missing a change: read `version`, look at what you watch, then
 * `changedSince(version)` completes at once if anything bumped the counter in between. Waiters are woken
 * through one Deferred made only while someone waits, so a bump nobody waits for costs an increment.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"

export class VersionSignal {
  #version = 0
  #waiters: Deferred.Deferred<void> | undefined = undefined

  get version(): number {
    return this.#version
  }

  bump(): void {
    this.#version++
    const waiters = this.#waiters
    if (waiters !== undefined) {
      this.#waiters = undefined
      Deferred.unsafeDone(waiters, Exit.void)
    }
  }

  /** Completes once the version is no longer `seen` (at once if it already is not). */
  changedSince(seen: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.#version !== seen) return Effect.void
      this.#waiters ??= Deferred.unsafeMake<void>(FiberId.none)
      return Effect.zipRight(Deferred.await(this.#waiters), this.changedSince(seen))
    })
  }
}
