/**
 * How many jobs of each state sit in each block of consecutive positions of a listing order (blocks of 256),
 * so that a listing filtered by state skips the blocks that hold none of its states instead of walking every
 * job: a page of a rare state among 100,000 jobs reads a few hundred counts, not 100,000 statuses. Plain
 * bookkeeping, kept by the memory store as jobs are created, change state and are deleted.
 */
import type { JobState } from "../Job.js"

const blockBits = 8

export class StateBlocks {
  readonly #counts = new Map<JobState, Array<number>>()

  /** The block of `position`. */
  static blockOf(position: number): number {
    return position >> blockBits
  }

  /** The first position of `block`. */
  static startOf(block: number): number {
    return block << blockBits
  }

  add(position: number, state: JobState): void {
    let counts = this.#counts.get(state)
    if (counts === undefined) {
      counts = []
      this.#counts.set(state, counts)
    }
    const block = position >> blockBits
    while (counts.length <= block) counts.push(0)
    counts[block]!++
  }

  remove(position: number, state: JobState): void {
    const counts = this.#counts.get(state)
    const block = position >> blockBits
    if (counts !== undefined && counts[block] !== undefined && counts[block] > 0) counts[block]--
  }

  /** Whether `block` holds a job in one of `states`. */
  holdsAny(block: number, states: ReadonlySet<JobState>): boolean {
    for (const state of states) {
      const count = this.#counts.get(state)?.[block]
      if (count !== undefined && count > 0) return true
    }
    return false
  }

  clear(): void {
    this.#counts.clear()
  }
}
