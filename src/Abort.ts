/**
 * The bridge between Effect interruption and web-standard `AbortSignal`, in both directions.
 *
 * - Signal -> interruption: {@link runPromise} runs an Effect as a Promise under an `AbortSignal`; an abort
 *   interrupts the fiber, and an already-aborted signal starts nothing. {@link whenAborted} is an Effect
 *   that fails when a signal aborts, for use with `Effect.raceFirst` / `Stream.interruptWhen`.
 * - Interruption -> signal: {@link LazyAbortController} gives work started from Effect a signal that fires
 *   when its fiber is interrupted (the executor aborts it when an attempt is interrupted, so a Promise
 *   worker's signal fires on cancel, on fail-fast and on a chunk timeout); {@link SignalLane} lets the
 *   attempts of one worker loop share a controller while none is aborted.
 *
 * Every listener this module adds to a signal is removed when the run it serves ends, so one long-lived
 * signal can serve any number of runs.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import { getEventListeners } from "node:events"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import { describeError } from "./JobError.js"

/**
 * The error a Promise rejects with when `signal` aborted: the signal's `reason` when it is an `Error`
 * (the default reason of `controller.abort()` is a `DOMException` named `AbortError`), otherwise a
 * `DOMException` named `AbortError` whose message is the reason.
 *
 * @since 0.1.0
 */
export const abortError = (signal: AbortSignal): Error => {
  const reason: unknown = signal.reason
  if (reason instanceof Error) return reason
  return new DOMException(reason === undefined ? "This operation was aborted" : String(reason), "AbortError")
}

/**
 * An Effect that fails with {@link abortError} once `signal` aborts (at once if it already has), and
 * never succeeds. Interrupting it removes its listener.
 *
 * @since 0.1.0
 */
export const whenAborted = (signal: AbortSignal): Effect.Effect<never, Error> =>
  Effect.async<never, Error>((resume) => {
    if (signal.aborted) return resume(Effect.fail(abortError(signal)))
    const onAbort = () => resume(Effect.fail(abortError(signal)))
    signal.addEventListener("abort", onAbort, { once: true })
    return Effect.sync(() => signal.removeEventListener("abort", onAbort))
  })

/**
 * The Error a Promise rejects with for an Effect that failed: the typed failure itself when it is an
 * `Error` (every effect-jobs error is), else the first defect when it is one, else an `Error` describing
 * it. Interruption becomes a `DOMException` named `AbortError`. No `Cause` or `FiberFailure` is exposed.
 *
 * @since 0.1.0
 */
export const causeToError = (cause: Cause.Cause<unknown>): Error => {
  const error = Cause.isInterruptedOnly(cause)
    ? new DOMException("The operation was interrupted", "AbortError")
    : Cause.squash(cause)
  return error instanceof Error ? error : new Error(describeError(error), { cause: error })
}

/**
 * What can run an Effect to an Exit: a `ManagedRuntime`, or `{ runPromiseExit: Effect.runPromiseExit }`.
 *
 * @since 0.1.0
 */
export interface Runner<R> {
  readonly runPromiseExit: <A, E>(
    effect: Effect.Effect<A, E, R>,
    options?: { readonly signal?: AbortSignal }
  ) => Promise<Exit.Exit<A, unknown>>
}

const defaultRunner: Runner<never> = { runPromiseExit: (effect, options) => Effect.runPromiseExit(effect, options) }

/**
 * Runs an Effect as a Promise under an optional `AbortSignal`.
 *
 * - Signal already aborted: nothing starts; rejects with {@link abortError}.
 * - Signal aborts while running: the fiber is interrupted (its finalizers run, in-flight work is
 *   interrupted), then the Promise rejects with {@link abortError}.
 * - Otherwise resolves with the value, or rejects with {@link causeToError}.
 *
 * @since 0.1.0
 */
export const runPromise = <A, E, R = never>(
  effect: Effect.Effect<A, E, R>,
  options?: { readonly signal?: AbortSignal | undefined; readonly runtime?: Runner<R> | undefined }
): Promise<A> => {
  const signal = options?.signal
  if (signal?.aborted) return Promise.reject(abortError(signal))
  const runner = (options?.runtime ?? defaultRunner) as Runner<R>
  return runner.runPromiseExit(effect, signal === undefined ? undefined : { signal }).then((exit) => {
    if (exit._tag === "Success") return exit.value
    throw signal?.aborted && Cause.isInterrupted(exit.cause) ? abortError(signal) : causeToError(exit.cause)
  })
}

/**
 * The abort signals of a sequence of attempts that never overlap (one worker loop of an execution).
 * Creating an `AbortController` costs about a microsecond and a heap object with listeners' bookkeeping;
 * when an attempt ends without being aborted and without leaving a listener on its signal, the next
 * attempt of the lane gets the same controller. An aborted controller, or one with listeners left on it,
 * is never handed out again.
 *
 * @since 0.1.0
 */
export class SignalLane {
  #spare: AbortController | undefined = undefined

  /** A controller for the next attempt: the spare one, or a new one. */
  take(): AbortController {
    const spare = this.#spare
    this.#spare = undefined
    return spare ?? new AbortController()
  }

  /** Gives back the controller of an attempt that ended without an abort. */
  giveBack(controller: AbortController): void {
    if (!controller.signal.aborted && getEventListeners(controller.signal, "abort").length === 0) {
      this.#spare = controller
    }
  }
}

/**
 * The abort signal of one attempt, made (or taken from its {@link SignalLane}) only when first read, so
 * work that never looks at the signal costs nothing. A signal first read after `abort` is already
 * aborted. Read the signal while the attempt runs: after `release`, it may serve a later attempt.
 *
 * @since 0.1.0
 */
export class LazyAbortController {
  #controller: AbortController | undefined = undefined
  #aborted = false
  #reason: unknown = undefined
  readonly #lane: SignalLane | undefined

  constructor(lane?: SignalLane) {
    this.#lane = lane
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = this.#aborted ? new AbortController() : this.#lane?.take() ?? new AbortController()
      if (this.#aborted) this.#controller.abort(this.#reason)
    }
    return this.#controller.signal
  }

  /** Fires the signal (if it was read; a later read gets an aborted signal). */
  abort(reason?: unknown): void {
    if (this.#aborted) return
    this.#aborted = true
    this.#reason = reason
    this.#controller?.abort(reason)
  }

  /** The attempt ended without an abort: its controller may serve the lane's next attempt. */
  release(): void {
    if (this.#aborted || this.#controller === undefined || this.#lane === undefined) return
    this.#lane.giveBack(this.#controller)
  }
}
