/**
 * The remote side of `HttpWorker`: an HTTP server (built with `@effect/platform` `HttpServer`) that runs the
 * chunk attempts it receives through the local `ChunkWorker` of its context, and an adapter that runs the
 * same requests as an AWS-Lambda-style handler.
 *
 * Routes:
 * - `POST /executions` with `{ executionId, jobId, attempt, chunk }`: runs the chunk and answers once it
 *   has settled: `200 { _tag: "Completed", result }`, `500 { _tag: "Failed", retryable: true, error }`,
 *   `422 { _tag: "Failed", retryable: false, error }` (the worker failed with `NonRetryable`, or died), or
 *   `503 { _tag: "Cancelled" }` (cancelled, or the server is stopping).
 * - `GET /executions/:id`: `{ executionId, state }` with state `running | completed | failed | cancelled`.
 * - `DELETE /executions/:id`: cancels a running execution and answers `200 { executionId, state }` once it
 *   has stopped; a recently finished one is left as it is.
 *
 * Requests are refused, with `{ error: { code, message, path? } }`, when they lack the configured token or
 * signature (401), have a body over the size limit (413), are not JSON (400), do not match the schema
 * (400, `path` names the offending value), name an unknown execution (404), reuse an execution id or
 * repeat a request (409), or exceed the concurrency limit or `maxRememberedRequests` (503). Nothing a
 * request holds is ever given to a shell: the chunk goes to the local worker as data.
 *
 * Replays: with a `signingSecret`, every request is accepted at most once. Its signature covers a fresh
 * nonce and the execution id, and the nonce is remembered as long as the signature's timestamp is within
 * `signatureTolerance` (default 1 minute): a replay gets 409 however many executions ran since, and 401
 * once its timestamp is too old. With only a `token`, a replayed `POST` gets 409 while its execution id is
 * running, was received within `signatureTolerance` or is among the last `maxFinishedExecutions` finished,
 * and runs again after that; but then whoever captured a request holds the token and can send anything.
 * Use a signing secret (and TLS) wherever requests can be captured.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import { LazyAbortController } from "./Abort.js"
import type { ChunkContext } from "./ChunkWorker.js"
import { ChunkWorker } from "./ChunkWorker.js"
import type { JobId, Json } from "./Job.js"
import { ReplayCache } from "./internal/replayCache.js"
import { DurationInput } from "./internal/schemas.js"
import { describeError, firstIssue, InvalidOption, isNonRetryable, NonRetryable } from "./JobError.js"
import {
  constantTimeEqual,
  type ErrorCode,
  ExecutionRequest,
  type ExecutionResult,
  type ExecutionState,
  type ExecutionStatus,
  Secret,
  signatureHeader,
  statusOf,
  toRedacted,
  verifySignature
} from "./internal/workerProtocol.js"

/**
 * The body of every answer to `POST /executions` that ran the chunk, and what {@link toLambdaHandler}
 * resolves with: `Completed` with the worker's result as JSON (`undefined` becomes `null`), `Failed` with the
 * error's `_tag` and message and whether another attempt may help, or `Cancelled`.
 *
 * @since 0.1.0
 */
export type { ExecutionResult } from "./internal/workerProtocol.js"

/**
 * A request given to {@link toLambdaHandler} does not match the execution request schema. `path` points
 * at the offending value (e.g. `["chunk", "id"]`).
 *
 * @since 0.1.0
 */
export class InvalidExecutionRequest extends Schema.TaggedError<InvalidExecutionRequest>()(
  "InvalidExecutionRequest",
  {
    path: Schema.Array(Schema.Union(Schema.String, Schema.Number)),
    detail: Schema.String
  }
) {}

/**
 * Options of a worker server.
 *
 * @since 0.1.0
 */
