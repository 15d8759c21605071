import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { existsSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { ChunkContext } from "../src/ChunkWorker.js"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { Chunk } from "../src/Job.js"
import type { InvalidOption } from "../src/JobError.js"
import { sign, signatureHeader, type SignedContent } from "../src/internal/workerProtocol.js"
import { NonRetryable } from "../src/JobError.js"
import * as ProcessWorker from "../src/ProcessWorker.js"
import * as WorkerServer from "../src/WorkerServer.js"
import { eventually } from "./util.js"

interface Probe {
  readonly started: Array<number>
  readonly aborted: Array<number>
  readonly worker: ChunkWorker.ChunkWorker["Type"]
}

/** A local worker that records which chunks started and whose signal fired. */
const probe = (behaviour: (chunk: Chunk, context: ChunkContext) => Effect.Effect<unknown, unknown>): Probe => {
  const started: Array<number> = []
  const aborted: Array<number> = []
  const worker = ChunkWorker.make((chunk, context) =>
    Effect.suspend(() => {
      started.push(chunk.id)
      context.signal.addEventListener("abort", () => aborted.push(chunk.id), { once: true })
      return behaviour(chunk, context)
    })
  )
  return { started, aborted, worker }
}

/** Starts a worker server on a free loopback port, in its own scope (closed with the test's at the latest). */
const startServer = (worker: ChunkWorker.ChunkWorker["Type"], options: WorkerServer.Options = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(
      WorkerServer.layerNode({ ...options, port: 0 }).pipe(
        Layer.provide(Layer.succeed(ChunkWorker.ChunkWorker, worker))
      ),
      scope
    )
    const address = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
    return { url: `http://127.0.0.1:${address.port}`, scope }
  })


interface Answer {
  readonly status: number
  readonly body: any
}

const send = (request: HttpClientRequest.HttpClientRequest) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(request)
    const text = yield* response.text
    return { status: response.status, body: text === "" ? undefined : JSON.parse(text) } satisfies Answer
  })

const executionBody = (executionId: string, chunk: unknown = { id: 7, payload: { start: 0, end: 9 } }) =>
  JSON.stringify({ executionId, jobId: "job_server", attempt: 1, chunk })

const post = (url: string, body: string, token?: string) =>
  send(
    HttpClientRequest.post(`${url}/executions`).pipe(
      HttpClientRequest.bodyText(body, "application/json"),
      token === undefined ? (request) => request : HttpClientRequest.bearerToken(token)
    )
  )

const get = (url: string, executionId: string, token?: string) =>
  send(
    HttpClientRequest.get(`${url}/executions/${executionId}`).pipe(
      token === undefined ? (request) => request : HttpClientRequest.bearerToken(token)
    )
  )

const del = (url: string, executionId: string, token?: string) =>
  send(
    HttpClientRequest.del(`${url}/executions/${executionId}`).pipe(
      token === undefined ? (request) => request : HttpClientRequest.bearerToken(token)
    )
  )

const echo = probe((chunk) => Effect.succeed({ echoed: chunk.payload }))

const signingSecret = "shared-secret"

/** The signature header HttpWorker would send now, with a fresh nonce unless `content` says otherwise. */
const signature = (content: Omit<SignedContent, "timestampMillis" | "nonce"> & Partial<SignedContent>) =>
  Effect.map(Clock.currentTimeMillis, (now) =>
    sign(Redacted.make(signingSecret), { timestampMillis: now, nonce: crypto.randomUUID(), ...content }))

/** A `POST /executions` of chunk `chunkId` as execution `executionId`, signed now. */
const signedPost = (url: string, executionId: string, chunkId: number) => {
  const body = executionBody(executionId, { id: chunkId, payload: null })
  return Effect.map(signature({ method: "POST", path: "/executions", body }), (header) =>
    HttpClientRequest.post(`${url}/executions`).pipe(
      HttpClientRequest.bodyText(body, "application/json"),
      HttpClientRequest.setHeader(signatureHeader, header)
    ))
}

/** A `GET` or `DELETE` of `/executions/<executionId>`, signed now. */
const signedRoute = (method: "GET" | "DELETE", url: string, executionId: string) =>
  Effect.map(signature({ method, path: `/executions/${executionId}`, body: "" }), (header) =>
    HttpClientRequest.make(method)(`${url}/executions/${executionId}`).pipe(
      HttpClientRequest.setHeader(signatureHeader, header)
    ))

