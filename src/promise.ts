/**
 * The Promise facade: the same engine as the Effect `JobManager`, behind plain Promises, with
 * cancellation through web-standard `AbortSignal`.
 *
 * Every rejection is a real `Error` with a stable `name` and `_tag` (`JobNotFound`, `InvalidJobSpec`,
 * `InvalidOption`, `ChunkFailed`, `JobFailed`, `RepositoryError`, `ManagerClosed`), or the signal's abort
 * reason (a `DOMException` named `AbortError` unless you aborted with an `Error` of your own).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { abortError, causeToError, runPromise, whenAborted } from "./Abort.js"
import type { ChunkContext } from "./ChunkWorker.js"
import * as ChunkWorker from "./ChunkWorker.js"
import type {
  Chunk,
  ChunkPage,
  JobId,
  JobPage,
  JobSpecInput,
  JobStatus,
  Json,
  ListChunksQueryInput,
  ListQueryInput
} from "./Job.js"
import { isStreamSource, makeJobId, SpecLimits, validateSpec } from "./Job.js"
import { firstIssue, InvalidOption, ManagerClosed } from "./JobError.js"
import type { PromiseFinalizeContext } from "./Finalizer.js"
export type { PromiseFinalizeContext } from "./Finalizer.js"
import * as Finalizer from "./Finalizer.js"
import type {
  ChunkSettled,
  ExecutionOptions,
  ExecutionSummary,
  StreamChunkSettled,
  StreamSummary
} from "./JobExecutor.js"
import * as JobExecutor from "./JobExecutor.js"
import type * as JobClient from "./JobClient.js"
import { JobManager } from "./JobManager.js"
import * as JobManagerModule from "./JobManager.js"
import { isChunkIterable, ownChunks } from "./internal/iterables.js"
import { importCluster } from "./internal/optionalPeer.js"
import { FunctionInput } from "./internal/schemas.js"
import { StoreOption, storeLayer } from "./internal/store.js"

/**
 * A Promise worker: runs one chunk, and stops when `signal` fires.
 *
 * @since 0.1.0
 */
export type PromiseWorker = (chunk: Chunk, context: ChunkContext) => Promise<unknown>

/**
 * A Promise finalize step: runs once after a job's chunks, and stops when `context.signal` fires.
 *
 * @since 0.1.0
 */
export type PromiseFinalizer = (context: PromiseFinalizeContext) => Promise<unknown>

/**
 * How a job's chunks run: the worker, and the executor's options (see `JobExecutor.ExecutionOptions`).
 *
 * @since 0.1.0
 */
export interface WorkerOptions {
  readonly worker: PromiseWorker
  /** Chunks in flight per job (default 4). */
  readonly concurrency?: number | undefined
  readonly retry?: JobExecutor.RetryPolicy | undefined
  /** Time limit of one chunk attempt, in milliseconds or as a string such as `"30 seconds"`. */
  readonly chunkTimeout?: number | string | undefined
  readonly failurePolicy?: JobExecutor.FailurePolicy | undefined
  /**
   * The largest result a worker may return, in bytes of JSON (default 65,536); a larger one fails the attempt
   * with `InvalidResult`.
   */
  readonly maxResultBytes?: number | undefined
}

/**
 * Limits on the specs a manager or `executeJob` accepts (see `Job.SpecLimits`).
 *
 * @since 0.1.0
 */
export interface SpecLimitOptions {
  /** The largest spec, in bytes of its JSON encoding (default 16 MiB). */
  readonly maxSpecBytes?: number | undefined
  /** The most chunks an explicit chunk array may have (default 1,000,000); use a range plan for more. */
  readonly maxExplicitChunks?: number | undefined
}

/**
 * Options of {@link createJobManager}.
 *
 * @since 0.1.0
 */
