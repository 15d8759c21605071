/**
 * A job queued or running in a manager, as its watchers see it. Chunk progress is recorded as counts and
 * turned into a `JobStatus` only when someone reads it, so a job nobody watches pays nothing per chunk
 * beyond two numbers; watchers and waiters are woken through Deferreds made only while they wait.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import type { JobId, JobSpec } from "../Job.js"
import { isTerminal, JobStatus, progressOf } from "../Job.js"
import type { ExecutionView } from "../JobExecutor.js"
import type { ProgressUpdate } from "../JobRepository.js"
import { makeStatus } from "./jobStatus.js"
import { LazyStatus } from "./lazyStatus.js"
import { VersionSignal } from "./versionSignal.js"

/**
 * Why a job's fiber is being stopped; read by the manager to choose the state an interruption stores.
 * `"lost"`: this manager no longer holds the job's lease (another manager took it over, or this one could not
 * renew its ownership in time): nothing is stored.
 */
export type StopReason = "cancel" | "pause" | "shutdown" | "lost"

export class LiveJob {
  stopReason: StopReason | undefined = undefined
  /** Set on a graceful shutdown: no further chunk starts. */
  draining = false
  /**
   * Set once its fiber has ended and its end is being written: that write is fenced by the job's lease, so
   * a lease seen moved on meanwhile (by that very write, or by another manager) needs no stop here.
   */
  settling = false
  readonly #status: LazyStatus
  readonly #changes = new VersionSignal()
  #ended = false
  #endedSignal: Deferred.Deferred<void> | undefined = undefined
  /** The execution of its chunks, while it runs here. */
  execution: ExecutionView | undefined = undefined

  constructor(readonly id: JobId, readonly spec: JobSpec, status: JobStatus) {
    this.#status = new LazyStatus(status)
  }

  /** The newest status, chunk counts and the progress reported by its chunks in flight included. */
  get status(): JobStatus {
    const status = this.#status.current
    const partial = this.execution?.partialChunks() ?? 0
    return partial === 0 || isTerminal(status.state) ? status : makeStatus({
      ...status,
      progress: progressOf(status.totalChunks, status.completedChunks, status.failedChunks, status.state, partial)
    })
  }

  /** A chunk in flight reported progress: watchers see it. */
  progressReported(): void {
    this.#changes.bump()
  }

  get completedChunks(): number {
    return this.#status.completedChunks
  }

  get failedChunks(): number {
    return this.#status.failedChunks
  }

  /** The lease this manager holds the job under (the one of its status as last stored by this manager). */
  get lease(): number {
    return this.#status.lease
  }

  /** Bumped on every change; watchers compare it with the last one they saw. */
  get version(): number {
    return this.#changes.version
  }

  setStatus(status: JobStatus): void {
    this.#status.set(status)
    this.#changes.bump()
  }

  setProgress(progress: ProgressUpdate, atMillis: number): void {
    this.#status.progress(progress, atMillis)
    this.#changes.bump()
  }

  /** The manager's last word on the job (its stored status when it leaves the manager). */
  end(status: JobStatus): void {
    this.#ended = true
    this.setStatus(status)
    if (this.#endedSignal !== undefined) Deferred.unsafeDone(this.#endedSignal, Exit.void)
  }

  /** Waits until the manager is done with the job (no wake-up per chunk). */
  get awaitEnd(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.#ended) return Effect.void
      this.#endedSignal ??= Deferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(this.#endedSignal)
    })
  }

  /** Waits until the version is no longer `seen`, or the job has ended. */
  changedSince(seen: number): Effect.Effect<void> {
    return Effect.suspend(() => this.#ended ? Effect.void : this.#changes.changedSince(seen))
  }
}
