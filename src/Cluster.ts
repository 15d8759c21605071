/**
 * Cluster mode, on `@effect/cluster`: one job's chunks spread over runner processes on many machines.
 *
 * Every runner process joins the cluster over PostgreSQL (the job store's database, the cluster's own
 * tables) with a socket server for the other runners, and is two things at once:
 * - a **chunk runner**: it hosts the chunk entity, which runs the process's local `ChunkWorker`, at most
 *   `capacity` chunks at once (an attempt sent to a full runner is refused and sent elsewhere);
 * - a **job owner**: its `JobManager` runs jobs exactly as in a single process (retries, timeouts, failure
 *   policy, progress, checkpoints, finalize, fenced ownership in the PostgreSQL job store), except that each
 *   chunk attempt is sent to a runner with free capacity: this runner's own slots first (used directly,
 *   without a message) while less than half of them are busy, then the runner with the most free slots by
 *   the runners' replies (this one too, when it is as free as any).
 *
 * Chunk attempts are volatile messages (not persisted by the cluster): the job's checkpoint is what makes
 * the work durable. The attempts a dispatcher sends to one runner in one turn of the event loop share one
 * message, and the attempts that settle on a runner in one turn share one reply (each is still answered as
 * soon as it settles): chunks of equal size start and end together, and a message between runners costs
 * far more than a short chunk's bookkeeping. When a runner dies, the attempts it was running are sent again
 * to the runner that takes its shards over (only they may run twice); when a job's owner dies, another
 * runner's manager claims the job once its owner is stale and resumes it from its checkpoint (the chunks
 * in flight and those settled since the last checkpoint may run twice). A runner that hangs is treated
 * the same way once its shard locks (rows that expire) and its heartbeat are stale; when it resumes, its job
 * writes are refused by the job's lease. Interrupting an attempt (cancel, pause, fail-fast, chunk timeout)
 * interrupts it on its runner, whose `AbortSignal` fires there, and waits (up to 1 s) until the runner has
 * interrupted it: a cancelled job is stored `cancelled` after that.
 *
 * @since 0.1.0
 */
import * as Entity from "@effect/cluster/Entity"
import * as EntityId from "@effect/cluster/EntityId"
import type * as MessageStorage from "@effect/cluster/MessageStorage"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as Runners from "@effect/cluster/Runners"
import type * as RunnerStorage from "@effect/cluster/RunnerStorage"
import * as ShardId from "@effect/cluster/ShardId"
import { Sharding } from "@effect/cluster/Sharding"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SocketRunner from "@effect/cluster/SocketRunner"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Socket from "@effect/platform/Socket"
import type * as SocketServer from "@effect/platform/SocketServer"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { createServer } from "node:net"
import type { ChunkContext } from "./ChunkWorker.js"
import { ChunkWorker } from "./ChunkWorker.js"
import { withIdleTransactionTimeout } from "./internal/pgSession.js"
import { type Answer, makeAttemptTable, makeBatcher, Settled, type SlotResult } from "./internal/attemptBatches.js"
import { CapacityView, type Placement } from "./internal/capacityView.js"
import type { JobSpecInput, JobStatus, SpecLimits } from "./Job.js"
import { Chunk, JobId, makeJobId, totalChunks, validateSpec } from "./Job.js"
import {
  describeError,
  type InvalidJobSpec,
  type InvalidOption,
  isNonRetryable,
  NonRetryable,
  type RepositoryError
} from "./JobError.js"
import { JobRepository } from "./JobRepository.js"
import * as JobManager from "./JobManager.js"
import * as SqlJobRepository from "./SqlJobRepository.js"

/**
 * A chunk attempt failed on the runner that ran it: `kind` says how the local worker ended (`"failure"`: a
 * retryable error; `"non-retryable"`: it failed with `NonRetryable`; `"defect"`: it threw in an Effect
 * worker), `message` is the worker's error message and `runner` the runner's address. The dispatcher turns
 * it back into the same outcome for the job: a `"failure"` is retried by the retry policy, a
 * `"non-retryable"` is wrapped in `NonRetryable`, a `"defect"` fails the job.
 *
 * @since 0.1.0
 */
