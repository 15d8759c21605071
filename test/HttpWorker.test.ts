import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import type { ChunkContext } from "../src/ChunkWorker.js"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { Chunk, JobId, JobSpec } from "../src/Job.js"
import type { ChunkFailed, InvalidOption } from "../src/JobError.js"
import { NonRetryable } from "../src/JobError.js"
import * as JobExecutor from "../src/JobExecutor.js"
import * as HttpWorker from "../src/HttpWorker.js"
import { sign, signatureHeader } from "../src/internal/workerProtocol.js"
import * as WorkerServer from "../src/WorkerServer.js"
import { eventually } from "./util.js"

const jobId = "job_http" as JobId

interface Probe {
  readonly started: Array<{ readonly id: number; readonly attempt: number }>
  readonly aborted: Array<number>
  readonly worker: ChunkWorker.ChunkWorker["Type"]
}

/** A local worker that records which chunk attempts started and whose signal fired. */
const probe = (behaviour: (chunk: Chunk, context: ChunkContext) => Effect.Effect<unknown, unknown>): Probe => {
  const started: Array<{ id: number; attempt: number }> = []
  const aborted: Array<number> = []
  const worker = ChunkWorker.make((chunk, context) =>
    Effect.suspend(() => {
      started.push({ id: chunk.id, attempt: context.attempt })
      context.signal.addEventListener("abort", () => aborted.push(chunk.id), { once: true })
      return behaviour(chunk, context)
    })
  )
  return { started, aborted, worker }
}

const ids = (probe: Probe): Array<number> => probe.started.map((start) => start.id).sort((a, b) => a - b)

/**
 * Starts a worker server on a free loopback port in its own scope (closed with the test's at the latest),
 * keeping the Node server so a test can cut its connections.
 */
const startServer = (worker: ChunkWorker.ChunkWorker["Type"], options: WorkerServer.Options = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    let node: Server | undefined
    const context = yield* Layer.buildWithScope(
      WorkerServer.layer(options).pipe(
        Layer.provideMerge(NodeHttpServer.layerServer(() => (node = createServer()), { port: 0, host: "127.0.0.1" })),
        Layer.provide(Layer.succeed(ChunkWorker.ChunkWorker, worker))
      ),
      scope
    )
    const address = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
    return { url: `http://127.0.0.1:${address.port}`, scope, node: node! }
  })


const chunks = (count: number): JobSpec => ({
  chunks: Array.from({ length: count }, (_, id) => ({ id, payload: { start: id * 10, end: id * 10 + 9 } }))
})

const fastRetry = { attempts: 3, initialDelay: 1, jitter: false } as const

/** An HttpClient that records the execution ids of the POSTs it sends (and where), and the DELETE answers. */
const recordingClient = (
  sent: Array<{ readonly url: string; readonly executionId: string }>,
  cancelAnswers: Array<number>
) =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(HttpClient.HttpClient, (client) =>
      client.pipe(
        HttpClient.tapRequest((request) =>
          Effect.sync(() => {
            if (request.method === "POST" && request.body._tag === "Uint8Array") {
              const body = JSON.parse(new TextDecoder().decode(request.body.body)) as { executionId: string }
              sent.push({ url: request.url.replace(/\/executions$/, ""), executionId: body.executionId })
            }
          })
        ),
        HttpClient.tap((response) =>
          Effect.sync(() => {
            if (response.request.method === "DELETE") cancelAnswers.push(response.status)
          })
        )
      ))
  ).pipe(Layer.provide(NodeHttpClient.layer))

/** `GET /executions/:id`, with the token and a signature made with `secret`. */
const stateOf = (url: string, executionId: string, credentials: { readonly token: string; readonly signingSecret: string }) =>
  Effect.flatMap(
    HttpClient.execute(HttpClientRequest.get(`${url}/executions/${executionId}`).pipe(
      HttpClientRequest.bearerToken(credentials.token),
      HttpClientRequest.setHeader(
        signatureHeader,
        sign(Redacted.make(credentials.signingSecret), {
          timestampMillis: Date.now(),
          nonce: crypto.randomUUID(),
          method: "GET",
          path: `/executions/${executionId}`,
          body: ""
        })
      )
    )),
    (response) => response.json
  )

/**
 * A pool of two servers, A (whose worker never finishes) and B, and an execution of one chunk whose first
 * attempt is running on A.
 */
const oneChunkHangingOnA = Effect.gen(function*() {
  const a = probe(() => Effect.never)
  const b = probe((chunk) => Effect.succeed(chunk.id))
  const serverA = yield* startServer(a.worker)
  const serverB = yield* startServer(b.worker)
  const workerLayer = HttpWorker.layerPool([
    { url: serverA.url, concurrency: 1 },
    { url: serverB.url, concurrency: 1 }
  ])
  const fiber = yield* Effect.fork(
    Effect.provide(JobExecutor.execute(chunks(1), { jobId, retry: fastRetry }), workerLayer)
  )
  yield* eventually(() => a.started.length === 1)
  return { a, b, fiber, serverA }
})

