/**
 * Whether a manager can still prove that it owns its jobs, by its own clock: it can while its last successful
 * heartbeat is younger than `staleAfter` (after that, another manager may take its jobs over). A process
 * resumed after a stall (SIGSTOP, a long GC pause, a suspended VM) finds its proof stale and must wait for a
 * heartbeat to renew it before it starts anything.
 */
import type * as Effect from "effect/Effect"
import { VersionSignal } from "./versionSignal.js"

export class OwnershipProof {
  /** When the last successful heartbeat began (millis; the time it wrote is no earlier). */
  #renewedAt = Number.NEGATIVE_INFINITY
  readonly #renewals = new VersionSignal()

  constructor(readonly staleAfter: number, readonly now: () => number) {}

  isFresh(): boolean {
    return this.now() - this.#renewedAt < this.staleAfter
  }

  /** A heartbeat that began at `at` succeeded. */
  renewed(at: number): void {
    if (at > this.#renewedAt) this.#renewedAt = at
    this.#renewals.bump()
  }

  /** Completes at the next successful heartbeat. */
  get awaitRenewal(): Effect.Effect<void> {
    return this.#renewals.changedSince(this.#renewals.version)
  }
}
