/** A worker whose chunks run until their signal fires, and a count of the chunks it started. */
export const gatedWorker = (inFlight: number) => {
  const state = { started: 0, onAllStarted: (): void => {} }
  const worker = (_chunk: unknown, { signal }: { readonly signal: AbortSignal }) =>
    new Promise<never>((_, reject) => {
      if (++state.started === inFlight) state.onAllStarted()
      signal.addEventListener("abort", () => reject(signal.reason), { once: true })
    })
  /** Resets the count; resolves once `inFlight` chunks have started. */
  const nextRound = () => {
    state.started = 0
    return new Promise<void>((resolve) => (state.onAllStarted = resolve))
  }
  return { worker, nextRound, started: () => state.started }
}
