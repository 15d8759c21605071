/**
 * What counts as a chunk stream where chunks are expected: an Effect `Stream`, an `AsyncIterable`, or an
 * `Iterable` that is not an array (an array is an explicit chunk list).
 */
import type * as Stream from "effect/Stream"
import { StreamTypeId } from "effect/Stream"
import { types } from "node:util"

/** A spec's `chunks`, read without calling a getter or a proxy trap (`undefined` for a proxy). */
export const ownChunks = (spec: unknown): unknown => {
  if (typeof spec !== "object" || spec === null || types.isProxy(spec)) return undefined
  const chunks: unknown = Object.getOwnPropertyDescriptor(spec, "chunks")?.value
  return types.isProxy(chunks) ? undefined : chunks
}

/** The iterables a Promise caller may pass as chunks. */
export type ChunkIterable = AsyncIterable<unknown> | Iterable<unknown>

/** True for an async iterable, or an iterable that is not an array. */
export const isChunkIterable = (value: unknown): value is ChunkIterable =>
  typeof value === "object" && value !== null && !Array.isArray(value) &&
  (typeof (value as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === "function" ||
    typeof (value as Partial<Iterable<unknown>>)[Symbol.iterator] === "function")

/** True for an Effect `Stream`. */
export const isEffectStream = (value: unknown): value is Stream.Stream<unknown, unknown, unknown> =>
  typeof value === "object" && value !== null && StreamTypeId in value

/** True for an Effect `Stream` or a {@link ChunkIterable}. */
export const isChunkStream = (value: unknown): boolean => isChunkIterable(value) || isEffectStream(value)
