import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { Chunk, JobId } from "../src/Job.js"
import * as JobManagerModule from "../src/JobManager.js"
import { JobRepository } from "../src/JobRepository.js"
import * as JobRepositoryModule from "../src/JobRepository.js"
import type { JobManagerOptions, PromiseJobManager } from "../src/promise.js"
import { createJobManager, executeJob } from "../src/promise.js"
import * as WorkerServer from "../src/WorkerServer.js"

/** Options every entry point takes: the executor's and the two spec limits. */
type Options = Omit<JobManagerOptions, "worker" | "store" | "finalizers" | "maxConcurrentJobs">

/** One bad input: a spec (made fresh for each entry point) and options, and what the refusal must say. */
interface BadInput {
  readonly name: string
  readonly spec: () => unknown
  readonly options?: Options
  readonly tag: "InvalidJobSpec" | "InvalidOption"
  readonly path: ReadonlyArray<string | number>
  /** A part of the message. */
  readonly detail?: string
}

const valid = () => ({ chunks: [{ id: 0, payload: { frame: 0 } }, { id: 1, payload: { frame: 1 } }] })
const withPayload = (payload: unknown) => ({ chunks: [{ id: 0, payload }] })
const payloadPath = (...rest: ReadonlyArray<string | number>) => ["chunks", 0, "payload", ...rest]

const nested = (levels: number): unknown => {
  let value: unknown = 0
  for (let level = 0; level < levels; level++) value = { a: value }
  return value
}

const circular = () => {
  const node: { name: string; self?: unknown } = { name: "loop" }
  node.self = node
  return node
}

class Point {
  constructor(readonly x: number, readonly y: number) {}
}

/** 1,000,001 chunks; reading the first chunk's payload is recorded, so a walk of the array would show. */
const overDefaultChunkLimit = { walked: false }
const tooManyChunks = () => {
  const chunks: Array<unknown> = Array.from({ length: 1_000_001 }, (_, id) => ({ id, payload: null }))
  chunks[0] = {
    id: 0,
    get payload() {
      overDefaultChunkLimit.walked = true
      return null
    }
  }
  return { chunks }
}

