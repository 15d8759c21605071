/**
 * A `ChunkWorker` that sends each chunk attempt to a remote worker over HTTP (a `WorkerServer`, or any
 * server speaking the same protocol), with `@effect/platform` `HttpClient`, and a pool of such endpoints
 * with a concurrency limit per endpoint.
 *
 * Each attempt is one `POST <endpoint>/executions` whose JSON body (Schema-encoded) carries the chunk, the
 * job id, the attempt number and a fresh execution id; the answer arrives when the remote side has run
 * the chunk, and is Schema-decoded.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { ChunkContext } from "./ChunkWorker.js"
import { ChunkWorker } from "./ChunkWorker.js"
import type { Chunk, Json } from "./Job.js"
import { DurationInput } from "./internal/schemas.js"
import { describeError, firstIssue, formatPath, InvalidOption, NonRetryable } from "./JobError.js"
import {
  ErrorBody,
  ExecutionRequest,
  ExecutionResult,
  Secret,
  sign,
  signatureHeader,
  toRedacted
} from "./internal/workerProtocol.js"

/**
 * An HTTP attempt failed. `reason` says how:
 * - `"Transport"`: no answer (connection refused or reset, the server went away mid-chunk): retried;
 * - `"Status"`: the endpoint answered with a non-2xx `status`: retried for 5xx (the remote worker failed
 *   with a retryable error, is busy or was stopped), wrapped in `NonRetryable` for anything else (bad
 *   token, bad request, the remote worker failed with `NonRetryable`);
 * - `"InvalidResponse"`: a 2xx answer whose body does not follow the protocol (`NonRetryable`);
 * - `"InvalidChunk"`: the chunk cannot be encoded as JSON (`NonRetryable`).
 *
 * `detail` carries the remote side's own error message when it sent one.
 *
 * @since 0.1.0
 */
export class HttpWorkerError extends Schema.TaggedError<HttpWorkerError>()("HttpWorkerError", {
  reason: Schema.Literal("Transport", "Status", "InvalidResponse", "InvalidChunk"),
  endpoint: Schema.String,
  executionId: Schema.String,
  status: Schema.optional(Schema.Number),
  detail: Schema.String
}) {
  override get message(): string {
    const status = this.status === undefined ? "" : ` (HTTP ${this.status})`
    return `remote execution ${this.executionId} at ${this.endpoint} failed${status}: ${this.detail}`
  }
}

/**
 * Options of an HTTP worker.
 *
 * @since 0.1.0
 */
export interface Options {
  /** Sent on every request as `Authorization: Bearer <token>`. */
  readonly token?: string | Redacted.Redacted<string> | undefined
  /**
   * Signs every request with HMAC-SHA256 over a timestamp, a fresh random nonce, the method, the route and
   * the body, sent in the `x-effect-jobs-signature` header; the server must be given the same secret, and
   * then accepts each request once, within its `signatureTolerance` of the timestamp.
   */
  readonly signingSecret?: string | Redacted.Redacted<string> | undefined
  /** How long an interrupted attempt waits for the remote side to acknowledge the cancel (default 2 s). */
  readonly cancelTimeout?: Duration.DurationInput | undefined
}

/**
 * One endpoint of a pool: its base URL and how many attempts it may run at once.
 *
 * @since 0.1.0
 */
export interface Endpoint {
  readonly url: string
  readonly concurrency: number
}

const HttpUrl = Schema.String.pipe(
  Schema.filter((url) => {
    const parsed = URL.canParse(url) ? new URL(url) : undefined
    return (parsed !== undefined && (parsed.protocol === "http:" || parsed.protocol === "https:")) ||
      "expected an absolute http: or https: URL"
  })
)

const optionFields = {
  token: Schema.optional(Secret),
  signingSecret: Schema.optional(Secret),
  cancelTimeout: Schema.optional(DurationInput)
}

const decodeSingle = Schema.decodeUnknown(Schema.Struct({ url: HttpUrl, ...optionFields }), {
  onExcessProperty: "error"
})

const decodePool = Schema.decodeUnknown(
  Schema.Struct({
    endpoints: Schema.Array(Schema.Struct({
      url: HttpUrl,
      concurrency: Schema.Int.pipe(Schema.between(1, 10_000))
    })).pipe(Schema.minItems(1, { message: () => "a pool needs at least one endpoint" })),
    ...optionFields
  }),
  { onExcessProperty: "error" }
)

const encodeRequest = Schema.encode(ExecutionRequest)
const decodeResult = Schema.decodeUnknownOption(ExecutionResult)
const decodeAnswer = Schema.decodeUnknownOption(Schema.Union(ExecutionResult, ErrorBody))

const defaultCancelTimeout = Duration.seconds(2)

/** How many chunks a pool remembers the endpoint of the failed attempt of, for their next attempt. */
const maxRememberedFailures = 10_000

type Attempt = (url: string, chunk: Chunk, context: ChunkContext) => Effect.Effect<Json, HttpWorkerError | NonRetryable>

const parseJson = (text: string): Option.Option<unknown> => {
  try {
    return Option.some(JSON.parse(text))
  } catch {
    return Option.none()
  }
}

