/**
 * The paging of a job's chunks, shared by every store. A chunk's state comes from two places: the job's
 * compact checkpoint (the ids of its completed chunks, as ranges) and its chunk records (a row per chunk that
 * has a result, failed, or needed more than one attempt). The listing walks chunk ids upwards from the
 * cursor and stops after one page, skipping whole checkpoint ranges when completed chunks are filtered out,
 * so a page of a million-chunk range job costs the same at its start and at its end, and no memory beyond
 * the page and the records it reads.
 */
import * as Effect from "effect/Effect"
import type { ChunkInfo, ChunkPage, ChunkState, JobSpec, ListChunksQuery } from "../Job.js"
import { isRangePlan, isStreamSource, totalChunks } from "../Job.js"
import { InvalidOption } from "../JobError.js"
import type { ChunkRecord } from "../JobRepository.js"
import type { RangeSet } from "./rangeSet.js"

/** The default page size of a chunk listing. */
export const defaultChunkLimit = 100

/**
 * The ids a streamed job knows: its completed ones and those pulled and not completed (its failed ones among
 * them); the chunks its stream has not given yet are not known.
 */
export const streamedIds = (checkpoint: RangeSet, pulled: Iterable<number>): RangeSet => {
  const ids = checkpoint.copy()
  for (const id of pulled) ids.add(id)
  return ids
}

/**
 * The chunk ids of a spec in increasing order: the id after `after`, or undefined after the last. A streamed
 * job's are those `streamed` knows (see {@link streamedIds}), read only for such a job.
 */
export const chunkIdsOf = (
  spec: JobSpec,
  streamed: () => RangeSet
): (after: number) => number | undefined => {
  const chunks = spec.chunks
  if (isStreamSource(chunks)) {
    const ids = streamed()
    return (after) => ids.nextAfter(after)
  }
  if (isRangePlan(chunks)) {
    const total = totalChunks(spec)!
    return (after) => (after + 1 < total ? Math.max(0, after + 1) : undefined)
  }
  const ids = chunks.map((chunk) => chunk.id)
  let sorted = true
  for (let index = 1; index < ids.length && sorted; index++) sorted = ids[index - 1]! < ids[index]!
  if (!sorted) ids.sort((a, b) => a - b)
  return (after) => {
    let low = 0
    let high = ids.length
    while (low < high) {
      const middle = (low + high) >> 1
      if (ids[middle]! <= after) low = middle + 1
      else high = middle
    }
    return ids[low]
  }
}

/** Records with ids after some id, in id order; `complete`: there is none after the last one. */
export interface RecordWindow {
  readonly records: ReadonlyArray<ChunkRecord>
  readonly complete: boolean
}

/** The records of `sorted` (in id order) after `after`, at most `limit`. */
export const recordsAfter = (sorted: ReadonlyArray<ChunkRecord>, after: number, limit: number): RecordWindow => {
  let low = 0
  let high = sorted.length
  while (low < high) {
    const middle = (low + high) >> 1
    if (sorted[middle]!.id <= after) low = middle + 1
    else high = middle
  }
  const records = sorted.slice(low, low + limit)
  return { records, complete: low + limit >= sorted.length }
}

const cursorPattern = /^(0|[1-9][0-9]{0,15})$/

/** The chunk id a cursor continues after (-1: from the start). */
export const decodeChunkCursor = (cursor: string | undefined): Effect.Effect<number, InvalidOption> => {
  if (cursor === undefined) return Effect.succeed(-1)
  const id = cursorPattern.test(cursor) ? Number(cursor) : Number.NaN
  return Number.isSafeInteger(id)
    ? Effect.succeed(id)
    : Effect.fail(new InvalidOption({ path: ["cursor"], detail: "not a cursor of a chunk listing" }))
}

/** The cursor of the page after the chunk `id`. */
export const encodeChunkCursor = (id: number): string => String(id)

