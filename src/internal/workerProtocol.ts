/**
 * The wire protocol between the HTTP worker client (`HttpWorker`) and the worker server (`WorkerServer`):
 * request and response bodies as Schema, status codes, and request authentication (bearer token and
 * timestamped HMAC-SHA256 signature). Not public API.
 *
 * Routes (relative to an endpoint's base URL):
 * - `POST /executions` with an {@link ExecutionRequest}: runs the chunk and answers when it has settled,
 *   with an {@link ExecutionResult}: `Completed` 200, `Failed` 500 (retryable) or 422 (not retryable),
 *   `Cancelled` 503. Problems with the request itself are answered with an {@link ErrorBody}.
 * - `GET /executions/:id`: the {@link ExecutionStatus} of a running or recently finished execution.
 * - `DELETE /executions/:id`: interrupts a running execution and answers, once it has stopped, with its
 *   final {@link ExecutionStatus}; a recently finished one is left as it is.
 */
import * as Duration from "effect/Duration"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHash, createHmac, timingSafeEqual } from "node:crypto"
import { Chunk, JobId, Json } from "../Job.js"

/** An execution id: 1..128 characters of `[A-Za-z0-9_-]`, chosen by the client, fresh for every attempt. */
const ExecutionId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_-]{1,128}$/, {
    message: () => "an execution id is 1 to 128 characters of A-Z, a-z, 0-9, '_' or '-'"
  })
)

/** The body of `POST /executions`: one attempt of one chunk. */
export const ExecutionRequest = Schema.Struct({
  executionId: ExecutionId,
  jobId: JobId,
  attempt: Schema.Int.pipe(Schema.positive()),
  chunk: Chunk
}).annotations({ identifier: "ExecutionRequest" })
export type ExecutionRequest = typeof ExecutionRequest.Type

/** A failure of the remote worker, as sent over the wire. */
const RemoteError = Schema.Struct({
  /** The `_tag` of the remote error, when it had one. */
  tag: Schema.optional(Schema.String),
  message: Schema.String
})

/** How an execution ended: the body of every answer to `POST /executions` that ran the chunk. */
export const ExecutionResult = Schema.Union(
  Schema.TaggedStruct("Completed", { executionId: ExecutionId, result: Json }),
  Schema.TaggedStruct("Failed", { executionId: ExecutionId, retryable: Schema.Boolean, error: RemoteError }),
  Schema.TaggedStruct("Cancelled", { executionId: ExecutionId })
).annotations({ identifier: "ExecutionResult" })
export type ExecutionResult = typeof ExecutionResult.Type

/** The HTTP status that goes with each outcome. */
export const statusOf = (result: ExecutionResult): number => {
  switch (result._tag) {
    case "Completed":
      return 200
    case "Failed":
      return result.retryable ? 500 : 422
    case "Cancelled":
      return 503
  }
}

/** The states an execution reports through `GET` / `DELETE /executions/:id`. */
export const ExecutionState = Schema.Literal("running", "completed", "failed", "cancelled")
export type ExecutionState = typeof ExecutionState.Type

/** The body of the answers to `GET` and `DELETE /executions/:id`. */
export const ExecutionStatus = Schema.Struct({
  executionId: ExecutionId,
  state: ExecutionState
}).annotations({ identifier: "ExecutionStatus" })
export type ExecutionStatus = typeof ExecutionStatus.Type

/** Why the server refused a request. */
export const ErrorCode = Schema.Literal(
  "unauthorized",
  "payload_too_large",
  "invalid_json",
  "invalid_request",
  "not_found",
  "conflict",
  "busy"
)
export type ErrorCode = typeof ErrorCode.Type

/** The body of every answer that refuses a request; `path` points at the offending value of the body. */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    code: ErrorCode,
    message: Schema.String,
    path: Schema.optional(Schema.Array(Schema.Union(Schema.String, Schema.Number)))
  })
}).annotations({ identifier: "ErrorBody" })

/** The header carrying the request signature: `t=<unix millis>,v1=<hex HMAC-SHA256>`. */
export const signatureHeader = "x-effect-jobs-signature"

/**
 * The signature of a request: HMAC-SHA256, keyed with the shared secret, over the timestamp, the method,
 * the route path (`/executions` or `/executions/<id>`, without any base path of the endpoint) and the raw
 * body, each separated by a newline.
 */
export const sign = (
  secret: Redacted.Redacted<string>,
  timestampMillis: number,
  method: string,
  path: string,
  body: string | Uint8Array
): string =>
  `t=${timestampMillis},v1=${
    createHmac("sha256", Redacted.value(secret))
      .update(`${timestampMillis}\n${method}\n${path}\n`)
      .update(body)
      .digest("hex")
  }`

/**
 * Whether `header` is a valid signature of the request, made at most `tolerance` away from `nowMillis`.
 * The comparison takes the same time wherever the first difference is.
 */
export const verifySignature = (
  secret: Redacted.Redacted<string>,
  header: string | undefined,
  method: string,
  path: string,
  body: Uint8Array,
  nowMillis: number,
  tolerance: Duration.Duration
): boolean => {
  const match = header === undefined ? null : /^t=(\d{1,16}),v1=[0-9a-f]{64}$/.exec(header)
  if (match === null) return false
  const timestamp = Number(match[1])
  if (Math.abs(nowMillis - timestamp) > Duration.toMillis(tolerance)) return false
  return constantTimeEqual(header!, sign(secret, timestamp, method, path, body))
}

/** Compares two strings in time independent of where they differ (and of their lengths). */
export const constantTimeEqual = (a: string, b: string): boolean =>
  timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest())

/** A secret given as a string or as `Redacted`, non-empty. */
export const Secret = Schema.Union(
  Schema.NonEmptyString,
  Schema.RedactedFromSelf(Schema.NonEmptyString)
)

/** Makes a `Redacted` of a validated {@link Secret}. */
export const toRedacted = (secret: typeof Secret.Type): Redacted.Redacted<string> =>
  Redacted.isRedacted(secret) ? secret : Redacted.make(secret)
