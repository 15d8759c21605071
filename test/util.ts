import * as Effect from "effect/Effect"
import { readFileSync } from "node:fs"
import type { ChunkContext } from "../src/ChunkWorker.js"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { Chunk } from "../src/Job.js"

/**
 * A worker that records what happens to the chunks it runs: which started (in order, with attempts),
 * how many run at once, whose signal fired, which finished.
 */
export interface Recorder {
  readonly started: Array<{ readonly chunkId: number; readonly attempt: number }>
  readonly finished: Array<number>
  readonly aborted: Array<number>
  inFlight: number
  maxInFlight: number
}

export const makeRecorder = (): Recorder => ({ started: [], finished: [], aborted: [], inFlight: 0, maxInFlight: 0 })

/**
 * Wraps `behaviour` so every attempt is recorded; each attempt reads its signal (as a careful worker does)
 * and records when it fires.
 */
export const recordingWorker = (
  recorder: Recorder,
  behaviour: (chunk: Chunk, context: ChunkContext) => Effect.Effect<unknown, unknown>
): ChunkWorker.ChunkWorker["Type"] =>
  ChunkWorker.make((chunk, context) =>
    Effect.suspend(() => {
      recorder.started.push({ chunkId: chunk.id, attempt: context.attempt })
      recorder.inFlight++
      recorder.maxInFlight = Math.max(recorder.maxInFlight, recorder.inFlight)
      context.signal.addEventListener("abort", () => recorder.aborted.push(chunk.id), { once: true })
      return behaviour(chunk, context).pipe(
        Effect.tap(() => Effect.sync(() => recorder.finished.push(chunk.id))),
        Effect.ensuring(Effect.sync(() => recorder.inFlight--))
      )
    })
  )

/** Lets every fiber that can make progress without the clock do so. */
export const settle = Effect.repeatN(Effect.yieldNow(), 50)

export const startedIds = (recorder: Recorder): Array<number> => recorder.started.map((s) => s.chunkId)

/**
 * Polls `condition` every 5 ms of the live clock until it holds; dies after `millis`. For real processes
 * and sockets, where no TestClock applies.
 */
export const eventually = (condition: () => boolean, millis = 1_500) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error("condition not met in time"))
      yield* Effect.sleep(5)
    }
  })

/**
 * Whether the process has exited: signal 0 fails with ESRCH, or (on Linux) the process is a zombie, which
 * has exited and only waits to be reaped; a grandchild whose parent died is reaped by PID 1 in its own time
 * (or never, where PID 1 does not reap).
 */
export const isGone = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return true
    throw error
  }
  try {
    return /^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return false
  }
}