/** The states a query asks for (all when it names none). */
export const statesOf = (query: ListChunksQuery): ReadonlySet<ChunkState> =>
  new Set(
    query.state === undefined
      ? ["completed", "failed", "running", "pending"]
      : typeof query.state === "string"
      ? [query.state]
      : query.state
  )

/** A stored chunk record as the listing shows it. */
export const infoOfRecord = (record: ChunkRecord): ChunkInfo => ({
  id: record.id,
  state: record.state,
  attempts: record.attempts,
  ...(record.result === undefined ? {} : { result: record.result }),
  ...(record.error === undefined ? {} : { error: record.error }),
  startedAt: new Date(record.startedAt),
  finishedAt: new Date(record.finishedAt)
})

/**
 * One page of a job's chunks as the store knows them: `completed`, `failed` or `pending` (a store cannot
 * tell a running chunk from a pending one; the manager running the job can).
 */
export const pageChunks = <E>(
  query: ListChunksQuery,
  nextId: (after: number) => number | undefined,
  checkpoint: RangeSet,
  fetchRecords: (after: number, limit: number) => Effect.Effect<RecordWindow, E>
): Effect.Effect<ChunkPage, E | InvalidOption> =>
  Effect.gen(function*() {
    const start = yield* decodeChunkCursor(query.cursor)
    const limit = query.limit ?? 100
    const states = statesOf(query)
    const wantPending = states.has("pending")
    const wantCompleted = states.has("completed")
    const wantFailed = states.has("failed")
    const batch = Math.max(limit + 1, 64)
    // The records read so far: `window` from `index` on, covering every id up to `covered`.
    let window: ReadonlyArray<ChunkRecord> = []
    let index = 0
    let covered = start
    let complete = false
    const fill = (upTo: number) =>
      Effect.gen(function*() {
        while (!complete && covered < upTo) {
          const read = yield* fetchRecords(covered, batch)
          window = read.records
          index = 0
          complete = read.complete
          const last = read.records[read.records.length - 1]
          covered = complete || last === undefined ? Number.POSITIVE_INFINITY : last.id
        }
      })
    /** The record of the chunk `id` (ids asked for only grow). */
    const recordOf = (id: number) =>
      Effect.map(fill(id), () => {
        while (index < window.length && window[index]!.id < id) index++
        const record = window[index]
        return record !== undefined && record.id === id ? record : undefined
      })
    /** The id of the first record after `after`. */
    const nextRecord = (after: number) =>
      Effect.gen(function*() {
        for (;;) {
          while (index < window.length && window[index]!.id <= after) index++
          if (index < window.length) return window[index]!.id
          if (complete) return undefined
          yield* fill(covered + 1)
        }
      })
    const page: Array<ChunkInfo> = []
    let position = start
    while (page.length <= limit) {
      let candidate: number | undefined
      if (wantPending) {
        candidate = nextId(position)
        // Completed chunks are skipped a range at a time.
        while (candidate !== undefined && !wantCompleted && checkpoint.has(candidate)) {
          candidate = nextId(checkpoint.endOfRange(candidate))
        }
      }
      if (wantCompleted) {
        const completed = checkpoint.nextAfter(position)
        if (completed !== undefined && (candidate === undefined || completed < candidate)) candidate = completed
      }
      if (wantFailed || wantCompleted) {
        const recorded = yield* nextRecord(position)
        if (recorded !== undefined && (candidate === undefined || recorded < candidate)) candidate = recorded
      }
      if (candidate === undefined) break
      position = candidate
      const record = yield* recordOf(candidate)
      const info: ChunkInfo = record !== undefined
        ? infoOfRecord(record)
        : checkpoint.has(candidate)
        ? { id: candidate, state: "completed", attempts: 1 }
        : { id: candidate, state: "pending", attempts: 0 }
      if (states.has(info.state)) page.push(info)
    }
    if (page.length <= limit) return { chunks: page }
    const chunks = page.slice(0, limit)
    return { chunks, nextCursor: encodeChunkCursor(chunks[chunks.length - 1]!.id) }
  })