export interface JobManagerOptions extends WorkerOptions, SpecLimitOptions {
  /** Jobs running at once (default: no limit); the rest wait as `pending`, in submission order. */
  readonly maxConcurrentJobs?: number | undefined
  /**
   * Where job statuses are kept: `"memory"` (the default), `{ sqlite: "jobs.db" }` (a file, created on
   * first use), or a PostgreSQL URL (`"postgres://…"` or `{ postgres: "postgres://…" }`). With a durable
   * store, jobs left by a stopped process are resumed, and other processes (the CLI) can cancel them.
   */
  readonly store?: "memory" | { readonly sqlite: string } | { readonly postgres: string } | string | undefined
  /**
   * Cluster mode (instead of `store`): this manager joins the cluster in a PostgreSQL database as a runner.
   * It runs chunks of any job of the cluster with `worker` (at most `capacity` at once, default 4), and the
   * chunks of the jobs it owns go to the runners with free capacity (`concurrency` per job across the
   * cluster). See `effect-jobs/Cluster` for the guarantees; `@effect/cluster` is loaded only then.
   */
  readonly cluster?: {
    /** The PostgreSQL URL of the cluster (the job store and the cluster's tables). */
    readonly postgres: string
    /** Chunks this runner runs at once (default 4). */
    readonly capacity?: number | undefined
    /** The host other runners reach this one at (default `127.0.0.1`). */
    readonly host?: string | undefined
    /** The port to listen on (default: a free one). */
    readonly port?: number | undefined
    /** Shards of the cluster (default 300), the same on every runner. */
    readonly shardsPerGroup?: number | undefined
  } | undefined
  /**
   * Stream sources a job may name with `chunks: { source: name, payload }`: each makes the job's chunks from
   * `payload`, as an async iterable (an async generator, a paginated listing) or a generator, pulled lazily.
   * A resumed job (after a restart, a pause, a takeover) calls its source again, so it must give the same
   * chunks each time; the chunks pulled before and not completed run again first, and those already pulled
   * are skipped. An iterable given directly as `chunks` cannot be made again, so a manager refuses it.
   */
  readonly sources?:
    | Readonly<Record<string, (payload: Json | undefined) => AsyncIterable<Chunk> | Iterable<Chunk>>>
    | undefined
  /** Finalize steps a job may name in its spec's `finalize` (see `Finalizer`). */
  readonly finalizers?: Readonly<Record<string, (context: PromiseFinalizeContext) => Promise<unknown>>> | undefined
  /** The longest a watcher of a job running in another process waits before it re-reads it (ms, default 500). */
  readonly pollInterval?: number | undefined
  /** The shortest time between two statuses a watcher receives (ms, default 50; 0 for every change). */
  readonly watchInterval?: number | undefined
  /** How often this manager heartbeats and looks for jobs to take over (ms, default 1,000). */
  readonly heartbeatInterval?: number | undefined
  /**
   * A manager silent this long is gone: its jobs are taken over (ms, default 5,000). This manager itself
   * starts no chunk while its own last heartbeat is older than this.
   */
  readonly staleAfter?: number | undefined
  /** Durable stores: how long running jobs may finish their chunks in flight on `close()` (ms, default 5,000). */
  readonly shutdownGracePeriod?: number | undefined
  /**
   * How long finished jobs are kept, by state, e.g. `{ completed: "7 days", failed: "30 days", cancelled:
   * "7 days" }` (a state left out is kept forever); older ones are deleted when the manager starts and then
   * every `sweepInterval` (default `"1 minute"`).
   */
  readonly retention?: {
    readonly completed?: number | string | undefined
    readonly failed?: number | string | undefined
    readonly cancelled?: number | string | undefined
    readonly sweepInterval?: number | string | undefined
  } | undefined
}

/**
 * Which finished jobs `pruneJobs` deletes: those in one of `states` (default: all three) that finished more
 * than `olderThan` ago (milliseconds, or a string such as `"7 days"`) or before it (a `Date`).
 *
 * @since 0.1.0
 */
export interface PruneJobsOptions {
  readonly olderThan: number | string | Date
  readonly states?: ReadonlyArray<"completed" | "failed" | "cancelled"> | undefined
}