export class RemoteChunkError extends Schema.TaggedError<RemoteChunkError>()("RemoteChunkError", {
  kind: Schema.Literal("failure", "non-retryable", "defect"),
  message: Schema.String,
  runner: Schema.String
}) {}

/**
 * The chunk entity: `Run` starts a batch of attempts with the runner's local worker and answers, with the
 * runner's address and capacity, every attempt of the batch or of earlier ones (awaited) that has settled,
 * as soon as one has; `Interrupt` interrupts attempts and answers once they ended (see
 * `internal/attemptBatches.ts`). Volatile: nothing of it is persisted by the cluster.
 *
 * @since 0.1.0
 */
export const ChunkEntity = Entity.make("effect-jobs/Chunk", [
  Rpc.make("Run", {
    // [attempts to start, keys of attempts started earlier to wait for]. A tuple rather than a struct: the
    // RPC client validates a struct payload again on every call (a struct has `make`), here a walk over every
    // chunk that the runner's decoding does anyway.
    payload: Schema.Tuple(
      Schema.Array(Schema.Struct({ key: Schema.String, jobId: JobId, attempt: Schema.Int, chunk: Chunk })),
      Schema.Array(Schema.String)
    ),
    success: Schema.Struct({ runner: Schema.String, capacity: Schema.Int, settled: Schema.Array(Settled) })
  }),
  Rpc.make("Interrupt", { payload: { keys: Schema.Array(Schema.String) } })
])

/**
 * A runner could not join the cluster: `"SettingsMismatch"` when its cluster settings differ from those the
 * cluster's database was started with (a mismatch of `shardsPerGroup` would otherwise hang the cluster
 * without a word), `"Address"` when it cannot listen on its address, `"Database"` when PostgreSQL cannot be
 * reached.
 *
 * @since 0.1.0
 */
export class ClusterStartError extends Data.TaggedError("ClusterStartError")<{
  readonly reason: "SettingsMismatch" | "Address" | "Database"
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

/**
 * Options of a runner.
 *
 * @since 0.1.0
 */
export interface RunnerOptions {
  /**
   * The PostgreSQL URL of the job store; the cluster keeps its tables in the same database. Unless the URL
   * sets `options`, the runner's sessions get `idle_in_transaction_session_timeout` = `shardLockExpiration`.
   */
  readonly postgres: string
  /** The job store's schema (default: the connection's current schema). */
  readonly schema?: string | undefined
  /** The host other runners reach this one at (default `127.0.0.1`). */
  readonly host?: string | undefined
  /** The port this runner listens on (default: a free port). */
  readonly port?: number | undefined
  /** Chunks this runner runs at once, for all jobs of the cluster (default 4). */
  readonly capacity?: number | undefined
  /**
   * Shards of the cluster (default 300). It must be the same on every runner of a database: a runner started
   * with another value fails at start-up with a `ClusterStartError`.
   */
  readonly shardsPerGroup?: number | undefined
  /**
   * How long a dead or hung runner's shards stay locked before another runner takes them over (default 5
   * seconds): the time, give or take a second, until the chunks it was running are sent elsewhere.
   */
  readonly shardLockExpiration?: Duration.DurationInput | undefined
  /**
   * How runners check each other's health: `"ping"` (default) or `"k8s"` (the Kubernetes API's view of the
   * pods, for runners in pods).
   */
  readonly runnerHealth?: "ping" | "k8s" | undefined
  /**
   * On leaving the cluster, how long the chunks running here may finish before they are interrupted and
   * sent elsewhere (default 5 seconds). New attempts are refused from the start of the shutdown.
   */
  readonly shutdownGracePeriod?: Duration.DurationInput | undefined
  /** The options of this runner's job manager (`concurrency` is the chunks of one job in flight across the cluster). */
  readonly manager?: JobManager.ManagerOptions | undefined
}

const defaults = {
  host: "127.0.0.1",
  capacity: 4,
  shardsPerGroup: 300,
  shardLockExpiration: Duration.seconds(5),
  shutdownGracePeriod: Duration.seconds(5)
} as const

/** How long a dispatcher waits before sending again an attempt refused by full runners (then doubling). */
const busyBackoff = { initialMillis: 5, maxMillis: 100 } as const
/** How long a dispatcher waits before sending again an attempt whose runner went away. */
const lostRetryMillis = 100

// --- Settings check ---

const settingsTable = "effect_jobs_cluster_settings"

/**
 * Records this runner's settings in the database if no runner did before, else compares them with the
 * recorded ones: a mismatch fails with `ClusterStartError`, before this runner joins the cluster.
 */
const checkSettings = (settings: { readonly shardsPerGroup: number }): Effect.Effect<void, ClusterStartError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = sql(settingsTable)
    const recorded = yield* Effect.gen(function*() {
      yield* sql`CREATE TABLE IF NOT EXISTS ${table} (name TEXT PRIMARY KEY, value TEXT NOT NULL)`
      const entries = Object.entries(settings).map(([name, value]) => ({ name, value: String(value) }))
      yield* sql`INSERT INTO ${table} ${sql.insert(entries)} ON CONFLICT (name) DO NOTHING`
      return yield* sql<{ name: string; value: string }>`SELECT name, value FROM ${table}`
    }).pipe(
      // Runners starting together may race on CREATE TABLE.
      Effect.retry(Schedule.intersect(Schedule.spaced(100), Schedule.recurs(5))),
      Effect.mapError((error) =>
        new ClusterStartError({ reason: "Database", detail: `cannot read the cluster settings: ${describeError(error)}` })
      )
    )
    for (const [name, value] of Object.entries(settings)) {
      const row = recorded.find((entry) => entry.name === name)
      if (row !== undefined && row.value !== String(value)) {
        return yield* new ClusterStartError({
          reason: "SettingsMismatch",
          detail: `this runner has ${name} = ${value}, but the cluster in this database runs with ${name} = ${row.value}; ` +
            `start it with ${name} = ${row.value} (to change the setting, stop every runner and delete the row ` +
            `'${name}' of the table ${settingsTable})`
        })
      }
    }
  })