const specCases: ReadonlyArray<BadInput> = [
  {
    name: "a __proto__ key in a payload (from JSON.parse)",
    spec: () => withPayload(JSON.parse("{\"__proto__\": {\"polluted\": true}}")),
    tag: "InvalidJobSpec",
    path: payloadPath("__proto__"),
    detail: "__proto__"
  },
  {
    name: "a __proto__ key in metadata",
    spec: () => ({ metadata: JSON.parse("{\"owner\": \"a\", \"__proto__\": {\"polluted\": true}}"), chunks: [] }),
    tag: "InvalidJobSpec",
    path: ["metadata", "__proto__"]
  },
  {
    name: "constructor.prototype in a payload",
    spec: () => withPayload({ constructor: { prototype: { polluted: true } } }),
    tag: "InvalidJobSpec",
    path: payloadPath("constructor", "prototype")
  },
  {
    name: "a payload nested 5,000 levels deep",
    spec: () => withPayload(nested(5_000)),
    tag: "InvalidJobSpec",
    path: payloadPath(...Array.from({ length: 64 }, () => "a")),
    detail: "deeper than 64"
  },
  {
    name: "metadata nested 65 levels deep",
    spec: () => ({ metadata: nested(65), chunks: [] }),
    tag: "InvalidJobSpec",
    path: ["metadata", ...Array.from({ length: 64 }, () => "a")]
  },
  {
    name: "a circular payload",
    spec: () => withPayload(circular()),
    tag: "InvalidJobSpec",
    path: payloadPath("self"),
    detail: "circular"
  },
  {
    name: "a getter that throws",
    spec: () =>
      withPayload({
        get secret(): string {
          throw new Error("no access")
        }
      }),
    tag: "InvalidJobSpec",
    path: payloadPath("secret"),
    detail: "no access"
  },
  {
    name: "a Proxy",
    spec: () => withPayload(new Proxy({ frame: 1 }, {})),
    tag: "InvalidJobSpec",
    path: payloadPath(),
    detail: "a Proxy"
  },
  {
    name: "a Proxy as the spec itself",
    spec: () => new Proxy(valid(), {}),
    tag: "InvalidJobSpec",
    path: [],
    detail: "a Proxy"
  },
  {
    name: "a Date",
    spec: () => withPayload({ at: new Date(0) }),
    tag: "InvalidJobSpec",
    path: payloadPath("at"),
    detail: "a Date"
  },
  {
    name: "a Map",
    spec: () => withPayload(new Map([["a", 1]])),
    tag: "InvalidJobSpec",
    path: payloadPath(),
    detail: "a Map"
  },
  {
    name: "a Map as metadata",
    spec: () => ({ metadata: new Map(), chunks: [] }),
    tag: "InvalidJobSpec",
    path: ["metadata"]
  },
  {
    name: "a class instance",
    spec: () => withPayload({ at: new Point(1, 2) }),
    tag: "InvalidJobSpec",
    path: payloadPath("at"),
    detail: "a Point"
  },
  {
    name: "a function",
    spec: () => withPayload({ run: () => 1 }),
    tag: "InvalidJobSpec",
    path: payloadPath("run"),
    detail: "a function"
  },
  {
    name: "a BigInt",
    spec: () => withPayload({ n: 10n }),
    tag: "InvalidJobSpec",
    path: payloadPath("n"),
    detail: "a bigint"
  },
  {
    name: "undefined in an array",
    spec: () => withPayload([1, undefined, 3]),
    tag: "InvalidJobSpec",
    path: payloadPath(1),
    detail: "undefined"
  },
  {
    name: "NaN",
    spec: () => withPayload({ ratio: Number.NaN }),
    tag: "InvalidJobSpec",
    path: payloadPath("ratio"),
    detail: "NaN"
  },
  {
    name: "Infinity in metadata",
    spec: () => ({ metadata: { ratio: Number.POSITIVE_INFINITY }, chunks: [] }),
    tag: "InvalidJobSpec",
    path: ["metadata", "ratio"],
    detail: "Infinity"
  },
  {
    name: "a finalize payload that is not JSON",
    spec: () => ({ chunks: [], finalize: { name: "merge", payload: { at: new Date(0) } } }),
    tag: "InvalidJobSpec",
    path: ["finalize", "payload", "at"]
  },
  {
    name: "1,000,001 explicit chunks (the default limit)",
    spec: tooManyChunks,
    tag: "InvalidJobSpec",
    path: ["chunks"],
    detail: "use a range plan or a chunk stream"
  },
  {
    name: "more explicit chunks than a lowered maxExplicitChunks",
    spec: () => ({ chunks: [0, 1, 2, 3].map((id) => ({ id, payload: null })) }),
    options: { maxExplicitChunks: 3 },
    tag: "InvalidJobSpec",
    path: ["chunks"],
    detail: "maxExplicitChunks (3)"
  },
  {
    name: "a 50 MB payload (the default maxSpecBytes)",
    spec: () => withPayload({ data: "x".repeat(50 * 1024 * 1024) }),
    tag: "InvalidJobSpec",
    path: payloadPath("data"),
    detail: "maxSpecBytes (16777216"
  },
  {
    name: "a spec over a lowered maxSpecBytes",
    spec: () => ({ chunks: Array.from({ length: 10 }, (_, id) => ({ id, payload: { frame: id } })) }),
    options: { maxSpecBytes: 100 },
    tag: "InvalidJobSpec",
    path: ["chunks", 2, "payload"],
    detail: "maxSpecBytes (100"
  },
  {
    name: "a range plan of 4.29e9 chunks",
    spec: () => ({ chunks: { start: 0, end: 2 ** 32 - 1, size: 1 } }),
    tag: "InvalidJobSpec",
    path: ["chunks", "size"],
    detail: "2^31"
  },
  {
    name: "a range plan of 2^31 + 1 chunks",
    spec: () => ({ chunks: { start: 0, end: 2 ** 31, size: 1 } }),
    tag: "InvalidJobSpec",
    path: ["chunks", "size"]
  },
  {
    name: "a range plan beyond the safe integers",
    spec: () => ({ chunks: { start: 0, end: 2 ** 53, size: 2 ** 30 } }),
    tag: "InvalidJobSpec",
    path: ["chunks", "end"]
  },
  {
    name: "a range plan with a fractional start",
    spec: () => ({ chunks: { start: 0.5, end: 10, size: 1 } }),
    tag: "InvalidJobSpec",
    path: ["chunks", "start"]
  },
  {
    name: "a range plan with a NaN size",
    spec: () => ({ chunks: { start: 0, end: 10, size: Number.NaN } }),
    tag: "InvalidJobSpec",
    path: ["chunks", "size"]
  }
]

