/**
 * The opaque paging cursor shared by every job store: the sort key (createdAt millis, id) of the last job
 * of a page, base64url-encoded.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { JobId } from "../Job.js"
import { InvalidOption } from "../JobError.js"

export interface CursorKey {
  readonly createdAt: number
  readonly id: JobId
}

export const encodeCursor = (key: CursorKey): string =>
  Buffer.from(`${key.createdAt}:${key.id}`, "utf8").toString("base64url")

const decodeId = Schema.decodeUnknownOption(JobId)

export const decodeCursor = (cursor: string): Effect.Effect<CursorKey, InvalidOption> =>
  Effect.suspend(() => {
    const text = /^[A-Za-z0-9_-]*$/.test(cursor) ? Buffer.from(cursor, "base64url").toString("utf8") : ""
    const colon = text.indexOf(":")
    const createdAt = Number(text.slice(0, colon))
    const id = decodeId(text.slice(colon + 1))
    return colon > 0 && Number.isSafeInteger(createdAt) && id._tag === "Some"
      ? Effect.succeed({ createdAt, id: id.value })
      : Effect.fail(new InvalidOption({ path: ["cursor"], detail: "not a cursor returned by listJobs" }))
  })

/** Newest first: createdAt descending, then id descending. */
export const compareNewestFirst = (a: CursorKey, b: CursorKey): number =>
  a.createdAt !== b.createdAt ? b.createdAt - a.createdAt : a.id < b.id ? 1 : a.id > b.id ? -1 : 0

/** Whether `key` comes after the cursor in newest-first order. */
export const isAfterCursor = (key: CursorKey, cursor: CursorKey): boolean => compareNewestFirst(cursor, key) < 0