const freePort = (host: string): Effect.Effect<number, ClusterStartError> =>
  Effect.async<number, ClusterStartError>((resume) => {
    const server = createServer()
    server.once("error", (error) =>
      resume(Effect.fail(new ClusterStartError({ reason: "Address", detail: `cannot listen on ${host}: ${error.message}` }))))
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  })

/** The advisory lock runners hold while they start ("ejcs"). */
const startupLock = 0x656a6373

/**
 * Builds `layer` (into the layer's scope) while holding a PostgreSQL advisory lock: runners started together
 * on one database create its tables (the job store's, the cluster's, the settings) one at a time, instead of
 * racing on `CREATE TABLE`.
 */
const oneAtATime = <ROut, E, RIn>(
  layer: Layer.Layer<ROut, E, RIn>
): Layer.Layer<ROut, E | ClusterStartError, RIn | SqlClient.SqlClient> =>
  Layer.scopedContext(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const scope = yield* Effect.scope
    return yield* Effect.scoped(Effect.gen(function*() {
      const connection = yield* sql.reserve
      const lock = (statement: string) => connection.executeUnprepared(statement, [], undefined)
      yield* lock(`SELECT pg_advisory_lock(${startupLock})`)
      // Runs before the connection goes back to the pool (finalizers run in reverse order).
      yield* Effect.addFinalizer(() => Effect.ignore(lock(`SELECT pg_advisory_unlock(${startupLock})`)))
      return yield* Layer.buildWithScope(layer, scope)
    }).pipe(
      Effect.catchTag("SqlError", (error) =>
        new ClusterStartError({ reason: "Database", detail: `cannot take the start-up lock: ${describeError(error)}` }))
    ))
  }))

// --- Chunk runner ---

type RunPayload = { readonly jobId: JobId; readonly attempt: number; readonly chunk: Chunk }

/**
 * This runner's chunk slots: runs attempts with the local `ChunkWorker`, at most `capacity` at once, whether
 * they come through the chunk entity (from any runner's dispatcher) or straight from this runner's own
 * dispatcher; an attempt over capacity, or once closing has begun, is refused (`"busy"`).
 */