/**
 * A listing query: by state (one or several), `limit` per page (default 50, at most 1000), `cursor` from the
 * previous page (the same as the Effect API's `ListQueryInput`).
 *
 * @since 0.1.0
 */
export type ListJobsQuery = ListQueryInput

/**
 * A job manager for Promise code. Method names, arguments and results match the Effect `JobManager`, except:
 * `getJob` resolves with `undefined` for an unknown job (Effect: fails with `JobNotFound`), `waitForJob` is
 * the Effect `awaitJob`, `watchJob` is an `AsyncIterable` (Effect: a `Stream`), `runJob` and `waitForJob`
 * take an `AbortSignal`, and `close()` stands for closing the layer's scope.
 *
 * @since 0.1.0
 */
export interface PromiseJobManager extends AsyncDisposable {
  /** Validates and stores the job as `pending`, starts it in the background, and resolves with its id. */
  submitJob(spec: JobSpecInput): Promise<JobId>
  /**
   * Submits several jobs at once (one transaction on a SQL store) and resolves with their ids, in order.
   * All or nothing: an invalid spec rejects with `InvalidJobSpec` whose path starts with its index, and no
   * job is stored.
   */
  submitBatch(specs: ReadonlyArray<JobSpecInput>): Promise<Array<JobId>>
  /**
   * Submits the job and resolves with its terminal status (`completed`, `failed` or `cancelled`). If
   * `signal` aborts, the job is cancelled and the Promise rejects with the abort reason once `cancelled`
   * is stored; an already-aborted signal submits nothing.
   */
  runJob(spec: JobSpecInput, options?: { readonly signal?: AbortSignal | undefined }): Promise<JobStatus>
  /** The job's status, or `undefined` when there is no such job. */
  getJob(id: string): Promise<JobStatus | undefined>
  /**
   * One page of jobs, newest first: `{ jobs, nextCursor }`, `nextCursor` absent on the last page (pass it as
   * `cursor` for the next one). A bad query rejects with `InvalidOption` naming the field.
   */
  listJobs(query?: ListJobsQuery): Promise<JobPage>
  /**
   * One page of the job's chunks in chunk-id order, `{ chunks, nextCursor? }` (see the Effect
   * `JobManager.listChunks`); rejects with `JobNotFound` for an unknown job.
   */
  listChunks(id: string, query?: ListChunksQueryInput): Promise<ChunkPage>
  /** Cancels the job (see the cancellation contract) and resolves with its status. */
  cancelJob(id: string): Promise<JobStatus>
  /** Pauses a running or pending job (stored `paused`; in-flight chunks are aborted, completed ones kept). */
  pauseJob(id: string): Promise<JobStatus>
  /** Queues a paused job again; it runs only the chunks not yet completed. */
  resumeJob(id: string): Promise<JobStatus>
  /** Re-drives a failed job as a new job that runs only the chunks that failed or never ran. */
  retryJob(id: string): Promise<JobStatus>
  /**
   * Deletes a `completed`, `failed` or `cancelled` job and resolves with its last status; rejects with
   * `InvalidJobState` (nothing deleted) for a job that has not ended, `JobNotFound` for an unknown one.
   */
  deleteJob(id: string): Promise<JobStatus>
  /** Deletes the finished jobs `options` names and resolves with how many; jobs not ended are never deleted. */
  pruneJobs(options: PruneJobsOptions): Promise<number>
  /** Resolves with the job's terminal status. Aborting `signal` stops waiting; it does not cancel the job. */
  waitForJob(id: string, options?: { readonly signal?: AbortSignal | undefined }): Promise<JobStatus>
  /**
   * The job's status now, then each change, ending after its terminal status. Aborting `signal` makes
   * the iteration throw the abort reason; breaking out of the loop stops watching.
   */
  watchJob(id: string, options?: { readonly signal?: AbortSignal | undefined }): AsyncIterable<JobStatus>
  /**
   * Stops the running jobs and releases everything: with the memory store they are stored `cancelled`;
   * with a durable store they finish their chunks in flight (within `shutdownGracePeriod`) and are left
   * `pending`, to be resumed by the next manager on the store. Calling it again is a no-op.
   */
  close(): Promise<void>
}

