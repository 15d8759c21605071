import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { assert, describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { RangeSet } from "../src/internal/rangeSet.js"
import { migrations, tablesIn } from "../src/internal/sqlMigrations.js"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { JobId, JobStatus } from "../src/Job.js"
import * as JobManager from "../src/JobManager.js"
import { JobRepository } from "../src/JobRepository.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import {
  base,
  chunkSpec,
  collectStops,
  jobId,
  jobRepositoryContract,
  moveTo,
  newJob,
  startJob,
  view
} from "./contract/JobRepositoryContract.js"
import { chunkContract } from "./contract/chunkContract.js"

const pgUrl = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"

// --- fixtures ---------------------------------------------------------------------------------------------

/** A fresh temporary directory, removed when the scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-jobs-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const sqliteLayer = (options?: Omit<SqlJobRepository.SqliteOptions, "filename">) =>
  Layer.unwrapScoped(
    Effect.map(tempDir, (dir) => SqlJobRepository.layerSqlite({ ...options, filename: path.join(dir, "jobs.db") }))
  )

const randomSchema = () => `ej_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`

const dropSchema = (schema: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`).pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl) })),
    Effect.orDie
  )

/** A fresh schema name, dropped (with everything in it) when the scope closes. */
const tempSchema = Effect.acquireRelease(Effect.sync(randomSchema), dropSchema)

const pgLayer = (options?: Omit<SqlJobRepository.PgOptions, "url" | "schema">) =>
  Layer.unwrapScoped(Effect.map(tempSchema, (schema) => SqlJobRepository.layerPg({ ...options, url: pgUrl, schema })))

/** A PostgreSQL store in a fresh schema that flushes every second, and an SQL client on the same database. */
const slowFlushPgStore = Effect.gen(function*() {
  const schema = yield* tempSchema
  const context = yield* Layer.build(
    SqlJobRepository.layerWith({ schema, flushInterval: "1 second" }).pipe(
      Layer.provideMerge(PgClient.layer({ url: Redacted.make(pgUrl) }))
    )
  )
  return { repo: Context.get(context, JobRepository), schema, sql: Context.get(context, SqlClient.SqlClient) }
})

/** Runs statements on an SQLite file through a client of its own (WAL left as the file has it). */
const withSqlite = <A, E>(filename: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.flatMap(SqlClient.SqlClient, f).pipe(
    Effect.provide(SqliteClient.layer({ filename, disableWAL: true }))
  )

/** What must not change when a store refuses a file: its bytes, its mtime and the files beside it. */
const snapshot = (file: string) => ({
  bytes: fs.readFileSync(file),
  mtimeMs: fs.statSync(file).mtimeMs,
  files: fs.readdirSync(path.dirname(file)).sort()
})

/** Backdates a file, so that any write to it would show in its mtime. */
const backdate = (file: string) => fs.utimesSync(file, new Date(2020, 0, 1), new Date(2020, 0, 1))

/**
 * Waits for I/O that the TestClock already set off (a flush's writes), re-running `effect` every 10 real
 * milliseconds until `done` holds; dies after 500 attempts.
 */
/** Polls `effect` every 10 ms (real time) until `done`; dies after 30 s (a background flush under full-suite load can take seconds). */
const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (value: A) => boolean) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 3_000; attempt++) {
      const value = yield* effect
      if (done(value)) return value
      yield* TestServices.provideLive(Effect.sleep("10 millis"))
    }
    return yield* Effect.dieMessage("condition not reached within 30 s")
  })

const openError = <E>(layer: Layer.Layer<JobRepository, E>) => Effect.flip(Effect.provide(JobRepository, layer))

// --- the contract, on both databases ----------------------------------------------------------------------

jobRepositoryContract("SqlJobRepository.layerSqlite (contract)", () => sqliteLayer())
jobRepositoryContract("SqlJobRepository.layerPg (contract)", () => pgLayer())
chunkContract("SqlJobRepository.layerSqlite (contract)", () => sqliteLayer())
chunkContract("SqlJobRepository.layerPg (contract)", () => pgLayer())

// --- behaviour under load ---------------------------------------------------------------------------------

/**
 * 100 jobs of 8 chunks; 16 worker fibers start each job, report each chunk and complete it (10 operations per
 * job, 1,000 in all) while a poller lists and gets in a loop and moves the clock so that flushes interleave.
 * No operation may fail, every record must decode, and no job's progress may ever be seen going back.
 */
const loadTest = Effect.gen(function*() {
  const repo = yield* JobRepository
  const jobCount = 100
  const chunks = 8
  const ids: Array<JobId> = []
  for (let index = 0; index < jobCount; index++) {
    const id = jobId(`job_load_${String(index).padStart(3, "0")}`)
    ids.push(id)
    yield* repo.create(newJob(id, chunkSpec(chunks)))
  }
  let next = 0
  let operations = 0
  let workersDone = false
  const worker = Effect.gen(function*() {
    for (let index = next++; index < jobCount; index = next++) {
      const id = ids[index]!
      assert.isTrue((yield* repo.transition(id, ["pending"], "running")).applied)
      operations++
      for (let done = 1; done <= chunks; done++) {
        yield* repo.updateProgress(id, { completedChunks: done, failedChunks: 0 })
        operations++
        // A real (macro-task) yield, so the poller runs in between even when every statement is synchronous.
        yield* TestServices.provideLive(Effect.sleep("0 millis"))
      }
      const result = yield* repo.transition(id, ["running"], "completed", { completedChunks: chunks, failedChunks: 0 })
      assert.isTrue(result.applied)
      operations++
    }
  })

  const lastSeen = new Map<string, number>()
  const violations: Array<string> = []
  let observations = 0
  const observe = (status: JobStatus) => {
    observations++
    const previous = lastSeen.get(status.id) ?? 0
    if (status.completedChunks < previous) {
      violations.push(`${status.id}: ${previous} then ${status.completedChunks}`)
    }
    if (status.state === "completed" && status.completedChunks !== chunks) {
      violations.push(`${status.id}: completed with ${status.completedChunks}`)
    }
    lastSeen.set(status.id, status.completedChunks)
  }
  let polls = 0
  const poller = Effect.gen(function*() {
    while (!workersDone) {
      let cursor: string | undefined = undefined
      do {
        const page: { readonly jobs: ReadonlyArray<JobStatus>; readonly nextCursor?: string | undefined } = yield* repo
          .list(cursor === undefined ? { limit: 37 } : { limit: 37, cursor })
        page.jobs.forEach(observe)
        cursor = page.nextCursor
      } while (cursor !== undefined)
      observe(Option.getOrThrow(yield* repo.get(ids[polls % jobCount]!)))
      polls++
      yield* TestClock.adjust("20 millis")
    }
  })
  yield* Effect.all([
    Effect.all(Array.from({ length: 16 }, () => worker), { concurrency: "unbounded", discard: true }).pipe(
      Effect.ensuring(Effect.sync(() => {
        workersDone = true
      }))
    ),
    poller
  ], { concurrency: "unbounded", discard: true })

  expect(operations).toBe(1000)
  expect(violations).toEqual([])
  expect(polls).toBeGreaterThan(2)
  expect(observations).toBeGreaterThan(jobCount)
  const final = yield* repo.list({ limit: 1000 })
  expect(final.jobs).toHaveLength(jobCount)
  for (const status of final.jobs) {
    expect(status).toMatchObject({ state: "completed", completedChunks: chunks, failedChunks: 0, progress: 100 })
  }
})

/** Two stores on one database (two processes, in effect) race transitions: exactly one applies. */
const raceBetweenStores = (a: JobRepository["Type"], b: JobRepository["Type"]) =>
  Effect.gen(function*() {
    for (let index = 0; index < 20; index++) {
      const id = jobId(`job_shared_${index}`)
      yield* a.create(newJob(id))
      assert.isTrue((yield* b.transition(id, ["pending"], "running")).applied)
      const [cancel, complete] = yield* Effect.all([
        a.transition(id, ["running"], "cancelled"),
        b.transition(id, ["running"], "completed", { completedChunks: 10, failedChunks: 0 })
      ], { concurrency: "unbounded" })
      expect(Number(cancel.applied) + Number(complete.applied)).toBe(1)
      const winner = cancel.applied ? "cancelled" : "completed"
      const seenByA = view(Option.getOrThrow(yield* a.get(id)))
      expect(seenByA.state).toBe(winner)
      expect(view(Option.getOrThrow(yield* b.get(id)))).toEqual(seenByA)
    }
  })

const buildService = <E>(layer: Layer.Layer<JobRepository, E>) =>
  Effect.map(Layer.build(layer), Context.get(JobRepository))

