/**
 * A dispatcher's view of the cluster's free capacity: which runner holds which shard and how many chunks it
 * runs at once (both learned from the runners' replies), and how many attempts this dispatcher has in flight
 * on each. Plain bookkeeping, no Effect: the dispatcher asks it where to send the next attempt.
 *
 * The view is advisory: it does not see other dispatchers' attempts, and a shard may have moved. A runner
 * refuses an attempt when it is full, whatever the view says, so a stale view costs a retry, never an
 * overload.
 */

/** How long a runner that refused an attempt is passed over, in milliseconds. */
const fullFor = 100

/**
 * The share of the own runner's slots filled first, before the least-loaded choice (as Ray's default
 * "hybrid" scheduling packs a node up to half its capacity, then spreads): an attempt run here costs no
 * message, no serialization and no network round trip, while the other half keeps chunks spread over the
 * cluster when a job has more chunks in flight than half a runner.
 */
const localShare = 0.5

interface RunnerEntry {
  capacity: number
  /** Attempts of this dispatcher sent to it and not answered yet. */
  inFlight: number
  /** Until when (epoch millis) it is passed over: it refused an attempt (other dispatchers fill it too). */
  fullUntil: number
  readonly shards: Set<number>
}

/** The dispatcher's own runner: its address, its capacity and free slots now, and whether it holds `shard` now. */
export interface Local {
  readonly runner: string
  readonly capacity: number
  readonly free: number
  readonly holds: (shard: number) => boolean
}

/**
 * Where an attempt went: the shard, and the runner the view expected to hold it (if it knew one).
 * `undefined` (from {@link CapacityView.choose}): it ran on the dispatcher's own runner, which the view does
 * not track; the bookkeeping methods ignore it.
 */
export interface Placement {
  readonly shard: number
  readonly runner: string | undefined
}

export class CapacityView {
  private readonly runnerOfShard = new Map<number, string>()
  private readonly runners = new Map<string, RunnerEntry>()

  /** `shards`: the shard numbers an entity id was found for. */
  constructor(
    private readonly shards: ReadonlyArray<number>,
    private readonly random: () => number = Math.random,
    private readonly now: () => number = Date.now
  ) {}

  /**
   * Where to send the next attempt: `undefined` to run it on this dispatcher's own runner (`local`: its
   * address, its `capacity` and `free` slots, and whether it holds a shard now) while less than half of it is
   * busy, or when it has a free slot and at least as many as any other runner by this view (or no other
   * runner is known and no shard of another runner is left to probe); else a shard of the other runner with
   * the most free slots (always the same shard of it; counted as in flight there until {@link answered}); when no other runner is known to
   * have one, a shard whose runner is not known yet, or any shard (the runner answers whether it has room).
   */
  choose(local?: Local): Placement | undefined {
    if (local !== undefined && local.free > 0 && local.capacity - local.free < local.capacity * localShare) return undefined
    let best: { readonly runner: string; readonly entry: RunnerEntry } | undefined
    let othersKnown = false
    const now = this.now()
    for (const [runner, entry] of this.runners) {
      if (runner === local?.runner || entry.shards.size === 0) continue
      othersKnown = true
      const free = entry.capacity - entry.inFlight
      if (free > 0 && entry.fullUntil <= now && (best === undefined || free > best.entry.capacity - best.entry.inFlight)) {
        best = { runner, entry }
      }
    }
    const localFree = local === undefined ? 0 : local.free
    if (best !== undefined) {
      if (localFree > 0 && localFree >= best.entry.capacity - best.entry.inFlight) return undefined
      best.entry.inFlight++
      // Always the same shard of a runner (the first one learned): the attempts sent to it in one turn of the
      // event loop share a message.
      return { shard: best.entry.shards.values().next().value!, runner: best.runner }
    }
    if (localFree > 0 && othersKnown) return undefined
    const unknown = this.shards.filter((shard) => !this.runnerOfShard.has(shard) && local?.holds(shard) !== true)
    if (localFree > 0 && unknown.length === 0) return undefined
    return { shard: this.pick(unknown.length > 0 ? unknown : this.shards), runner: undefined }
  }

  /**
   * The attempt sent to `placement` was answered by `runner`, which holds the shard and runs `capacity`
   * chunks at once: `outcome` `"busy"` when it refused the attempt.
   */
  answered(placement: Placement | undefined, runner: string, capacity: number | undefined, outcome: "done" | "busy"): void {
    if (placement === undefined) return
    this.release(placement)
    const previous = this.runnerOfShard.get(placement.shard)
    if (previous !== undefined && previous !== runner) this.runners.get(previous)?.shards.delete(placement.shard)
    this.runnerOfShard.set(placement.shard, runner)
    let entry = this.runners.get(runner)
    if (entry === undefined) {
      entry = { capacity: capacity ?? 1, inFlight: 0, fullUntil: 0, shards: new Set() }
      this.runners.set(runner, entry)
    }
    if (capacity !== undefined) entry.capacity = capacity
    entry.fullUntil = outcome === "busy" ? this.now() + fullFor : 0
    entry.shards.add(placement.shard)
  }

  /** The attempt sent to `placement` got no answer from a runner (it went away, or was interrupted). */
  lost(placement: Placement | undefined): void {
    if (placement === undefined) return
    this.release(placement)
    const previous = this.runnerOfShard.get(placement.shard)
    if (previous === undefined) return
    this.runnerOfShard.delete(placement.shard)
    const entry = this.runners.get(previous)
    if (entry === undefined) return
    entry.shards.delete(placement.shard)
    if (entry.shards.size === 0 && entry.inFlight === 0) this.runners.delete(previous)
  }

  /** The attempt sent to `placement` was abandoned here (interrupted): its slot is counted free again. */
  release(placement: Placement | undefined): void {
    if (placement?.runner === undefined) return
    const entry = this.runners.get(placement.runner)
    if (entry !== undefined && entry.inFlight > 0) entry.inFlight--
  }

  private pick(from: ReadonlyArray<number>): number {
    return from[Math.min(from.length - 1, Math.floor(this.random() * from.length))]!
  }
}