interface LocalSlots {
  readonly runner: string
  /** Attempts run here at once, at most. */
  readonly capacity: number
  /** How many more attempts would be taken now (0 once closing). */
  readonly free: () => number
  /** Whether closing has begun (the runner is leaving the cluster). */
  readonly closing: () => boolean
  /** Runs an attempt; interrupting it fires the worker's `AbortSignal`. */
  readonly run: (payload: RunPayload) => Effect.Effect<SlotResult>
  /** Refuses new attempts from now on, and waits up to `gracePeriod` for the running ones. */
  readonly close: Effect.Effect<void>
}

const busy: SlotResult = { outcome: "busy" }
const done: SlotResult = { outcome: "done" }

const makeLocalSlots = (options: {
  readonly runner: string
  readonly capacity: number
  readonly gracePeriod: Duration.Duration
}): Effect.Effect<LocalSlots, never, ChunkWorker> =>
  Effect.gen(function*() {
    const local = yield* ChunkWorker
    const { capacity, runner } = options
    let inFlight = 0
    let closing = false

    const runLocal = (payload: RunPayload): Effect.Effect<unknown, unknown> =>
      Effect.suspend(() => {
        const controller = new AbortController()
        const context: ChunkContext = {
          jobId: payload.jobId,
          attempt: payload.attempt,
          signal: controller.signal,
          // A chunk's own progress stays on the runner: the job's progress counts settled chunks.
          reportProgress: () => {}
        }
        const promise = local.promise
        const run = promise === undefined
          ? local.run(payload.chunk, context)
          : Effect.tryPromise({ try: () => promise(payload.chunk, context), catch: (error) => error })
        return Effect.onInterrupt(run, () => Effect.sync(() => controller.abort()))
      })

    const run = (payload: RunPayload): Effect.Effect<SlotResult> =>
      Effect.suspend((): Effect.Effect<SlotResult> => {
        if (closing || inFlight >= capacity) return Effect.succeed(busy)
        inFlight++
        return runLocal(payload).pipe(
          Effect.as(done),
          Effect.catchAllCause((cause): Effect.Effect<SlotResult> => {
            if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
            const failure = Cause.failureOption(cause)
            if (Option.isSome(failure)) {
              const error = failure.value
              return Effect.succeed(
                isNonRetryable(error)
                  ? { outcome: "non-retryable", message: describeError(error.cause) }
                  : { outcome: "failure", message: describeError(error) }
              )
            }
            return Effect.succeed({ outcome: "defect", message: describeError(Cause.squash(cause)) })
          }),
          Effect.ensuring(Effect.sync(() => inFlight--))
        )
      })

    const close = Effect.suspend(() => {
      closing = true
      return Effect.repeat(Effect.sync(() => inFlight), {
        until: (running) => running === 0,
        schedule: Schedule.spaced(20)
      }).pipe(Effect.interruptible, Effect.timeout(options.gracePeriod), Effect.ignore)
    })

    return { runner, capacity, free: () => closing ? 0 : capacity - inFlight, closing: () => closing, run, close }
  })

/**
 * How long an attempt runs on without a request waiting for it (its dispatcher died between a reply and its
 * next request) before the runner interrupts it, and how long an answer waits to be collected.
 */
const orphanAfter = Duration.seconds(30)

/**
 * The chunk entity of this runner, on its slots: each entity instance keeps its attempts in a table of its
 * own (interrupted when the instance stops, e.g. when its shard moves). Closing it refuses new attempts
 * (from any dispatcher) and waits up to the grace period for the running ones.
 */
const runnerEntity = (slots: LocalSlots): Layer.Layer<never, never, Sharding> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    yield* Effect.addFinalizer(() => slots.close)
    const { capacity, runner } = slots
    return ChunkEntity.toLayer(
      Effect.gen(function*() {
        const table = yield* makeAttemptTable<RunPayload & { readonly key: string }>(slots.run, {
          orphanAfter,
          leaving: slots.closing
        })
        return ChunkEntity.of({
          Run: ({ payload }) =>
            Effect.map(table.run(payload[0], payload[1]), (settled) => ({ runner, capacity, settled })),
          Interrupt: ({ payload }) => table.interrupt(payload.keys)
        })
      }),
      { concurrency: "unbounded", maxIdleTime: Duration.minutes(5) }
    )
  }))