export interface Options {
  /** Every request must carry `Authorization: Bearer <token>` (compared in constant time). */
  readonly token?: string | Redacted.Redacted<string> | undefined
  /** Every request must carry a valid `x-effect-jobs-signature` made with this secret (see `HttpWorker`). */
  readonly signingSecret?: string | Redacted.Redacted<string> | undefined
  /**
   * How far a signature's timestamp may be from this server's clock, and so how long a request is
   * remembered to refuse its replay (default 1 minute).
   */
  readonly signatureTolerance?: Duration.DurationInput | undefined
  /** Largest accepted request body (default 1 MiB). */
  readonly maxBodyBytes?: number | undefined
  /** Executions running at once; one more is refused with 503 (default 64). */
  readonly maxConcurrentExecutions?: number | undefined
  /** Finished executions whose state is kept for `GET`/`DELETE`, the oldest forgotten first (default 1000). */
  readonly maxFinishedExecutions?: number | undefined
  /**
   * Requests remembered at once to refuse replays: the nonces of signed requests or, without a signing
   * secret, the execution ids of `POST`s, each for `signatureTolerance`. A request that finds this many is
   * refused with 503 until the oldest have expired; none is forgotten early (default 100,000: about 10 MB).
   */
  readonly maxRememberedRequests?: number | undefined
}

/**
 * Options of {@link layerNode}: where to listen (host default `127.0.0.1`; port 0 picks a free port).
 *
 * @since 0.1.0
 */
export interface NodeOptions extends Options {
  readonly port: number
  readonly host?: string | undefined
}

const OptionsSchema = Schema.Struct({
  token: Schema.optional(Secret),
  signingSecret: Schema.optional(Secret),
  signatureTolerance: Schema.optional(DurationInput),
  maxBodyBytes: Schema.optional(Schema.Int.pipe(Schema.between(1, 2 ** 30))),
  maxConcurrentExecutions: Schema.optional(Schema.Int.pipe(Schema.between(1, 100_000))),
  maxFinishedExecutions: Schema.optional(Schema.Int.pipe(Schema.between(0, 1_000_000))),
  maxRememberedRequests: Schema.optional(Schema.Int.pipe(Schema.between(1, 10_000_000)))
})
const decodeOptions = Schema.decodeUnknown(OptionsSchema, { onExcessProperty: "error" })
const decodeRequest = Schema.decodeUnknownEither(ExecutionRequest)

const defaults = {
  // Clocks kept by NTP differ by far less; every request is remembered this long to refuse its replay.
  signatureTolerance: Duration.minutes(1),
  maxBodyBytes: 1024 * 1024,
  maxConcurrentExecutions: 64,
  maxFinishedExecutions: 1000,
  maxRememberedRequests: 100_000
} as const

class ExecutionContext extends LazyAbortController implements ChunkContext {
  constructor(readonly jobId: JobId, readonly attempt: number) {
    super()
  }

  /** In-chunk progress is not sent back to the calling executor. */
  reportProgress(_fraction: number): void {}
}

/** The one place an execution's `Exit` becomes its result (and so its state). */
const outcome = (executionId: string, exit: Exit.Exit<Json, unknown>): ExecutionResult => {
  if (Exit.isSuccess(exit)) return { _tag: "Completed", executionId, result: exit.value }
  if (Cause.isInterruptedOnly(exit.cause)) return { _tag: "Cancelled", executionId }
  const failure = Cause.failureOption(exit.cause)
  const error = Option.isSome(failure) ? failure.value : Cause.squash(exit.cause)
  const retryable = Option.isSome(failure) && !isNonRetryable(error)
  const reported = isNonRetryable(error) ? error.cause : error
  return {
    _tag: "Failed",
    executionId,
    retryable,
    error: {
      ...(Predicate.hasProperty(reported, "_tag") && typeof reported._tag === "string" ? { tag: reported._tag } : {}),
      message: describeError(reported)
    }
  }
}

const stateOf = (result: ExecutionResult): ExecutionState =>
  result._tag === "Completed" ? "completed" : result._tag === "Failed" ? "failed" : "cancelled"

