/**
 * The chunk source of a streamed execution: one producer fiber pulls the user's stream (an Effect `Stream` or
 * an `AsyncIterable` / `Iterable`) into a small buffer, and the executor's worker loops take chunks from it.
 *
 * Backpressure: the producer pulls only while fewer than `prefetch` chunks wait in the buffer, or when a
 * worker loop waits for one. So, when the stream yields one element per pull (`Stream.fromAsyncIterable`, an
 * async generator, `Stream.repeatEffectOption`, `Stream.paginateEffect`...), at most `concurrency + prefetch`
 * chunks have been pulled and not settled (plus one element held by a producer waiting for room). A stream
 * that emits its elements in Effect chunks of several (e.g. `Stream.fromIterable` builds chunks of up to
 * 4,096) has made each such chunk before it is pulled; that part is the stream's own.
 *
 * Every element is checked as a `Chunk` (`{ id, payload }`, the payload JSON) and its id must be new. The bound
 * chosen for that: ids are kept in a `RangeSet`, so memory grows with the number of runs of consecutive ids
 * pulled: O(1) for ids pulled in order (0, 1, 2, ...), one range (two numbers) per gap otherwise, and an id
 * that lands before the last range costs time in proportion to the ranges after it.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as EffectChunk from "effect/Chunk"
import { Chunk } from "../Job.js"
import { firstIssue, InvalidJobSpec } from "../JobError.js"
import type { ChunkIterable } from "./iterables.js"
import { RangeSet } from "./rangeSet.js"

/** One pull of a source: the elements it gave, or `undefined` once it has ended. */
export type Pull<E, R = never> = Effect.Effect<ReadonlyArray<unknown> | undefined, E, R>

/** The pull of an Effect `Stream`, open for the scope. */
export const pullStream = <E, R>(stream: Stream.Stream<unknown, E, R>): Effect.Effect<Pull<E, R>, never, Scope.Scope | R> =>
  Effect.map(Stream.toPull(stream), (pull) =>
    Effect.matchEffect(pull, {
      onFailure: Option.match({ onNone: () => Effect.succeed(undefined), onSome: Effect.fail }),
      onSuccess: (elements) => Effect.succeed(EffectChunk.toReadonlyArray(elements))
    }))

/**
 * The pull of an iterable, open for the scope. Interrupting a pull abandons its pending `next()` (a Promise
 * cannot be stopped); closing the scope calls the iterator's `return()` without waiting for it, since an
 * async generator suspended in an `await` handles `return()` only once that `await` settles. A `next()`
 * that throws or rejects fails the pull with what it threw.
 */
export const pullIterable = (iterable: ChunkIterable): Effect.Effect<Pull<unknown>, unknown, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.try({
        try: () =>
          Symbol.asyncIterator in iterable
            ? { async: true as const, iterator: iterable[Symbol.asyncIterator]() }
            : { async: false as const, iterator: (iterable as Iterable<unknown>)[Symbol.iterator]() },
        catch: (error) => error
      }),
      ({ iterator }) =>
        Effect.sync(() => {
          try {
            const returned: unknown = iterator.return?.()
            if (returned instanceof Promise) returned.catch(() => {})
          } catch {
            // The source is being closed; an error of its own return() changes nothing.
          }
        })
    ),
    (source): Pull<unknown> =>
      source.async
        ? Effect.async<ReadonlyArray<unknown> | undefined, unknown>((resume) => {
          let next: Promise<IteratorResult<unknown>>
          try {
            next = Promise.resolve(source.iterator.next())
          } catch (error) {
            return resume(Effect.fail(error))
          }
          next.then(
            (result) => resume(Effect.succeed(result.done === true ? undefined : [result.value])),
            (error: unknown) => resume(Effect.fail(error))
          )
          return Effect.void
        })
        : Effect.try({
          try: () => {
            const result = source.iterator.next()
            return result.done === true ? undefined : [result.value]
          },
          catch: (error) => error
        })
  )

/**
 * A pull that gives `first`, then the elements of `rest` whose id is not one of `first`'s (a streamed job
 * resumed: the chunks pulled before and not completed run again, and the stream made again does not repeat
 * them).
 */
export const after = <E, R>(first: ReadonlyArray<Chunk>, rest: Pull<E, R>): Pull<E, R> => {
  const ids = new Set(first.map((chunk) => chunk.id))
  let given = first.length === 0
  const fresh = (element: unknown): boolean => {
    const id = typeof element === "object" && element !== null ? (element as { readonly id?: unknown }).id : undefined
    return typeof id !== "number" || !ids.has(id)
  }
  return Effect.suspend(() => {
    if (!given) {
      given = true
      return Effect.succeed(first)
    }
    return ids.size === 0
      ? rest
      : Effect.map(rest, (elements) => elements === undefined ? undefined : elements.filter(fresh))
  })
}

const decodeChunk = Schema.decodeUnknownEither(Chunk, { onExcessProperty: "error" })

/**
 * The buffer between the producer and the worker loops, and the bookkeeping of what was pulled. Plain code:
 * the Effect parts are the two waits it hands out.
 */
export class ChunkBuffer {
  /** Pulled chunks not yet taken: `#items[#head..]` (a stream may hand over thousands at once). */
  #items: Array<Chunk> = []
  #head = 0
  readonly #ids = RangeSet.empty()
  #pulled = 0
  #ended = false
  /** Resolved when chunks arrive or the stream ends; made when a worker loop waits. */
  #arrival: Deferred.Deferred<void> | undefined = undefined
  /** Resolved when a chunk is taken; made when the producer waits for room. */
  #room: Deferred.Deferred<void> | undefined = undefined

