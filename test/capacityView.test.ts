import { describe, expect, it } from "@effect/vitest"
import { CapacityView } from "../src/internal/capacityView.js"

/** The own runner, with `free` of `capacity` slots free (by default half or more busy: the least-loaded rule applies). */
const local = (free: number, held: ReadonlyArray<number> = [], capacity = 2 * free) => ({
  runner: "here",
  capacity,
  free,
  holds: (shard: number) => held.includes(shard)
})

describe("CapacityView", () => {
  it("runs an attempt on the dispatcher's own runner when it is at least as free as any other", () => {
    const view = new CapacityView([1, 2, 3], () => 0)
    // Nothing known of the others yet: a shard no runner is known for, and not held here, is probed.
    const probe = view.choose(local(4, [1]))
    expect(probe).toEqual({ shard: 2, runner: undefined })
    view.answered(probe!, "there", 4, "done")
    // `there` has 4 free, here 4: here.
    expect(view.choose(local(4, [1]))).toBeUndefined()
    // Here 2, there 4: there, counted in flight (3 left), then there again (here 2 < 3), then here (2 >= 2).
    expect(view.choose(local(2, [1]))).toEqual({ shard: 2, runner: "there" })
    expect(view.choose(local(2, [1]))).toEqual({ shard: 2, runner: "there" })
    expect(view.choose(local(2, [1]))).toBeUndefined()
    // Here full: there, whatever its count.
    expect(view.choose(local(0, [1]))).toEqual({ shard: 2, runner: "there" })
  })

  it("uses the own runner once another is known, even when that one is full; and when every shard is held here", () => {
    const view = new CapacityView([1, 2, 3], () => 0)
    view.answered({ shard: 2, runner: undefined }, "there", 1, "busy")
    expect(view.choose(local(1, [1]))).toBeUndefined()
    const alone = new CapacityView([1, 2], () => 0)
    expect(alone.choose(local(1, [1, 2]))).toBeUndefined()
    // Full here too: a shard is tried (its runner refuses if it has no room).
    expect(alone.choose(local(0, [1, 2]))).toEqual({ shard: 1, runner: undefined })
  })

  it("fills the own runner first up to half its capacity, then sends to the runner with the most free slots", () => {
    const view = new CapacityView([1, 2], () => 0)
    view.answered({ shard: 2, runner: undefined }, "there", 8, "done")
    // Here 8 slots: while fewer than 4 are busy, here, though `there` has more free slots.
    for (const busy of [0, 1, 2, 3]) expect(view.choose(local(8 - busy, [1], 8))).toBeUndefined()
    // 4 busy here (4 free) and 8 free there: there.
    expect(view.choose(local(4, [1], 8))).toEqual({ shard: 2, runner: "there" })
    // A runner of one slot, idle: here.
    expect(view.choose(local(1, [1], 1))).toBeUndefined()
    // Closing (no free slot): never here.
    expect(view.choose(local(0, [1], 8))).toEqual({ shard: 2, runner: "there" })
  })

  it("without an own runner, sends to the runner with the most free slots", () => {
    const view = new CapacityView([1, 2], () => 0)
    view.answered({ shard: 1, runner: undefined }, "a", 2, "done")
    view.answered({ shard: 2, runner: undefined }, "b", 3, "done")
    expect(view.choose()).toEqual({ shard: 2, runner: "b" })
    expect(view.choose()).toEqual({ shard: 1, runner: "a" })
  })
})