layer(NodeHttpClient.layer, { excludeTestServices: true })("HttpWorker", (it) => {
  it.scoped("JobExecutor runs chunks on a pool of two servers, never more than an endpoint's concurrency", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const a = probe((chunk) => Effect.as(Deferred.await(gate), `a${chunk.id}`))
      const b = probe((chunk) => Effect.as(Deferred.await(gate), `b${chunk.id}`))
      const serverA = yield* startServer(a.worker)
      const serverB = yield* startServer(b.worker)
      const workerLayer = HttpWorker.layerPool([
        { url: serverA.url, concurrency: 2 },
        { url: `${serverB.url}/`, concurrency: 2 }
      ])
      const fiber = yield* Effect.fork(
        Effect.provide(JobExecutor.execute(chunks(6), { jobId, concurrency: 6 }), workerLayer)
      )
      yield* eventually(() => a.started.length + b.started.length === 4)
      assert.strictEqual(a.started.length, 2)
      assert.strictEqual(b.started.length, 2)
      yield* Deferred.succeed(gate, undefined)
      const summary = yield* Fiber.join(fiber)
      assert.deepStrictEqual(summary, { totalChunks: 6, completedChunks: 6, failedChunks: 0, skippedChunks: 0 })
      assert.deepStrictEqual([...ids(a), ...ids(b)].sort(), [0, 1, 2, 3, 4, 5])
    }))

  it.scoped("interrupting the execution aborts the requests in flight; the servers report them cancelled", () =>
    Effect.gen(function*() {
      const a = probe(() => Effect.never)
      const b = probe(() => Effect.never)
      const credentials = { token: "t0ken", signingSecret: "shared-secret" }
      const serverA = yield* startServer(a.worker, credentials)
      const serverB = yield* startServer(b.worker, credentials)
      const sent: Array<{ url: string; executionId: string }> = []
      const cancelAnswers: Array<number> = []
      const workerLayer = HttpWorker.layerPool([
        { url: serverA.url, concurrency: 2 },
        { url: serverB.url, concurrency: 2 }
      ], credentials).pipe(Layer.provide(recordingClient(sent, cancelAnswers)))
      const fiber = yield* Effect.fork(
        Effect.provide(JobExecutor.execute(chunks(10), { jobId, concurrency: 4 }), workerLayer)
      )
      yield* eventually(() => a.started.length + b.started.length === 4)
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      // Each remote worker's signal fired before the interruption completed (the cancel was acknowledged).
      assert.deepStrictEqual([...a.aborted].sort(), ids(a))
      assert.deepStrictEqual([...b.aborted].sort(), ids(b))
      assert.deepStrictEqual(cancelAnswers, [200, 200, 200, 200], "every signed cancel was accepted")
      assert.strictEqual(sent.length, 4, "no request was sent after the four in flight")
      for (const { executionId, url } of sent) {
        assert.deepStrictEqual(yield* stateOf(url, executionId, credentials), { executionId, state: "cancelled" })
      }
      assert.strictEqual(a.started.length + b.started.length, 4, "no chunk started afterwards")
    }))

  it.scoped("an endpoint that never answers holds up an interruption no longer than cancelTimeout", () =>
    Effect.gen(function*() {
      const received: Array<string> = []
      const silent = createServer((request) => {
        received.push(request.method ?? "")
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => {
          silent.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () =>
          Effect.sync(() => {
            silent.closeAllConnections()
            silent.close()
          })
      )
      const port = (silent.address() as AddressInfo).port
      const worker = yield* HttpWorker.make(`http://127.0.0.1:${port}`, { cancelTimeout: 200 })
      const fiber = yield* Effect.fork(
        worker.run({ id: 0, payload: null }, { jobId, attempt: 1, signal: new AbortController().signal, reportProgress: () => {} })
      )
      yield* eventually(() => received.length === 1)
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      const elapsed = Date.now() - started
      assert.isAtLeast(elapsed, 150, "the cancel was waited for")
      assert.isBelow(elapsed, 1_000)
      assert.deepStrictEqual(received, ["POST", "DELETE"])
    }))

  it.scoped("a server killed mid-chunk fails the attempt, and the retry goes to the other endpoint", () =>
    Effect.gen(function*() {
      const { a, b, fiber, serverA } = yield* oneChunkHangingOnA
      serverA.node.close()
      serverA.node.closeAllConnections()
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.completedChunks, 1)
      assert.deepStrictEqual(b.started, [{ id: 0, attempt: 2 }])
      yield* eventually(() => a.aborted.length === 1)
    }))

  it.scoped("a server stopped mid-chunk answers 503, and the retry goes to the other endpoint", () =>
    Effect.gen(function*() {
      const { a, b, fiber, serverA } = yield* oneChunkHangingOnA
      yield* Scope.close(serverA.scope, Exit.void)
      assert.deepStrictEqual(a.aborted, [0])
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.completedChunks, 1)
      assert.deepStrictEqual(b.started, [{ id: 0, attempt: 2 }])
    }))

  it.scoped("a refused connection is retried on another endpoint", () =>
    Effect.gen(function*() {
      const b = probe((chunk) => Effect.succeed(chunk.id))
      const serverB = yield* startServer(b.worker)
      const closed = yield* startServer(b.worker)
      yield* Scope.close(closed.scope, Exit.void)
      const workerLayer = HttpWorker.layerPool([
        { url: closed.url, concurrency: 1 },
        { url: serverB.url, concurrency: 1 }
      ])
      const summary = yield* Effect.provide(
        JobExecutor.execute(chunks(1), { jobId, retry: fastRetry }),
        workerLayer
      )
      assert.strictEqual(summary.completedChunks, 1)
      assert.deepStrictEqual(b.started, [{ id: 0, attempt: 2 }])
    }))

  it.scoped("5xx answers are retried; 4xx answers fail the chunk at once", () =>
    Effect.gen(function*() {
      const flaky = probe((_, context) => context.attempt === 1 ? Effect.fail(new Error("disk busy")) : Effect.succeed(1))
      const server = yield* startServer(flaky.worker)
      const summary = yield* Effect.provide(
        JobExecutor.execute(chunks(1), { jobId, retry: fastRetry }),
        HttpWorker.layer(server.url)
      )
      assert.strictEqual(summary.completedChunks, 1)
      assert.deepStrictEqual(flaky.started, [{ id: 0, attempt: 1 }, { id: 0, attempt: 2 }])

      const refusing = probe(() => Effect.fail(new NonRetryable({ cause: new Error("unsupported codec") })))
      const refusingServer = yield* startServer(refusing.worker)
      const failed = (yield* Effect.flip(Effect.provide(
        JobExecutor.execute(chunks(1), { jobId, retry: fastRetry }),
        HttpWorker.layer(refusingServer.url)
      ))) as ChunkFailed
      assert.strictEqual(failed._tag, "ChunkFailed")
      assert.strictEqual(failed.attempts, 1)
      const cause = failed.cause as HttpWorker.HttpWorkerError
      assert.strictEqual(cause.reason, "Status")
      assert.strictEqual(cause.status, 422)
      assert.include(cause.message, "unsupported codec")
    }))

  it.scoped("sends the bearer token and the HMAC signature; a wrong one fails the chunk at once with 401", () =>
    Effect.gen(function*() {
      const worker = probe((chunk) => Effect.succeed(chunk.id))
      const server = yield* startServer(worker.worker, { token: "t0ken", signingSecret: "shared-secret" })
      const ok = yield* Effect.provide(
        JobExecutor.execute(chunks(2), { jobId }),
        HttpWorker.layer(server.url, { token: "t0ken", signingSecret: "shared-secret" })
      )
      assert.strictEqual(ok.completedChunks, 2)
      for (const options of [{ token: "t0ken", signingSecret: "other" }, { token: "other", signingSecret: "shared-secret" }]) {
        const failed = (yield* Effect.flip(Effect.provide(
          JobExecutor.execute(chunks(1), { jobId, retry: fastRetry }),
          HttpWorker.layer(server.url, options)
        ))) as ChunkFailed
        assert.strictEqual(failed.attempts, 1)
        assert.strictEqual((failed.cause as HttpWorker.HttpWorkerError).status, 401)
      }
      assert.strictEqual(worker.started.length, 2, "refused requests never reached the worker")
    }))

  it.scoped("invalid endpoints or options fail with InvalidOption naming them", () =>
    Effect.gen(function*() {
      const cases: Array<[Effect.Effect<unknown, InvalidOption, HttpClient.HttpClient>, ReadonlyArray<string | number>]> = [
        [HttpWorker.pool([]), ["endpoints"]],
        [HttpWorker.pool([{ url: "http://127.0.0.1:1", concurrency: 0 }]), ["endpoints", 0, "concurrency"]],
        [HttpWorker.make("file:///etc/passwd"), ["url"]],
        [HttpWorker.make("http://127.0.0.1:1", { cancelTimeout: -5 }), ["cancelTimeout"]]
      ]
      for (const [make, path] of cases) {
        const error = yield* Effect.flip(make)
        assert.strictEqual(error._tag, "InvalidOption")
        assert.deepStrictEqual(error.path, path)
      }
    }))
})
