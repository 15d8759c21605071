import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { RangeSet } from "../src/internal/rangeSet.js"

describe("RangeSet (compact checkpoint of completed chunk ids)", () => {
  it.prop("behaves as a set of integers and round-trips through its text form", [
    fc.array(fc.nat({ max: 200 }), { maxLength: 300 })
  ], ([values]) => {
    const set = RangeSet.empty()
    const model = new Set<number>()
    for (const value of values) {
      expect(set.add(value)).toBe(!model.has(value))
      model.add(value)
    }
    expect(set.size).toBe(model.size)
    expect([...set.values()]).toEqual([...model].sort((a, b) => a - b))
    for (let value = 0; value <= 201; value++) expect(set.has(value)).toBe(model.has(value))
    const parsed = RangeSet.parse(set.toString())
    expect(parsed && [...parsed.values()]).toEqual([...set.values()])
  }, { fastCheck: { numRuns: 300 } })

  it.prop("union holds the values of both sets, as few ranges as they make", [
    fc.array(fc.nat({ max: 100 }), { maxLength: 80 }),
    fc.array(fc.nat({ max: 100 }), { maxLength: 80 })
  ], ([a, b]) => {
    const left = RangeSet.empty()
    const right = RangeSet.empty()
    const model = RangeSet.empty()
    for (const value of a) left.add(value)
    for (const value of b) right.add(value)
    for (const value of [...a, ...b]) model.add(value)
    const union = left.union(right)
    expect([...union.values()]).toEqual([...model.values()])
    expect(union.size).toBe(model.size)
    expect(union.toString()).toBe(model.toString())
  }, { fastCheck: { numRuns: 300 } })

  it("keeps a million chunks completed nearly in order as a few ranges", () => {
    const set = RangeSet.empty()
    for (let base = 0; base < 1_000_000; base += 16) {
      for (let offset = 15; offset >= 0; offset--) set.add(base + offset)
    }
    set.add(2_000_000)
    expect(set.size).toBe(1_000_001)
    expect(set.rangeCount).toBe(2)
    expect(set.toString()).toBe("0-999999,2000000")
  })

  it("rejects malformed, unsorted or overlapping text", () => {
    for (const text of ["x", "1-", "5-3", "3,1", "1-5,4-8", "1-5,6", "-1", "1,,2"]) {
      expect(RangeSet.parse(text)).toBeUndefined()
    }
    expect(RangeSet.parse("")?.size).toBe(0)
  })
})
