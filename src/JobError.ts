/**
 * The errors of effect-jobs. Each is a tagged error: match on `_tag`. They are Schema classes, so they can
 * be stored and sent across a process boundary.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * No job has this id (it was never submitted, was deleted, or is not a well-formed id).
 *
 * @since 0.1.0
 */
export class JobNotFound extends Schema.TaggedError<JobNotFound>()("JobNotFound", {
  jobId: Schema.String
}) {
  override get message(): string {
    return `no job with id ${JSON.stringify(this.jobId)}`
  }
}

const PathSegment = Schema.Union(Schema.String, Schema.Number)

/**
 * A job spec failed validation. `path` points at the offending value (e.g. `["chunks", 3, "id"]`);
 * nothing was stored or started.
 *
 * @since 0.1.0
 */
export class InvalidJobSpec extends Schema.TaggedError<InvalidJobSpec>()("InvalidJobSpec", {
  path: Schema.Array(PathSegment),
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid job spec at ${formatPath(this.path)}: ${this.detail}`
  }
}

/**
 * An option, query, cursor or other argument failed validation. `path` names it (e.g. `["retry",
 * "attempts"]`); nothing was changed.
 *
 * @since 0.1.0
 */
export class InvalidOption extends Schema.TaggedError<InvalidOption>()("InvalidOption", {
  path: Schema.Array(PathSegment),
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid option ${formatPath(this.path)}: ${this.detail}`
  }
}

/**
 * A chunk ran out of attempts (or failed with an error its retry policy does not retry). `cause` is the
 * error of the last attempt.
 *
 * @since 0.1.0
 */
export class ChunkFailed extends Schema.TaggedError<ChunkFailed>()("ChunkFailed", {
  chunkId: Schema.Number,
  attempts: Schema.Number,
  cause: Schema.Defect
}) {
  override get message(): string {
    return `chunk ${this.chunkId} failed after ${this.attempts} attempt${this.attempts === 1 ? "" : "s"}: ${
      describeError(this.cause)
    }`
  }
}

/**
 * One attempt of a chunk took longer than the chunk timeout; the attempt was interrupted (its
 * `AbortSignal` fired). It is retried like any other failure.
 *
 * @since 0.1.0
 */
export class ChunkTimeout extends Schema.TaggedError<ChunkTimeout>()("ChunkTimeout", {
  chunkId: Schema.Number,
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `chunk ${this.chunkId} timed out after ${this.timeoutMillis} ms`
  }
}

/**
 * More chunks failed than the failure policy tolerates.
 *
 * @since 0.1.0
 */
export class JobFailed extends Schema.TaggedError<JobFailed>()("JobFailed", {
  failedChunks: Schema.Number,
  totalChunks: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}

/**
 * The job store failed (I/O, a corrupt or foreign database, an unreachable server). `operation` names
 * what was being done; nothing was half-written.
 *
 * @since 0.1.0
 */
export class RepositoryError extends Schema.TaggedError<RepositoryError>()("RepositoryError", {
  operation: Schema.String,
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `job store error during ${this.operation}: ${this.detail}`
  }
}

/**
 * A write of a job's owner was refused because the job's lease has moved on: another manager took the job
 * over, or another process stopped it. The owner stops running the job and records nothing more of it.
 *
 * @since 0.2.0
 */
export class LeaseLost extends Schema.TaggedError<LeaseLost>()("LeaseLost", {
  jobId: Schema.String,
  lease: Schema.Number
}) {
  override get message(): string {
    return `job ${this.jobId} is no longer held under lease ${this.lease}: another manager or process changed it`
  }
}

/**
 * The operation does not apply to the job in its current state (e.g. re-driving a job that did not fail).
 *
 * @since 0.1.0
 */
export class InvalidJobState extends Schema.TaggedError<InvalidJobState>()("InvalidJobState", {
  jobId: Schema.String,
  state: Schema.String,
  operation: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `cannot ${this.operation} job ${this.jobId}: it is ${this.state}; ${this.detail}`
  }
}

/**
 * The Promise facade's manager was closed; it takes no more calls.
 *
 * @since 0.1.0
 */
export class ManagerClosed extends Schema.TaggedError<ManagerClosed>()("ManagerClosed", {}) {
  override get message(): string {
    return "this job manager is closed"
  }
}

/**
 * Wrap an error in `NonRetryable` (fail with it from an Effect worker, or throw it from a Promise worker)
 * to make the chunk fail at once, without further attempts.
 *
 * @since 0.1.0
 */
export class NonRetryable extends Schema.TaggedError<NonRetryable>()("NonRetryable", {
  cause: Schema.Defect
}) {
  override get message(): string {
    return describeError(this.cause)
  }
}

/**
 * A worker returned a result that cannot be stored: not plain JSON, or larger than `maxResultBytes`. The
 * attempt fails with it, and it is not retried by the default retry policy (the same work would return the
 * same result).
 *
 * @since 0.2.0
 */
export class InvalidResult extends Schema.TaggedError<InvalidResult>()("InvalidResult", {
  chunkId: Schema.Number,
  path: Schema.Array(Schema.Union(Schema.String, Schema.Number)),
  detail: Schema.String
}) {
  override get message(): string {
    return `chunk ${this.chunkId} returned a result that cannot be stored${
      this.path.length === 0 ? "" : ` (at ${formatPath(this.path)})`
    }: ${this.detail}`
  }
}

/** @since 0.1.0 */
export const isNonRetryable = (error: unknown): error is NonRetryable => Predicate.isTagged(error, "NonRetryable")

/**
 * Renders a path such as `["chunks", 3, "id"]` as `chunks[3].id` (`(root)` for the empty path).
 *
 * @since 0.1.0
 */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string => {
  if (path.length === 0) return "(root)"
  let out = ""
  for (const segment of path) {
    out += typeof segment === "number" ? `[${segment}]` : out === "" ? String(segment) : `.${String(segment)}`
  }
  return out
}

/**
 * The most specific issue of a decode error (the one with the longest path: for a union, the member that
 * got furthest) as a path and a one-line message.
 *
 * @since 0.1.0
 */
export const firstIssue = (
  error: ParseResult.ParseError
): { readonly path: ReadonlyArray<string | number>; readonly detail: string } => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  let best = issues[0]
  for (const issue of issues) if (best === undefined || issue.path.length > best.path.length) best = issue
  if (best === undefined) return { path: [], detail: error.message }
  return {
    path: best.path.map((segment) => (typeof segment === "number" ? segment : String(segment))),
    detail: best.message
  }
}

/**
 * A one-line description of any error value: its message when it has one, else its string form.
 *
 * @since 0.1.0
 */
export const describeError = (error: unknown): string => {
  if (error instanceof Error) return error.message
  if (Predicate.hasProperty(error, "message") && typeof error.message === "string") return error.message
  if (typeof error === "string") return error
  try {
    return JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}

/**
 * A one-line description of why an Effect failed: the first typed failure, else the first defect.
 *
 * @since 0.1.0
 */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return describeError(failure.value)
  const defect = Cause.dieOption(cause)
  if (defect._tag === "Some") return describeError(defect.value)
  return Cause.isInterruptedOnly(cause) ? "interrupted" : Cause.pretty(cause)
}