const functionOption = (name: string) => FunctionInput<(...args: Array<any>) => any>(`${name} to be a function`)

const FacadeOptions = Schema.Struct({
  ...JobManagerModule.ManagerOptions.fields,
  worker: functionOption("worker"),
  finalizers: Schema.optional(Schema.Record({ key: Schema.String, value: functionOption("a finalizer") })),
  store: Schema.optional(StoreOption),
  cluster: Schema.optional(Schema.Struct({
    postgres: Schema.String.pipe(Schema.minLength(1)),
    capacity: Schema.optional(Schema.Int.pipe(Schema.between(1, 10_000))),
    host: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
    port: Schema.optional(Schema.Int.pipe(Schema.between(1, 65_535))),
    shardsPerGroup: Schema.optional(Schema.Int.pipe(Schema.between(1, 100_000)))
  }))
})

const ExecuteJobOptions = Schema.Struct({
  ...JobExecutor.ExecutionOptions.fields,
  ...SpecLimits.fields,
  worker: functionOption("worker"),
  onProgress: Schema.optional(functionOption("onProgress")),
  signal: Schema.optional(Schema.instanceOf(AbortSignal))
})

const validate = <A, I>(schema: Schema.Schema<A, I>, input: unknown): Effect.Effect<A, InvalidOption> =>
  Effect.mapError(
    Schema.decodeUnknown(schema, { onExcessProperty: "error" })(input),
    (error) => new InvalidOption(firstIssue(error))
  )

const undefinedIfNotFound = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(effect, (error) => error._tag === "JobNotFound", () => Effect.succeed(undefined))

/**
 * Creates a job manager. Rejects with `InvalidOption` naming the option when an option is bad.
 *
 * One `ManagedRuntime` per manager holds its services; `close()` (or `await using`) disposes of it.
 *
 * @since 0.1.0
 */
