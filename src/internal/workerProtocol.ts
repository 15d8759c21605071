/**
 * The wire protocol between the HTTP worker client (`HttpWorker`) and the worker server (`WorkerServer`):
 * request and response bodies as Schema, status codes, and request authentication (bearer token and
 * HMAC-SHA256 signature over a timestamp and a nonce). Not public API.
 *
 * Routes (relative to an endpoint's base URL):
 * - `POST /executions` with an {@link ExecutionRequest}: runs the chunk and answers when it has settled,
 *   with an {@link ExecutionResult}: `Completed` 200, `Failed` 500 (retryable) or 422 (not retryable),
 *   `Cancelled` 503. Problems with the request itself are answered with an {@link ErrorBody}.
 * - `GET /executions/:id`: the {@link ExecutionStatus} of a running or recently finished execution.
 * - `DELETE /executions/:id`: interrupts a running execution and answers, once it has stopped, with its
 *   final {@link ExecutionStatus}; a recently finished one is left as it is.
 *
 * A signed request is accepted once: a request whose signature's nonce the server has accepted before is
 * refused with 409 `conflict`, one whose timestamp is out of the tolerance window with 401.
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
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

/** The header carrying the request signature: `t=<unix millis>,n=<nonce>,v1=<hex HMAC-SHA256>`. */
export const signatureHeader = "x-effect-jobs-signature"

/**
 * What a signature covers: when it was made, a nonce that is fresh for every request (16 to 128 characters
 * of `[A-Za-z0-9_-]`), the method, the route path (`/executions` or `/executions/<id>`, without any base path
 * of the endpoint) and the raw body. So the execution id is covered on every route: in the body of a
 * `POST`, in the path of a `GET` or `DELETE`.
 */
export interface SignedContent {
  readonly timestampMillis: number
  readonly nonce: string
  readonly method: string
  readonly path: string
  readonly body: string | Uint8Array
}

/** The signature header of a request: HMAC-SHA256, keyed with the shared secret, over its {@link SignedContent}. */
export const sign = (secret: Redacted.Redacted<string>, content: SignedContent): string =>
  `t=${content.timestampMillis},n=${content.nonce},v1=${
    createHmac("sha256", Redacted.value(secret))
      .update(`${content.timestampMillis}\n${content.nonce}\n${content.method}\n${content.path}\n`)
      .update(content.body)
      .digest("hex")
  }`

/**
 * The timestamp and nonce of `header` if it is a valid signature of the request made at most `tolerance`
 * away from `nowMillis`; none otherwise. The comparison takes the same time wherever the first difference is.
 */
export const verifySignature = (
  secret: Redacted.Redacted<string>,
  header: string | undefined,
  request: Omit<SignedContent, "timestampMillis" | "nonce">,
  nowMillis: number,
  tolerance: Duration.Duration
): Option.Option<Pick<SignedContent, "timestampMillis" | "nonce">> => {
  const match = header === undefined
    ? null
    : /^t=(\d{1,16}),n=([A-Za-z0-9_-]{16,128}),v1=[0-9a-f]{64}$/.exec(header)
  if (match === null) return Option.none()
  const timestampMillis = Number(match[1])
  const nonce = match[2]!
  if (Math.abs(nowMillis - timestampMillis) > Duration.toMillis(tolerance)) return Option.none()
  return constantTimeEqual(header!, sign(secret, { ...request, timestampMillis, nonce }))
    ? Option.some({ timestampMillis, nonce })
    : Option.none()
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