layer(NodeHttpClient.layer, { excludeTestServices: true })("WorkerServer", (it) => {
  it.scoped("runs a chunk through the local worker and answers with the result; GET reports it completed", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer(echo.worker)
      const answer = yield* post(url, executionBody("e-ok"))
      assert.strictEqual(answer.status, 200)
      assert.deepStrictEqual(answer.body, {
        _tag: "Completed",
        executionId: "e-ok",
        result: { echoed: { start: 0, end: 9 } }
      })
      assert.deepStrictEqual((yield* get(url, "e-ok")).body, { executionId: "e-ok", state: "completed" })
      const again = yield* post(url, executionBody("e-ok"))
      assert.strictEqual(again.status, 409, "an execution id is never run twice")
    }))

  it.scoped("a failing worker answers 500 (retryable) or 422 (NonRetryable) with the error", () =>
    Effect.gen(function*() {
      const failing = probe((chunk) =>
        chunk.id === 1
          ? Effect.fail(new Error("disk full"))
          : Effect.fail(new NonRetryable({ cause: new Error("bad frame range") }))
      )
      const { url } = yield* startServer(failing.worker)
      const retryable = yield* post(url, executionBody("e-500", { id: 1, payload: null }))
      assert.strictEqual(retryable.status, 500)
      assert.deepStrictEqual(retryable.body, {
        _tag: "Failed",
        executionId: "e-500",
        retryable: true,
        error: { message: "disk full" }
      })
      const final = yield* post(url, executionBody("e-422", { id: 2, payload: null }))
      assert.strictEqual(final.status, 422)
      assert.strictEqual(final.body.retryable, false)
      assert.strictEqual(final.body.error.message, "bad frame range")
      assert.deepStrictEqual((yield* get(url, "e-422")).body, { executionId: "e-422", state: "failed" })
    }))

  it.scoped("requires the configured token on every route (401), compared in full", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer(echo.worker, { token: "s3cret" })
      for (const token of [undefined, "s3cre", "s3cret-", "wrong"]) {
        const answer = yield* post(url, executionBody("e-auth"), token)
        assert.strictEqual(answer.status, 401)
        assert.strictEqual(answer.body.error.code, "unauthorized")
      }
      assert.strictEqual((yield* get(url, "e-auth")).status, 401)
      assert.strictEqual((yield* del(url, "e-auth")).status, 401)
      assert.strictEqual((yield* post(url, executionBody("e-auth"), "s3cret")).status, 200)
      assert.strictEqual((yield* get(url, "e-auth", "s3cret")).status, 200)
    }))

  it.scoped("refuses a body over the size limit with 413, with or without a content-length", () =>
    Effect.gen(function*() {
      const started = probe(() => Effect.void)
      const { url } = yield* startServer(started.worker, { maxBodyBytes: 512 })
      const big = executionBody("e-big", { id: 1, payload: "x".repeat(2_000) })
      const declared = yield* post(url, big)
      assert.strictEqual(declared.status, 413)
      assert.strictEqual(declared.body.error.code, "payload_too_large")
      const streamed = yield* send(
        HttpClientRequest.post(`${url}/executions`).pipe(
          HttpClientRequest.bodyStream(Stream.make(new TextEncoder().encode(big)), { contentType: "application/json" })
        )
      )
      assert.strictEqual(streamed.status, 413)
      assert.deepStrictEqual(started.started, [])
    }))

  it.scoped("refuses invalid JSON (400) and a body that fails the schema (400, naming the path)", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer(echo.worker)
      const notJson = yield* post(url, "{\"executionId\": ")
      assert.strictEqual(notJson.status, 400)
      assert.strictEqual(notJson.body.error.code, "invalid_json")
      const badChunk = yield* post(url, executionBody("e-bad", { id: -1, payload: null }))
      assert.strictEqual(badChunk.status, 400)
      assert.strictEqual(badChunk.body.error.code, "invalid_request")
      assert.deepStrictEqual(badChunk.body.error.path, ["chunk", "id"])
      const badId = yield* post(url, executionBody("../../etc"))
      assert.deepStrictEqual(badId.body.error.path, ["executionId"])
    }))

  it.scoped("GET and DELETE of an unknown execution answer 404", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer(echo.worker)
      const deleted = yield* del(url, "never-seen")
      assert.strictEqual(deleted.status, 404)
      assert.strictEqual(deleted.body.error.code, "not_found")
      assert.strictEqual((yield* get(url, "never-seen")).status, 404)
    }))

  it.scoped("DELETE stops a running execution (its signal fires), answers cancelled, and the POST gets 503", () =>
    Effect.gen(function*() {
      const blocking = probe(() => Effect.never)
      const { url } = yield* startServer(blocking.worker)
      const request = yield* Effect.fork(post(url, executionBody("e-run")))
      yield* eventually(() => blocking.started.length === 1)
      assert.deepStrictEqual((yield* get(url, "e-run")).body, { executionId: "e-run", state: "running" })
      const deleted = yield* del(url, "e-run")
      assert.deepStrictEqual(deleted, { status: 200, body: { executionId: "e-run", state: "cancelled" } })
      assert.deepStrictEqual(blocking.aborted, [7], "the local worker's signal fired before DELETE answered")
      const answer = yield* Fiber.join(request)
      assert.deepStrictEqual(answer, { status: 503, body: { _tag: "Cancelled", executionId: "e-run" } })
      assert.deepStrictEqual((yield* del(url, "e-run")).body, { executionId: "e-run", state: "cancelled" })
    }))

  it.scoped("a client that closes its connection cancels its execution", () =>
    Effect.gen(function*() {
      const blocking = probe(() => Effect.never)
      const { url } = yield* startServer(blocking.worker)
      const request = yield* Effect.fork(post(url, executionBody("e-gone")))
      yield* eventually(() => blocking.started.length === 1)
      yield* Fiber.interrupt(request)
      yield* eventually(() => blocking.aborted.length === 1)
      assert.deepStrictEqual((yield* get(url, "e-gone")).body, { executionId: "e-gone", state: "cancelled" })
    }))

  it.scoped("closing the server's scope cancels running executions and answers them 503", () =>
    Effect.gen(function*() {
      const blocking = probe(() => Effect.never)
      const { scope, url } = yield* startServer(blocking.worker)
      const request = yield* Effect.fork(post(url, executionBody("e-stop")))
      yield* eventually(() => blocking.started.length === 1)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(blocking.aborted, [7])
      assert.deepStrictEqual(yield* Fiber.join(request), {
        status: 503,
        body: { _tag: "Cancelled", executionId: "e-stop" }
      })
    }))

  it.scoped("refuses executions over the concurrency limit (503 busy) and forgets the oldest finished ones", () =>
    Effect.gen(function*() {
      const worker = probe((chunk) => chunk.id === 0 ? Effect.never : Effect.succeed(chunk.id))
      const { url } = yield* startServer(worker.worker, { maxConcurrentExecutions: 1, maxFinishedExecutions: 2 })
      const blocked = yield* Effect.fork(post(url, executionBody("e-0", { id: 0, payload: null })))
      yield* eventually(() => worker.started.length === 1)
      const busy = yield* post(url, executionBody("e-1", { id: 1, payload: null }))
      assert.strictEqual(busy.status, 503)
      assert.strictEqual(busy.body.error.code, "busy")
      yield* del(url, "e-0")
      yield* Fiber.join(blocked)
      for (const id of [1, 2]) {
        assert.strictEqual((yield* post(url, executionBody(`e-${id}`, { id, payload: null }))).status, 200)
      }
      assert.strictEqual((yield* get(url, "e-0")).status, 404, "the oldest of three finished is forgotten")
      assert.strictEqual((yield* get(url, "e-1")).body.state, "completed")
      assert.strictEqual((yield* get(url, "e-2")).body.state, "completed")
    }))

  it.scoped("never gives a request to a shell: a process worker receives shell syntax verbatim", () =>
    Effect.gen(function*() {
      const marker = join(tmpdir(), `effect-jobs-server-shell-${process.pid}-${Date.now()}`)
      const processWorker = yield* Effect.provide(
        ProcessWorker.make({
          command: (chunk) => ({
            command: process.execPath,
            args: ["-e", "process.stdout.write(process.argv[1])", String((chunk.payload as { name: string }).name)]
          })
        }),
        NodeContext.layer
      )
      const { url } = yield* startServer(processWorker)
      const name = `$(touch ${marker}); touch ${marker} | \`touch ${marker}\``
      const answer = yield* post(url, executionBody("e-shell", { id: 1, payload: { name } }))
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(answer.body.result.stdout, name)
      assert.isFalse(existsSync(marker))
    }))

  it.scoped("toLambdaHandler decodes the event with the same schema and resolves with the same result body", () =>
    Effect.gen(function*() {
      const handler = WorkerServer.toLambdaHandler(
        probe((chunk) =>
          chunk.id === 2 ? Effect.fail(new NonRetryable({ cause: new Error("unsupported codec") })) : Effect.succeed({
            frames: chunk.payload
          })
        ).worker
      )
      const event = JSON.parse(executionBody("e-lambda"))
      assert.deepStrictEqual(yield* Effect.promise(() => handler(event)), {
        _tag: "Completed",
        executionId: "e-lambda",
        result: { frames: { start: 0, end: 9 } }
      })
      const failed = yield* Effect.promise(() => handler(JSON.parse(executionBody("e-l2", { id: 2, payload: null }))))
      assert.deepStrictEqual(failed, {
        _tag: "Failed",
        executionId: "e-l2",
        retryable: false,
        error: { message: "unsupported codec" }
      })
      const rejected = yield* Effect.flip(
        Effect.tryPromise(() => handler({ ...event, chunk: { id: "seven", payload: null } }))
      )
      const error = rejected.error as WorkerServer.InvalidExecutionRequest
      assert.strictEqual(error._tag, "InvalidExecutionRequest")
      assert.deepStrictEqual(error.path, ["chunk", "id"])
    }))

  it.scoped("invalid server options fail the layer with InvalidOption naming the option", () =>
    Effect.gen(function*() {
      const invalid: ReadonlyArray<WorkerServer.Options> = [{ maxBodyBytes: -1 }, { maxRememberedRequests: 0 }]
      for (const options of invalid) {
        const error = yield* Effect.flip(startServer(echo.worker, options))
        assert.strictEqual(error._tag, "InvalidOption")
        assert.deepStrictEqual((error as InvalidOption).path, Object.keys(options))
      }
    }))

  it.scoped("a captured signed request replayed after 1,001 other executions gets 409: the chunk ran once", () =>
    Effect.gen(function*() {
      const worker = probe((chunk) => Effect.succeed(chunk.id))
      const { url } = yield* startServer(worker.worker, { signingSecret })
      const captured = yield* signedPost(url, "e-captured", 0)
      assert.strictEqual((yield* send(captured)).status, 200)
      const others = yield* Effect.forEach(
        Array.from({ length: 1_001 }, (_, i) => i + 1),
        (id) => Effect.map(Effect.flatMap(signedPost(url, `e-other-${id}`, id), send), (answer) => answer.status),
        { concurrency: 16 }
      )
      assert.deepStrictEqual(new Set(others), new Set([200]))
      const status = yield* send(yield* signedRoute("GET", url, "e-captured"))
      assert.strictEqual(status.status, 404, "the execution id itself is forgotten by now")
      const replay = yield* send(captured)
      assert.strictEqual(replay.status, 409)
      assert.strictEqual(replay.body.error.code, "conflict")
      assert.deepStrictEqual(worker.started.filter((id) => id === 0), [0], "the captured chunk ran once")
    }), 120_000) // 1,002 real HTTP executions: a few seconds, more on a loaded machine

  it.scoped("a replayed signed GET or DELETE gets 409; a changed nonce or execution id, or no nonce, gets 401", () =>
    Effect.gen(function*() {
      const worker = probe((chunk) => Effect.succeed(chunk.id))
      const { url } = yield* startServer(worker.worker, { signingSecret })
      assert.strictEqual((yield* send(yield* signedPost(url, "e-1", 1))).status, 200)
      for (const method of ["GET", "DELETE"] as const) {
        const captured = yield* signedRoute(method, url, "e-1")
        assert.deepStrictEqual((yield* send(captured)).body, { executionId: "e-1", state: "completed" })
        const replay = yield* send(captured)
        assert.strictEqual(replay.status, 409, method)
        assert.strictEqual(replay.body.error.code, "conflict")
      }

      const body = executionBody("e-2", { id: 2, payload: null })
      const header = yield* signature({ method: "POST", path: "/executions", body })
      const withHeader = (value: string, sentBody = body) =>
        HttpClientRequest.post(`${url}/executions`).pipe(
          HttpClientRequest.bodyText(sentBody, "application/json"),
          HttpClientRequest.setHeader(signatureHeader, value)
        )
      const otherNonce = header.replace(/,n=[^,]+,/, `,n=${crypto.randomUUID()},`)
      const withoutNonce = header.replace(/,n=[^,]+,/, ",")
      const otherExecution = executionBody("e-3", { id: 2, payload: null })
      for (const request of [withHeader(otherNonce), withHeader(withoutNonce), withHeader(header, otherExecution)]) {
        const refused = yield* send(request)
        assert.strictEqual(refused.status, 401)
        assert.strictEqual(refused.body.error.code, "unauthorized")
      }
      const getHeader = (yield* signedRoute("GET", url, "e-1")).headers[signatureHeader]!
      const elsewhere = HttpClientRequest.get(`${url}/executions/e-2`).pipe(
        HttpClientRequest.setHeader(signatureHeader, getHeader)
      )
      assert.strictEqual((yield* send(elsewhere)).status, 401, "a GET signed for e-1 does not reach e-2")
      assert.deepStrictEqual(worker.started, [1], "no refused request reached the worker")
      assert.strictEqual((yield* send(withHeader(header))).status, 200, "the untampered request is accepted")
    }))
})

