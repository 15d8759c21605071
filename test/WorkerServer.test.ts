import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { existsSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { ChunkContext } from "../src/ChunkWorker.js"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { Chunk } from "../src/Job.js"
import type { InvalidOption } from "../src/JobError.js"
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
      const error = yield* Effect.flip(startServer(echo.worker, { maxBodyBytes: -1 }))
      assert.strictEqual(error._tag, "InvalidOption")
      assert.deepStrictEqual((error as InvalidOption).path, ["maxBodyBytes"])
    }))
})