  constructor(readonly prefetch: number) {}

  /** Chunks pulled from the stream so far (each one checked and with a new id). */
  get pulled(): number {
    return this.#pulled
  }

  /** True once the stream has ended: {@link pulled} is then its number of chunks. */
  get ended(): boolean {
    return this.#ended
  }

  /** The next pulled chunk not yet taken, if any. */
  take(): Chunk | undefined {
    if (this.#head === this.#items.length) return undefined
    const chunk = this.#items[this.#head++]!
    // Drop the taken ones once they are half the array: amortised O(1) a take, and memory bounded by what waits.
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
    } else if (this.#head >= 64 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    this.#wake("room")
    return chunk
  }

  /** Pulled chunks waiting for a worker loop. */
  get #waiting(): number {
    return this.#items.length - this.#head
  }

  /** After {@link take} gave nothing: what to wait on for more, or `undefined` when the stream has ended. */
  more(): Effect.Effect<void> | undefined {
    if (this.#ended) return undefined
    if (this.#waiting > 0) return Effect.void
    this.#arrival ??= Deferred.unsafeMake<void>(FiberId.none)
    this.#wake("room")
    return Deferred.await(this.#arrival)
  }

  /** For the producer: what to wait on before its next pull, or `undefined` to pull now. */
  room(): Effect.Effect<void> | undefined {
    if (this.#waiting < this.prefetch || this.#arrival !== undefined) return undefined
    this.#room ??= Deferred.unsafeMake<void>(FiberId.none)
    return Deferred.await(this.#room)
  }

  /**
   * Adds pulled elements; the first that is not a chunk or repeats an id is returned as an error (and not
   * added). With `held`, the chunks are kept from the worker loops until {@link release}.
   */
  push(elements: ReadonlyArray<unknown>, held = false): InvalidJobSpec | undefined {
    for (const element of elements) {
      const index = this.#pulled
      const decoded = decodeChunk(element)
      if (Either.isLeft(decoded)) {
        const issue = new ParseResult.Pointer(["chunks", index], element, decoded.left.issue)
        return new InvalidJobSpec(firstIssue(ParseResult.parseError(issue)))
      }
      const chunk = decoded.right
      if (!this.#ids.add(chunk.id)) {
        return new InvalidJobSpec({
          path: ["chunks", index, "id"],
          detail: `duplicate chunk id ${chunk.id}: the ids of a job's chunks must be unique`
        })
      }
      this.#pulled++
      if (held) this.#held.push(chunk)
      else this.#items.push(chunk)
    }
    if (elements.length > 0 && !held) this.#wake("arrival")
    return undefined
  }

  /** Chunks pulled and checked, not yet handed to the worker loops (see {@link push}). */
  #held: Array<Chunk> = []

  /** Takes the chunks held back by {@link push}. */
  takeHeld(): ReadonlyArray<Chunk> {
    const held = this.#held
    this.#held = []
    return held
  }

  /** Hands the chunks held back to the worker loops. */
  release(chunks: ReadonlyArray<Chunk>): void {
    if (chunks.length === 0) return
    for (const chunk of chunks) this.#items.push(chunk)
    this.#wake("arrival")
  }

  /** The stream has ended: waiting worker loops are released. */
  end(): void {
    this.#ended = true
    this.#wake("arrival")
  }

  #wake(which: "arrival" | "room"): void {
    const deferred = which === "arrival" ? this.#arrival : this.#room
    if (deferred === undefined) return
    if (which === "arrival") this.#arrival = undefined
    else this.#room = undefined
    Deferred.unsafeDone(deferred, Exit.void)
  }
}

/**
 * The producer: pulls into `buffer` while it has room (or a worker loop waits), checks what it pulls, hands
 * each batch to `onPulled` (when given) before the worker loops can take it, and ends the buffer when the
 * stream ends. It fails with the stream's error, or with `InvalidJobSpec` for an
 * element that is not a chunk or repeats an id. Interrupting it stops pulling at once.
 */
export const produce = <E, R>(
  pull: Pull<E, R>,
  buffer: ChunkBuffer,
  onPulled?: ((chunks: ReadonlyArray<Chunk>) => Effect.Effect<void>) | undefined
): Effect.Effect<void, E | InvalidJobSpec, R> => {
  const loop: Effect.Effect<void, E | InvalidJobSpec, R> = Effect.suspend(() => {
    const wait = buffer.room()
    if (wait !== undefined) return Effect.zipRight(wait, loop)
    return Effect.flatMap(pull, (elements): Effect.Effect<void, E | InvalidJobSpec, R> => {
      if (elements === undefined) {
        buffer.end()
        return Effect.void
      }
      const invalid = buffer.push(elements, onPulled !== undefined)
      if (invalid !== undefined) return Effect.fail(invalid)
      if (onPulled === undefined) return loop
      // Held back until they are reported: no chunk starts before it is recorded as pulled.
      const held = buffer.takeHeld()
      return held.length === 0 ? loop : Effect.zipRight(
        onPulled(held),
        Effect.suspend(() => {
          buffer.release(held)
          return loop
        })
      )
    })
  })
  return loop
}
