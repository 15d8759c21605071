/**
 * A job status whose chunk counts change often and are read rarely: progress is kept as the latest
 * counts, and the `JobStatus` record is rebuilt only when it is read. Used by the memory store and by a
 * manager's live jobs, so a chunk costs two numbers, not a record.
 */
import type { JobState, JobStatus } from "../Job.js"
import { withProgress } from "../Job.js"
import type { ProgressUpdate } from "../JobRepository.js"

export class LazyStatus {
  #status: JobStatus
  #progress: ProgressUpdate | undefined = undefined
  #progressAt = 0

  constructor(status: JobStatus) {
    this.#status = status
  }

  /** The status, with the latest progress applied. */
  get current(): JobStatus {
    if (this.#progress !== undefined) {
      this.#status = withProgress(this.#status, this.#progress, new Date(this.#progressAt))
      this.#progress = undefined
    }
    return this.#status
  }

  /** Replaces the status (progress recorded before it is dropped: the new status carries its own counts). */
  set(status: JobStatus): void {
    this.#status = status
    this.#progress = undefined
  }

  /** Records new counts (and phase) as of `atMillis`; a streamed job's total, once known, is applied at once. */
  progress(update: ProgressUpdate, atMillis: number): void {
    if (update.totalChunks !== undefined) {
      this.#status = withProgress(this.#status, update, new Date(atMillis))
      this.#progress = undefined
      return
    }
    this.#progress = update
    this.#progressAt = atMillis
  }

  get state(): JobState {
    return this.#status.state
  }

  get lease(): number {
    return this.#status.lease
  }

  get totalChunks(): number | undefined {
    return this.#status.totalChunks
  }

  get completedChunks(): number {
    return this.#progress?.completedChunks ?? this.#status.completedChunks
  }

  get failedChunks(): number {
    return this.#progress?.failedChunks ?? this.#status.failedChunks
  }
}