/** Jobs as a version 1 store holds them. */
const v1Jobs = [
  {
    id: "job_v1_pending",
    name: "queued",
    state: "pending",
    spec: JSON.stringify(chunkSpec(4, "queued")),
    total_chunks: 4,
    completed_chunks: 0,
    failed_chunks: 0,
    error: null,
    created_at: base,
    updated_at: base,
    started_at: null,
    finished_at: null
  },
  {
    id: "job_v1_running",
    name: null,
    state: "running",
    spec: JSON.stringify({ metadata: { source: "v1" }, chunks: { start: 0, end: 99, size: 10 } }),
    total_chunks: 10,
    completed_chunks: 3,
    failed_chunks: 1,
    error: null,
    created_at: base + 1000,
    updated_at: base + 3000,
    started_at: base + 2000,
    finished_at: null
  },
  {
    id: "job_v1_failed",
    name: "broken",
    state: "failed",
    spec: JSON.stringify(chunkSpec(10, "broken")),
    total_chunks: 10,
    completed_chunks: 2,
    failed_chunks: 1,
    error: "chunk 2 failed: boom",
    created_at: base + 2000,
    updated_at: base + 5000,
    started_at: base + 3000,
    finished_at: base + 5000
  }
] as const

/** Builds a version 1 store (tables, its migration row, jobs) on the `SqlClient` in context. */
const makeV1Store = (schema: string | undefined) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    if (schema !== undefined) yield* sql`CREATE SCHEMA ${sql(schema)}`
    // Only migration 1: the store as effect-jobs left it before version 2 existed (migrations never change).
    const tables = tablesIn(schema)
    yield* Migrator.make({})({
      loader: Effect.map(migrations(tables), (all) => all.filter(([id]) => id === 1)),
      table: tables.migrations
    })
    yield* sql`INSERT INTO ${sql(tables.jobs)} ${sql.insert(v1Jobs.map((job) => ({ ...job })))}`
  })

/** What the v1 jobs read as, now. */
const v1Views = v1Jobs.map((job) => ({
  id: job.id,
  name: job.name ?? undefined,
  state: job.state,
  totalChunks: job.total_chunks,
  completedChunks: job.completed_chunks,
  failedChunks: job.failed_chunks,
  progress: Math.floor(((job.completed_chunks + job.failed_chunks) * 100) / job.total_chunks),
  error: job.error ?? undefined,
  createdAt: job.created_at,
  updatedAt: job.updated_at,
  startedAt: job.started_at ?? undefined,
  finishedAt: job.finished_at ?? undefined,
  owner: undefined,
  phase: undefined,
  retryOf: undefined
}))

/** Checks a store migrated from version 1: its jobs read as before, and the version 2 operations work on them. */
const checkMigratedV1 = (repo: JobRepository["Type"]) =>
  Effect.gen(function*() {
    for (const expected of v1Views) {
      expect(view(Option.getOrThrow(yield* repo.get(jobId(expected.id))))).toEqual(expected)
      expect((yield* repo.getCheckpoint(jobId(expected.id))).size).toBe(0)
    }
    expect(Option.getOrThrow(yield* repo.getSpec(jobId("job_v1_running")))).toEqual({
      metadata: { source: "v1" },
      chunks: { start: 0, end: 99, size: 10 }
    })
    // Version 4: the metadata is read with the job, and its chunks are listed.
    expect(Option.getOrThrow(yield* repo.get(jobId("job_v1_running"))).metadata).toEqual({ source: "v1" })
    expect(Option.getOrThrow(yield* repo.get(jobId("job_v1_pending"))).metadata).toBeUndefined()
    yield* repo.heartbeat("m1")
    expect(yield* repo.claimOrphans("m1", base)).toEqual(["job_v1_pending", "job_v1_running"])
    const running = yield* repo.transition(jobId("job_v1_running"), ["pending"], "running")
    expect(view(running.status)).toMatchObject({ state: "running", owner: "m1", completedChunks: 3, startedAt: base + 2000 })
    // Migrated jobs start at lease 0: the claim and the start took one each.
    expect(running.status.lease).toBe(2)
    yield* repo.updateProgress(jobId("job_v1_running"), { completedChunks: 4, failedChunks: 1, completedChunkIds: [0] })
    const paused = yield* repo.transition(jobId("job_v1_running"), ["running"], "paused")
    expect(view(paused.status)).toMatchObject({ state: "paused", completedChunks: 4 })
    expect((yield* repo.getCheckpoint(jobId("job_v1_running"))).toString()).toBe("0")
    expect((yield* repo.listChunks(jobId("job_v1_running"), { limit: 2 })).chunks.map((chunk) => chunk.state)).toEqual([
      "completed",
      "pending"
    ])
    const error = yield* Effect.flip(repo.create(newJob("job_v1_failed")))
    expect(error.message).toContain("already exists")
  })

/** Two stores on one database claim at once, round after round: no job is claimed by both, none is left. */
const claimRaceBetweenStores = (a: JobRepository["Type"], b: JobRepository["Type"]) =>
  Effect.gen(function*() {
    yield* a.heartbeat("manager_a")
    yield* b.heartbeat("manager_b")
    for (let round = 0; round < 5; round++) {
      const ids: Array<string> = []
      for (let index = 0; index < 20; index++) {
        const id = `job_orphan_${round}_${String(index).padStart(2, "0")}`
        ids.push(id)
        yield* (index % 2 === 0 ? a : b).create({ ...newJob(id), ...(index % 4 === 0 ? { owner: "dead" } : {}) })
        if (index % 3 === 0) yield* Effect.provideService(moveTo(jobId(id), "running"), JobRepository, a)
      }
      const [byA, byB] = yield* Effect.all([
        a.claimOrphans("manager_a", base - 5000),
        b.claimOrphans("manager_b", base - 5000)
      ], { concurrency: "unbounded" })
      expect(byA.filter((id) => byB.includes(id))).toEqual([])
      expect([...byA, ...byB].sort()).toEqual(ids)
      for (const [owner, claimed] of [["manager_a", byA], ["manager_b", byB]] as const) {
        for (const id of claimed) expect(Option.getOrThrow(yield* b.get(id)).owner).toBe(owner)
      }
    }
  })

/** Waits, in real time only (the TestClock does not move), until `done()` holds; fails after `millis`. */
const waitLive = (done: () => boolean, what: string, millis = 5000) =>
  TestServices.provideLive(Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!done()) {
      if (Date.now() > deadline) return assert.fail(`${what}: not within ${millis} ms`)
      yield* Effect.sleep("5 millis")
    }
  }))