/** The result as JSON data: `undefined` becomes `null`; what JSON cannot hold fails the execution for good. */
const toJson = (result: unknown): Effect.Effect<Json, Error> =>
  Effect.try({
    try: () => JSON.parse(JSON.stringify(result ?? null)) as Json,
    catch: (error) => new Error(`the worker's result cannot be sent as JSON: ${describeError(error)}`)
  })

/**
 * Runs one execution request through `worker`: the attempt's signal fires if it is interrupted, and the
 * result is turned into JSON data.
 */
const runLocally = (worker: ChunkWorker["Type"], request: ExecutionRequest): Effect.Effect<Json, unknown> => {
  const context = new ExecutionContext(request.jobId, request.attempt)
  return worker.run(request.chunk, context).pipe(
    Effect.onInterrupt(() => Effect.sync(() => context.abort())),
    Effect.flatMap((result) => Effect.mapError(toJson(result), (cause) => new NonRetryable({ cause })))
  )
}

const errorResponse = (
  status: number,
  code: ErrorCode,
  message: string,
  path?: ReadonlyArray<string | number>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson({ error: { code, message, ...(path === undefined ? {} : { path }) } }, { status })

const statusResponse = (status: ExecutionStatus): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(status)

const tooLarge = Symbol("tooLarge")
const emptyBody = new Uint8Array(0)

/**
 * Serves the worker protocol on the `HttpServer` of the context, running chunks through the context's
 * `ChunkWorker`. Options are validated first (a bad one fails with `InvalidOption`).
 *
 * Running executions are fibers in a `FiberMap` owned by the layer's scope. Cancellation: when a client's
 * connection closes before its answer (the client aborted the request, or the network failed), or a
 * `DELETE` names the execution, or the layer's scope closes, the execution is interrupted and its worker's
 * signal fires. Closing the scope first stops taking requests, then interrupts every running execution
 * (their requests are answered `503 Cancelled`), then lets the server close.
 *
 * Memory: at most `maxConcurrentExecutions` running executions, `maxFinishedExecutions` finished states and
 * `maxRememberedRequests` remembered requests.
 *
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<never, InvalidOption, ChunkWorker | HttpServer.HttpServer> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const validated = yield* Effect.mapError(decodeOptions(options), (error) => new InvalidOption(firstIssue(error)))
    const worker = yield* ChunkWorker
    const token = validated.token === undefined ? undefined : toRedacted(validated.token)
    const signingSecret = validated.signingSecret === undefined ? undefined : toRedacted(validated.signingSecret)
    const tolerance = validated.signatureTolerance === undefined
      ? defaults.signatureTolerance
      : Duration.decode(validated.signatureTolerance)
    const toleranceMillis = Duration.toMillis(tolerance)
    const maxBodyBytes = validated.maxBodyBytes ?? defaults.maxBodyBytes
    const maxRunning = validated.maxConcurrentExecutions ?? defaults.maxConcurrentExecutions
    const maxFinished = validated.maxFinishedExecutions ?? defaults.maxFinishedExecutions
    const maxRemembered = validated.maxRememberedRequests ?? defaults.maxRememberedRequests

    const running = yield* FiberMap.make<string, Json, unknown>()
    /** Recently finished executions, oldest first. */
    const finished = new Map<string, ExecutionState>()
    /** The nonces of accepted signed requests or, without a signing secret, the execution ids of POSTs. */
    const received = new ReplayCache(maxRemembered)

    const recordFinished = (executionId: string, state: ExecutionState): void => {
      finished.set(executionId, state)
      if (finished.size > maxFinished) finished.delete(finished.keys().next().value!)
    }

    const unauthorized = errorResponse(401, "unauthorized", "missing or invalid credentials")

    const hasToken = (request: HttpServerRequest.HttpServerRequest): boolean => {
      if (token === undefined) return true
      const header = request.headers["authorization"]
      return header !== undefined && constantTimeEqual(header, `Bearer ${Redacted.value(token)}`)
    }

    /** Remembers `key` until `expiresAt`; a refusal if it was received before, or too many are remembered. */
    const remember = (
      key: string,
      expiresAt: number,
      now: number,
      replayed: string
    ): HttpServerResponse.HttpServerResponse | undefined => {
      switch (received.add(key, expiresAt, now)) {
        case "added":
          return undefined
        case "seen":
          return errorResponse(409, "conflict", replayed)
        case "full":
          return errorResponse(503, "busy", `already remembering ${maxRemembered} recent requests`)
      }
    }

    /**
     * A refusal unless the request has a valid signature (when a signing secret is configured) whose nonce
     * was not received before; the nonce is then remembered until the timestamp leaves the tolerance window.
     */
    const checkSignature = (
      request: HttpServerRequest.HttpServerRequest,
      path: string,
      body: Uint8Array
    ): Effect.Effect<HttpServerResponse.HttpServerResponse | undefined> =>
      signingSecret === undefined
        ? Effect.succeed(undefined)
        : Effect.map(Clock.currentTimeMillis, (now) => {
          const signature = verifySignature(
            signingSecret,
            request.headers[signatureHeader],
            { method: request.method, path, body },
            now,
            tolerance
          )
          return Option.isNone(signature)
            ? unauthorized
            : remember(
              signature.value.nonce,
              signature.value.timestampMillis + toleranceMillis,
              now,
              "this request was received before (its signature's nonce is not fresh)"
            )
        })

    /** The body, or `tooLarge`; a body over the limit is read to its end (and dropped) so the 413 arrives. */
    const readBody = (
      request: HttpServerRequest.HttpServerRequest
    ): Effect.Effect<Uint8Array | typeof tooLarge, unknown> => {
      const declared = Number(request.headers["content-length"] ?? 0)
      if (declared > maxBodyBytes) return Effect.succeed(tooLarge)
      return Stream.runFold(
        request.stream,
        { parts: [] as Array<Uint8Array>, size: 0 },
        (state, bytes) => {
          state.size += bytes.length
          if (state.size <= maxBodyBytes) state.parts.push(bytes)
          else state.parts.length = 0
          return state
        }
      ).pipe(Effect.map((state) => state.size > maxBodyBytes ? tooLarge : Buffer.concat(state.parts, state.size)))
    }

    const parseJson = (body: Uint8Array): Either.Either<unknown, string> => {
      try {
        return Either.right(JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body)))
      } catch (error) {
        return Either.left(describeError(error))
      }
    }

    /** Runs the execution in the map and waits for it; if this request is interrupted, so is the execution. */
    const execute = (request: ExecutionRequest): Effect.Effect<ExecutionResult> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(
          FiberMap.run(
            running,
            request.executionId,
            Effect.onExit(runLocally(worker, request), (exit) =>
              Effect.sync(() => recordFinished(request.executionId, stateOf(outcome(request.executionId, exit))))),
            { onlyIfMissing: true }
          ),
          (fiber) =>
            restore(Fiber.await(fiber)).pipe(
              Effect.onInterrupt(() => Fiber.interrupt(fiber)),
              Effect.map((exit) => outcome(request.executionId, exit))
            )
        )
      )

    const postExecution = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (!hasToken(request)) return unauthorized
      const body = yield* readBody(request)
      if (body === tooLarge) {
        return errorResponse(413, "payload_too_large", `the body is larger than ${maxBodyBytes} bytes`)
      }
      const refused = yield* checkSignature(request, "/executions", body)
      if (refused !== undefined) return refused
      const json = parseJson(body)
      if (Either.isLeft(json)) return errorResponse(400, "invalid_json", `the body is not JSON: ${json.left}`)
      const decoded = decodeRequest(json.right)
      if (Either.isLeft(decoded)) {
        const issue = firstIssue(decoded.left)
        return errorResponse(400, "invalid_request", issue.detail, issue.path)
      }
      if ((yield* FiberMap.size(running)) >= maxRunning) {
        return errorResponse(503, "busy", `already running ${maxRunning} executions`)
      }
      const executionId = decoded.right.executionId
      const exists = `execution ${executionId} already exists`
      if (FiberMap.unsafeHas(running, executionId) || finished.has(executionId)) {
        return errorResponse(409, "conflict", exists)
      }
      if (signingSecret === undefined) {
        // No nonce to remember: the execution id stands in for it.
        const now = yield* Clock.currentTimeMillis
        const repeated = remember(executionId, now + toleranceMillis, now, exists)
        if (repeated !== undefined) return repeated
      }
      const result = yield* execute(decoded.right)
      return HttpServerResponse.unsafeJson(result, { status: statusOf(result) })
    }).pipe(
      Effect.catchAll((error) => Effect.succeed(errorResponse(400, "invalid_request", describeError(error))))
    )

    const withExecution = (
      handle: (executionId: string) => Effect.Effect<HttpServerResponse.HttpServerResponse>
    ) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const executionId = (yield* HttpRouter.params).id ?? ""
        if (!hasToken(request)) return unauthorized
        const refused = yield* checkSignature(request, `/executions/${executionId}`, emptyBody)
        if (refused !== undefined) return refused
        return yield* handle(executionId)
      })

    const notFound = (executionId: string) =>
      errorResponse(404, "not_found", `no running or recently finished execution ${JSON.stringify(executionId)}`)

    const getExecution = withExecution((executionId) =>
      Effect.sync(() => {
        const state = finished.get(executionId) ?? (FiberMap.unsafeHas(running, executionId) ? "running" : undefined)
        return state === undefined ? notFound(executionId) : statusResponse({ executionId, state })
      })
    )

    const deleteExecution = withExecution((executionId) => {
      const fiber = FiberMap.unsafeGet(running, executionId)
      if (Option.isSome(fiber)) {
        return Effect.map(Fiber.interrupt(fiber.value), () =>
          statusResponse({ executionId, state: finished.get(executionId) ?? "cancelled" }))
      }
      const state = finished.get(executionId)
      return Effect.succeed(state === undefined ? notFound(executionId) : statusResponse({ executionId, state }))
    })

    const app = HttpRouter.empty.pipe(
      HttpRouter.post("/executions", postExecution),
      HttpRouter.get("/executions/:id", getExecution),
      HttpRouter.del("/executions/:id", deleteExecution),
      Effect.catchTag("RouteNotFound", () => Effect.succeed(errorResponse(404, "not_found", "no such route")))
    )
    yield* HttpServer.serveEffect(app)
  }))

