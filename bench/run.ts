/**
 * effect-jobs benchmarks, side by side with a hand-written Promise pool, p-map, p-queue and BullMQ.
 *
 *     npm run bench               full run (a few minutes)
 *     npm run bench -- --quick    small sizes, one repetition: a smoke test (CI runs it)
 *     npm run bench -- --only s7  some scenarios only (s1, s1scale, s2, s3, s4, s5, xproc, s6, s7)
 *
 * Contenders of a scenario run in alternating order, repetition after repetition; the table shows
 * medians. Raw figures go to bench/results/<timestamp>.json. Nothing here asserts a timing.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir, totalmem } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import pMap from "p-map"
import PQueue from "p-queue"
import * as ChunkWorker from "../src/ChunkWorker.js"
import * as JobExecutor from "../src/JobExecutor.js"
import * as JobManager from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import { createJobManager } from "../src/promise.js"
import { bullmqAvailable, runBullmq } from "./bullmq.js"
import type { S6Options, S6Result } from "./cluster.js"
import * as PerJob from "./perjob.js"
import { createPgDatabase, dropPgDatabase, dropPgSchema, pgUrl, postgresAvailable } from "./postgres.js"

const { values: flags } = parseArgs({
  options: { quick: { type: "boolean", default: false }, only: { type: "string" } },
  strict: true
})
const quick = flags.quick
const sizes = quick
  ? { s1: 5_000, s2: 2_000, bull: 1_000, s3: 50_000, s4: 50, s5: 200, s6: 200, s7: 500, s7List: 2_000, s7Latency: 50, repetitions: 1 }
  : { s1: 100_000, s2: 100_000, bull: 20_000, s3: 1_000_000, s4: 1_000, s5: 2_000, s6: 2_000, s7: 10_000, s7List: 100_000, s7Latency: 1_000, repetitions: 5 }
const concurrency = 16

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** A no-op chunk: resolves after one setImmediate, reading its signal as a careful worker does. */
const noop = (_chunk: unknown, context: { readonly signal: AbortSignal }): Promise<void> => {
  if (context.signal.aborted) return Promise.reject(context.signal.reason)
  return new Promise<void>((resolve) => setImmediate(resolve))
}
const range = (chunks: number) => ({ chunks: { start: 0, end: chunks - 1, size: 1 } })
/** Every feature on: a retry policy, a chunk timeout, the signal read, progress tracked. */
const features = { concurrency, retry: { attempts: 3, initialDelay: 10 }, chunkTimeout: "30 seconds" } as const

/** Microseconds per chunk of `run` over `chunks` chunks. */
const perChunk = async (chunks: number, run: () => Promise<unknown>): Promise<number> => {
  const started = performance.now()
  await run()
  return ((performance.now() - started) * 1000) / chunks
}

// --- S1 contenders -------------------------------------------------------------------------------------

