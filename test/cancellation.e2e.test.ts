/**
 * Cancellation end to end, through `JobManager`: chunks run in real child processes (`ProcessWorker`) and
 * on real worker servers listening on 127.0.0.1 (`HttpWorker.pool` of two `WorkerServer`s), and a finalize
 * step runs a child process. Nothing is mocked: the tests look at process ids, at what the servers' local
 * workers saw, and at what the servers report.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { FinalizeContext } from "../src/Finalizer.js"
import * as HttpWorker from "../src/HttpWorker.js"
import type { Chunk } from "../src/Job.js"
import { totalChunks } from "../src/Job.js"
import * as JobManager from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import * as ProcessWorker from "../src/ProcessWorker.js"
import * as WorkerServer from "../src/WorkerServer.js"
import { isGone } from "./util.js"

const node = process.execPath
const killGracePeriod = 1_000

/** Chunks that hold (run until they are stopped) or end at once. */
const chunks = (count: number, hold: boolean): Array<Chunk> =>
  Array.from({ length: count }, (_, id) => ({ id, payload: { hold } }))

const holds = (chunk: Chunk): boolean => (chunk.payload as { readonly hold: boolean }).hold

/** Polls `condition` every 10 ms until it holds; dies with `what` after `millis`. */
const eventually = (what: string, condition: () => boolean, millis = 5_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`not within ${millis} ms: ${what}`))
      yield* Effect.sleep(10)
    }
  })

/**
 * Runs `node -e script ...args` to its end, giving each line of its stdout to `onLine`; a non-zero exit
 * code fails. Interrupting it sends SIGTERM to the process's group and waits for the process to exit.
 */
const runNode = (
  script: string,
  args: ReadonlyArray<string>,
  onLine: (line: string) => Effect.Effect<void> = () => Effect.void
) =>
  Effect.scoped(Effect.gen(function*() {
    const child = yield* Command.start(Command.make(node, "-e", script, ...args))
    const [, exitCode] = yield* Effect.all([
      child.stdout.pipe(Stream.decodeText(), Stream.splitLines, Stream.runForEach(onLine)),
      child.exitCode
    ], { concurrency: "unbounded" })
    if (exitCode !== 0) return yield* Effect.fail(new Error(`node -e exited with code ${exitCode}`))
  }))

type ProcessFinalizer = (context: FinalizeContext) => Effect.Effect<unknown, unknown, CommandExecutor.CommandExecutor>

/**
 * A manager on the memory store whose chunks run through `worker`, and whose finalizers may start processes
 * (they get the `CommandExecutor` of the context).
 */
const processManager = (
  worker: Layer.Layer<ChunkWorker.ChunkWorker, unknown, CommandExecutor.CommandExecutor>,
  finalizers: Record<string, ProcessFinalizer> = {}
) =>
  Layer.unwrapEffect(Effect.map(CommandExecutor.CommandExecutor, (executor) =>
    JobManager.layer({
      concurrency: 3,
      retry: { attempts: 1 },
      finalizers: Object.fromEntries(
        Object.entries(finalizers).map(([name, finalizer]) => [
          name,
          (context: FinalizeContext) => Effect.provideService(finalizer(context), CommandExecutor.CommandExecutor, executor)
        ])
      )
    }))).pipe(
      Layer.provide(JobRepository.layerMemory),
      Layer.provide(worker),
      Layer.provide(NodeContext.layer)
    )