/**
 * {@link layer} on a Node HTTP server listening on `host` (default `127.0.0.1`) and `port` (0 picks a free
 * one; read it from the `HttpServer` service's `address`). Closing the layer's scope stops the server as
 * described for {@link layer}, then closes its socket.
 *
 * @since 0.1.0
 */
export const layerNode = (
  options: NodeOptions
): Layer.Layer<HttpServer.HttpServer, InvalidOption | ServeError, ChunkWorker> => {
  const { host, port, ...serverOptions } = options
  return layer(serverOptions).pipe(
    Layer.provideMerge(NodeHttpServer.layerServer(() => createServer(), { port, host: host ?? "127.0.0.1" }))
  )
}

/**
 * An AWS-Lambda-style handler running `worker`: it decodes the event with the same schema as
 * `POST /executions` and resolves with the same result body (`Completed`, or `Failed` with `retryable`).
 * An event that does not match the schema rejects with {@link InvalidExecutionRequest}. The handler has no
 * way to be cancelled; the worker's signal fires only if its own effect is interrupted.
 *
 * @since 0.1.0
 */
export const toLambdaHandler = (worker: ChunkWorker["Type"]) => (event: unknown): Promise<ExecutionResult> => {
  const decoded = decodeRequest(event)
  if (Either.isLeft(decoded)) return Promise.reject(new InvalidExecutionRequest(firstIssue(decoded.left)))
  const request = decoded.right
  return Effect.runPromise(Effect.map(Effect.exit(runLocally(worker, request)), (exit) =>
    outcome(request.executionId, exit)))
}