layer(NodeHttpClient.layer)("WorkerServer replay window (TestClock)", (it) => {
  it.scoped("remembers a signed request for signatureTolerance: 409 within it, 401 after; memory is bounded", () =>
    Effect.gen(function*() {
      const worker = probe((chunk) => Effect.succeed(chunk.id))
      const { url } = yield* startServer(worker.worker, {
        signingSecret,
        signatureTolerance: "1 minute",
        maxRememberedRequests: 2
      })
      const first = yield* signedPost(url, "e-1", 1)
      assert.strictEqual((yield* send(first)).status, 200)
      assert.strictEqual((yield* send(yield* signedPost(url, "e-2", 2))).status, 200)
      const full = yield* send(yield* signedPost(url, "e-3", 3))
      assert.strictEqual(full.status, 503, "two requests are remembered: a third is refused, none forgotten")
      assert.strictEqual(full.body.error.code, "busy")

      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* send(first)).status, 409, "still within the window: remembered")
      yield* TestClock.adjust(1)
      const tooOld = yield* send(first)
      assert.strictEqual(tooOld.status, 401, "out of the window: its timestamp is too old")
      const later = yield* send(yield* signedPost(url, "e-3", 3))
      assert.strictEqual(later.status, 200, "the expired requests were forgotten, freeing room")
      assert.deepStrictEqual(worker.started, [1, 2, 3])
    }))

  it.scoped("without a signing secret, a POST's execution id is refused for signatureTolerance, finished or not", () =>
    Effect.gen(function*() {
      const worker = probe((chunk) => Effect.succeed(chunk.id))
      const { url } = yield* startServer(worker.worker, {
        token: "t0ken",
        signatureTolerance: "1 minute",
        maxFinishedExecutions: 0
      })
      const body = executionBody("e-1", { id: 1, payload: null })
      assert.strictEqual((yield* post(url, body, "t0ken")).status, 200)
      assert.strictEqual((yield* get(url, "e-1", "t0ken")).status, 404, "no finished state is kept")
      yield* TestClock.adjust("1 minute")
      const replay = yield* post(url, body, "t0ken")
      assert.strictEqual(replay.status, 409)
      assert.strictEqual(replay.body.error.code, "conflict")
      assert.deepStrictEqual(worker.started, [1])
      yield* TestClock.adjust(1)
      const later = yield* post(url, body, "t0ken")
      assert.strictEqual(later.status, 200, "after the window, a bearer token alone cannot tell a replay")
      assert.deepStrictEqual(worker.started, [1, 1])
    }))
})
