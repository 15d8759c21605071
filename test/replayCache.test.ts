import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { ReplayCache } from "../src/internal/replayCache.js"

describe("ReplayCache (the requests a worker server remembers to refuse replays)", () => {
  it.prop("remembers every key until its expiry, never holds more than its capacity, and forgets once all expired", [
    fc.integer({ min: 1, max: 8 }),
    fc.array(
      fc.record({
        advance: fc.nat({ max: 4 }),
        key: fc.integer({ min: 0, max: 15 }),
        lifetime: fc.integer({ min: -2, max: 12 })
      }),
      { maxLength: 200 }
    )
  ], ([capacity, steps]) => {
    const cache = new ReplayCache(capacity)
    /** key -> the latest expiry it was added with */
    const added = new Map<string, number>()
    let now = 0
    let latest = 0
    for (const { advance, key, lifetime } of steps) {
      now += advance
      const name = `k${key}`
      const outcome = cache.add(name, now + lifetime, now)
      const expiry = added.get(name)
      if (expiry !== undefined && expiry >= now) expect(outcome).toBe("seen")
      if (outcome === "full") expect(cache.size).toBe(capacity)
      if (outcome === "added") {
        added.set(name, now + lifetime)
        latest = Math.max(latest, now + lifetime)
      }
      expect(cache.size).toBeLessThanOrEqual(capacity)
    }
    expect(cache.add("fresh", latest + 2, latest + 1)).toBe("added")
    expect(cache.size).toBe(1)
  }, { fastCheck: { numRuns: 300 } })
})
