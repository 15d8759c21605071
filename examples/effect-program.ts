/**
 * The render farm as an Effect program: the services come from layers, the render node is an Effect
 * worker (`Effect.sleep` and `Random`), and progress is read from `watchJob` as a `Stream`.
 *
 * Ctrl+C interrupts the program; interrupting a `render` cancels its job (stored `cancelled`), and the
 * process exits with code 130.
 *
 *     npx tsx examples/effect-program.ts [--fast]
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Data, Effect, Exit, Layer, Random, Stream } from "effect"
import { ChunkWorker, type Job, JobManager, JobRepository } from "effect-jobs"

const fast = process.argv.includes("--fast")
const latency = fast ? { min: 1, max: 5 } : { min: 100, max: 400 }

class NodeDropped extends Data.TaggedError("NodeDropped")<{ readonly chunkId: number }> {}

class RenderFailed extends Data.TaggedError("RenderFailed")<{ readonly message: string }> {}

/** A simulated render node: 100-400 ms per chunk (1-5 ms with --fast), and one attempt in ten is dropped. */
const RenderNode = ChunkWorker.layer((chunk) =>
  Effect.gen(function*() {
    yield* Effect.sleep(yield* Random.nextIntBetween(latency.min, latency.max + 1))
    if ((yield* Random.next) < 0.1) return yield* new NodeDropped({ chunkId: chunk.id })
  })
)

const Jobs = JobManager.layer({ concurrency: 8, retry: { attempts: 5, initialDelay: "50 millis" } }).pipe(
  Layer.provide(JobRepository.layerMemory),
  Layer.provide(RenderNode)
)

const describe = (status: Job.JobStatus): string =>
  `${status.name?.padEnd(7)}  ${status.state.padEnd(9)}  ${`${status.progress}%`.padStart(4)}  ` +
  `${status.completedChunks}/${status.totalChunks} chunks`

/** Two statuses on the same line of output: same state, same 10 % step. */
const sameStep = (a: Job.JobStatus, b: Job.JobStatus): boolean =>
  a.state === b.state && Math.floor(a.progress / 10) === Math.floor(b.progress / 10)

/**
 * Submits the job, prints a line at each 10 % step, and returns its terminal status. If this effect is
 * interrupted, the job is cancelled and its `cancelled` status printed.
 */
const render = (spec: Job.JobSpecInput) =>
  Effect.gen(function*() {
    const jobs = yield* JobManager.JobManager
    return yield* Effect.acquireUseRelease(
      jobs.submitJob(spec),
      (id) =>
        jobs.watchJob(id).pipe(
          Stream.changesWith(sameStep),
          Stream.runForEach((status) => Console.log(describe(status))),
          Effect.zipRight(jobs.getJob(id))
        ),
      (id, exit) =>
        Exit.isInterrupted(exit)
          ? jobs.cancelJob(id).pipe(Effect.flatMap((status) => Console.log(describe(status))), Effect.orDie)
          : Effect.void
    )
  })

const program = Effect.gen(function*() {
  const statuses = yield* Effect.all([
    render({ name: "trailer", chunks: { start: 0, end: 599, size: 24 } }),
    render({ name: "teaser", chunks: { start: 0, end: 149, size: 24 } })
  ], { concurrency: "unbounded" })
  yield* Console.log("")
  for (const status of statuses) {
    const seconds = (status.finishedAt!.getTime() - status.startedAt!.getTime()) / 1000
    yield* Console.log(`${status.name} ${status.state} in ${seconds.toFixed(1)}s`)
  }
  const failed = statuses.filter((status) => status.state === "failed")
  if (failed.length > 0) {
    const message = failed.map((status) => `${status.name}: ${status.error}`).join("; ")
    return yield* new RenderFailed({ message })
  }
})

NodeRuntime.runMain(program.pipe(Effect.provide(Jobs)), {
  // Interrupted (Ctrl+C): 130, as a shell reports a program stopped by SIGINT.
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
})
