/**
 * A set of non-negative integers kept as sorted, disjoint, non-adjacent inclusive ranges: the compact
 * checkpoint of a job's completed chunk ids. Chunks mostly complete in id order, so a job of a million
 * chunks keeps a handful of ranges, not a million ids.
 */
export class RangeSet {
  /** Flat pairs: [start0, end0, start1, end1, ...], sorted, with gaps of at least one between ranges. */
  #bounds: Array<number>
  #size: number

  private constructor(bounds: Array<number>, size: number) {
    this.#bounds = bounds
    this.#size = size
  }

  static empty(): RangeSet {
    return new RangeSet([], 0)
  }

  /** Parses `"0-99,120,130-131"`; undefined when the text is not a well-formed, sorted, disjoint list. */
  static parse(text: string): RangeSet | undefined {
    const set = RangeSet.empty()
    if (text === "") return set
    let previousEnd = -2
    for (const part of text.split(",")) {
      const match = /^(\d+)(?:-(\d+))?$/.exec(part)
      if (match === null) return undefined
      const start = Number(match[1])
      const end = match[2] === undefined ? start : Number(match[2])
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start || start <= previousEnd + 1) {
        return undefined
      }
      set.#bounds.push(start, end)
      set.#size += end - start + 1
      previousEnd = end
    }
    return set
  }

  get size(): number {
    return this.#size
  }

  /** Number of ranges kept (what the checkpoint's size grows with). */
  get rangeCount(): number {
    return this.#bounds.length / 2
  }

  /** Index of the last range whose start is <= value, or -1. */
  #rangeAtOrBefore(value: number): number {
    const bounds = this.#bounds
    let low = 0
    let high = bounds.length / 2 - 1
    let found = -1
    while (low <= high) {
      const middle = (low + high) >> 1
      if (bounds[middle * 2]! <= value) {
        found = middle
        low = middle + 1
      } else {
        high = middle - 1
      }
    }
    return found
  }

  has(value: number): boolean {
    const index = this.#rangeAtOrBefore(value)
    return index >= 0 && value <= this.#bounds[index * 2 + 1]!
  }

  /** The smallest value in the set greater than `after`, or undefined. */
  nextAfter(after: number): number | undefined {
    const bounds = this.#bounds
    const index = this.#rangeAtOrBefore(after)
    if (index >= 0 && after < bounds[index * 2 + 1]!) return after + 1
    const next = (index + 1) * 2
    return next < bounds.length ? bounds[next]! : undefined
  }

  /** The last value of the range holding `value` (`value` must be in the set). */
  endOfRange(value: number): number {
    return this.#bounds[this.#rangeAtOrBefore(value) * 2 + 1]!
  }

  /** Adds a value; returns false when it was already there. */
  add(value: number): boolean {
    const bounds = this.#bounds
    const index = this.#rangeAtOrBefore(value)
    if (index >= 0 && value <= bounds[index * 2 + 1]!) return false
    const joinsPrevious = index >= 0 && bounds[index * 2 + 1]! === value - 1
    const next = index + 1
    const joinsNext = next * 2 < bounds.length && bounds[next * 2]! === value + 1
    if (joinsPrevious && joinsNext) {
      bounds[index * 2 + 1] = bounds[next * 2 + 1]!
      bounds.splice(next * 2, 2)
    } else if (joinsPrevious) {
      bounds[index * 2 + 1] = value
    } else if (joinsNext) {
      bounds[next * 2] = value
    } else {
      bounds.splice(next * 2, 0, value, value)
    }
    this.#size++
    return true
  }

  /** The values in increasing order. */
  *values(): IterableIterator<number> {
    const bounds = this.#bounds
    for (let index = 0; index < bounds.length; index += 2) {
      for (let value = bounds[index]!; value <= bounds[index + 1]!; value++) yield value
    }
  }

  /** The ranges in increasing order, as inclusive `[start, end]` pairs. */
  *ranges(): IterableIterator<readonly [number, number]> {
    const bounds = this.#bounds
    for (let index = 0; index < bounds.length; index += 2) yield [bounds[index]!, bounds[index + 1]!]
  }

  /** `"0-99,120,130-131"`: the form {@link parse} reads. */
  toString(): string {
    const parts: Array<string> = []
    const bounds = this.#bounds
    for (let index = 0; index < bounds.length; index += 2) {
      const start = bounds[index]!
      const end = bounds[index + 1]!
      parts.push(start === end ? `${start}` : `${start}-${end}`)
    }
    return parts.join(",")
  }

  copy(): RangeSet {
    return new RangeSet([...this.#bounds], this.#size)
  }

  /** A new set holding the values of both, merged range by range (cost grows with the ranges, not the values). */
  union(other: RangeSet): RangeSet {
    if (other.#size === 0) return this.copy()
    if (this.#size === 0) return other.copy()
    const left = this.#bounds
    const right = other.#bounds
    const bounds: Array<number> = []
    let size = 0
    let i = 0
    let j = 0
    while (i < left.length || j < right.length) {
      const fromLeft = j >= right.length || (i < left.length && left[i]! <= right[j]!)
      const start = fromLeft ? left[i]! : right[j]!
      const end = fromLeft ? left[i + 1]! : right[j + 1]!
      if (fromLeft) i += 2
      else j += 2
      const last = bounds.length - 1
      if (last > 0 && start <= bounds[last]! + 1) {
        if (end > bounds[last]!) {
          size += end - bounds[last]!
          bounds[last] = end
        }
      } else {
        bounds.push(start, end)
        size += end - start + 1
      }
    }
    return new RangeSet(bounds, size)
  }
}