const optionCases: ReadonlyArray<BadInput> = [
  ...([
    ["chunkTimeout \"-5 seconds\"", { chunkTimeout: "-5 seconds" }, ["chunkTimeout"]],
    ["chunkTimeout 0", { chunkTimeout: 0 }, ["chunkTimeout"]],
    ["chunkTimeout NaN", { chunkTimeout: Number.NaN }, ["chunkTimeout"]],
    ["chunkTimeout Infinity", { chunkTimeout: Number.POSITIVE_INFINITY }, ["chunkTimeout"]],
    ["initialDelay NaN", { retry: { initialDelay: Number.NaN } }, ["retry", "initialDelay"]],
    ["initialDelay -1", { retry: { initialDelay: -1 } }, ["retry", "initialDelay"]],
    ["initialDelay \"-5 seconds\"", { retry: { initialDelay: "-5 seconds" } }, ["retry", "initialDelay"]],
    ["maxDelay 0", { retry: { maxDelay: 0 } }, ["retry", "maxDelay"]],
    ["maxDelay Infinity", { retry: { maxDelay: Number.POSITIVE_INFINITY } }, ["retry", "maxDelay"]],
    ["factor 0.5", { retry: { factor: 0.5 } }, ["retry", "factor"]],
    ["factor NaN", { retry: { factor: Number.NaN } }, ["retry", "factor"]],
    ["factor Infinity", { retry: { factor: Number.POSITIVE_INFINITY } }, ["retry", "factor"]],
    ["maxSpecBytes 0", { maxSpecBytes: 0 }, ["maxSpecBytes"]],
    ["maxSpecBytes 1.5", { maxSpecBytes: 1.5 }, ["maxSpecBytes"]],
    ["maxSpecBytes over 1 GiB", { maxSpecBytes: 2 ** 30 + 1 }, ["maxSpecBytes"]],
    ["maxExplicitChunks -1", { maxExplicitChunks: -1 }, ["maxExplicitChunks"]],
    ["maxExplicitChunks NaN", { maxExplicitChunks: Number.NaN }, ["maxExplicitChunks"]]
  ] as const).map(([name, options, path]): BadInput => ({
    name,
    spec: valid,
    options: options as Options,
    tag: "InvalidOption",
    path
  }))
]

const cases = [...specCases, ...optionCases]

/** What an entry point did with a bad input: its error, the jobs it stored and the chunks it started. */
interface Outcome {
  readonly error: unknown
  readonly stored: number
  readonly started: ReadonlyArray<number>
}

const managerWith = (options: Options) => JobManagerModule.make(options as JobManagerModule.ManagerOptions)

