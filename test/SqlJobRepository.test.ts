import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { assert, describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { JobId, JobStatus } from "../src/Job.js"
import { JobRepository } from "../src/JobRepository.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import { base, chunkSpec, jobId, jobRepositoryContract, moveTo, newJob, view } from "./contract/JobRepositoryContract.js"

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
const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (value: A) => boolean) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 500; attempt++) {
      const value = yield* effect
      if (done(value)) return value
      yield* TestServices.provideLive(Effect.sleep("10 millis"))
    }
    return yield* Effect.dieMessage("condition not reached after 500 attempts")
  })

const openError = <E>(layer: Layer.Layer<JobRepository, E>) => Effect.flip(Effect.provide(JobRepository, layer))

// --- the contract, on both databases ----------------------------------------------------------------------

jobRepositoryContract("SqlJobRepository.layerSqlite (contract)", () => sqliteLayer())
jobRepositoryContract("SqlJobRepository.layerPg (contract)", () => pgLayer())

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
      yield* TestClock.adjust("100 millis")
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

// --- SQLite -----------------------------------------------------------------------------------------------

describe("SqlJobRepository.layerSqlite", () => {
  it.scoped("creates the file on first use, in WAL mode, at schema version 1", () =>
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
      expect(meta).toEqual([{ key: "application", value: "effect-jobs" }, { key: "schema_version", value: "1" }])
      expect(migrations).toEqual([{ migration_id: 1 }])
    }))

  it.scoped("keeps jobs across layer builds; closing the layer writes buffered progress", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(base)
      const filename = path.join(yield* tempDir, "jobs.db")
      const spec = { name: "render", chunks: { start: 1, end: 240, size: 24 } }
      const id = jobId("job_persist")
      const layer = SqlJobRepository.layerSqlite({ filename, flushInterval: "1 hour" })
      const before = yield* Effect.provide(
        Effect.gen(function*() {
          const repo = yield* JobRepository
          yield* repo.create(newJob(id, spec))
          yield* moveTo(id, "running")
          yield* TestClock.adjust("1 second")
          yield* repo.updateProgress(id, { completedChunks: 7, failedChunks: 1 })
          return view(Option.getOrThrow(yield* repo.get(id)))
        }),
        layer
      )
      expect(before).toMatchObject({ state: "running", completedChunks: 7, failedChunks: 1, progress: 80 })
      const [after, storedSpec] = yield* Effect.provide(
        Effect.flatMap(JobRepository, (repo) => Effect.all([repo.get(id), repo.getSpec(id)])),
        layer
      )
      expect(view(Option.getOrThrow(after))).toEqual(before)
      expect(Option.getOrThrow(storedSpec)).toEqual(spec)
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
      yield* withSqlite(filename, (sql) => sql`UPDATE effect_jobs_meta SET value = '2' WHERE key = 'schema_version'`)
      backdate(filename)
      const before = snapshot(filename)
      const error = yield* openError(SqlJobRepository.layerSqlite({ filename }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(error.detail).toContain("schema version 2; this version knows up to 1")
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
      }
      expect(fs.existsSync(filename)).toBe(false)
      const schemaOnSqlite = yield* openError(
        SqlJobRepository.layerWith({ schema: "jobs" }).pipe(Layer.provide(SqliteClient.layer({ filename })))
      )
      expect(schemaOnSqlite).toMatchObject({ _tag: "InvalidOption", path: ["schema"] })
    }))

  it.effect("rejects counts that are not non-negative integers, writing nothing", () =>
    Effect.gen(function*() {
      const repo = yield* JobRepository
      const id = jobId("job_counts")
      yield* repo.create(newJob(id))
      yield* moveTo(id, "running")
      const before = view(Option.getOrThrow(yield* repo.get(id)))
      for (const counts of [{ completedChunks: -1, failedChunks: 0 }, { completedChunks: 1.5, failedChunks: 0 }]) {
        const error = yield* Effect.flip(repo.updateProgress(id, counts))
        expect(error).toMatchObject({ _tag: "RepositoryError", operation: "updateProgress" })
        const refused = yield* Effect.flip(repo.transition(id, ["running"], "completed", counts))
        expect(refused).toMatchObject({ _tag: "RepositoryError", operation: "transition" })
      }
      yield* TestClock.adjust("1 second")
      expect(view(Option.getOrThrow(yield* repo.get(id)))).toEqual(before)
    }).pipe(Effect.provide(sqliteLayer())))

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
})

// --- PostgreSQL -------------------------------------------------------------------------------------------

describe("SqlJobRepository.layerPg", () => {
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
      expect(tables.map((row) => row.table_name)).toEqual(["effect_jobs", "effect_jobs_meta", "effect_jobs_migrations"])
      const status = yield* Effect.provide(Effect.flatMap(JobRepository, (repo) => repo.get(jobId("job_pg"))), layer)
      expect(Option.getOrThrow(status).state).toBe("pending")
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
        sql`UPDATE ${sql(`${newer}.effect_jobs_meta`)} SET value = '2' WHERE key = 'schema_version'`).pipe(
          Effect.provide(admin)
        )
      const error = yield* openError(SqlJobRepository.layerPg({ url: pgUrl, schema: newer }))
      expect(error).toMatchObject({ _tag: "RepositoryError", operation: "open" })
      expect(error.detail).toContain("schema version 2; this version knows up to 1")

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
      const schema = yield* tempSchema
      const context = yield* Layer.build(
        SqlJobRepository.layerWith({ schema, flushInterval: "1 second" }).pipe(
          Layer.provideMerge(PgClient.layer({ url: Redacted.make(pgUrl) }))
        )
      )
      const repo = Context.get(context, JobRepository)
      const sql = Context.get(context, SqlClient.SqlClient)
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

  it.effect("1,000 progress and state operations from 16 fibers while another polls: all decode, none go back", () =>
    loadTest.pipe(Effect.provide(pgLayer())), 60_000)

  it.scoped("two stores on one schema: racing transitions have exactly one winner", () =>
    Effect.gen(function*() {
      const schema = yield* tempSchema
      const a = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      const b = yield* buildService(SqlJobRepository.layerPg({ url: pgUrl, schema }))
      yield* raceBetweenStores(a, b)
    }))
})