/** Waits until a store's connection listens on the change channel of `schema` (PostgreSQL). */
const untilListening = (schema: string) =>
  Effect.gen(function*() {
    const listening = Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity
        WHERE query = ${`LISTEN "effect_jobs_changes_${schema}"`} AND state = 'idle'`).pipe(
        Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl) }))
      )
    yield* eventually(listening, (rows) => Number(rows[0]!.n) > 0)
    yield* TestServices.provideLive(Effect.sleep("50 millis"))
  })

/** A job with a million chunks, completed mostly in order, makes a checkpoint of a few bytes. */
const millionChunks = (
  storedCheckpoint: (
    id: JobId
  ) => Effect.Effect<{ checkpoint: string | null; completed: number }, unknown, SqlClient.SqlClient>
) =>
  Effect.gen(function*() {
    const repo = yield* JobRepository
    const id = jobId("job_million")
    const total = 1_000_000
    yield* repo.create(newJob(id, { chunks: { start: 0, end: total - 1, size: 1 } }))
    yield* moveTo(id, "running")
    // Within each block of 10 the chunks complete out of order, as with 10 workers.
    const order = [3, 0, 1, 2, 7, 4, 5, 9, 6, 8]
    let done = 0
    let flushed = 0
    for (let block = 0; block < total; block += 10) {
      for (let turn = 0; turn < 10; turn++) {
        yield* repo.updateProgress(id, { completedChunks: ++done, failedChunks: 0, completedChunkIds: [block + order[turn]!] })
        if (turn === 4 && block % 100_000 === 50_000) {
          // A flush every 100,000 chunks, half-way through a block: the checkpoint has a gap then.
          yield* TestClock.adjust("1 second")
          flushed = done
        }
      }
      if (block === 500_000) {
        const half = yield* repo.getCheckpoint(id)
        expect(half.size).toBe(done)
        expect(half.rangeCount).toBe(1)
        // What a flush wrote: a short record, and counts and chunk ids written together.
        const stored = yield* eventually(storedCheckpoint(id), (row) => row.completed >= flushed)
        expect(stored.checkpoint!.length).toBeLessThan(100)
        expect(RangeSet.parse(stored.checkpoint!)?.size).toBe(stored.completed)
      }
    }
    yield* TestClock.adjust("1 second")
    const stored = yield* eventually(storedCheckpoint(id), (row) => row.completed === total)
    expect(stored.checkpoint).toBe(`0-${total - 1}`)
    expect(stored.checkpoint!.length).toBeLessThan(100)
    const checkpoint = yield* repo.getCheckpoint(id)
    expect(checkpoint.size).toBe(total)
    expect(checkpoint.rangeCount).toBe(1)
  })

/**
 * Transitions asked at once (one group: its compare-and-sets that need no statement of their own are one
 * statement) where two callers' leases are stale: the others apply, each stale one is refused and answered
 * with the job's newer lease, and the progress buffered under a stale lease never lands.
 */
const groupWithStaleLeases = Effect.gen(function*() {
  const repo = yield* JobRepository
  const ids = ["job_g1", "job_g2", "job_g3", "job_g4", "job_g5"].map(jobId)
  const [g1, g2, g3, g4, g5] = ids as [JobId, JobId, JobId, JobId, JobId]
  for (const id of ids) yield* repo.create(newJob(id, chunkSpec(4)))
  const started = yield* Effect.all(
    ids.map((id) => repo.transition(id, ["pending"], "running", { owner: "owner_a", lease: 0 })),
    { concurrency: "unbounded" }
  )
  expect(started.map((result) => [result.applied, result.status.lease])).toEqual(ids.map(() => [true, 1]))
  // Another manager takes job_g3 and job_g4 over: lease 1 is stale for them.
  for (const id of [g3, g4]) {
    yield* repo.transition(id, ["running"], "pending", { owner: null })
    yield* repo.transition(id, ["pending"], "running", { owner: "owner_b" })
  }
  // Every first owner reports chunk 0 under lease 1, but job_g3's (it stays in the grouped statement).
  for (const id of [g1, g2, g4, g5]) {
    yield* repo.updateProgress(id, { completedChunks: 1, failedChunks: 0, completedChunkIds: [0], lease: 1 })
  }
  const ended = yield* Effect.all(
    ids.map((id) => repo.transition(id, ["running"], "completed", { completedChunks: 4, failedChunks: 0, lease: 1 })),
    { concurrency: "unbounded" }
  )
  expect(ended.map((result) => [result.applied, result.status.state, result.status.lease, result.status.owner])).toEqual([
    [true, "completed", 2, "owner_a"],
    [true, "completed", 2, "owner_a"],
    [false, "running", 3, "owner_b"],
    [false, "running", 3, "owner_b"],
    [true, "completed", 2, "owner_a"]
  ])
  for (const id of [g1, g2, g5]) expect([...(yield* repo.getCheckpoint(id)).ranges()]).toEqual([[0, 0]])
  for (const id of [g3, g4]) {
    expect((yield* repo.getCheckpoint(id)).size).toBe(0)
    expect(Option.getOrThrow(yield* repo.get(id)).completedChunks).toBe(0)
  }
  const late = yield* Effect.flip(repo.updateProgress(g4, { completedChunks: 2, failedChunks: 0, lease: 1 }))
  expect(late._tag).toBe("LeaseLost")
})

/**
 * Jobs ending at once, their chunk ids going into a checkpoint this store takes to be empty (in the grouped
 * statement), while another process stored a checkpoint for two of them: for those the grouped write does not
 * apply, and they are written again the usual way, their ids merged into the stored checkpoint; all end.
 */
const endsOverForeignCheckpoints = (setCheckpoint: (id: JobId, checkpoint: string) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    const repo = yield* JobRepository
    const ids = ["job_f1", "job_f2", "job_f3"].map(jobId)
    const [f1, f2, f3] = ids as [JobId, JobId, JobId]
    for (const id of ids) yield* repo.create(newJob(id, chunkSpec(4)))
    yield* Effect.all(
      ids.map((id) => repo.transition(id, ["pending"], "running", { owner: "owner_a", lease: 0 })),
      { concurrency: "unbounded" }
    )
    for (const id of ids) {
      yield* repo.updateProgress(id, { completedChunks: 1, failedChunks: 0, completedChunkIds: [0], lease: 1 })
    }
    yield* setCheckpoint(f1, "1")
    yield* setCheckpoint(f3, "1-2")
    const ended = yield* Effect.all(
      ids.map((id) => repo.transition(id, ["running"], "completed", { completedChunks: 3, failedChunks: 0, lease: 1 })),
      { concurrency: "unbounded" }
    )
    expect(ended.map((result) => [result.applied, result.status.state])).toEqual(ids.map(() => [true, "completed"]))
    expect([...(yield* repo.getCheckpoint(f1)).ranges()]).toEqual([[0, 1]])
    expect([...(yield* repo.getCheckpoint(f2)).ranges()]).toEqual([[0, 0]])
    expect([...(yield* repo.getCheckpoint(f3)).ranges()]).toEqual([[0, 2]])
  })

/**
 * More creates and transitions at once than one statement writes (500): they are written in several
 * statements of one transaction, and each is answered as it applied.
 */
const largeGroups = Effect.gen(function*() {
  const repo = yield* JobRepository
  const ids = Array.from({ length: 620 }, (_, index) => jobId(`job_l${String(index).padStart(3, "0")}`))
  yield* Effect.all(ids.map((id) => repo.create(newJob(id, chunkSpec(2)))), { concurrency: "unbounded" })
  // Every tenth caller holds a stale lease.
  const started = yield* Effect.all(
    ids.map((id, index) => repo.transition(id, ["pending"], "running", { owner: "owner_a", lease: index % 10 === 9 ? 7 : 0 })),
    { concurrency: "unbounded" }
  )
  expect(started.map((result) => result.applied)).toEqual(ids.map((_, index) => index % 10 !== 9))
  const page = yield* repo.list({ state: "running", limit: 1000 })
  expect(page.jobs).toHaveLength(558)
})

// --- SQLite -----------------------------------------------------------------------------------------------

describe("SqlJobRepository.layerSqlite", () => {
  it.effect("more creates and transitions at once than one statement writes: each answered as it applied", () =>
    largeGroups.pipe(Effect.provide(sqliteLayer())))

  it.scoped("jobs ending at once over checkpoints another process stored: their ids are merged, all end", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "jobs.db")
      const repo = yield* buildService(SqlJobRepository.layerSqlite({ filename }))
      yield* endsOverForeignCheckpoints((id, checkpoint) =>
        withSqlite(filename, (sql) => sql`UPDATE effect_jobs SET checkpoint = ${checkpoint} WHERE id = ${id}`)
      ).pipe(Effect.provideService(JobRepository, repo))
    }))

  it.effect("transitions asked at once where some leases are stale: the others apply, the stale ones are refused", () =>
    groupWithStaleLeases.pipe(Effect.provide(sqliteLayer())))

  it.scoped("creates the file on first use, in WAL mode, at schema version 3", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "new.db")
      expect(fs.existsSync(filename)).toBe(false)
      yield* Effect.provide(
        Effect.flatMap(JobRepository, (repo) => repo.create(newJob("job_first"))),
        SqlJobRepository.layerSqlite({ filename })
      )
      const [mode, meta, migrations] = yield* withSqlite(filename, (sql) =>
        Effect.all([
          sql<{ journal_mode: string }>`PRAGMA journal_mode`,
          sql<{ key: string; value: string }>`SELECT key, value FROM effect_jobs_meta ORDER BY key`,
          sql<{ migration_id: number }>`SELECT migration_id FROM effect_jobs_migrations`
        ]))
      expect(mode).toEqual([{ journal_mode: "wal" }])
      expect(meta).toEqual([{ key: "application", value: "effect-jobs" }, { key: "schema_version", value: "5" }])
      expect(migrations).toEqual([{ migration_id: 1 }, { migration_id: 2 }, { migration_id: 3 }, { migration_id: 4 }, { migration_id: 5 }])
    }))

  it.scoped("keeps jobs across layer builds; closing the layer writes buffered progress and checkpoints", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const filename = path.join(yield* tempDir, "jobs.db")
      const spec = { name: "render", chunks: { start: 1, end: 240, size: 24 } }
      const id = jobId("job_persist")
      const layer = SqlJobRepository.layerSqlite({ filename, flushInterval: "1 hour" })
      const before = yield* Effect.provide(
        Effect.gen(function*() {
          const repo = yield* JobRepository
          expect(repo.durable).toBe(true)
          yield* repo.create({ ...newJob(id, spec), owner: "m1", retryOf: jobId("job_first_try") })
          yield* moveTo(id, "running")
          yield* TestClock.adjust("1 second")
          for (const chunk of [0, 1, 2, 3, 4, 6, 7]) {
            yield* repo.updateProgress(id, { completedChunks: chunk === 7 ? 7 : 6, failedChunks: 1, completedChunkIds: [chunk] })
          }
          yield* repo.updateProgress(id, { completedChunks: 7, failedChunks: 1, phase: "finalizing" })
          return view(Option.getOrThrow(yield* repo.get(id)))
        }),
        layer
      )
      expect(before).toMatchObject({
        state: "running",
        completedChunks: 7,
        failedChunks: 1,
        progress: 80,
        owner: "m1",
        phase: "finalizing",
        retryOf: "job_first_try"
      })
      const [after, storedSpec, checkpoint] = yield* Effect.provide(
        Effect.flatMap(JobRepository, (repo) => Effect.all([repo.get(id), repo.getSpec(id), repo.getCheckpoint(id)])),
        layer
      )
      expect(view(Option.getOrThrow(after))).toEqual(before)
      expect(Option.getOrThrow(storedSpec)).toEqual(spec)
      expect(checkpoint.toString()).toBe("0-4,6-7")
    }))

  it.scoped("refuses a file that is not SQLite, and leaves it untouched", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "garbage.db")
      fs.writeFileSync(filename, Buffer.from(Array.from({ length: 8192 }, (_, index) => (index * 7919) % 256)))
      backdate(filename)
      const before = snapshot(filename)
      const error = yield* openError(SqlJobRepository.layerSqlite({ filename }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(error.detail).toContain("is not a readable SQLite database")
      expect(error.detail).toContain("file is not a database")
      expect(snapshot(filename)).toEqual(before)
    }))

  it.scoped("refuses an SQLite file of another application, and leaves it untouched", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "shop.db")
      yield* withSqlite(filename, (sql) =>
        Effect.all([
          sql`CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`,
          sql`CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL)`,
          sql`INSERT INTO customers (name) VALUES ('Ada')`
        ], { discard: true }))
      backdate(filename)
      const before = snapshot(filename)
      const error = yield* openError(SqlJobRepository.layerSqlite({ filename }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(error.detail).toContain("tables of another application (customers, orders)")
      expect(snapshot(filename)).toEqual(before)
    }))

  it.scoped("refuses tables named like ours that effect-jobs did not create, and leaves the file untouched", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const collision = path.join(dir, "collision.db")
      yield* withSqlite(collision, (sql) => sql`CREATE TABLE effect_jobs (x INTEGER)`)
      const foreignMeta = path.join(dir, "meta.db")
      yield* withSqlite(foreignMeta, (sql) =>
        Effect.all([
          sql`CREATE TABLE effect_jobs_meta (key TEXT, value TEXT)`,
          sql`INSERT INTO effect_jobs_meta VALUES ('application', 'someone-else'), ('schema_version', '1')`
        ], { discard: true }))
      for (const [filename, detail] of [
        [collision, "a table effect_jobs that effect-jobs did not create"],
        [foreignMeta, "effect_jobs_meta was not created by effect-jobs"]
      ] as const) {
        backdate(filename)
        const before = snapshot(filename)
        const error = yield* openError(SqlJobRepository.layerSqlite({ filename }))
        expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
        expect(error.detail).toContain(detail)
        expect(snapshot(filename)).toEqual(before)
      }
    }))

  it.scoped("refuses a store written by a newer effect-jobs, and leaves it untouched", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "newer.db")
      yield* Effect.provide(
        Effect.flatMap(JobRepository, (repo) => repo.create(newJob("job_old"))),
        SqlJobRepository.layerSqlite({ filename })
      )
      yield* withSqlite(filename, (sql) => sql`UPDATE effect_jobs_meta SET value = '6' WHERE key = 'schema_version'`)
      backdate(filename)
      const before = snapshot(filename)
      const error = yield* openError(SqlJobRepository.layerSqlite({ filename }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(error.detail).toContain("schema version 6; this version knows up to 5")
      expect(snapshot(filename)).toEqual(before)
    }))

  it.scoped("fails with RepositoryError when the file cannot be opened", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "missing", "directory", "jobs.db")
      const error = yield* openError(SqlJobRepository.layerSqlite({ filename }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(error.detail).toContain("cannot open SQLite file")
    }))

  it.scoped("rejects bad options with InvalidOption", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "options.db")
      for (const flushInterval of [0, -5, "soon" as never, Number.POSITIVE_INFINITY]) {
        const error = yield* openError(SqlJobRepository.layerSqlite({ filename, flushInterval }))
        expect(error).toMatchObject({ _tag: "InvalidOption", path: ["flushInterval"] })
        const poll = yield* openError(SqlJobRepository.layerSqlite({ filename, stopPollInterval: flushInterval }))
        expect(poll).toMatchObject({ _tag: "InvalidOption", path: ["stopPollInterval"] })
      }
      expect(fs.existsSync(filename)).toBe(false)
      const schemaOnSqlite = yield* openError(
        SqlJobRepository.layerWith({ schema: "jobs" }).pipe(Layer.provide(SqliteClient.layer({ filename })))
      )
      expect(schemaOnSqlite).toMatchObject({ _tag: "InvalidOption", path: ["schema"] })
    }))

  it.scoped("create: false opens an existing store and refuses anything else, writing nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const missing = path.join(dir, "missing.db")
      const error = yield* openError(SqlJobRepository.layerSqlite({ filename: missing, create: false }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open", detail: `no job store at ${missing} (a job manager creates one on first use)` })
      expect(fs.existsSync(missing)).toBe(false)

      const empty = path.join(dir, "empty.db")
      fs.writeFileSync(empty, "")
      backdate(empty)
      const emptyBefore = snapshot(empty)
      const refused = yield* openError(SqlJobRepository.layerSqlite({ filename: empty, create: false }))
      expect(refused.detail).toBe(
        `SQLite file ${JSON.stringify(empty)}: it is not an effect-jobs store (it is empty); a job manager creates one on first use`
      )
      expect(snapshot(empty)).toEqual(emptyBefore)

      const other = path.join(dir, "other.db")
      yield* withSqlite(other, (sql) => sql`CREATE TABLE notes (body TEXT)`)
      backdate(other)
      const otherBefore = snapshot(other)
      const foreign = yield* openError(SqlJobRepository.layerSqlite({ filename: other, create: false }))
      expect(foreign.detail).toContain("it is not an effect-jobs store; a job manager creates one on first use")
      expect(snapshot(other)).toEqual(otherBefore)

      const store = path.join(dir, "jobs.db")
      yield* Effect.provide(Effect.flatMap(JobRepository, (repo) => repo.create(newJob("job_there"))), SqlJobRepository.layerSqlite({ filename: store }))
      const found = yield* Effect.provide(
        Effect.flatMap(JobRepository, (repo) => repo.get(jobId("job_there"))),
        SqlJobRepository.layerSqlite({ filename: store, create: false })
      )
      expect(Option.getOrThrow(found).state).toBe("pending")
    }))

  it.scoped("prune removes more jobs than one statement deletes, batch after batch", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "prune.db")
      const layer = SqlJobRepository.layerSqlite({ filename })
      yield* Effect.provide(Effect.flatMap(JobRepository, (repo) => repo.create(newJob("job_kept"))), layer)
      yield* withSqlite(filename, (sql) =>
        Effect.all([
          sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2100)
            INSERT INTO effect_jobs (id, state, total_chunks, created_at, updated_at, finished_at)
            SELECT 'job_old_' || i, 'completed', 0, 1, 1, 1 FROM n`,
          sql`INSERT INTO effect_jobs_specs (id, spec) SELECT id, '{"chunks":[]}' FROM effect_jobs WHERE id <> 'job_kept'`
        ]))
      const [removed, left] = yield* Effect.provide(
        Effect.flatMap(JobRepository, (repo) =>
          Effect.all([repo.prune({ states: ["completed"], finishedBefore: 2 }), repo.list({ limit: 10 })])),
        layer
      )
      expect(removed).toBe(2100)
      expect(left.jobs.map((status) => status.id)).toEqual(["job_kept"])
      // Their specs went with them.
      const specs = yield* withSqlite(filename, (sql) => sql<{ id: string }>`SELECT id FROM effect_jobs_specs`)
      expect(specs).toEqual([{ id: "job_kept" }])
    }))

  it.scoped("migrates a version 1 store in place: its jobs are kept and the new operations work on them", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base + 10_000)
      const filename = path.join(yield* tempDir, "v1.db")
      yield* makeV1Store(undefined).pipe(Effect.provide(SqliteClient.layer({ filename })))
      const repo = yield* buildService(SqlJobRepository.layerSqlite({ filename }))
      const [meta, migrations, columns] = yield* withSqlite(filename, (sql) =>
        Effect.all([
          sql<{ value: string }>`SELECT value FROM effect_jobs_meta WHERE key = 'schema_version'`,
          sql<{ migration_id: number }>`SELECT migration_id FROM effect_jobs_migrations ORDER BY migration_id`,
          sql<{ name: string }>`SELECT name FROM pragma_table_info('effect_jobs') ORDER BY name`
        ]))
      expect(meta).toEqual([{ value: "5" }])
      expect(migrations).toEqual([{ migration_id: 1 }, { migration_id: 2 }, { migration_id: 3 }, { migration_id: 4 }, { migration_id: 5 }])
      const names = columns.map((column) => column.name)
      expect(names).toEqual(expect.arrayContaining(["owner", "checkpoint", "phase", "retry_of", "stop_requested"]))
      expect(names).not.toContain("cancel_requested")
      yield* checkMigratedV1(repo)
    }))

  it.scoped("a corrupt checkpoint fails getCheckpoint and a transition that must extend it; it is never overwritten", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const filename = path.join(yield* tempDir, "corrupt.db")
      const repo = yield* buildService(SqlJobRepository.layerSqlite({ filename, flushInterval: "1 second" }))
      const stored = (id: string) =>
        withSqlite(filename, (sql) =>
          Effect.map(
            sql<{ checkpoint: string | null; completed_chunks: number; state: string }>`
              SELECT checkpoint, completed_chunks, state FROM effect_jobs WHERE id = ${id}`,
            (rows) => rows[0]!
          ))
      const bad = jobId("job_bad")
      const good = jobId("job_good")
      for (const id of [bad, good]) {
        yield* repo.create(newJob(id))
        yield* Effect.provideService(moveTo(id, "running"), JobRepository, repo)
        yield* repo.updateProgress(id, { completedChunks: 1, failedChunks: 0, completedChunkIds: [0] })
      }
      yield* TestClock.adjust("1 second")
      yield* eventually(stored("job_bad"), (row) => row.checkpoint === "0")
      for (const corrupt of ["0-2,x", "5-3", "1,1", "0-3,2-6", "-1", " 0"]) {
        yield* withSqlite(filename, (sql) => sql`UPDATE effect_jobs SET checkpoint = ${corrupt} WHERE id = ${bad}`)
        const error = yield* Effect.flip(repo.getCheckpoint(bad))
        expect(error).toMatchObject({ _tag: "RepositoryError", operation: "getCheckpoint" })
        expect(error.message).toContain("checkpoint of job job_bad is corrupt")
      }
      // A flush writes the counts, but not over the corrupt checkpoint; the other job's is written.
      yield* repo.updateProgress(bad, { completedChunks: 2, failedChunks: 0, completedChunkIds: [1] })
      yield* repo.updateProgress(good, { completedChunks: 2, failedChunks: 0, completedChunkIds: [1] })
      yield* TestClock.adjust("1 second")
      yield* eventually(stored("job_good"), (row) => row.checkpoint === "0-1")
      expect(yield* stored("job_bad")).toEqual({ checkpoint: " 0", completed_chunks: 2, state: "running" })
      // A transition that would write the buffered chunk id fails, and changes nothing.
      const refused = yield* Effect.flip(repo.transition(bad, ["running"], "paused"))
      expect(refused).toMatchObject({ _tag: "RepositoryError", operation: "transition" })
      expect(yield* stored("job_bad")).toEqual({ checkpoint: " 0", completed_chunks: 2, state: "running" })
      expect(Option.getOrThrow(yield* repo.get(bad)).state).toBe("running")
      // Repaired, the buffered id is kept.
      yield* withSqlite(filename, (sql) => sql`UPDATE effect_jobs SET checkpoint = '0,5' WHERE id = ${bad}`)
      expect((yield* repo.getCheckpoint(bad)).toString()).toBe("0-1,5")
      assert.isTrue((yield* repo.transition(bad, ["running"], "paused")).applied)
      expect(yield* stored("job_bad")).toEqual({ checkpoint: "0-1,5", completed_chunks: 2, state: "paused" })
    }))

  it.scoped("a flush that cannot merge into a corrupt checkpoint keeps the pulled rows of its completed chunks", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const filename = path.join(yield* tempDir, "corrupt-pulled.db")
      const repo = yield* buildService(SqlJobRepository.layerSqlite({ filename, flushInterval: "1 second" }))
      const id = jobId("job_streamed")
      const stored = withSqlite(filename, (sql) =>
        Effect.all([
          sql<{ completed_chunks: number; checkpoint: string | null }>`
            SELECT completed_chunks, checkpoint FROM effect_jobs WHERE id = ${id}`,
          sql<{ chunk_id: number }>`SELECT chunk_id FROM effect_jobs_pulled WHERE job_id = ${id} ORDER BY chunk_id`
        ]).pipe(Effect.map(([[job], pulled]) => ({ ...job!, pulled: pulled.map((row) => row.chunk_id) }))))
      yield* repo.create({ id, spec: { chunks: { source: "lines" } }, totalChunks: undefined })
      yield* Effect.provideService(moveTo(id, "running"), JobRepository, repo)
      const line = (chunkId: number) => ({ id: chunkId, payload: { line: `line ${chunkId}` } })
      yield* repo.updateProgress(id, { completedChunks: 0, failedChunks: 0, pulled: [0, 1, 2].map(line) })
      yield* TestClock.adjust("1 second")
      yield* eventually(stored, (row) => row.pulled.length === 3)
      yield* withSqlite(filename, (sql) => sql`UPDATE effect_jobs SET checkpoint = '0-2,x' WHERE id = ${id}`)
      // The flush writes the counts, but neither the ids into the checkpoint nor the removal of their pulled rows.
      yield* repo.updateProgress(id, { completedChunks: 2, failedChunks: 0, completedChunkIds: [0, 1], pulled: [] })
      yield* TestClock.adjust("1 second")
      yield* eventually(stored, (row) => row.completed_chunks === 2)
      expect(yield* stored).toEqual({ completed_chunks: 2, checkpoint: "0-2,x", pulled: [0, 1, 2] })
      // Repaired, the next write (here a transition) merges the buffered ids and removes their pulled rows.
      yield* withSqlite(filename, (sql) => sql`UPDATE effect_jobs SET checkpoint = NULL WHERE id = ${id}`)
      assert.isTrue((yield* repo.transition(id, ["running"], "paused")).applied)
      expect(yield* stored).toEqual({ completed_chunks: 2, checkpoint: "0-1", pulled: [2] })
    }))

  describe("coalesced progress", () => {
    /** The store on a client the test can query too (same connection, so `total_changes()` counts its writes). */
    const layerWithClient = Layer.unwrapScoped(
      Effect.map(tempDir, (dir) =>
        SqlJobRepository.layerWith({ flushInterval: "1 second" }).pipe(
          Layer.provideMerge(SqliteClient.layer({ filename: path.join(dir, "jobs.db") }))
        ))
    )
    const totalChanges = Effect.flatMap(
      SqlClient.SqlClient,
      (sql) => Effect.map(sql<{ n: number }>`SELECT total_changes() AS n`, (rows) => rows[0]!.n)
    )
    const storedCounts = Effect.flatMap(
      SqlClient.SqlClient,
      (sql) =>
        sql<{ id: string; completed_chunks: number; failed_chunks: number; updated_at: number }>`
          SELECT id, completed_chunks, failed_chunks, updated_at FROM effect_jobs ORDER BY id`
    )

    it.effect("many updates make one write per job per flush interval, and get/list see them at once", () =>
      Effect.zipRight(TestClock.setTime(base), Effect.gen(function*() {
        const repo = yield* JobRepository
        const ids = ["job_a", "job_b", "job_c"].map(jobId)
        for (const id of ids) {
          yield* repo.create(newJob(id, chunkSpec(100)))
          yield* moveTo(id, "running")
        }
        const changesBefore = yield* totalChanges
        for (let done = 1; done <= 100; done++) {
          for (const id of ids) yield* repo.updateProgress(id, { completedChunks: done, failedChunks: 0 })
          if (done % 10 === 0) yield* TestClock.adjust("10 millis")
        }
        // 300 updates, no write yet; reads already see the latest counts.
        expect(yield* totalChanges).toBe(changesBefore)
        expect((yield* storedCounts).map((row) => row.completed_chunks)).toEqual([0, 0, 0])
        expect((yield* repo.list({})).jobs.map((status) => [status.completedChunks, status.progress])).toEqual([
          [100, 100],
          [100, 100],
          [100, 100]
        ])
        yield* TestClock.adjust("1 second")
        const rows = yield* eventually(storedCounts, (rows) => rows.every((row) => row.completed_chunks === 100))
        // The last update was reported at base + 90 millis.
        expect(rows.map((row) => row.updated_at)).toEqual([base + 90, base + 90, base + 90])
        expect((yield* totalChanges) - changesBefore).toBe(3)
        expect(view(Option.getOrThrow(yield* repo.get(ids[0]!)))).toMatchObject({
          completedChunks: 100,
          updatedAt: base + 90
        })
        // Nothing is dirty any more: the next flush writes nothing, and the one after writes the one job that
        // changed (flushes run one after another, so once that write shows, the empty flush is done).
        yield* TestClock.adjust("1 second")
        yield* repo.updateProgress(ids[1]!, { completedChunks: 100, failedChunks: 0 })
        yield* TestClock.adjust("1 second")
        yield* eventually(totalChanges, (changes) => changes - changesBefore >= 4)
        expect((yield* totalChanges) - changesBefore).toBe(4)
      }).pipe(Effect.provide(layerWithClient))))

    it.effect("a transition writes the buffered counts in its own statement", () =>
      Effect.gen(function*() {
        const repo = yield* JobRepository
        const id = jobId("job_paused")
        yield* repo.create(newJob(id))
        yield* moveTo(id, "running")
        yield* repo.updateProgress(id, { completedChunks: 4, failedChunks: 1 })
        const changesBefore = yield* totalChanges
        yield* repo.transition(id, ["running"], "paused")
        expect((yield* totalChanges) - changesBefore).toBe(1)
        expect(yield* storedCounts).toMatchObject([{ id: "job_paused", completed_chunks: 4, failed_chunks: 1 }])
      }).pipe(Effect.provide(layerWithClient)))

    it.effect("chunk ids go into the checkpoint with the counts: in the flush, and in a transition's own transaction", () =>
      Effect.zipRight(TestClock.setTime(base), Effect.gen(function*() {
        const repo = yield* JobRepository
        const sql = yield* SqlClient.SqlClient
        const stored = Effect.map(
          sql<{ checkpoint: string | null; completed_chunks: number; state: string }>`
            SELECT checkpoint, completed_chunks, state FROM effect_jobs WHERE id = 'job_cp'`,
          (rows) => rows[0]!
        )
        const id = jobId("job_cp")
        yield* repo.create(newJob(id))
        yield* moveTo(id, "running")
        let done = 0
        for (const chunk of [0, 1, 2, 4, 3]) {
          yield* repo.updateProgress(id, { completedChunks: ++done, failedChunks: 0, completedChunkIds: [chunk] })
        }
        expect(yield* stored).toEqual({ checkpoint: null, completed_chunks: 0, state: "running" })
        expect((yield* repo.getCheckpoint(id)).toString()).toBe("0-4")
        yield* TestClock.adjust("1 second")
        expect(yield* eventually(stored, (row) => row.checkpoint !== null)).toEqual({
          checkpoint: "0-4",
          completed_chunks: 5,
          state: "running"
        })
        yield* repo.updateProgress(id, { completedChunks: 6, failedChunks: 0, completedChunkIds: [6] })
        yield* repo.transition(id, ["running"], "paused")
        expect(yield* stored).toEqual({ checkpoint: "0-4,6", completed_chunks: 6, state: "paused" })
      }).pipe(Effect.provide(layerWithClient))))

    it.effect("a checkpoint of 1,000,000 chunks completed mostly in order stays a short record", () =>
      Effect.zipRight(
        TestClock.setTime(base),
        millionChunks((id) =>
          Effect.flatMap(SqlClient.SqlClient, (sql) =>
            Effect.map(
              sql<{ checkpoint: string | null; completed_chunks: number }>`
                SELECT checkpoint, completed_chunks FROM effect_jobs WHERE id = ${id}`,
              (rows) => ({ checkpoint: rows[0]!.checkpoint, completed: rows[0]!.completed_chunks })
            ))
        ).pipe(Effect.provide(layerWithClient))
      ), 120_000)
  })

  it.effect("1,000 progress and state operations from 16 fibers while another polls: all decode, none go back", () =>
    loadTest.pipe(Effect.provide(sqliteLayer())), 60_000)

  it.scoped("two stores on one file: racing transitions have exactly one winner", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "shared.db")
      const a = yield* buildService(SqlJobRepository.layerSqlite({ filename }))
      const b = yield* buildService(SqlJobRepository.layerSqlite({ filename }))
      yield* raceBetweenStores(a, b)
    }))

  it.scoped("two stores on one file: claims at once never share a job", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const filename = path.join(yield* tempDir, "claims.db")
      const a = yield* buildService(SqlJobRepository.layerSqlite({ filename }))
      const b = yield* buildService(SqlJobRepository.layerSqlite({ filename }))
      yield* claimRaceBetweenStores(a, b)
    }))

  it.scoped("two stores on one file: a stop request made through one reaches the other's stream when it polls", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const filename = path.join(yield* tempDir, "stops.db")
      const manager = yield* buildService(SqlJobRepository.layerSqlite({ filename }))
      const client = yield* buildService(SqlJobRepository.layerSqlite({ filename }))
      const [x, y, z] = yield* Effect.all([startJob("job_x", "m1"), startJob("job_y", "m1"), startJob("job_z", "m1")]).pipe(
        Effect.provideService(JobRepository, manager)
      )
      // Stored before the stream starts: delivered when it starts.
      yield* client.requestStop({ id: x, kind: "pause" })
      const received = yield* Effect.provideService(collectStops(), JobRepository, manager)
      yield* waitLive(() => received.length > 0, "the stored request")
      expect(received).toEqual([{ id: "job_x", kind: "pause" }])
      // Made through the other store: seen at the next poll, when the file has changed.
      yield* client.requestStop({ id: y, kind: "cancel" })
      yield* TestServices.provideLive(Effect.sleep("100 millis"))
      expect(received).toHaveLength(1)
      yield* TestClock.adjust("50 millis")
      yield* waitLive(() => received.length > 1, "the request made through the other store")
      // A request already stored is not stored (nor delivered) again; a cancel replaces a pause; a pause does
      // not replace a cancel.
      yield* client.requestStop({ id: y, kind: "cancel" })
      yield* client.requestStop({ id: y, kind: "pause" })
      yield* client.requestStop({ id: x, kind: "pause" })
      yield* client.requestStop({ id: x, kind: "cancel" })
      yield* TestClock.adjust("1 second")
      yield* client.requestStop({ id: z, kind: "pause" })
      yield* TestClock.adjust("50 millis")
      yield* waitLive(() => received.some((request) => request.id === "job_z"), "the request for job_z")
      expect(received).toEqual([
        { id: "job_x", kind: "pause" },
        { id: "job_y", kind: "cancel" },
        { id: "job_x", kind: "cancel" },
        { id: "job_z", kind: "pause" }
      ])
    }))
})