describe("cancelling a job whose chunks run in child processes", () => {
  /** A chunk that holds starts a grandchild, prints both pids and runs until killed. */
  const holdScript = "const child = require('node:child_process').spawn(process.execPath, " +
    "['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }); " +
    "console.log('pids', process.pid, child.pid); setInterval(() => {}, 1000)"

  it.live("kills every process of the chunks in flight (and their children), and starts none afterwards", () => {
    /** The job id of every process started, in order. */
    const spawned: Array<string> = []
    const chunkPids: Array<number> = []
    const grandchildPids: Array<number> = []
    const worker = ProcessWorker.layer({
      command: (chunk, { jobId }) => {
        spawned.push(jobId)
        return { command: node, args: ["-e", holds(chunk) ? holdScript : ""] }
      },
      onOutput: ({ line, stream }) =>
        Effect.sync(() => {
          const match = stream === "stdout" ? /^pids (\d+) (\d+)$/.exec(line) : null
          if (match === null) return
          chunkPids.push(Number(match[1]))
          grandchildPids.push(Number(match[2]))
        }),
      killGracePeriod
    })
    return Effect.gen(function*() {
      const manager = yield* JobManager.JobManager
      const id = yield* manager.submitJob({ name: "held", chunks: chunks(9, true) })
      yield* eventually("three chunks running", () => chunkPids.length === 3)
      assert.isFalse([...chunkPids, ...grandchildPids].some(isGone))

      const status = yield* manager.cancelJob(id)
      assert.strictEqual(status.state, "cancelled")
      assert.strictEqual(status.completedChunks, 0)
      // A chunk's process, and every process of its group (its children), is gone when its attempt's
      // interruption completes, so before cancelJob returns.
      assert.deepStrictEqual([...chunkPids, ...grandchildPids].filter((pid) => !isGone(pid)), [])

      // Another job of the same manager runs to its end; meanwhile no chunk of the cancelled one starts.
      const next = yield* manager.runJob({ name: "next", chunks: chunks(3, false) })
      assert.strictEqual(next.state, "completed")
      assert.strictEqual(spawned.filter((jobId) => jobId === id).length, 3)
      assert.strictEqual((yield* manager.getJob(id)).state, "cancelled")
    }).pipe(Effect.provide(processManager(worker)))
  })
})

describe("cancelling a job whose chunks run on two worker servers", () => {
  const token = "e2e-token"

  interface Server {
    readonly url: string
    /** `jobId:chunkId` of every chunk its local worker started, and of those whose signal fired. */
    readonly started: Array<string>
    readonly aborted: Array<string>
  }

  /** A worker server on a free loopback port whose local worker holds a chunk until its signal fires. */
  const startServer = Effect.gen(function*() {
    const started: Array<string> = []
    const aborted: Array<string> = []
    const worker = ChunkWorker.layerPromise((chunk, { jobId, signal }) => {
      const key = `${jobId}:${chunk.id}`
      started.push(key)
      if (!holds(chunk)) return Promise.resolve(key)
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => {
          aborted.push(key)
          reject(signal.reason)
        }, { once: true })
      )
    })
    const context = yield* Layer.build(WorkerServer.layerNode({ port: 0, token }).pipe(Layer.provide(worker)))
    const address = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
    return { url: `http://127.0.0.1:${address.port}`, started, aborted } satisfies Server
  })

  /** What the manager's HTTP client sent: the server and execution id of every chunk attempt. */
  interface Post {
    readonly url: string
    readonly executionId: string
    readonly key: string
  }

  /** The real Node client, with every execution request noted on its way out. */
  const recordingClient = (posts: Array<Post>) =>
    Layer.effect(
      HttpClient.HttpClient,
      Effect.map(HttpClient.HttpClient, HttpClient.tapRequest((request) =>
        Effect.sync(() => {
          if (request.method !== "POST" || request.body._tag !== "Uint8Array") return
          const body = JSON.parse(new TextDecoder().decode(request.body.body))
          posts.push({
            url: new URL(request.url).origin,
            executionId: body.executionId,
            key: `${body.jobId}:${body.chunk.id}`
          })
        })))
    ).pipe(Layer.provide(NodeHttpClient.layer))

  const executionState = (url: string, executionId: string) =>
    HttpClientRequest.get(`${url}/executions/${executionId}`).pipe(
      HttpClientRequest.bearerToken(token),
      HttpClient.execute,
      Effect.flatMap((response) => response.json),
      Effect.map((body) => (body as { readonly state: string }).state)
    )

  it.scopedLive("aborts the requests in flight: both servers stop and report them cancelled; no chunk starts afterwards", () =>
    Effect.gen(function*() {
      const east = yield* startServer
      const west = yield* startServer
      const posts: Array<Post> = []
      const manager = JobManager.layer({ concurrency: 4, retry: { attempts: 1 } }).pipe(
        Layer.provide(JobRepository.layerMemory),
        Layer.provide(HttpWorker.layerPool([{ url: east.url, concurrency: 2 }, { url: west.url, concurrency: 2 }], { token })),
        Layer.provide(recordingClient(posts))
      )
      yield* Effect.gen(function*() {
        const jobs = yield* JobManager.JobManager
        const id = yield* jobs.submitJob({ name: "held", chunks: chunks(8, true) })
        yield* eventually("two chunks running on each server", () => east.started.length === 2 && west.started.length === 2)

        const status = yield* jobs.cancelJob(id)
        assert.strictEqual(status.state, "cancelled")
        // The pool waits for each server to confirm the cancel, so the remote work has stopped by now.
        for (const server of [east, west]) {
          assert.deepStrictEqual([...server.aborted].sort(), [...server.started].sort())
        }
        const ofJob = posts.filter((post) => post.key.startsWith(`${id}:`))
        assert.strictEqual(ofJob.length, 4)
        for (const post of ofJob) assert.strictEqual(yield* executionState(post.url, post.executionId), "cancelled")

        // Another job runs on both servers to its end; meanwhile no chunk of the cancelled one starts.
        const next = yield* jobs.runJob({ name: "next", chunks: chunks(4, false) })
        assert.strictEqual(next.state, "completed")
        for (const server of [east, west]) {
          assert.strictEqual(server.started.filter((key) => key.startsWith(`${id}:`)).length, 2)
        }
        assert.strictEqual(posts.filter((post) => post.key.startsWith(`${id}:`)).length, 4)
      }).pipe(Effect.provide(manager))
    }).pipe(Effect.provide(NodeHttpClient.layer)))
})