export const createJobManager = async (options: JobManagerOptions): Promise<PromiseJobManager> => {
  const { cluster, finalizers, store, worker, ...managerOptions } = await runPromise(validate(FacadeOptions, options))
  if (cluster !== undefined && store !== undefined) {
    throw new InvalidOption({ path: ["cluster"], detail: "a cluster keeps its jobs in its own database: give cluster or store, not both" })
  }
  const settings = {
    ...managerOptions,
    ...(finalizers === undefined ? {} : {
      finalizers: Object.fromEntries(
        Object.entries(finalizers).map(([name, run]) => [name, Finalizer.fromPromise(run as PromiseFinalizer)])
      )
    })
  }
  const managerLayer: Layer.Layer<JobManager, unknown, ChunkWorker.ChunkWorker> = cluster === undefined
    ? JobManagerModule.layer(settings).pipe(Layer.provide(storeLayer(store)))
    : (await runPromise(importCluster(() => import("./Cluster.js")))).layer({ ...cluster, manager: settings })
  const layer = managerLayer.pipe(Layer.provide(ChunkWorker.layerPromise(worker as PromiseWorker)))
  const runtime = ManagedRuntime.make(layer)
  const rt = await runPromise(runtime.runtimeEffect).catch(async (error: unknown) => {
    await runtime.dispose()
    throw error
  })
  let closed = false

  const manager = Context.get(rt.context, JobManager)
  const runFork = Runtime.runFork(rt)

  /**
   * Runs a manager operation. Without a signal it runs on a fiber of the manager's runtime, started at once:
   * an operation that completes without waiting (a submit to the memory store, a read of a job of this
   * manager) resolves without another turn through a Promise of Effect's; one that waits settles the Promise
   * from the fiber's end.
   */
  const run = <A, E>(
    body: (manager: JobManager["Type"]) => Effect.Effect<A, E>,
    signal?: AbortSignal | undefined
  ): Promise<A> => {
    if (closed) return Promise.reject(new ManagerClosed())
    if (signal !== undefined) return runPromise(body(manager), { runtime, signal })
    const fiber = runFork(body(manager))
    const settled = fiber.unsafePoll()
    if (settled !== null) {
      return settled._tag === "Success" ? Promise.resolve(settled.value) : Promise.reject(causeToError(settled.cause))
    }
    return new Promise<A>((resolve, reject) =>
      fiber.addObserver((exit) => exit._tag === "Success" ? resolve(exit.value) : reject(causeToError(exit.cause)))
    )
  }

  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await runtime.dispose()
  }

  return {
    submitJob: (spec) => run((manager) => manager.submitJob(spec)),
    submitBatch: (specs) => run((manager) => Effect.map(manager.submitBatch(specs), (ids) => [...ids])),
    runJob: (spec, options) => run((manager) => manager.runJob(spec), options?.signal),
    getJob: (id) => run((manager) => undefinedIfNotFound(manager.getJob(id))),
    listJobs: (query) => run((manager) => manager.listJobs(query)),
    listChunks: (id, query) => run((manager) => manager.listChunks(id, query)),
    cancelJob: (id) => run((manager) => manager.cancelJob(id)),
    pauseJob: (id) => run((manager) => manager.pauseJob(id)),
    resumeJob: (id) => run((manager) => manager.resumeJob(id)),
    retryJob: (id) => run((manager) => manager.retryJob(id)),
    deleteJob: (id) => run((manager) => manager.deleteJob(id)),
    // `olderThan` strings are checked at run time (the Effect type takes only `"<n> <unit>"` literals).
    pruneJobs: (options) => run((manager) => manager.pruneJobs(options as JobClient.PruneOptionsInput)),
    waitForJob: (id, options) => run((manager) => manager.awaitJob(id), options?.signal),
    watchJob: (id, options) => {
      if (closed) throw new ManagerClosed()
      const signal = options?.signal
      // Failures reach the loop as the Errors `causeToError` makes (interruption: an AbortError).
      const statuses = manager.watchJob(id).pipe(
        Stream.catchAllCause((cause) => Stream.fail(causeToError(cause)))
      )
      return Stream.toAsyncIterableRuntime(
        signal === undefined ? statuses : Stream.interruptWhen(statuses, whenAborted(signal)),
        rt
      )
    },
    close,
    [Symbol.asyncDispose]: close
  }
}

/**
 * Options of {@link executeJob}.
 *
 * @since 0.1.0
 */
export interface ExecuteJobOptions extends WorkerOptions, SpecLimitOptions {
  /** Aborting it interrupts the chunks in flight (their signals fire) and starts no pending chunk. */
  readonly signal?: AbortSignal | undefined
  /**
   * Called for each settled chunk, in the order they settled, with the counts after it: in batches, at most
   * ~10 ms after the chunk settled, and all of them before the returned Promise settles.
   */
  readonly onProgress?: ((event: ChunkSettled) => void) | undefined
}

/**
 * A job whose chunks come from an `AsyncIterable` (an async generator, a paginated listing) or a
 * non-array `Iterable` (a generator), pulled lazily as workers free up. Chunk ids must be unique.
 *
 * @since 0.1.0
 */
export interface StreamJobSpec {
  readonly name?: string | undefined
  readonly metadata?: { readonly [key: string]: Json } | undefined
  readonly chunks: AsyncIterable<Chunk> | Iterable<Chunk>
}

/**
 * Options of {@link executeJob} for a {@link StreamJobSpec}.
 *
 * @since 0.1.0
 */
export interface ExecuteStreamJobOptions extends Omit<ExecuteJobOptions, "onProgress"> {
  /** Chunks pulled ahead of the workers (0..10,000; default: the concurrency). */
  readonly prefetch?: number | undefined
  /**
   * Called as for a spec (see `ExecuteJobOptions.onProgress`); `totalChunks` is `undefined` until the source
   * has ended (a chunk that settled before and is reported after it gets the total).
   */
  readonly onProgress?: ((event: StreamChunkSettled) => void) | undefined
}

