/**
 * The bridge between Effect interruption and web-standard `AbortSignal`, in both directions.
 *
 * - Interruption -> signal: {@link LazyAbortController} gives work started from Effect a signal that
 *   fires when its fiber is interrupted (the executor aborts it in an `onInterrupt` finalizer).
 *
 * @since 0.1.0
 */

/**
 * An `AbortController` made only when its signal is first read, so work that never looks at the signal
 * costs no allocation. A signal first read after `abort` is already aborted.
 *
 * @since 0.1.0
 */
export class LazyAbortController {
  #controller: AbortController | undefined = undefined
  #aborted = false
  #reason: unknown = undefined

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#aborted) this.#controller.abort(this.#reason)
    }
    return this.#controller.signal
  }

  abort(reason?: unknown): void {
    if (this.#aborted) return
    this.#aborted = true
    this.#reason = reason
    this.#controller?.abort(reason)
  }
}