// --- Dispatcher ---

/** For each shard, an entity id that the cluster places on it (the shards no probed id lands on are left out). */
const entityIdsByShard = (sharding: Sharding["Type"], shardsPerGroup: number): Map<number, string> => {
  const found = new Map<number, string>()
  for (let n = 0; n < shardsPerGroup * 20 && found.size < shardsPerGroup; n++) {
    const id = `slot-${n}`
    const shard = sharding.getShardId(EntityId.make(id), "default").id
    if (!found.has(shard)) found.set(shard, id)
  }
  return found
}

/**
 * The `ChunkWorker` of a cluster job manager: each attempt goes to a runner with free capacity: this
 * runner's own slots, used directly (no message, no serialization), while less than half of them are busy or
 * when they are at least as free as any other runner's; else the runner with the most free slots by the
 * dispatcher's view, in a batch with the other attempts sent there in the same turn of the event loop. A
 * refusal (`"busy"`) or a runner gone away sends the attempt again, to another runner if one has room,
 * without counting an attempt; only the worker's own outcome reaches the job. Interrupting an attempt waits
 * (up to 1 s) until its runner has interrupted it.
 */
const dispatcher = (
  shardsPerGroup: number,
  slots: LocalSlots
): Effect.Effect<ChunkWorker["Type"], never, Sharding | Scope.Scope> =>
  Effect.gen(function*() {
    const sharding = yield* Sharding
    const clientFor = yield* ChunkEntity.client
    const ids = entityIdsByShard(sharding, shardsPerGroup)
    const view = new CapacityView([...ids.keys()])
    const holds = (shard: number) => sharding.hasShardId(ShardId.make("default", shard))
    const batcher = yield* makeBatcher<RunPayload>({
      run: (entityId, start, awaiting) => clientFor(entityId).Run([start, awaiting]),
      interrupt: (entityId, keys) => clientFor(entityId).Interrupt({ keys })
    }, { keyPrefix: `${slots.runner}/${Date.now().toString(36)}/`, confirmWithin: Duration.seconds(1) })

    const attempt = (payload: RunPayload, placement: Placement | undefined): Effect.Effect<Answer> =>
      placement === undefined
        ? Effect.map(slots.run(payload), (result) => ({ ...result, runner: slots.runner, capacity: slots.capacity }))
        : batcher.submit(ids.get(placement.shard)!, payload).pipe(
          // Interrupted here (cancel, timeout, fail-fast): the runner stopped the attempt, its slot is free.
          Effect.onInterrupt(() => Effect.sync(() => view.release(placement)))
        )

    const send = (chunk: Chunk, context: ChunkContext, busyDelay: number): Effect.Effect<void, unknown> =>
      Effect.suspend(() => {
        const payload = { jobId: context.jobId, attempt: context.attempt, chunk }
        const placement = view.choose({ runner: slots.runner, capacity: slots.capacity, free: slots.free(), holds })
        return Effect.flatMap(attempt(payload, placement), (answer): Effect.Effect<void, unknown> => {
          switch (answer.outcome) {
            case "done":
              view.answered(placement, answer.runner, answer.capacity, "done")
              return Effect.void
            case "busy":
              view.answered(placement, answer.runner, answer.capacity, "busy")
              return Effect.zipRight(
                Effect.sleep(busyDelay),
                send(chunk, context, Math.min(busyDelay * 2, busyBackoff.maxMillis))
              )
            case "failure":
            case "non-retryable":
            case "defect": {
              view.answered(placement, answer.runner, answer.capacity, "done")
              const error = new RemoteChunkError({ kind: answer.outcome, message: answer.message ?? "", runner: answer.runner })
              return error.kind === "non-retryable"
                ? Effect.fail(new NonRetryable({ cause: error }))
                : error.kind === "defect"
                ? Effect.die(error)
                : Effect.fail(error)
            }
            case "interrupted":
              // The runner interrupted it itself (it is leaving, or the entity moved): it answered, so it is
              // still known where the shard is.
              view.answered(placement, answer.runner, answer.capacity, "done")
              return Effect.zipRight(Effect.sleep(lostRetryMillis), send(chunk, context, busyBackoff.initialMillis))
            case "lost":
              // The runner went away, or does not know the attempt: send it again.
              view.lost(placement)
              return Effect.zipRight(
                Effect.logDebug("effect-jobs: a chunk attempt's runner went away; sending it again", answer.cause ?? "unknown attempt"),
                Effect.zipRight(Effect.sleep(lostRetryMillis), send(chunk, context, busyBackoff.initialMillis))
              )
          }
        })
      })

    return ChunkWorker.of({ run: (chunk, context) => send(chunk, context, busyBackoff.initialMillis) })
  })