const promisePool = async (chunks: number) => {
  let next = 0
  const signal = new AbortController().signal
  const loop = async () => {
    while (next < chunks) {
      next++
      await noop(next, { signal })
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
}

const pMapRun = (chunks: number) => {
  const signal = new AbortController().signal
  return pMap(Array.from({ length: chunks }, (_, i) => i), (i) => noop(i, { signal }), { concurrency })
}

const pQueueRun = async (chunks: number) => {
  const queue = new PQueue({ concurrency })
  const signal = new AbortController().signal
  for (let i = 0; i < chunks; i++) void queue.add(() => noop(i, { signal }))
  await queue.onIdle()
}

/** The floor of any Effect pool: 16 looping fibers, one `Effect.async` per chunk, nothing else. */
const effectFloorRun = (chunks: number) => {
  let next = 0
  const signal = new AbortController().signal
  const chunk = Effect.async<void>((resume) => {
    noop(next, { signal }).then(() => resume(Effect.void))
  })
  const loop: Effect.Effect<void> = Effect.suspend(() => next++ < chunks ? Effect.zipRight(chunk, loop) : Effect.void)
  return Effect.runPromise(Effect.forEach(Array.from({ length: concurrency }), () => loop, { concurrency, discard: true }))
}

const executorRun = (chunks: number, worker: ChunkWorker.ChunkWorker["Type"] = ChunkWorker.fromPromise(noop)) => {
  let settled = 0
  return Effect.runPromise(
    JobExecutor.execute(range(chunks), {
      ...features,
      jobId: "job_bench" as never,
      // Progress tracked as the manager tracks it: a batch of settled chunks at a time.
      onChunksSettled: (events) => Effect.sync(() => void (settled += events.length))
    }).pipe(Effect.provideService(ChunkWorker.ChunkWorker, worker))
  )
}

/** The same no-op chunk as an Effect worker: the fiber-per-attempt path. */
const effectWorker = ChunkWorker.make((chunk, context) => Effect.promise(() => noop(chunk, context)))

const managerLayer = JobManager.layer(features).pipe(
  Layer.provide(JobRepository.layerMemory),
  Layer.provide(ChunkWorker.layerPromise(noop))
)
const managerRun = (chunks: number, tracing = false) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const manager = yield* JobManager.JobManager
      const id = yield* manager.submitJob(range(chunks))
      yield* Stream.runDrain(manager.watchJob(id)) // one watcher subscribed
      return yield* manager.awaitJob(id)
    }).pipe(Effect.provide(managerLayer), tracing ? Effect.withTracer(spanTracer) : (effect) => effect)
  )

/** A tracer that makes real (in-memory) spans and keeps none: the cost of tracing without an exporter. */
const builtIn = Effect.runSync(Effect.tracer)
const spanTracer = Tracer.make({
  span: (name, parent, context, links, startTime, kind, options) =>
    builtIn.span(name, parent, context, links, startTime, kind, options),
  context: (f) => f()
})

const facadeRun = async (chunks: number, store?: { readonly sqlite: string }) => {
  await using manager = await createJobManager({ worker: noop, ...features, ...(store ? { store } : {}) })
  const id = await manager.submitJob(range(chunks))
  for await (const _ of manager.watchJob(id)) { /* one watcher subscribed */ }
  const status = await manager.waitForJob(id)
  if (status.state !== "completed") throw new Error(`bench job ended ${status.state}`)
}

const scratch = mkdtempSync(join(tmpdir(), "effect-jobs-bench-"))
let sqliteFiles = 0
const sqliteRun = (chunks: number) => facadeRun(chunks, { sqlite: join(scratch, `s${sqliteFiles++}.db`) })

// --- runner --------------------------------------------------------------------------------------------

interface Row {
  readonly scenario: string
  readonly contender: string
  readonly unit: string
  readonly median: number
  readonly samples: ReadonlyArray<number>
  readonly note?: string
}
const rows: Array<Row> = []

const compare = async (
  scenario: string,
  unit: string,
  contenders: ReadonlyArray<readonly [string, () => Promise<number>]>,
  repetitions = sizes.repetitions
) => {
  const samples = new Map<string, Array<number>>(contenders.map(([name]) => [name, []]))
  for (let repetition = 0; repetition < repetitions; repetition++) {
    const order = repetition % 2 === 0 ? contenders : [...contenders].reverse()
    for (const [name, run] of order) samples.get(name)!.push(await run())
  }
  for (const [name] of contenders) {
    const values = samples.get(name)!
    const spread = `${Math.min(...values).toFixed(2)}..${Math.max(...values).toFixed(2)}`
    rows.push({ scenario, contender: name, unit, median: median(values), samples: values, note: `min..max ${spread}` })
    console.error(`  ${scenario} ${name}: ${median(values).toFixed(2)} ${unit}`)
  }
}