/** Through the Effect `JobManager` on a memory store: the store is listed after the manager is closed. */
const viaEffect = (spec: unknown, options: Options = {}): Effect.Effect<Outcome> =>
  Effect.gen(function*() {
    const repository = yield* JobRepositoryModule.makeMemory
    const started: Array<number> = []
    const worker = ChunkWorker.make((chunk) => Effect.sync(() => started.push(chunk.id)))
    const submitted = yield* Effect.flatMap(managerWith(options), (manager) => manager.submitJob(spec as never)).pipe(
      Effect.scoped,
      Effect.provideService(JobRepository, repository),
      Effect.provideService(ChunkWorker.ChunkWorker, worker),
      Effect.either
    )
    const error = Either.isLeft(submitted) ? submitted.left : { accepted: submitted.right }
    const stored = (yield* Effect.orDie(repository.list({}))).jobs.length
    return { error, stored, started }
  })

/** Through the Promise facade's manager: a bad option rejects `createJobManager`, a bad spec `submitJob`. */
const viaPromiseManager = async (spec: unknown, options: Options = {}): Promise<Outcome> => {
  const started: Array<number> = []
  const worker = async (chunk: Chunk) => {
    started.push(chunk.id)
  }
  let manager: PromiseJobManager
  try {
    manager = await createJobManager({ worker, ...options })
  } catch (error) {
    return { error, stored: 0, started }
  }
  try {
    const error = await manager.submitJob(spec as never).then(() => undefined, (error: unknown) => error)
    return { error, stored: (await manager.listJobs()).jobs.length, started }
  } finally {
    await manager.close()
  }
}

/** Through `executeJob`: nothing is stored there; nothing may run. */
const viaExecuteJob = async (spec: unknown, options: Options = {}): Promise<Outcome> => {
  const started: Array<number> = []
  const error = await executeJob(spec as never, {
    worker: async (chunk) => {
      started.push(chunk.id)
    },
    ...options
  }).then(() => undefined, (error: unknown) => error)
  return { error, stored: 0, started }
}

/** Submits through the Effect `JobManager` (the job is cancelled at once) and returns the stored spec. */
const viaEffectAccepted = (spec: unknown, options: Options = {}) =>
  Effect.gen(function*() {
    const repository = yield* JobRepositoryModule.makeMemory
    return yield* Effect.gen(function*() {
      const manager = yield* managerWith(options)
      const id = yield* manager.submitJob(spec as never)
      yield* manager.cancelJob(id)
      return Option.getOrThrow(yield* repository.getSpec(id))
    }).pipe(
      Effect.scoped,
      Effect.provideService(JobRepository, repository),
      Effect.provideService(ChunkWorker.ChunkWorker, ChunkWorker.make(() => Effect.never)),
      Effect.orDie
    )
  })

const expectRefused = (outcome: Outcome, input: BadInput) => {
  expect(outcome.error).toMatchObject({ _tag: input.tag, path: input.path })
  if (input.detail !== undefined) expect((outcome.error as Error).message).toContain(input.detail)
  expect(outcome.stored).toBe(0)
  expect(outcome.started).toEqual([])
}

describe("bad input is refused with a typed error naming the path, and nothing is stored or run", () => {
  describe("Effect JobManager", () => {
    for (const input of cases) {
      it.effect(input.name, () =>
        Effect.map(viaEffect(input.spec(), input.options), (outcome) => expectRefused(outcome, input)))
    }
  })

  describe("Promise createJobManager", () => {
    for (const input of cases) {
      it(input.name, async () => expectRefused(await viaPromiseManager(input.spec(), input.options), input))
    }
  })

  describe("Promise executeJob", () => {
    for (const input of cases) {
      it(input.name, async () => expectRefused(await viaExecuteJob(input.spec(), input.options), input))
    }
  })

  it("an explicit chunk array over the limit is refused on its length, before any chunk is read", async () => {
    overDefaultChunkLimit.walked = false
    expectRefused(await viaExecuteJob(tooManyChunks()), specCases.find((input) => input.spec === tooManyChunks)!)
    expect(overDefaultChunkLimit.walked).toBe(false)
  })

  it("the worker server refuses a __proto__ key in a chunk it decodes, naming the path", async () => {
    const handler = WorkerServer.toLambdaHandler(ChunkWorker.make(() => Effect.die("must not run")))
    const event = JSON.parse(
      "{\"executionId\": \"e-1\", \"jobId\": \"job_1\", \"attempt\": 1, " +
        "\"chunk\": {\"id\": 0, \"payload\": {\"__proto__\": {\"polluted\": true}}}}"
    )
    const error = await handler(event).then(() => undefined, (error: unknown) => error)
    expect(error).toMatchObject({ _tag: "InvalidExecutionRequest", path: ["chunk", "payload", "__proto__"] })
  })
})

