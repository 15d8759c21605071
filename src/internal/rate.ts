/**
 * The speed of a running job, measured from the statuses a watcher sees: chunks settled per second over
 * the last `window` of running time, and the time left at that speed. Time spent paused or waiting is not
 * counted: any status that is not `running` starts the measurement afresh.
 */
import type { JobStatus } from "../Job.js"

interface Sample {
  /** When the counts were recorded (the status's `updatedAt`), epoch millis. */
  readonly at: number
  readonly settled: number
}

/** At least this much running time must be observed before a rate is given. */
const minimumSpan = 1_000

export class RateMeter {
  #samples: Array<Sample> = []
  readonly #window: number

  constructor(window = 30_000) {
    this.#window = window
  }

  /** Records a status of the job. */
  observe(status: JobStatus): void {
    if (status.state !== "running") {
      this.#samples = []
      return
    }
    const sample = { at: status.updatedAt.getTime(), settled: status.completedChunks + status.failedChunks }
    const last = this.#samples[this.#samples.length - 1]
    if (last !== undefined && sample.at <= last.at) return
    this.#samples.push(sample)
    // Keep the newest sample older than the window, so the window stays covered.
    while (this.#samples.length > 2 && this.#samples[1]!.at <= sample.at - this.#window) this.#samples.shift()
  }

  /**
   * Chunks per second as of `now` (epoch millis): a job that stopped settling chunks slows down as time
   * passes. `undefined` until the job has been seen running (two statuses) for a second.
   */
  rate(now: number): number | undefined {
    const first = this.#samples[0]
    const last = this.#samples[this.#samples.length - 1]
    if (first === undefined || last === undefined || first === last) return undefined
    const span = Math.max(now, last.at) - first.at
    return span < minimumSpan ? undefined : ((last.settled - first.settled) * 1000) / span
  }

  /** Seconds until every chunk of `status` has settled at the current rate; `undefined` when unknown. */
  etaSeconds(status: JobStatus, now: number): number | undefined {
    const rate = this.rate(now)
    if (rate === undefined || rate <= 0 || status.state !== "running" || status.totalChunks === undefined) return undefined
    return (status.totalChunks - status.completedChunks - status.failedChunks) / rate
  }
}