// --- Runner sockets ---

/**
 * The sharding of a runner over TCP sockets: `NodeClusterSocket.layer({ storage: "byo", ... })` with
 * TCP_NODELAY on both ends of every runner-to-runner connection (this runner's server and its clients).
 * A chunk attempt is a few small RPC messages each way; with Nagle's algorithm a message written while an
 * earlier one is unacknowledged waits for the peer's delayed ACK. The sockets and their timeouts are
 * otherwise those of `NodeClusterSocket`.
 */
const socketSharding = (options: {
  readonly host: string
  readonly port: number
  readonly runnerHealth: "ping" | "k8s"
  readonly shardingConfig: Partial<ShardingConfig.ShardingConfig["Type"]>
}): Layer.Layer<
  Sharding,
  SocketServer.SocketServerError | ConfigError.ConfigError,
  MessageStorage.MessageStorage | RunnerStorage.RunnerStorage
> => {
  const clientProtocol = Layer.effect(
    Runners.RpcClientProtocol,
    Effect.map(RpcSerialization.RpcSerialization, (serialization) => (address) =>
      NodeSocket.makeNet({ host: address.host, port: address.port, openTimeout: 1000, timeout: 5500, noDelay: true }).pipe(
        Effect.flatMap((socket) => Effect.provideService(RpcClient.makeProtocolSocket(), Socket.Socket, socket)),
        Effect.provideService(RpcSerialization.RpcSerialization, serialization),
        Effect.orDie
      ))
  )
  const runnerHealth = options.runnerHealth === "k8s"
    ? Layer.provide(RunnerHealth.layerK8s(), NodeClusterSocket.layerK8sHttpClient)
    : RunnerHealth.layerPing.pipe(Layer.provide(Runners.layerRpc), Layer.provide(clientProtocol))
  return SocketRunner.layer.pipe(
    Layer.provide([NodeSocketServer.layer({ host: options.host, port: options.port, noDelay: true }), clientProtocol]),
    Layer.provide(runnerHealth),
    Layer.provide(ShardingConfig.layerFromEnv(options.shardingConfig)),
    Layer.provide(RpcSerialization.layerMsgPack)
  )
}

// --- Layers ---

/**
 * A runner: joins the cluster in `options.postgres`, runs chunks with the `ChunkWorker` in context (at most
 * `capacity` at once) and owns jobs with the `JobManager` it provides, whose chunk attempts go to the
 * runners with free capacity. It provides the cluster's `Sharding` service too (e.g. `hasShardId`, to see
 * when this runner holds shards). Every runner of a cluster can take every call of the manager (submit, cancel
 * and the rest); `JobClient` and the CLI work on the same store.
 *
 * Start-up fails with `ClusterStartError` when the settings differ from the cluster's, or no port is free.
 * Closing the layer (SIGTERM) leaves the cluster gracefully: jobs owned here drain and are left `pending`
 * for another runner, attempts running here may finish within `shutdownGracePeriod`, new ones are refused
 * and go elsewhere.
 *
 * @since 0.1.0
 */