describe("valid input", () => {
  const spec = {
    name: "render",
    metadata: {
      owner: "studio",
      nested: { list: [1, "two", null, true, { deep: -1.5, unicode: "réalisé ✓ 😀" }], empty: {} },
      constructor: "a plain key"
    },
    chunks: [{ id: 0, payload: { frames: [0, 1], options: { quality: "high" } } }, { id: 7, payload: null }],
    finalize: { name: "merge", payload: { into: "out.mp4" } }
  }
  const finalizers = { merge: () => Effect.void }

  it.effect("a spec with nested metadata round-trips unchanged, as a copy the caller cannot change", () =>
    Effect.gen(function*() {
      const repository = yield* JobRepositoryModule.makeMemory
      const payloads: Array<unknown> = []
      const worker = ChunkWorker.make((chunk) => Effect.sync(() => payloads.push(chunk.payload)))
      const input = structuredClone(spec)
      const stored = yield* Effect.gen(function*() {
        const manager = yield* JobManagerModule.make({ finalizers })
        const id = yield* manager.submitJob(input)
        input.metadata.nested.list.push("changed later")
        input.chunks[0]!.payload!.options.quality = "changed later"
        expect((yield* manager.awaitJob(id)).state).toBe("completed")
        return yield* Effect.orDie(repository.getSpec(id as JobId))
      }).pipe(
        Effect.scoped,
        Effect.provideService(JobRepository, repository),
        Effect.provideService(ChunkWorker.ChunkWorker, worker)
      )
      expect(Option.getOrThrow(stored)).toEqual(spec)
      expect(payloads).toEqual(spec.chunks.map((chunk) => chunk.payload))
    }))

  it("the Promise facade and executeJob hand the worker the same payloads", async () => {
    const payloads: Array<unknown> = []
    const worker = async (chunk: Chunk) => {
      payloads.push(chunk.payload)
    }
    await using manager = await createJobManager({ worker, finalizers: { merge: async () => {} } })
    expect((await manager.runJob(spec)).state).toBe("completed")
    await executeJob(spec, { worker })
    const expected = spec.chunks.map((chunk) => chunk.payload)
    expect(payloads.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))))
      .toEqual([...expected, ...expected].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))))
  })

  it.effect("maxSpecBytes counts the UTF-8 JSON encoding exactly; properties holding undefined are left out", () =>
    Effect.gen(function*() {
      const exact = {
        ...spec,
        name: "quotes \" backslash \\ tab \t control \u0001 lone \ud800 pair 😀 é ✓",
        finalize: undefined,
        extra: undefined
      }
      const bytes = Buffer.byteLength(JSON.stringify(exact), "utf8")
      const at = yield* viaEffectAccepted(exact, { maxSpecBytes: bytes })
      expect(at).toEqual(JSON.parse(JSON.stringify(exact)))
      const below = yield* viaEffect(exact, { maxSpecBytes: bytes - 1 })
      expect(below.error).toMatchObject({ _tag: "InvalidJobSpec" })
      expect(below.stored).toBe(0)
    }))

  it.effect("a range plan of exactly 2^31 chunks is accepted", () =>
    Effect.gen(function*() {
      const accepted = yield* viaEffectAccepted({ chunks: { start: 0, end: 2 ** 31 - 1, size: 1 } })
      expect(accepted.chunks).toEqual({ start: 0, end: 2 ** 31 - 1, size: 1 })
    }))
})