/** The remote side's explanation of a refused or failed execution, if its body has one. */
const remoteDetail = (body: Option.Option<unknown>): string | undefined => {
  const answer = Option.flatMap(body, decodeAnswer)
  if (Option.isNone(answer)) return undefined
  const value = answer.value
  if ("error" in value && !("_tag" in value)) {
    const path = value.error.path === undefined ? "" : ` at ${formatPath(value.error.path)}`
    return `${value.error.code}${path}: ${value.error.message}`
  }
  switch (value._tag) {
    case "Failed":
      return `the remote worker failed: ${value.error.tag === undefined ? "" : `${value.error.tag}: `}${value.error.message}`
    case "Cancelled":
      return "the remote execution was cancelled"
    case "Completed":
      return undefined
  }
}

/** Builds the function that runs one attempt on one endpoint. */
const makeAttempt = (options: {
  readonly token: Redacted.Redacted<string> | undefined
  readonly signingSecret: Redacted.Redacted<string> | undefined
  readonly cancelTimeout: Duration.Duration
}): Effect.Effect<Attempt, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client): Attempt => {
    const { cancelTimeout, signingSecret, token } = options

    /** Adds the token and a signature with a fresh nonce: a `WorkerServer` accepts each request once. */
    const authorize = (
      request: HttpClientRequest.HttpClientRequest,
      path: string,
      body: string
    ): Effect.Effect<HttpClientRequest.HttpClientRequest> =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const withToken = token === undefined ? request : HttpClientRequest.bearerToken(request, token)
        if (signingSecret === undefined) return withToken
        const signature = sign(signingSecret, {
          timestampMillis: now,
          nonce: crypto.randomUUID(),
          method: request.method,
          path,
          body
        })
        return HttpClientRequest.setHeader(withToken, signatureHeader, signature)
      })

    /** Best effort: bounded by `cancelTimeout`, and its failures are only logged. */
    const cancelRemote = (base: string, executionId: string): Effect.Effect<void> => {
      const path = `/executions/${executionId}`
      return authorize(HttpClientRequest.del(`${base}${path}`), path, "").pipe(
        Effect.flatMap((request) => client.execute(request)),
        Effect.flatMap((response) => response.text),
        Effect.interruptible,
        Effect.timeout(cancelTimeout),
        Effect.catchAllCause((cause) =>
          Effect.logDebug("could not cancel a remote execution", cause).pipe(
            Effect.annotateLogs({ endpoint: base, executionId })
          )
        )
      )
    }

    return (url, chunk, context) =>
      Effect.suspend(() => {
        const base = url.replace(/\/+$/, "")
        const executionId = crypto.randomUUID()
        const failure = (reason: HttpWorkerError["reason"], detail: string, status?: number) =>
          new HttpWorkerError({
            reason,
            endpoint: base,
            executionId,
            detail,
            ...(status === undefined ? {} : { status })
          })
        const transport = (error: unknown) => failure("Transport", describeError(error))
        return Effect.gen(function*() {
          const body = yield* Effect.mapError(
            encodeRequest({ executionId, jobId: context.jobId, attempt: context.attempt, chunk }),
            (error) => {
              const issue = firstIssue(error)
              return new NonRetryable({ cause: failure("InvalidChunk", `${formatPath(issue.path)}: ${issue.detail}`) })
            }
          )
          const text = JSON.stringify(body)
          const request = yield* authorize(
            HttpClientRequest.bodyText(HttpClientRequest.post(`${base}/executions`), text, "application/json"),
            "/executions",
            text
          )
          const response = yield* Effect.mapError(client.execute(request), transport)
          const answer = parseJson(yield* Effect.mapError(response.text, transport))
          const status = response.status
          if (status >= 200 && status < 300) {
            const result = Option.flatMap(answer, decodeResult)
            if (Option.isSome(result) && result.value._tag === "Completed") return result.value.result
            return yield* new NonRetryable({
              cause: failure("InvalidResponse", "the answer is not a completed execution result", status)
            })
          }
          const error = failure("Status", remoteDetail(answer) ?? `HTTP ${status}`, status)
          return yield* (status >= 500 ? Effect.fail(error) : Effect.fail(new NonRetryable({ cause: error })))
        }).pipe(Effect.onInterrupt(() => cancelRemote(base, executionId)))
      })
  })

const resolveOptions = (validated: {
  readonly token?: typeof Secret.Type | undefined
  readonly signingSecret?: typeof Secret.Type | undefined
  readonly cancelTimeout?: Duration.DurationInput | undefined
}) => ({
  token: validated.token === undefined ? undefined : toRedacted(validated.token),
  signingSecret: validated.signingSecret === undefined ? undefined : toRedacted(validated.signingSecret),
  cancelTimeout: validated.cancelTimeout === undefined ? defaultCancelTimeout : Duration.decode(validated.cancelTimeout)
})