// --- PostgreSQL -------------------------------------------------------------------------------------------

describe("SqlJobRepository.layerPg", () => {
  it.effect("more creates and transitions at once than one statement writes: each answered as it applied", () =>
    largeGroups.pipe(Effect.provide(pgLayer())))

  it.scoped("jobs ending at once over checkpoints another process stored: their ids are merged, all end", () =>
    Effect.gen(function*() {
      const { repo, schema, sql } = yield* slowFlushPgStore
      yield* endsOverForeignCheckpoints((id, checkpoint) =>
        sql`UPDATE ${sql(`${schema}.effect_jobs`)} SET checkpoint = ${checkpoint} WHERE id = ${id}`
      ).pipe(Effect.provideService(JobRepository, repo))
    }))

  it.effect("transitions asked at once where some leases are stale: the others apply, the stale ones are refused", () =>
    groupWithStaleLeases.pipe(Effect.provide(pgLayer())))

  it.live("an unreachable server fails the layer with RepositoryError", () =>
    Effect.gen(function*() {
      const error = yield* openError(
        SqlJobRepository.layerPg({ url: "postgres://postgres@127.0.0.1:1/test", connectTimeout: "2 seconds" })
      ).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "the layer hung" }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(error.detail).toContain("ECONNREFUSED")
    }))

  it.scopedLive("a server that never answers fails the layer within connectTimeout", () =>
    Effect.gen(function*() {
      const sockets = new Set<net.Socket>()
      const server = yield* Effect.acquireRelease(
        Effect.async<net.Server>((resume) => {
          const server = net.createServer((socket) => {
            sockets.add(socket)
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) =>
          Effect.async<void>((resume) => {
            sockets.forEach((socket) => socket.destroy())
            server.close(() => resume(Effect.void))
          })
      )
      const port = (server.address() as net.AddressInfo).port
      const started = Date.now()
      const error = yield* openError(
        SqlJobRepository.layerPg({ url: `postgres://postgres@127.0.0.1:${port}/test`, connectTimeout: "1 second" })
      ).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "the layer hung" }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(Date.now() - started).toBeLessThan(5000)
    }))

  it.effect("rejects bad options with InvalidOption before connecting", () =>
    Effect.gen(function*() {
      // Port 1 refuses connections: reaching it would fail with RepositoryError instead.
      const url = "postgres://postgres@127.0.0.1:1/test"
      for (const schema of ["", "a.b", "1abc", "x\"; DROP TABLE y; --"]) {
        const error = yield* openError(SqlJobRepository.layerPg({ url, schema }))
        expect(error).toMatchObject({ _tag: "InvalidOption", path: ["schema"] })
      }
      const timeout = yield* openError(SqlJobRepository.layerPg({ url, connectTimeout: -1 }))
      expect(timeout).toMatchObject({ _tag: "InvalidOption", path: ["connectTimeout"] })
      const interval = yield* openError(SqlJobRepository.layerPg({ url, flushInterval: "0 millis" }))
      expect(interval).toMatchObject({ _tag: "InvalidOption", path: ["flushInterval"] })
    }))

  it.scoped("puts the tables in the given schema and keeps jobs across layer builds", () =>
    Effect.gen(function*() {
      const schema = yield* tempSchema
      const layer = SqlJobRepository.layerPg({ url: pgUrl, schema })
      yield* Effect.provide(Effect.flatMap(JobRepository, (repo) => repo.create(newJob("job_pg"))), layer)
      const tables = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables
          WHERE table_schema = ${schema} ORDER BY table_name`).pipe(
          Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl) }))
        )
      expect(tables.map((row) => row.table_name)).toEqual([
        "effect_jobs",
        "effect_jobs_chunks",
        "effect_jobs_meta",
        "effect_jobs_migrations",
        "effect_jobs_owners",
        "effect_jobs_pulled",
        "effect_jobs_specs"
      ])
      const status = yield* Effect.provide(Effect.flatMap(JobRepository, (repo) => repo.get(jobId("job_pg"))), layer)
      expect(Option.getOrThrow(status).state).toBe("pending")
    }))

  it.scoped("create: false refuses a schema without a store and creates nothing", () =>
    Effect.gen(function*() {
      const schema = yield* tempSchema
      const error = yield* openError(SqlJobRepository.layerPg({ url: pgUrl, schema, create: false }))
      expect(error.detail).toBe(
        `PostgreSQL schema ${schema}: it is not an effect-jobs store (it is empty); a job manager creates one on first use`
      )
      const schemas = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`SELECT schema_name FROM information_schema.schemata WHERE schema_name = ${schema}`).pipe(
          Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl) }))
        )
      expect(schemas).toEqual([])
      yield* Effect.provide(Effect.flatMap(JobRepository, (repo) => repo.create(newJob("job_pg"))), SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const found = yield* Effect.provide(
        Effect.flatMap(JobRepository, (repo) => repo.get(jobId("job_pg"))),
        SqlJobRepository.layerPg({ url: pgUrl, schema, create: false })
      )
      expect(Option.getOrThrow(found).state).toBe("pending")
    }))

  it.scoped("refuses a store written by a newer effect-jobs, and a table named like ours", () =>
    Effect.gen(function*() {
      const admin = PgClient.layer({ url: Redacted.make(pgUrl) })
      const newer = yield* tempSchema
      yield* Effect.provide(
        Effect.flatMap(JobRepository, (repo) => repo.create(newJob("job_old"))),
        SqlJobRepository.layerPg({ url: pgUrl, schema: newer })
      )
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`UPDATE ${sql(`${newer}.effect_jobs_meta`)} SET value = '6' WHERE key = 'schema_version'`).pipe(
          Effect.provide(admin)
        )
      const error = yield* openError(SqlJobRepository.layerPg({ url: pgUrl, schema: newer }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(error.detail).toContain("schema version 6; this version knows up to 5")

      const collision = yield* tempSchema
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.all([
          sql`CREATE SCHEMA ${sql(collision)}`,
          sql`CREATE TABLE ${sql(`${collision}.effect_jobs`)} (x INTEGER)`
        ], { discard: true })).pipe(Effect.provide(admin))
      const refused = yield* openError(SqlJobRepository.layerPg({ url: pgUrl, schema: collision }))
      expect(refused.detail).toContain("a table effect_jobs that effect-jobs did not create")
      const left = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables
          WHERE table_schema = ${collision}`).pipe(Effect.provide(admin))
      expect(left).toEqual([{ table_name: "effect_jobs" }])
    }))

  it.scoped("coalesces progress: one transaction per flush writes every dirty job", () =>
    Effect.gen(function*() {
      const { repo, schema, sql } = yield* slowFlushPgStore
      const ids = ["job_a", "job_b", "job_c"].map(jobId)
      for (const id of ids) {
        yield* repo.create(newJob(id, chunkSpec(50)))
        yield* moveTo(id, "running").pipe(Effect.provideService(JobRepository, repo))
      }
      for (let done = 1; done <= 50; done++) {
        for (const id of ids) yield* repo.updateProgress(id, { completedChunks: done, failedChunks: 0 })
      }
      const stored = sql<{ completed_chunks: string; tx: string }>`SELECT completed_chunks, xmin::text AS tx
        FROM ${sql(`${schema}.effect_jobs`)} ORDER BY id`
      expect((yield* stored).map((row) => Number(row.completed_chunks))).toEqual([0, 0, 0])
      yield* TestClock.adjust("1 second")
      const rows = yield* eventually(stored, (rows) => rows.every((row) => Number(row.completed_chunks) === 50))
      // The three rows were written by one transaction.
      expect(new Set(rows.map((row) => row.tx)).size).toBe(1)
    }))

  it.scoped("chunk records are written by the progress flush, in its one transaction, with the checkpoint", () =>
    Effect.gen(function*() {
      const { repo, schema, sql } = yield* slowFlushPgStore
      const id = jobId("job_results")
      yield* repo.create(newJob(id, chunkSpec(10)))
      yield* moveTo(id, "running").pipe(Effect.provideService(JobRepository, repo))
      for (let chunk = 0; chunk < 10; chunk++) {
        yield* repo.updateProgress(id, {
          completedChunks: chunk + 1,
          failedChunks: 0,
          completedChunkIds: [chunk],
          // Only the even chunks have a result: the odd ones are ids in the checkpoint, nothing more.
          chunks: chunk % 2 === 0
            ? [{ id: chunk, state: "completed", attempts: 1, result: { chunk }, startedAt: base, finishedAt: base }]
            : []
        })
      }
      const records = sql<{ chunk_id: string; result: string; tx: string }>`SELECT chunk_id, result, xmin::text AS tx
        FROM ${sql(`${schema}.effect_jobs_chunks`)} ORDER BY chunk_id`
      expect(yield* records).toEqual([])
      yield* TestClock.adjust("1 second")
      const written = yield* eventually(records, (rows) => rows.length === 5)
      expect(written.map((row) => [Number(row.chunk_id), JSON.parse(row.result)])).toEqual(
        [0, 2, 4, 6, 8].map((chunk) => [chunk, { chunk }])
      )
      const [job] = yield* sql<{ checkpoint: string; tx: string }>`SELECT checkpoint, xmin::text AS tx
        FROM ${sql(`${schema}.effect_jobs`)}`
      expect(job!.checkpoint).toBe("0-9")
      expect(new Set([...written.map((row) => row.tx), job!.tx]).size).toBe(1)
    }))

  it.scoped("transitions asked at once share one transaction; one that fails fails alone and changes nothing", () =>
    Effect.gen(function*() {
      const { repo, schema, sql } = yield* slowFlushPgStore
      const table = sql(`${schema}.effect_jobs`)
      const ids = ["job_a", "job_b", "job_c", "job_d", "job_bad"].map(jobId)
      for (const id of ids) {
        yield* repo.create(newJob(id, chunkSpec(4)))
        yield* moveTo(id, "running").pipe(Effect.provideService(JobRepository, repo))
      }
      const rows = (of: ReadonlyArray<JobId>) =>
        sql<{ id: string; state: string; tx: string }>`SELECT id, state, xmin::text AS tx FROM ${table}
          WHERE ${sql.in("id", of)} ORDER BY id`
      const [a, b, c, d, bad] = ids as [JobId, JobId, JobId, JobId, JobId]

      const together = yield* Effect.all([a, b].map((id) => repo.transition(id, ["running"], "paused")), {
        concurrency: "unbounded"
      })
      expect(together.map((result) => result.applied)).toEqual([true, true])
      const paused = yield* rows([a, b])
      expect(paused.map((row) => row.state)).toEqual(["paused", "paused"])
      expect(new Set(paused.map((row) => row.tx)).size).toBe(1)

      // A transition that must merge a buffered chunk id into a corrupt checkpoint fails; the others of its
      // group are written all the same.
      yield* sql`UPDATE ${table} SET checkpoint = 'x' WHERE id = ${bad}`
      yield* repo.updateProgress(bad, { completedChunks: 1, failedChunks: 0, completedChunkIds: [0] })
      const mixed = yield* Effect.all(
        [c, bad, d].map((id) => Effect.either(repo.transition(id, ["running"], "completed", { completedChunks: 4, failedChunks: 0 }))),
        { concurrency: "unbounded" }
      )
      expect(mixed.map((result) => result._tag)).toEqual(["Right", "Left", "Right"])
      expect(mixed[1]).toMatchObject({ left: { _tag: "RepositoryError", operation: "transition" } })
      expect((yield* rows([c, d, bad])).map((row) => [row.id, row.state])).toEqual([
        ["job_bad", "running"],
        ["job_c", "completed"],
        ["job_d", "completed"]
      ])
    }))

  it.effect("1,000 progress and state operations from 16 fibers while another polls: all decode, none go back", () =>
    loadTest.pipe(Effect.provide(pgLayer())), 60_000)

  it.scoped("two stores on one schema: racing transitions have exactly one winner", () =>
    Effect.gen(function*() {
      const schema = yield* tempSchema
      const a = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const b = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      yield* raceBetweenStores(a, b)
    }))

  it.scoped("migrates a version 1 store in place: its jobs are kept and the new operations work on them", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base + 10_000)
      const schema = yield* tempSchema
      const admin = PgClient.layer({ url: Redacted.make(pgUrl) })
      yield* makeV1Store(schema).pipe(Effect.provide(admin))
      const repo = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const [meta, columns] = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.all([
          sql<{ value: string }>`SELECT value FROM ${sql(`${schema}.effect_jobs_meta`)} WHERE key = 'schema_version'`,
          sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
            WHERE table_schema = ${schema} AND table_name = 'effect_jobs'`
        ])).pipe(Effect.provide(admin))
      expect(meta).toEqual([{ value: "5" }])
      const names = columns.map((column) => column.column_name)
      expect(names).toEqual(expect.arrayContaining(["owner", "checkpoint", "phase", "retry_of", "stop_requested"]))
      expect(names).not.toContain("cancel_requested")
      yield* checkMigratedV1(repo)
    }))

  it.effect("a checkpoint of 1,000,000 chunks completed mostly in order stays a short record", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const schema = randomSchema()
      yield* millionChunks((id) =>
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.map(
            sql<{ checkpoint: string | null; completed_chunks: string }>`
              SELECT checkpoint, completed_chunks FROM ${sql(`${schema}.effect_jobs`)} WHERE id = ${id}`,
            (rows) => ({ checkpoint: rows[0]!.checkpoint, completed: Number(rows[0]!.completed_chunks) })
          ))
      ).pipe(
        Effect.provide(
          SqlJobRepository.layerWith({ schema, flushInterval: "1 second" }).pipe(
            Layer.provideMerge(PgClient.layer({ url: Redacted.make(pgUrl) }))
          )
        ),
        Effect.ensuring(dropSchema(schema))
      )
    }), 120_000)

  it.scoped("two stores on one schema: claims at once never share a job", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const schema = yield* tempSchema
      const a = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const b = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      yield* claimRaceBetweenStores(a, b)
    }))

  it.scoped("a group of creates and a group of transitions each notify the schema's channel once, as they write", () =>
    Effect.gen(function*() {
      const schema = yield* tempSchema
      const repo = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const admin = yield* Layer.build(PgClient.layer({ url: Redacted.make(pgUrl) }))
      const pg = Context.get(admin, PgClient.PgClient)
      const received: Array<string> = []
      const channel = `effect_jobs_changes_${schema}`
      yield* Effect.forkScoped(Stream.runForEach(pg.listen(channel), (payload) => Effect.sync(() => received.push(payload))))
      // The client hears the channel once a probe comes back (its handler is attached after LISTEN returns,
      // so a notification in between would be lost: seeing LISTEN in pg_stat_activity is not enough).
      yield* eventually(Effect.zipRight(pg`SELECT pg_notify(${channel}, 'probe')`, Effect.sync(() => received.includes("probe"))), (heard) => heard)
      const notified = () => received.filter((payload) => payload !== "probe")
      const ids = ["job_n1", "job_n2", "job_n3"].map(jobId)
      yield* Effect.all(ids.map((id) => repo.create(newJob(id, chunkSpec(2)))), { concurrency: "unbounded" })
      yield* waitLive(() => notified().length > 0, "the notification of the creates")
      const started = yield* Effect.all(
        ids.map((id) => repo.transition(id, ["pending"], "running", { owner: "owner_a", lease: 0 })),
        { concurrency: "unbounded" }
      )
      expect(started.every((result) => result.applied)).toBe(true)
      yield* waitLive(() => notified().length > 1, "the notification of the transitions")
      // A group that changes nothing notifies nothing.
      const refused = yield* Effect.all(
        ids.map((id) => repo.transition(id, ["running"], "completed", { lease: 0 })),
        { concurrency: "unbounded" }
      )
      expect(refused.some((result) => result.applied)).toBe(false)
      yield* TestServices.provideLive(Effect.sleep("200 millis"))
      // Jobs stored without an owner are announced claimable.
      expect(notified()).toEqual(["claim:*", "*"])
    }))

  it.scoped("two stores on one schema: a job stored without an owner through one is notified to the other's claimable; one stored with an owner is not", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const schema = yield* tempSchema
      const manager = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const client = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      yield* untilListening(schema)
      // The TestClock stands still: only the notification can change it.
      const start = manager.claimable.version
      const changes = manager.changes.version
      yield* client.create({ ...newJob("job_owned"), owner: "m1" })
      yield* waitLive(() => manager.changes.version > changes, "the notified change")
      expect(manager.claimable.version).toBe(start)
      yield* client.create(newJob("job_ownerless"))
      yield* waitLive(() => manager.claimable.version > start, "the notified claimable job")
    }))

  it.scopedLive("a manager claims a job stored without an owner by another process at once, not at its next recovery", () =>
    Effect.gen(function*() {
      const schema = yield* tempSchema
      const store = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const other = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      // Recovery runs at start-up, then once a minute: the job is stored after the first one.
      const manager = yield* Layer.build(
        JobManager.layer({ heartbeatInterval: 60_000, staleAfter: 120_000 }).pipe(
          Layer.provide(Layer.succeed(JobRepository, store)),
          Layer.provide(ChunkWorker.layer(() => Effect.void))
        )
      ).pipe(Effect.map(Context.get(JobManager.JobManager)))
      yield* untilListening(schema)
      const created = yield* other.create(newJob("job_external"))
      const done = yield* manager.awaitJob(created.id).pipe(Effect.timeout("10 seconds"))
      expect(done).toMatchObject({ state: "completed", owner: manager.owner })
    }), 30_000)

  it.scoped("two stores on one schema: a request made through one is notified to the other's stream; a lost notification is made up by the poll", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const schema = yield* tempSchema
      const admin = PgClient.layer({ url: Redacted.make(pgUrl) })
      const manager = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const client = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const [x, y] = yield* Effect.all([startJob("job_x", "m1"), startJob("job_y", "m1")]).pipe(
        Effect.provideService(JobRepository, manager)
      )
      const received = yield* Effect.provideService(collectStops(), JobRepository, manager)
      yield* untilListening(schema)
      // The TestClock stands still from here on: only the notification can bring the request.
      yield* client.requestStop({ id: x, kind: "cancel" })
      yield* waitLive(() => received.length > 0, "the notified request")
      expect(received).toEqual([{ id: "job_x", kind: "cancel" }])
      // A request stored without a notification (as if it were lost) is found by the next poll.
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`UPDATE ${sql(`${schema}.effect_jobs`)} SET stop_requested = 'pause', stop_request_id = 'lost'
          WHERE id = ${y}`).pipe(Effect.provide(admin))
      yield* TestServices.provideLive(Effect.sleep("300 millis"))
      expect(received).toHaveLength(1)
      yield* TestClock.adjust("1 second")
      yield* waitLive(() => received.length > 1, "the polled request")
      expect(received).toEqual([{ id: "job_x", kind: "cancel" }, { id: "job_y", kind: "pause" }])
    }))
})
