/**
 * Cancel, pause and resume as the CLI and the HTTP API offer them: each tells whether it changed anything
 * and why not, and pausing or resuming a job that has ended is an error (cancelling one is not: a cancel is
 * idempotent).
 */
import * as Effect from "effect/Effect"
import type { JobStatus } from "../Job.js"
import { isTerminal } from "../Job.js"
import type { JobClient } from "../JobClient.js"
import type { JobNotFound, RepositoryError } from "../JobError.js"
import { InvalidJobState } from "../JobError.js"

export type Control = "cancel" | "pause" | "resume"

export interface ControlOutcome {
  /** The job's status afterwards. */
  readonly status: JobStatus
  /** Why nothing changed, or why the outcome is not the one asked for; `undefined` when it is. */
  readonly note: string | undefined
}

/**
 * Applies `action` to the job whose status was `before`:
 * - cancel: the job has ended afterwards (`cancelled`, or the terminal state it reached first);
 * - pause: it is `paused` afterwards;
 * - resume: it is queued or running afterwards.
 * Pause and resume of a job that has ended fail with `InvalidJobState` and change nothing.
 */
export const control = (
  client: JobClient,
  action: Control,
  before: JobStatus
): Effect.Effect<ControlOutcome, JobNotFound | InvalidJobState | RepositoryError> =>
  Effect.gen(function*() {
    const status = yield* (action === "cancel"
      ? client.cancelJob(before.id)
      : action === "pause"
      ? client.pauseJob(before.id)
      : client.resumeJob(before.id))
    const id = status.id
    if (action !== "cancel" && isTerminal(status.state)) {
      return yield* new InvalidJobState({
        jobId: id,
        state: status.state,
        operation: action,
        detail: `a job that has ended cannot be ${action === "pause" ? "paused" : "resumed"}`
      })
    }
    const unchanged = status.state === before.state
    const done = action === "pause" ? "paused" : "resumed"
    const reached = action === "pause" ? status.state === "paused" : status.state !== "paused"
    const note = action === "cancel"
      ? unchanged && status.state !== "cancelled"
        ? `job ${id} had already ${status.state}; there is nothing to cancel`
        : unchanged
        ? `job ${id} was already cancelled`
        : status.state !== "cancelled"
        ? `job ${id} ${status.state} before the cancel took effect`
        : undefined
      : !reached
      ? `job ${id} is ${status.state}; it was not ${done}`
      : !unchanged
      ? undefined
      : action === "pause"
      ? `job ${id} is already paused`
      : `job ${id} is ${status.state}, not paused; there is nothing to resume`
    return { status, note }
  })
