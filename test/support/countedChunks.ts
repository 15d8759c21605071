/** Chunk sources for stream tests that count what they were asked for. */
import type { Chunk } from "../../src/Job.js"

/** What a counted source has done: elements yielded, and how many times it finished (its `finally` ran). */
export interface SourceCounts {
  yielded: number
  finished: number
}

/**
 * An async generator of `count` chunks (endless by default), one per turn of the event loop, with ids from 0
 * and payloads `{ line }`, counting in `counts` what it yields and when it finishes.
 */
export async function* countedChunks(counts: SourceCounts, count = Number.POSITIVE_INFINITY): AsyncGenerator<Chunk> {
  try {
    for (let id = 0; id < count; id++) {
      await new Promise<void>((resolve) => setImmediate(resolve))
      counts.yielded++
      yield { id, payload: { line: `line ${id}` } }
    }
  } finally {
    counts.finished++
  }
}
