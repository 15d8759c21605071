/**
 * A worker that records every attempt it runs, with times from the Effect `Clock` (the TestClock in
 * deterministic tests): which manager ran which chunk of which job, when it started, and how it ended
 * (finished, or aborted: its signal fired). Chunks sleep `chunkMillis`; a chunk whose payload is `"block"`
 * never finishes by itself.
 */
import * as Effect from "effect/Effect"
import * as ChunkWorker from "../../src/ChunkWorker.js"

export interface ChunkRun {
  readonly runner: string
  readonly jobId: string
  readonly chunkId: number
  readonly startedAt: number
  endedAt: number | undefined
  outcome: "finished" | "aborted" | undefined
}

export class ChunkRuns {
  readonly all: Array<ChunkRun> = []

  /** A worker for the manager called `runner`. */
  worker(runner: string, chunkMillis: number): ChunkWorker.ChunkWorker["Type"] {
    return ChunkWorker.make((chunk, context) =>
      Effect.flatMap(Effect.clock, (clock) => {
        const run: ChunkRun = {
          runner,
          jobId: context.jobId,
          chunkId: chunk.id,
          startedAt: clock.unsafeCurrentTimeMillis(),
          endedAt: undefined,
          outcome: undefined
        }
        this.all.push(run)
        const end = (outcome: "finished" | "aborted") => {
          run.outcome ??= outcome
          run.endedAt ??= clock.unsafeCurrentTimeMillis()
        }
        context.signal.addEventListener("abort", () => end("aborted"), { once: true })
        return Effect.zipRight(
          chunk.payload === "block" ? Effect.never : Effect.sleep(chunkMillis),
          Effect.sync(() => end("finished"))
        )
      })
    )
  }

  of(jobId: string, runner?: string): Array<ChunkRun> {
    return this.all.filter((run) => run.jobId === jobId && (runner === undefined || run.runner === runner))
  }

  /** The ids of the chunks of `jobId` that finished, each once. */
  finished(jobId: string): Set<number> {
    return new Set(this.of(jobId).filter((run) => run.outcome === "finished").map((run) => run.chunkId))
  }

  /** Runs of `jobId` still in flight. */
  inFlight(jobId: string): Array<ChunkRun> {
    return this.of(jobId).filter((run) => run.outcome === undefined)
  }
}
