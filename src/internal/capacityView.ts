/**
 * A dispatcher's view of the cluster's free capacity, learned from the runners' replies: which runner holds
 * which shard, and how many chunk slots each runner had free when it last answered (less the attempts sent
 * to it since). Plain bookkeeping, no Effect: the dispatcher asks it where to send the next attempt.
 *
 * The view is advisory. A runner refuses an attempt when it is full, whatever the view says, so a stale
 * view costs a retry, never an overload.
 */

interface RunnerEntry {
  /** Slots free by the last reply, less the attempts reserved here since. */
  free: number
  readonly shards: Set<number>
}

export class CapacityView {
  private readonly runnerOfShard = new Map<number, string>()
  private readonly runners = new Map<string, RunnerEntry>()

  /** `shards`: the shard numbers an entity id was found for (1-based, each with an entity on it). */
  constructor(private readonly shards: ReadonlyArray<number>, private readonly random: () => number = Math.random) {}

  /**
   * The shard to send the next attempt to: one of the runner with the most free slots (one slot of it is
   * reserved); when no runner is known to have a free slot, a shard whose runner is unknown yet, or any
   * shard (the runner answers whether it has room).
   */
  choose(): number {
    let best: RunnerEntry | undefined
    for (const entry of this.runners.values()) {
      if (entry.free > 0 && entry.shards.size > 0 && (best === undefined || entry.free > best.free)) best = entry
    }
    if (best !== undefined) {
      best.free--
      return this.pick([...best.shards])
    }
    const unknown = this.shards.filter((shard) => !this.runnerOfShard.has(shard))
    return this.pick(unknown.length > 0 ? unknown : this.shards)
  }

  /** A reply from `runner` for `shard`: it holds the shard and had `free` slots when it answered. */
  report(shard: number, runner: string, free: number): void {
    const previous = this.runnerOfShard.get(shard)
    if (previous !== undefined && previous !== runner) this.runners.get(previous)?.shards.delete(shard)
    this.runnerOfShard.set(shard, runner)
    let entry = this.runners.get(runner)
    if (entry === undefined) {
      entry = { free, shards: new Set() }
      this.runners.set(runner, entry)
    }
    entry.free = free
    entry.shards.add(shard)
  }

  /** `runner`, which holds `shard`, ended an attempt without saying how many slots it has free: one more. */
  settled(shard: number, runner: string): void {
    const free = this.runners.get(runner)?.free ?? 0
    this.report(shard, runner, free + 1)
  }

  /** The shard's runner is unreachable or moved: forget where the shard is. */
  forget(shard: number): void {
    const previous = this.runnerOfShard.get(shard)
    if (previous === undefined) return
    this.runnerOfShard.delete(shard)
    const entry = this.runners.get(previous)
    if (entry === undefined) return
    entry.shards.delete(shard)
    if (entry.shards.size === 0) this.runners.delete(previous)
  }

  private pick(from: ReadonlyArray<number>): number {
    return from[Math.min(from.length - 1, Math.floor(this.random() * from.length))]!
  }
}