const s1 = async () => {
  const n = sizes.s1
  await compare("S1 overhead", "us/chunk", [
    ["Promise pool (hand-written)", () => perChunk(n, () => promisePool(n))],
    ["Effect floor: 16 fibers, one Effect.async per chunk", () => perChunk(n, () => effectFloorRun(n))],
    ["p-map", () => perChunk(n, () => pMapRun(n))],
    ["p-queue", () => perChunk(n, () => pQueueRun(n))],
    ["effect-jobs JobExecutor", () => perChunk(n, () => executorRun(n))],
    // A tenth of the chunks: this path is an order of magnitude slower per chunk.
    ["effect-jobs JobExecutor, Effect worker", () => perChunk(n / 10, () => executorRun(n / 10, effectWorker))],
    ["effect-jobs JobManager (memory)", () => perChunk(n, () => managerRun(n))],
    ["effect-jobs JobManager (memory), tracing on", () => perChunk(n, () => managerRun(n, true))],
    ["effect-jobs Promise facade (memory)", () => perChunk(n, () => facadeRun(n))]
  ], quick ? 1 : 7)
}

/**
 * S1 at other sizes and widths: the cost of a job of 1,000 and 10,000 chunks through the Promise facade (from
 * `submitJob` to the first chunk's call, and per chunk from submission to `waitForJob`), and the per-chunk
 * cost at concurrency 1, 16 and 256, each beside p-map on the same chunks.
 */
const s1scale = async () => {
  const jobSizes = quick ? [1_000] : [1_000, 10_000]
  for (const chunks of jobSizes) {
    let firstCall = 0
    const worker = (chunk: unknown, context: { readonly signal: AbortSignal }) => {
      if (firstCall === 0) firstCall = performance.now()
      return noop(chunk, context)
    }
    const manager = await createJobManager({ worker, ...features })
    const firstChunk: Array<number> = []
    try {
      await compare(`S1 per job, ${chunks.toLocaleString("en")} chunks`, "us/chunk", [
        ["p-map", () => perChunk(chunks, () => pMapRun(chunks))],
        ["effect-jobs Promise facade (memory), one manager", async () => {
          firstCall = 0
          const submitted = performance.now()
          const id = await manager.submitJob(range(chunks))
          const status = await manager.waitForJob(id)
          if (status.state !== "completed") throw new Error(`bench job ended ${status.state}`)
          firstChunk.push((firstCall - submitted) * 1000)
          return ((performance.now() - submitted) * 1000) / chunks
        }]
      ], sizes.repetitions + 2)
    } finally {
      await manager.close()
    }
    rows.push({
      scenario: `S1 per job, ${chunks.toLocaleString("en")} chunks`,
      contender: "effect-jobs Promise facade: submitJob to the first chunk's call",
      unit: "us",
      median: median(firstChunk),
      samples: firstChunk
    })
  }
  const n = quick ? 5_000 : 50_000
  for (const width of [1, 16, 256]) {
    const wide = { ...features, concurrency: width }
    const pMapWide = () => {
      const signal = new AbortController().signal
      return pMap(Array.from({ length: n }, (_, i) => i), (i) => noop(i, { signal }), { concurrency: width })
    }
    const executorWide = () =>
      Effect.runPromise(
        JobExecutor.execute(range(n), { ...wide, jobId: "job_bench" as never, onChunksSettled: () => Effect.void }).pipe(
          Effect.provideService(ChunkWorker.ChunkWorker, ChunkWorker.fromPromise(noop))
        )
      )
    const facadeWide = async () => {
      const manager = await createJobManager({ worker: noop, ...wide })
      try {
        const status = await manager.waitForJob(await manager.submitJob(range(n)))
        if (status.state !== "completed") throw new Error(`bench job ended ${status.state}`)
      } finally {
        await manager.close()
      }
    }
    await compare(`S1 concurrency ${width}`, "us/chunk", [
      ["p-map", () => perChunk(n, pMapWide)],
      ["effect-jobs JobExecutor", () => perChunk(n, executorWide)],
      ["effect-jobs Promise facade (memory)", () => perChunk(n, facadeWide)]
    ])
  }
}

