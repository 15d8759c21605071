/**
 * Remote workers: a job whose chunks run on two worker servers.
 *
 * The script starts two `WorkerServer`s on 127.0.0.1 (free ports, one bearer token); in production they
 * would be other machines or cloud functions. Each runs chunks through its own local worker, a simulated
 * render node that prints the chunks it renders. A `JobManager` sends the job's chunks to both through
 * `HttpWorker.pool`, at most two at a time per server, and prints the job's final status.
 *
 * Ctrl+C cancels the job: the requests in flight are aborted, each server stops the chunks it was running,
 * and the process exits with code 130.
 *
 *     npx tsx examples/remote-workers.ts [--fast]
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpClient, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Context, Data, Effect, Exit, Layer, Random } from "effect"
import { ChunkWorker, HttpWorker, type Job, JobManager, JobRepository, WorkerServer } from "effect-jobs"

const latency = process.argv.includes("--fast") ? { min: 1, max: 5 } : { min: 100, max: 300 }

/** Shared by the manager and the servers: a request without it is refused (401). */
const token = crypto.randomUUID()

class RenderFailed extends Data.TaggedError("RenderFailed")<{ readonly message: string }> {}

/** How many chunks each server ran. */
const chunksRun = new Map<string, number>()

/** A simulated render node: takes 100-300 ms per chunk (1-5 ms with --fast) and prints what it rendered. */
const renderNode = (server: string) =>
  ChunkWorker.layer((chunk) =>
    Effect.gen(function*() {
      const { end, start } = chunk.payload as { readonly start: number; readonly end: number }
      const millis = yield* Random.nextIntBetween(latency.min, latency.max + 1)
      yield* Effect.sleep(millis)
      chunksRun.set(server, (chunksRun.get(server) ?? 0) + 1)
      yield* Console.log(`${server}  chunk ${String(chunk.id).padStart(2)}  frames ${start}-${end}  ${millis} ms`)
      return { server, frames: end - start + 1 }
    })
  )

/** Starts a worker server on a free loopback port; it runs until the current scope closes. Returns its URL. */
const startServer = (name: string) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(WorkerServer.layerNode({ port: 0, token }).pipe(Layer.provide(renderNode(name))))
    const { port } = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
    const url = `http://127.0.0.1:${port}`
    yield* Console.log(`${name}  listening on ${url}`)
    return url
  })

const describe = (status: Job.JobStatus): string =>
  `${status.name} ${status.state}: ${status.completedChunks}/${status.totalChunks} chunks, ${status.failedChunks} failed`

/** Runs the job to its end; if this is interrupted (Ctrl+C), the job is cancelled and its status printed. */
const render = Effect.gen(function*() {
  const jobs = yield* JobManager.JobManager
  const id = yield* jobs.submitJob({ name: "trailer", chunks: { start: 0, end: 239, size: 24 } })
  return yield* jobs.awaitJob(id).pipe(
    Effect.onInterrupt(() => jobs.cancelJob(id).pipe(Effect.flatMap((status) => Console.log(describe(status))), Effect.orDie))
  )
})

const program = Effect.gen(function*() {
  const east = yield* startServer("east")
  const west = yield* startServer("west")
  const Jobs = JobManager.layer({ concurrency: 4, retry: { attempts: 3 } }).pipe(
    Layer.provide(JobRepository.layerMemory),
    Layer.provide(HttpWorker.layerPool([{ url: east, concurrency: 2 }, { url: west, concurrency: 2 }], { token })),
    Layer.provide(NodeHttpClient.layer)
  )
  const status = yield* Effect.provide(render, Jobs)
  yield* Console.log(`\n${describe(status)}`)
  yield* Console.log([...chunksRun].map(([server, count]) => `${server} ran ${count} chunks`).join(", "))
  if (status.state !== "completed") return yield* new RenderFailed({ message: status.error ?? status.state })
})

NodeRuntime.runMain(Effect.scoped(program), {
  // Interrupted (Ctrl+C): 130, as a shell reports a program stopped by SIGINT.
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
})