export const layer = (
  options: RunnerOptions
): Layer.Layer<JobManager.JobManager | Sharding, ClusterStartError | InvalidOption | RepositoryError, ChunkWorker> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const host = options.host ?? defaults.host
    const port = options.port ?? (yield* freePort(host))
    const shardsPerGroup = options.shardsPerGroup ?? defaults.shardsPerGroup
    const shardLockExpiration = Duration.decode(options.shardLockExpiration ?? defaults.shardLockExpiration)
    const runner = `${host}:${port}`
    const pg = PgClient.layer({ url: Redacted.make(withIdleTransactionTimeout(options.postgres, shardLockExpiration)) })
    const shardingConfig = {
      runnerAddress: Option.some(RunnerAddress.make(host, port)),
      shardsPerGroup,
      shardLockExpiration,
      shardLockRefreshInterval: Duration.divide(shardLockExpiration, 5).pipe(Option.getOrElse(() => Duration.seconds(1))),
      // Shard locks are rows that expire, not PostgreSQL advisory locks: an advisory lock lives as long as its
      // session, and the session of a hung runner (SIGSTOP, a frozen VM) stays open, so its shards, and the
      // chunks sent to them, would wait until it resumes. A resumed runner finds its locks taken at its next
      // refresh and lets its shards go; the job writes of its manager are fenced by the job's lease.
      shardLockDisableAdvisory: true,
      refreshAssignmentsInterval: Duration.seconds(1),
      runnerHealthCheckInterval: Duration.seconds(2),
      entityTerminationTimeout: Duration.seconds(2)
    }
    const failStart = (reason: ClusterStartError["reason"], what: string) => (error: unknown) =>
      Layer.fail(new ClusterStartError({ reason, detail: `runner ${runner}: ${what}: ${describeError(error)}` }))
    // The tables (the cluster's, the job store's) and the settings check, made one runner at a time.
    const storage = oneAtATime(Layer.mergeAll(
      Layer.effectDiscard(checkSettings({ shardsPerGroup })),
      Layer.mergeAll(SqlMessageStorage.layer, SqlRunnerStorage.layer).pipe(
        Layer.provide(ShardingConfig.layerFromEnv(shardingConfig)),
        Layer.catchAll(failStart("Database", "cannot open the cluster's storage"))
      ),
      SqlJobRepository.layerWith({ schema: options.schema })
    ))
    const sharding = socketSharding({ host, port, runnerHealth: options.runnerHealth ?? "ping", shardingConfig }).pipe(
      Layer.catchAll(failStart("Address", "cannot start"))
    )
    const slots = yield* makeLocalSlots({
      runner,
      capacity: options.capacity ?? defaults.capacity,
      gracePeriod: Duration.decode(options.shutdownGracePeriod ?? defaults.shutdownGracePeriod)
    })
    const manager = JobManager.layer(options.manager).pipe(
      Layer.provide(Layer.scoped(ChunkWorker, dispatcher(shardsPerGroup, slots)))
    )
    const entity = runnerEntity(slots)
    const database = Layer.catchAllCause(pg, (cause) =>
      Layer.fail(
        new ClusterStartError({ reason: "Database", detail: `cannot open PostgreSQL: ${describeError(Cause.squash(cause))}` })
      ))
    return Layer.mergeAll(manager, entity).pipe(
      Layer.provideMerge(sharding),
      Layer.provide(storage),
      Layer.provide(database)
    )
  }))

/**
 * Submits a job to the cluster whose store is in context, from any process (a runner is not needed): the
 * spec is validated (an invalid one fails with `InvalidJobSpec` and nothing is stored) and the job stored
 * `pending` without an owner; a runner's manager claims it at once (the store notifies the runners; a lost
 * notification leaves it to the next recovery, within `heartbeatInterval`) and runs it.
 * Returns the stored status.
 *
 * @since 0.1.0
 */
export const submitJob = (
  spec: JobSpecInput,
  limits?: SpecLimits
): Effect.Effect<JobStatus, InvalidJobSpec | RepositoryError, JobRepository> =>
  Effect.gen(function*() {
    const validated = yield* validateSpec(spec, limits)
    const repository = yield* JobRepository
    const id = makeJobId(yield* Clock.currentTimeMillis)
    return yield* repository.create({ id, spec: validated, totalChunks: totalChunks(validated) })
  })