const s2 = async () => {
  const contenders: Array<readonly [string, () => Promise<number>]> = [
    ["effect-jobs SQLite store", () => perChunk(sizes.s2, () => sqliteRun(sizes.s2))]
  ]
  const bull = await bullmqAvailable()
  if (bull) contenders.push(["BullMQ (local Redis)", () => perChunk(sizes.bull, () => runBullmq(sizes.bull, concurrency))])
  await compare("S2 durable", "us/chunk", contenders)
  if (!bull) console.error("  S2: BullMQ skipped: Redis at 127.0.0.1:6379 is not reachable")
}

/** Runs a scenario script in a fresh process (so its memory is its own) and returns its JSON output. */
const runIsolated = (script: string, args: ReadonlyArray<string>): Promise<Record<string, number>> =>
  new Promise((resolve, reject) => {
    // `npm run bench` runs the compiled scripts with plain node; `tsx bench/run.ts` runs the sources.
    const compiled = import.meta.filename.endsWith(".js")
    const file = join(import.meta.dirname, compiled ? script.replace(/\.ts$/, ".js") : script)
    const child = spawn(
      process.execPath,
      ["--expose-gc", ...(compiled ? [] : ["--import", "tsx"]), file, ...args],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    let out = ""
    child.stdout.on("data", (data: Buffer) => (out += data.toString()))
    child.on("error", reject)
    child.on("exit", (code) => code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${script} exited ${code}`)))
  })

const s3 = async () => {
  const result = await runIsolated("memory.ts", [String(sizes.s3)])
  rows.push({
    scenario: "S3 memory",
    contender: `effect-jobs JobManager, ${sizes.s3.toLocaleString("en")}-chunk range job`,
    unit: "MB peak RSS growth",
    median: result.peakGrowthMb!,
    samples: [result.peakGrowthMb!],
    note: `peak heap growth ${result.heapGrowthMb!.toFixed(1)} MB; heap retained after the job and a GC ${
      result.retainedHeapMb!.toFixed(1)
    } MB`
  })
}

const s4 = async () => {
  for (const store of ["memory", "sqlite"] as const) {
    const result = await runIsolated("cancel.ts", [String(sizes.s4), store, join(scratch, `cancel-${store}.db`)])
    rows.push({
      scenario: "S4 cancel latency",
      contender: `effect-jobs (${store}) median`,
      unit: "ms",
      median: result.median!,
      samples: [result.median!]
    }, {
      scenario: "S4 cancel latency",
      contender: `effect-jobs (${store}) p99`,
      unit: "ms",
      median: result.p99!,
      samples: [result.p99!],
      note: `after ${Math.ceil(result.runs! / 5)} untimed warm-up cancels; ${result.startedAfterCancel} chunks started after cancelJob resolved; ${result.over1ms} of ${result.runs} cancels over 1 ms, ${result.over1msDuringGc} of them during a garbage collection`
    })
  }
}

const s5 = async () => {
  const chunks = sizes.s5
  const width = 64
  // Deterministic durations of 5..15 ms.
  const durations = Array.from({ length: chunks }, (_, i) => 5 + ((i * 7919) % 11))
  const ideal = durations.reduce((sum, d) => sum + d, 0) / width
  const sleepFor = (id: number) => new Promise<void>((resolve) => setTimeout(resolve, durations[id]))
  const overIdeal = async (run: () => Promise<unknown>) => {
    const started = performance.now()
    await run()
    return ((performance.now() - started - ideal) / ideal) * 100
  }
  await using manager = await createJobManager({ worker: (chunk) => sleepFor(chunk.id), concurrency: width })
  // The same chunks through a hand-written pool: the cost of the timers themselves.
  const pool = async () => {
    let next = 0
    const loop = async () => {
      while (next < chunks) await sleepFor(next++)
    }
    await Promise.all(Array.from({ length: width }, loop))
  }
  await compare("S5 efficiency", "% over ideal", [
    [`Promise pool (hand-written), ${chunks} chunks of 5-15 ms at concurrency ${width}`, () => overIdeal(pool)],
    [`effect-jobs, ${chunks} chunks of 5-15 ms at concurrency ${width}`, () => overIdeal(() => manager.runJob(range(chunks)))]
  ])
  console.error(`  S5: ideal makespan ${ideal.toFixed(0)} ms (total chunk time / ${width})`)
}

const crossProcess = async () => {
  const runs = quick ? 5 : 50
  const schema = `bench_xproc_${process.pid}`
  const stores = [
    ["SQLite", { sqlite: join(scratch, "xproc.db") }],
    ...(await postgresAvailable() ? [["PostgreSQL", { pg: pgUrl, schema }] as const] : [])
  ] as const
  for (const [name, store] of stores) {
    const result = await runIsolated("cross-process-cancel.ts", [String(runs), JSON.stringify(store)])
    rows.push({
      scenario: `Cross-process cancel (${name})`,
      contender: "cancelJob from another process (default client) until cancelled stored, median",
      unit: "ms",
      median: result.median!,
      samples: [result.median!],
      note: `p99 ${result.p99!.toFixed(1)} ms over ${result.runs} runs`
    })
  }
  if (stores.length > 1) await dropPgSchema(schema)
}

/**
 * S6: cluster mode (see bench/cluster.ts), in a process of its own that starts the runners and the BullMQ
 * workers. Quick mode skips it unless asked for by name (`--quick --only s6`: a smoke test of the code, not a
 * measure: one runner, 200 chunks, 2 cancels, no failover), since starting runner processes that share out
 * the cluster's shards takes 20 to 60 seconds on its own.
 */
const s6 = async () => {
  if (quick && !flags.only?.split(",").includes("s6")) {
    return console.error(
      "  S6: skipped in --quick: starting cluster runners takes 20-60 s; `npm run bench -- --quick --only s6` runs a small S6"
    )
  }
  if (!(await postgresAvailable())) return console.error("  S6: skipped: PostgreSQL at 127.0.0.1:5432 is not reachable")
  const bull = await bullmqAvailable()
  if (!bull) console.error("  S6: BullMQ skipped: Redis at 127.0.0.1:6379 is not reachable")
  const chunks = sizes.s6
  const options: S6Options = quick
    ? { chunks, runners: [1], repetitions: 1, cancels: 2, failover: false, bullmq: bull }
    : { chunks, runners: [1, 2, 3], repetitions: 3, cancels: 20, failover: true, bullmq: bull }
  const result = await runIsolated("cluster.ts", ["s6", JSON.stringify(options)]) as unknown as S6Result
  const count = chunks.toLocaleString("en")
  for (const ms of [0, 20]) {
    const scenario = `S6 cluster: ${count} chunks of ${ms} ms, 16 in flight`
    const secondsOf = (runners: number) => result.throughput.filter((row) => row.runners === runners && row.ms === ms).map((row) => row.seconds)
    const single = median(secondsOf(0))
    const row = (contender: string, seconds: ReadonlyArray<number>, note: (median: number) => string) => {
      const rates = seconds.map((value) => chunks / value)
      const middle = median(seconds)
      rows.push({ scenario, contender, unit: "chunks/s", median: median(rates), samples: rates, note: note(middle) })
    }
    const overhead = (seconds: number) =>
      `${seconds.toFixed(2)} s; ${(((seconds - single) * 1000) / chunks).toFixed(2)} ms more per chunk than one process`
    row("effect-jobs one process (JobManager, PostgreSQL store)", secondsOf(0), (seconds) => `${seconds.toFixed(2)} s`)
    for (const runners of options.runners) {
      const samples = secondsOf(runners)
      row(
        `effect-jobs cluster, ${runners} runner process${runners > 1 ? "es" : ""}`,
        samples,
        (seconds) => `${overhead(seconds)}${samples.length > 1 ? `; median of ${samples.length}, alternating with BullMQ` : ""}`
      )
    }
    const bullSeconds = (result.bullmq ?? []).filter((run) => run.ms === ms).map((run) => run.seconds)
    if (bullSeconds.length > 0) {
      row("BullMQ flow (parent + children), 3 worker processes (local Redis)", bullSeconds, overhead)
    }
  }
  const cancel = result.cancel
  if (cancel !== undefined) {
    const scenario = `S6 cluster cancel: 16 chunks in flight on ${result.largest} runner${result.largest > 1 ? "s" : ""}, cancelJob from another process`
    rows.push(
      { scenario, contender: "effect-jobs cluster, median", unit: "ms", median: cancel.median, samples: [cancel.median] },
      {
        scenario,
        contender: "effect-jobs cluster, p99",
        unit: "ms",
        median: cancel.p99,
        samples: [cancel.p99],
        note: `${cancel.runs} runs; medians: first signal ${cancel.toFirstSignal} ms after the call, the signals spread over ${cancel.signalSpread} ms, ` +
          `cancelJob returned ${cancel.afterLastSignal} ms after the last (${cancel.afterLastSignalMin < 0 ? "once a signal fired after it returned" : "every signal fired before it returned"}); ` +
          `${cancel.startedAfter} chunks started after it returned`
      }
    )
  }
  const failover = result.failover
  if (failover !== undefined) {
    const scenario = `S6 cluster failover after kill -9 (${result.largest} runners, default settings)`
    rows.push(
      {
        scenario,
        contender: "a chunk runner: its lost chunks start again elsewhere",
        unit: "s",
        median: failover.runnerKill / 1000,
        samples: [failover.runnerKill / 1000],
        note: `${failover.lost} chunks in flight on it`
      },
      {
        scenario,
        contender: "the job's owner: another runner owns the job",
        unit: "s",
        median: failover.ownerKill / 1000,
        samples: [failover.ownerKill / 1000],
        note: failover.completed ? "the job completed" : "the job did NOT complete"
      }
    )
  }
}

/** S7: the cost per job, through the Promise facade, against BullMQ (see bench/perjob.ts). */
const s7 = async () => {
  const jobs = sizes.s7
  // 10,000 jobs per contender take a while on a durable store: the median of 3 (the issue asks for one run).
  const s7Repetitions = Math.min(sizes.repetitions, 3)
  const callers = 32
  const bull = await bullmqAvailable()
  const pg = await postgresAvailable()
  let databases = 0
  const pgDatabases: Array<string> = []
  /** A fresh store of each kind for every run. */
  const stores: Array<readonly [string, () => Promise<PerJob.Store>]> = [
    ["memory", () => Promise.resolve("memory")],
    ["SQLite", () => Promise.resolve({ sqlite: join(scratch, `s7-${databases++}.db`) })],
    ...(pg
      ? [["PostgreSQL", async () => {
        const name = `effect_jobs_s7_${process.pid}_${databases++}`
        pgDatabases.push(name)
        return { postgres: await createPgDatabase(name) }
      }] as const]
      : [])
  ]
  const notes = new Map<string, Array<number>>()
  const noted = <A>(key: string, value: number, result: A): A => {
    notes.set(key, [...(notes.get(key) ?? []), value])
    return result
  }
  const submitNote = (key: string) => {
    const values = notes.get(key) ?? []
    return values.length === 0 ? undefined : `mean wait per submit ${median(values).toFixed(3)} ms`
  }
  try {
    await compare(`S7 per job: ${jobs.toLocaleString("en")} one-chunk jobs, ${callers} callers each awaiting its submit, ${callers} running`, "jobs/s", [
      ...stores.map(([name, store]) =>
        [`effect-jobs ${name}`, async () => {
          const result = await PerJob.endToEnd(await store(), jobs, callers)
          return noted(name, result.submitMillis, result.jobsPerSecond)
        }] as const
      ),
      ...(bull
        ? [["BullMQ (local Redis)", async () => {
          const result = await PerJob.bullEndToEnd(jobs, callers)
          return noted("BullMQ", result.submitMillis, result.jobsPerSecond)
        }] as const]
        : [])
    ], s7Repetitions)
    for (const row of rows) {
      if (!row.scenario.startsWith("S7 per job")) continue
      const key = row.contender.replace(/^effect-jobs /, "").replace(" (local Redis)", "")
      const note = submitNote(key)
      if (note !== undefined) Object.assign(row, { note })
    }
    const batchNotes = new Map<string, Array<number>>()
    await compare(`S7 batch: submitBatch / addBulk of ${jobs.toLocaleString("en")} jobs, until stored`, "jobs/s", [
      ...stores.map(([name, store]) =>
        [`effect-jobs ${name}`, async () => {
          const result = await PerJob.batch(await store(), jobs, callers)
          batchNotes.set(name, [...(batchNotes.get(name) ?? []), result.completedPerSecond])
          return result.storedPerSecond
        }] as const
      ),
      ...(bull
        ? [["BullMQ (local Redis)", async () => {
          const result = await PerJob.bullBatch(jobs, callers)
          batchNotes.set("BullMQ", [...(batchNotes.get("BullMQ") ?? []), result.completedPerSecond])
          return result.storedPerSecond
        }] as const]
        : [])
    ], s7Repetitions)
    for (const row of rows) {
      if (!row.scenario.startsWith("S7 batch")) continue
      const values = batchNotes.get(row.contender.replace(/^effect-jobs /, "").replace(" (local Redis)", ""))
      if (values !== undefined) Object.assign(row, { note: `until all completed: ${median(values).toFixed(0)} jobs/s` })
    }
    const samples = sizes.s7Latency
    for (const [name, store] of stores) {
      const latency = await PerJob.firstChunk(await store(), samples)
      rows.push(
        { scenario: "S7 submit -> first chunk", contender: `effect-jobs ${name} p50`, unit: "ms", median: latency.p50, samples: [latency.p50] },
        { scenario: "S7 submit -> first chunk", contender: `effect-jobs ${name} p99`, unit: "ms", median: latency.p99, samples: [latency.p99], note: `${samples} jobs one at a time` }
      )
    }
    if (bull) {
      const latency = await PerJob.bullFirstChunk(samples)
      rows.push(
        { scenario: "S7 submit -> first chunk", contender: "BullMQ p50", unit: "ms", median: latency.p50, samples: [latency.p50] },
        { scenario: "S7 submit -> first chunk", contender: "BullMQ p99", unit: "ms", median: latency.p99, samples: [latency.p99], note: `${samples} jobs one at a time` }
      )
    }
    const listed = sizes.s7List
    const runs = quick ? 5 : 21
    const listRows = (name: string, times: PerJob.ListTimes) => {
      const scenario = `S7 listJobs, ${listed.toLocaleString("en")} jobs stored (page of 50, median of ${runs})`
      rows.push(
        { scenario, contender: `effect-jobs ${name}, first page`, unit: "ms", median: times.first, samples: [times.first] },
        { scenario, contender: `effect-jobs ${name}, page half-way down`, unit: "ms", median: times.deep, samples: [times.deep] },
        { scenario, contender: `effect-jobs ${name}, one state`, unit: "ms", median: times.byState, samples: [times.byState] },
        { scenario, contender: `effect-jobs ${name}, two states`, unit: "ms", median: times.byStates, samples: [times.byStates] }
      )
    }
    listRows("memory", await PerJob.memoryListPages(listed, runs))
    const sqlite = join(scratch, "s7-list.db")
    listRows("SQLite", await PerJob.listPages({ sqlite }, listed, runs, async () => PerJob.fillSqlite(sqlite, listed)))
    if (pg) {
      const store = await stores[2]![1]() as { readonly postgres: string }
      listRows("PostgreSQL", await PerJob.listPages(store, listed, runs, () => PerJob.fillPg(store.postgres, listed)))
    }
  } finally {
    for (const name of pgDatabases) await dropPgDatabase(name)
  }
  if (!bull) console.error("  S7: BullMQ skipped: Redis at 127.0.0.1:6379 is not reachable")
}

const main = async () => {
  console.error(`effect-jobs bench${quick ? " (quick)" : ""}: ${cpus().length} cores, Node ${process.version}`)
  // `--only s7` (or `s1,s2`): just those scenarios.
  const only = flags.only === undefined ? undefined : new Set(flags.only.split(","))
  const scenarios = { s1, s1scale, s2, s3, s4, s5, xproc: crossProcess, s6, s7 }
  for (const [name, run] of Object.entries(scenarios)) if (only === undefined || only.has(name)) await run()

  const ratio = (scenario: string, a: string, b: string) => {
    const x = rows.find((row) => row.scenario === scenario && row.contender === a)
    const y = rows.find((row) => row.scenario === scenario && row.contender === b)
    return x && y ? (x.median / y.median).toFixed(2) + "x" : "n/a"
  }
  const lines = [
    `| scenario | contender | median | unit | note |`,
    `| --- | --- | ---: | --- | --- |`,
    ...rows.map((row) =>
      `| ${row.scenario} | ${row.contender} | ${row.median.toFixed(2)} | ${row.unit} | ${row.note ?? ""} |`
    ),
    "",
    `| ratio | value |`,
    `| --- | ---: |`,
    `| Effect floor / p-map (S1) | ${ratio("S1 overhead", "Effect floor: 16 fibers, one Effect.async per chunk", "p-map")} |`,
    `| JobExecutor / p-map (S1) | ${ratio("S1 overhead", "effect-jobs JobExecutor", "p-map")} |`,
    `| JobExecutor, Effect worker / p-map (S1) | ${ratio("S1 overhead", "effect-jobs JobExecutor, Effect worker", "p-map")} |`,
    `| JobManager / p-map (S1) | ${ratio("S1 overhead", "effect-jobs JobManager (memory)", "p-map")} |`,
    `| Promise facade / p-map (S1) | ${ratio("S1 overhead", "effect-jobs Promise facade (memory)", "p-map")} |`,
    ...(quick ? [1_000] : [1_000, 10_000]).map((chunks) => {
      const scenario = `S1 per job, ${chunks.toLocaleString("en")} chunks`
      return `| Promise facade / p-map (${scenario}) | ${ratio(scenario, "effect-jobs Promise facade (memory), one manager", "p-map")} |`
    }),
    ...[1, 16, 256].flatMap((width) => [
      `| JobExecutor / p-map (S1 concurrency ${width}) | ${ratio(`S1 concurrency ${width}`, "effect-jobs JobExecutor", "p-map")} |`,
      `| Promise facade / p-map (S1 concurrency ${width}) | ${ratio(`S1 concurrency ${width}`, "effect-jobs Promise facade (memory)", "p-map")} |`
    ]),
    `| BullMQ / effect-jobs SQLite (S2, per chunk) | ${ratio("S2 durable", "BullMQ (local Redis)", "effect-jobs SQLite store")} |`,
    ...[0, 20].map((ms) => {
      const scenario = rows.find((row) => row.scenario.startsWith("S6 cluster:") && row.scenario.includes(` of ${ms} ms`))?.scenario ?? ""
      return `| effect-jobs cluster of 3 runners / BullMQ flow (S6, ${ms} ms chunks, chunks/s) | ${
        ratio(scenario, "effect-jobs cluster, 3 runner processes", "BullMQ flow (parent + children), 3 worker processes (local Redis)")
      } |`
    }),
    ...["memory", "SQLite", "PostgreSQL"].map((name) => {
      const scenario = rows.find((row) => row.scenario.startsWith("S7 per job"))?.scenario ?? ""
      return `| effect-jobs ${name} / BullMQ (S7, jobs/s) | ${ratio(scenario, `effect-jobs ${name}`, "BullMQ (local Redis)")} |`
    })
  ]
  console.log(lines.join("\n"))
  const resultsDir = join(process.cwd(), "bench", "results")
  mkdirSync(resultsDir, { recursive: true })
  const file = join(resultsDir, `${new Date().toISOString().replaceAll(":", "-")}${quick ? "-quick" : ""}.json`)
  writeFileSync(file, JSON.stringify({
    quick,
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version },
    rows
  }, null, 2))
  console.error(`raw figures: ${file}`)
}

main().finally(() => rmSync(scratch, { recursive: true, force: true })).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