const ExecuteStreamJobOptions = Schema.Struct({
  ...ExecuteJobOptions.fields,
  ...JobExecutor.StreamExecutionOptions.fields
})

/**
 * Runs one job's chunks without a manager or a store, and resolves with the counts. Rejects with
 * `InvalidJobSpec` / `InvalidOption` (nothing runs), `ChunkFailed` / `JobFailed` (per the failure policy),
 * or the abort reason when `signal` aborts (no pending chunk starts; an already-aborted signal starts
 * nothing).
 *
 * With a {@link StreamJobSpec} the chunks are pulled lazily: at most `concurrency + prefetch` pulled and not
 * settled, so an endless source runs until `signal` aborts. Aborting stops the pulling at once (a pending
 * `next()` is abandoned, and the iterator's `return()` is called without waiting for it). A chunk that is
 * not `{ id, payload }` or repeats an id rejects with `InvalidJobSpec` naming it (`["chunks", index, "id"]`);
 * an error the source throws rejects with that error. The summary's `totalChunks` is the source's number of
 * chunks.
 *
 * @since 0.1.0
 */
export function executeJob(spec: JobSpecInput, options: ExecuteJobOptions): Promise<ExecutionSummary>
export function executeJob(spec: StreamJobSpec, options: ExecuteStreamJobOptions): Promise<StreamSummary>
export function executeJob(
  spec: JobSpecInput | StreamJobSpec,
  options: ExecuteJobOptions | ExecuteStreamJobOptions
): Promise<ExecutionSummary | StreamSummary> {
  const signal = options?.signal
  if (signal?.aborted) return Promise.reject(abortError(signal))
  /** The options for the executor: a job id, the worker, and `onProgress` as `onChunkSettled`. */
  const executing = <Event>(worker: unknown, onProgress: unknown) => {
    const report = onProgress as ((event: Event) => void) | undefined
    return {
      jobId: makeJobId(Date.now()),
      onChunkSettled: report === undefined ? undefined : (event: Event) => Effect.sync(() => report(event)),
      worker: ChunkWorker.fromPromise(worker as PromiseWorker)
    }
  }
  const explicit = Effect.gen(function*() {
    const { maxExplicitChunks, maxSpecBytes, onProgress, signal: _signal, worker, ...execution } = yield* validate(
      ExecuteJobOptions,
      options
    )
    const decoded = yield* validateSpec(spec, { maxExplicitChunks, maxSpecBytes })
    if (isStreamSource(decoded.chunks)) return yield* JobExecutor.namedSourceRefused
    const executionOptions: ExecutionOptions = execution
    const { worker: chunkWorker, ...run } = executing<ChunkSettled>(worker, onProgress)
    return yield* JobExecutor.executeValidated(decoded, { ...executionOptions, ...run }).pipe(
      Effect.provideService(ChunkWorker.ChunkWorker, chunkWorker)
    )
  })
  const streamed = (chunks: AsyncIterable<Chunk> | Iterable<Chunk>) =>
    Effect.gen(function*() {
      const { maxExplicitChunks, maxSpecBytes, onProgress, signal: _signal, worker, ...execution } = yield* validate(
        ExecuteStreamJobOptions,
        options
      )
      // The rest of the spec (name, metadata) is checked as a spec's; the chunks as they are pulled.
      yield* validateSpec({ ...spec, chunks: [] }, { maxExplicitChunks, maxSpecBytes })
      const { worker: chunkWorker, ...run } = executing<StreamChunkSettled>(worker, onProgress)
      return yield* JobExecutor.executeIterable(chunks, { ...execution, ...run }).pipe(
        Effect.provideService(ChunkWorker.ChunkWorker, chunkWorker)
      )
    })
  // Read as `validateSpec` reads it: no getter or proxy trap runs before validation.
  const chunks = ownChunks(spec)
  const program = Effect.suspend(() =>
    isChunkIterable(chunks) ? streamed(chunks as AsyncIterable<Chunk> | Iterable<Chunk>) : explicit
  )
  return runPromise<ExecutionSummary | StreamSummary, unknown>(program, { signal })
}