describe("a finalize step that runs a child process", () => {
  /** A chunk writes `frames <id>` to `part-<id>.txt` in the directory given as its first argument. */
  const partScript = "require('node:fs').writeFileSync(process.argv[1], process.argv[2])"
  /** Writes the files given after the output file into it, in order. */
  const concatScript = "const fs = require('node:fs'); const [out, ...parts] = process.argv.slice(1); " +
    "fs.writeFileSync(out, parts.map((part) => fs.readFileSync(part, 'utf8')).join(''))"

  const partWriter = (dir: string) =>
    ProcessWorker.layer({
      command: (chunk) => ({ command: node, args: ["-e", partScript, join(dir, `part-${chunk.id}.txt`), `frames ${chunk.id}\n`] })
    })

  const withTempDir = Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "effect-jobs-e2e-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

  it.scopedLive("concatenates the chunks' outputs, and the job completes", () =>
    Effect.gen(function*() {
      const dir = yield* withTempDir
      const concat: ProcessFinalizer = (context) =>
        runNode(concatScript, [
          join(dir, "out.txt"),
          ...Array.from({ length: totalChunks(context.spec) ?? 0 }, (_, id) => join(dir, `part-${id}.txt`))
        ])
      const status = yield* Effect.flatMap(JobManager.JobManager, (jobs) =>
        jobs.runJob({ name: "stitched", chunks: chunks(5, false), finalize: { name: "concat" } })).pipe(
          Effect.provide(processManager(partWriter(dir), { concat }))
        )
      assert.strictEqual(status.state, "completed")
      assert.isUndefined(status.phase)
      assert.strictEqual(readFileSync(join(dir, "out.txt"), "utf8"), "frames 0\nframes 1\nframes 2\nframes 3\nframes 4\n")
    }))

  it.scopedLive("cancelling the job while it finalizes kills the finalize step's process", () =>
    Effect.gen(function*() {
      const dir = yield* withTempDir
      const pid = yield* Deferred.make<number>()
      const hold: ProcessFinalizer = () =>
        runNode("console.log(process.pid); setInterval(() => {}, 1000)", [], (line) => Deferred.succeed(pid, Number(line)))
      yield* Effect.gen(function*() {
        const jobs = yield* JobManager.JobManager
        const id = yield* jobs.submitJob({ name: "stitched", chunks: chunks(2, false), finalize: { name: "hold" } })
        const finalizerPid = yield* Deferred.await(pid).pipe(Effect.timeout("5 seconds"))
        assert.isFalse(isGone(finalizerPid))
        assert.strictEqual((yield* jobs.getJob(id)).phase, "finalizing")

        const status = yield* jobs.cancelJob(id)
        assert.strictEqual(status.state, "cancelled")
        assert.isTrue(isGone(finalizerPid), "the finalize step's process is gone when cancelJob returns")
      }).pipe(Effect.provide(processManager(partWriter(dir), { hold })))
    }))
})
