/**
 * A `JobRepository` that fails or dies on demand, wrapped around any store (memory, SQLite, PostgreSQL), for
 * fault-injection tests. A {@link FaultController} breaks chosen operations: each call then fails with a
 * `RepositoryError` (a store that answers with an error) or dies with a defect (a store that throws, as
 * `@effect/sql` does on a failed COMMIT), optionally after carrying the call out (the write landed, its answer
 * was lost). `heal` makes them answer again. Every call is counted, so a test can see that a path was tried.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import type { JobState } from "../../src/Job.js"
import { RepositoryError } from "../../src/JobError.js"
import { JobRepository } from "../../src/JobRepository.js"

type Store = JobRepository["Type"]

/** The operations of a store that can be broken (`stopRequests`: subscribing, and each request delivered). */
export type Operation = {
  readonly [K in keyof Store]: Store[K] extends ((...args: Array<any>) => any) | Stream.Stream<any, any> ? K : never
}[keyof Store]

export const operations: ReadonlyArray<Operation> = [
  "create",
  "createMany",
  "get",
  "getSpec",
  "list",
  "transition",
  "updateProgress",
  "getCheckpoint",
  "pulledChunks",
  "listChunks",
  "chunkResults",
  "delete",
  "prune",
  "find",
  "heartbeat",
  "retire",
  "lastHeartbeat",
  "claimOrphans",
  "activeJobsOf",
  "requestStop",
  "stopRequests"
]

export interface Fault {
  /** `"fail"`: a `RepositoryError`; `"die"`: a defect. */
  readonly kind: "fail" | "die"
  /** `transition` only: break only transitions to one of these states (default: every transition). */
  readonly to?: ReadonlyArray<JobState> | undefined
  /** Carry the call out first, then fail or die: a write that landed but whose answer was lost. */
  readonly afterApplying?: boolean | undefined
}

/** The message of every injected fault, so a test can tell them from real ones. */
export const injectedDetail = "injected fault"

export class FaultController {
  readonly #faults = new Map<Operation, Fault>()
  readonly #calls = new Map<Operation, number>()
  readonly #injected = new Map<Operation, number>()

  /** Breaks `operation` (or several; `"all"`: the whole store is down) until healed. */
  inject(operation: Operation | ReadonlyArray<Operation> | "all", fault: Fault): void {
    const chosen = operation === "all" ? operations : typeof operation === "string" ? [operation] : operation
    for (const name of chosen) this.#faults.set(name, fault)
  }

  /** Makes `operation` (or several; default: every one) answer again. */
  heal(operation?: Operation | ReadonlyArray<Operation>): void {
    if (operation === undefined) this.#faults.clear()
    else for (const name of typeof operation === "string" ? [operation] : operation) this.#faults.delete(name)
  }

  /** Calls of `operation` so far, broken or not. */
  calls(operation: Operation): number {
    return this.#calls.get(operation) ?? 0
  }

  /** Calls of `operation` that got an injected fault. */
  injected(operation: Operation): number {
    return this.#injected.get(operation) ?? 0
  }

  /** The fault a call of `operation` gets now, if any (counting the call). */
  faultFor(operation: Operation, to?: JobState): Fault | undefined {
    this.#calls.set(operation, this.calls(operation) + 1)
    const fault = this.#faults.get(operation)
    if (fault === undefined || (to !== undefined && fault.to !== undefined && !fault.to.includes(to))) {
      return undefined
    }
    this.#injected.set(operation, this.injected(operation) + 1)
    return fault
  }
}

const faulted = (operation: Operation, fault: Fault): Effect.Effect<never, RepositoryError> =>
  fault.kind === "fail"
    ? Effect.fail(new RepositoryError({ operation, detail: injectedDetail }))
    : Effect.die(new Error(`${injectedDetail}: ${operation} died`))

/** `store` with its operations broken as `controller` says, checked at each call. */
export const wrap = (store: Store, controller: FaultController): Store => {
  const guard = <A, E>(operation: Operation, call: () => Effect.Effect<A, E>, to?: JobState) =>
    Effect.suspend((): Effect.Effect<A, E | RepositoryError> => {
      const fault = controller.faultFor(operation, to)
      if (fault === undefined) return call()
      return fault.afterApplying === true ? Effect.zipRight(call(), faulted(operation, fault)) : faulted(operation, fault)
    })
  return {
    create: (job) => guard("create", () => store.create(job)),
    createMany: (jobs) => guard("createMany", () => store.createMany(jobs)),
    get: (id) => guard("get", () => store.get(id)),
    getSpec: (id) => guard("getSpec", () => store.getSpec(id)),
    list: (query) => guard("list", () => store.list(query)),
    transition: (id, from, to, patch) => guard("transition", () => store.transition(id, from, to, patch), to),
    updateProgress: (id, progress) => guard("updateProgress", () => store.updateProgress(id, progress)),
    getCheckpoint: (id) => guard("getCheckpoint", () => store.getCheckpoint(id)),
    pulledChunks: (id) => guard("pulledChunks", () => store.pulledChunks(id)),
    listChunks: (id, query) => guard("listChunks", () => store.listChunks(id, query)),
    chunkResults: (id, query) => guard("chunkResults", () => store.chunkResults(id, query)),
    delete: (id) => guard("delete", () => store.delete(id)),
    prune: (query) => guard("prune", () => store.prune(query)),
    find: (query) => guard("find", () => store.find(query)),
    durable: store.durable,
    heartbeat: (owner, held) => guard("heartbeat", () => store.heartbeat(owner, held)),
    retire: (owner) => guard("retire", () => store.retire(owner)),
    lastHeartbeat: (owner) => guard("lastHeartbeat", () => store.lastHeartbeat(owner)),
    claimOrphans: (owner, staleBefore) => guard("claimOrphans", () => store.claimOrphans(owner, staleBefore)),
    activeJobsOf: (owner) => guard("activeJobsOf", () => store.activeJobsOf(owner)),
    requestStop: (request) => guard("requestStop", () => store.requestStop(request)),
    stopRequests: Stream.unwrap(guard("stopRequests", () => Effect.succeed(store.stopRequests))).pipe(
      Stream.mapEffect((request) => guard("stopRequests", () => Effect.succeed(request)))
    ),
    changes: store.changes,
    claimable: store.claimable
  }
}

/** The store of `inner`, broken as `controller` says. */
export const layer = <E, R>(
  inner: Layer.Layer<JobRepository, E, R>,
  controller: FaultController
): Layer.Layer<JobRepository, E, R> =>
  Layer.effect(JobRepository, Effect.map(JobRepository, (store) => wrap(store, controller))).pipe(Layer.provide(inner))