/**
 * An HTTP worker for one endpoint (options are validated first; a bad one fails with `InvalidOption`).
 * Attempts are not limited in number; see {@link pool} for a limit.
 *
 * Success: the remote result (JSON). Failure: {@link HttpWorkerError}; connection errors and 5xx answers
 * are retried by the job's retry policy, other answers fail the chunk at once (`NonRetryable`).
 *
 * Cancellation: interrupting an attempt aborts the in-flight request (closing its connection, which a
 * `WorkerServer` takes as a cancel), then sends `DELETE <endpoint>/executions/<executionId>` and waits for
 * its answer, at most `cancelTimeout`; the interruption completes after that. A `WorkerServer` answers the
 * DELETE only once the execution has stopped, so when the interruption completes, the remote work has
 * stopped too, unless the endpoint could not be reached.
 *
 * @since 0.1.0
 */
export const make = (
  url: string,
  options: Options = {}
): Effect.Effect<ChunkWorker["Type"], InvalidOption, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const validated = yield* Effect.mapError(decodeSingle({ url, ...options }), (error) =>
      new InvalidOption(firstIssue(error)))
    const attempt = yield* makeAttempt(resolveOptions(validated))
    return ChunkWorker.of({
      run: Effect.fn("HttpWorker.run")((chunk: Chunk, context: ChunkContext) => attempt(validated.url, chunk, context))
    })
  })

interface Slot {
  readonly index: number
  readonly url: string
  readonly concurrency: number
  inFlight: number
}

/**
 * An HTTP worker over several endpoints (a farm of worker machines), each running at most `concurrency`
 * attempts at once. Options are validated first; a bad one fails with `InvalidOption` naming it (e.g.
 * `endpoints[1].concurrency`).
 *
 * An attempt waits until some endpoint has a free slot, then goes to the least busy one (relative to its
 * concurrency; the first listed on a tie). A retry of an attempt that failed prefers any other endpoint
 * with a free slot over the one that failed. Waiting for a slot can be interrupted at once; otherwise
 * failure and cancellation are as for {@link make}, and a slot is held until the attempt (its cancel
 * included) is over.
 *
 * @since 0.1.0
 */
export const pool = (
  endpoints: ReadonlyArray<Endpoint>,
  options: Options = {}
): Effect.Effect<ChunkWorker["Type"], InvalidOption, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const validated = yield* Effect.mapError(decodePool({ endpoints, ...options }), (error) =>
      new InvalidOption(firstIssue(error)))
    const attempt = yield* makeAttempt(resolveOptions(validated))
    const slots: ReadonlyArray<Slot> = validated.endpoints.map((endpoint, index) => ({
      index,
      url: endpoint.url,
      concurrency: endpoint.concurrency,
      inFlight: 0
    }))
    const semaphore = yield* Effect.makeSemaphore(slots.reduce((sum, slot) => sum + slot.concurrency, 0))
    /** chunk key -> index of the endpoint its last attempt failed on; bounded, oldest dropped first. */
    const failedOn = new Map<string, number>()

    /** Takes a free slot; one exists, since the semaphore's permits are the free slots of all endpoints. */
    const acquire = (avoid: number | undefined): Slot => {
      let best: Slot | undefined
      for (const slot of slots) {
        if (slot.inFlight >= slot.concurrency) continue
        if (best === undefined || (best.index === avoid && slot.index !== avoid)) {
          best = slot
        } else if (
          (slot.index === avoid) === (best.index === avoid) &&
          slot.inFlight / slot.concurrency < best.inFlight / best.concurrency
        ) {
          best = slot
        }
      }
      best!.inFlight++
      return best!
    }

    const rememberFailure = (key: string, slot: Slot): void => {
      failedOn.delete(key)
      if (failedOn.size >= maxRememberedFailures) failedOn.delete(failedOn.keys().next().value!)
      failedOn.set(key, slot.index)
    }

    const run = Effect.fn("HttpWorker.pool.run")((chunk: Chunk, context: ChunkContext) =>
      semaphore.withPermits(1)(
        Effect.acquireUseRelease(
          Effect.sync(() => {
            const key = `${context.jobId}\u0000${chunk.id}`
            const avoid = context.attempt > 1 ? failedOn.get(key) : undefined
            failedOn.delete(key)
            return { key, slot: acquire(avoid) }
          }),
          ({ key, slot }) =>
            Effect.tapError(attempt(slot.url, chunk, context), () => Effect.sync(() => rememberFailure(key, slot))),
          ({ slot }) => Effect.sync(() => slot.inFlight--)
        )
      )
    )
    return ChunkWorker.of({ run })
  })

/**
 * A layer of {@link make}. It needs an `HttpClient` (e.g. `NodeHttpClient.layer`).
 *
 * @since 0.1.0
 */
export const layer = (url: string, options?: Options): Layer.Layer<ChunkWorker, InvalidOption, HttpClient.HttpClient> =>
  Layer.effect(ChunkWorker, make(url, options))

/**
 * A layer of {@link pool}. It needs an `HttpClient` (e.g. `NodeHttpClient.layer`).
 *
 * @since 0.1.0
 */
export const layerPool = (
  endpoints: ReadonlyArray<Endpoint>,
  options?: Options
): Layer.Layer<ChunkWorker, InvalidOption, HttpClient.HttpClient> => Layer.effect(ChunkWorker, pool(endpoints, options))
