/**
 * Store faults of real databases never wedge a job (issue 9, item 2), with the live clock: an SQLite flush
 * broken by a trigger, a shutdown while a PostgreSQL flush waits on a lock, a full disk under an SQLite store
 * (a tmpfs filled while jobs run: SQLITE_FULL, a defect when it fails a COMMIT), and a PostgreSQL server
 * stopped and started again (a throwaway cluster). The faults of each path, injected on demand, are in
 * faults.test.ts.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { execFileSync } from "node:child_process"
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ChunkWorker } from "../src/ChunkWorker.js"
import { RangeSet } from "../src/internal/rangeSet.js"
import type { JobId } from "../src/Job.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import type { JobRepository } from "../src/JobRepository.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import { withLogs } from "./support/capturedLogs.js"
import { ChunkRuns } from "./support/chunkRuns.js"
import type { PgCluster } from "./support/pgCluster.js"
import { pgClusterUnavailable, startPgCluster } from "./support/pgCluster.js"
import { eventually } from "./util.js"

const chunks = (count: number) => ({ chunks: Array.from({ length: count }, (_, id) => ({ id, payload: null })) })

const pgUrl = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"

/** A fresh temporary directory, removed when the scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "effect-jobs-faults-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A manager on `store` whose chunks run on `worker`, built in the current scope. */
const sqlManager = <E>(
  store: Layer.Layer<JobRepository, E>,
  worker: ChunkWorker["Type"],
  options: JobManagerModule.ManagerOptions = {}
) =>
  Effect.map(
    Layer.build(JobManagerModule.layer({ concurrency: 2, heartbeatInterval: 100, staleAfter: 2_000, ...options }).pipe(
      Layer.provide(store),
      Layer.provide(Layer.succeed(ChunkWorker, worker))
    )),
    (context) => Context.get(context, JobManager)
  )

const finishedCount = (runs: ChunkRuns) => runs.all.filter((run) => run.outcome === "finished").length

describe("the SQL store's progress flush", () => {
  it.scopedLive("on SQLite, a flush that fails keeps the progress buffered, writes it once healed, and nothing dies", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const filename = join(yield* tempDir, "jobs.db")
        const manager = yield* sqlManager(
          SqlJobRepository.layerSqlite({ filename, flushInterval: 20 }),
          new ChunkRuns().worker("a", 5)
        )
        // Another connection breaks every write of progress (an UPDATE that keeps the state) while the switch is on.
        const raw = yield* Effect.acquireRelease(Effect.sync(() => new Database(filename)), (db) => Effect.sync(() => db.close()))
        raw.exec(`CREATE TABLE fault_switch (active INTEGER NOT NULL);
          INSERT INTO fault_switch VALUES (0);
          CREATE TRIGGER fault_flush BEFORE UPDATE ON effect_jobs
            WHEN (SELECT active FROM fault_switch) = 1 AND NEW.state = OLD.state
            BEGIN SELECT RAISE(ABORT, 'injected'); END;`)
        const row = (id: string) =>
          raw.prepare("SELECT state, completed_chunks, checkpoint FROM effect_jobs WHERE id = ?").get(id) as {
            readonly state: string
            readonly completed_chunks: number
            readonly checkpoint: string | null
          }
        const total = 400
        const id = yield* manager.submitJob(chunks(total))
        yield* eventually(() => row(id).completed_chunks >= 20, 5_000)
        raw.exec("UPDATE fault_switch SET active = 1")
        const frozen = row(id).completed_chunks
        yield* Effect.sleep(300)
        // Nothing reached the file; this process still sees its progress.
        expect(row(id).completed_chunks).toBe(frozen)
        const seen = yield* manager.getJob(id)
        expect(seen.state).toBe("running")
        expect(seen.completedChunks).toBeGreaterThan(frozen + 10)
        expect(logs.warnings(id).length).toBeGreaterThan(0)

        raw.exec("UPDATE fault_switch SET active = 0")
        // The flush is still alive: the buffered progress lands while the job runs.
        yield* eventually(() => row(id).completed_chunks >= seen.completedChunks, 5_000)
        expect(row(id).state).toBe("running")
        const status = yield* manager.awaitJob(id)
        expect(status).toMatchObject({ state: "completed", completedChunks: total })
        expect(row(id)).toMatchObject({ state: "completed", completed_chunks: total })
        expect(RangeSet.parse(row(id).checkpoint!)?.size).toBe(total)
      })
    ), 20_000)

  it.scopedLive("on PostgreSQL, closing the manager during a flush stores the final progress", () =>
    Effect.gen(function*() {
      const schema = `ej_faults_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`
      const admin = yield* Layer.build(PgClient.layer({ url: Redacted.make(pgUrl) })).pipe(
        Effect.map((context) => Context.get(context, SqlClient.SqlClient))
      )
      yield* Effect.addFinalizer(() => Effect.orDie(admin`DROP SCHEMA IF EXISTS ${admin(schema)} CASCADE`))
      const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
      const runs = new ChunkRuns()
      const manager = yield* Scope.extend(
        sqlManager(SqlJobRepository.layerPg({ url: pgUrl, schema, flushInterval: 20 }), runs.worker("a", 2), {
          concurrency: 4,
          shutdownGracePeriod: 5_000
        }),
        scope
      )
      const jobs = admin(`${schema}.effect_jobs`)
      const row = (id: string) =>
        Effect.map(
          admin<{ state: string; completed_chunks: string; checkpoint: string | null }>`
            SELECT state, completed_chunks, checkpoint FROM ${jobs} WHERE id = ${id}`,
          (rows) => ({ ...rows[0]!, completed_chunks: Number(rows[0]!.completed_chunks) })
        )
      const id = yield* manager.submitJob(chunks(100_000))
      yield* Effect.repeat(row(id), { until: (stored) => stored.completed_chunks >= 50, schedule: Schedule.spaced(10) })

      // Another connection locks the job's row: the next flush waits on it, inside its transaction.
      const release = yield* Deferred.make<void>()
      const locked = yield* Deferred.make<void>()
      yield* Effect.forkScoped(admin.withTransaction(
        admin`SELECT id FROM ${jobs} WHERE id = ${id} FOR UPDATE`.pipe(
          Effect.zipRight(Deferred.succeed(locked, undefined)),
          Effect.zipRight(Deferred.await(release))
        )
      ))
      yield* Deferred.await(locked)
      const flushWaits = admin<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query LIKE ${`%${schema}%`}`
      yield* Effect.repeat(flushWaits, { until: (rows) => Number(rows[0]!.n) > 0, schedule: Schedule.spaced(10) })

      // Close the manager (and its store) while the flush waits; let the flush through a little later.
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* Effect.sleep(300)
      expect(Option.isNone(yield* Fiber.poll(closing))).toBe(true)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(closing)

      const stored = yield* row(id)
      expect(stored.state).toBe("pending")
      expect(stored.completed_chunks).toBe(finishedCount(runs))
      expect(RangeSet.parse(stored.checkpoint!)?.size).toBe(finishedCount(runs))
    }), 20_000)
})

// --- A full disk ------------------------------------------------------------------------------------------------

/**
 * Mounts a tmpfs of `size` on a new temporary directory: its path, or why it could not be mounted (not root,
 * no mount, a container without the capability).
 */
const mountSmallDisk = (size: string): { readonly dir: string } | { readonly note: string } => {
  const dir = mkdtempSync(join(tmpdir(), "effect-jobs-disk-"))
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" })
    return { dir }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    return { note: String(error).split("\n")[0]! }
  }
}

const unmount = (dir: string) =>
  Effect.sync(() => {
    execFileSync("umount", [dir], { stdio: "pipe" })
    rmSync(dir, { recursive: true, force: true })
  })

/** The messages and codes of every error in `cause`, following each error's own `cause`. */
const errorChain = (cause: Cause.Cause<unknown>): string => {
  const parts: Array<string> = []
  const walk = (error: unknown, depth: number): void => {
    if (depth > 8 || typeof error !== "object" || error === null) return
    const { code, message } = error as { readonly code?: unknown; readonly message?: unknown }
    parts.push(`${String(message)} ${String(code)}`)
    walk((error as { readonly cause?: unknown }).cause, depth + 1)
  }
  for (const error of [...Cause.failures(cause), ...Cause.defects(cause)]) walk(error, 0)
  return parts.join("; ")
}

/** Writes `file` until the disk has no byte left. */
const fillDisk = (file: string): void => {
  const fd = openSync(file, "w")
  try {
    for (const size of [1 << 20, 1 << 12, 1]) {
      const block = Buffer.alloc(size, 1)
      try {
        for (;;) writeSync(fd, block)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error
      }
    }
  } finally {
    closeSync(fd)
  }
}

describe("a full disk under an SQLite store", () => {
  it.scopedLive("the jobs running when the disk fills complete once space is freed, and awaitJob returns", (context) => {
    // 8 MB: SQLite checkpoints its WAL only at 4 MB, so a smaller disk would be filled by the WAL itself.
    const disk = mountSmallDisk("8m")
    if ("note" in disk) return context.skip(`no tmpfs could be mounted here (${disk.note}): the full-disk test needs root`)
    return withLogs((logs) =>
      Effect.gen(function*() {
        yield* Effect.addFinalizer(() => unmount(disk.dir))
        const runs = new ChunkRuns()
        const manager = yield* sqlManager(
          SqlJobRepository.layerSqlite({ filename: join(disk.dir, "jobs.db"), flushInterval: 50 }),
          runs.worker("a", 10),
          { heartbeatInterval: 200, staleAfter: 20_000 }
        )
        const total = 150
        const ids = yield* Effect.forEach([1, 2, 3, 4], () => manager.submitJob(chunks(total)))
        const awaiting = yield* Effect.fork(Effect.forEach(ids, (id) => manager.awaitJob(id), { concurrency: "unbounded" }))
        yield* eventually(() => finishedCount(runs) >= 40, 5_000)

        const filler = join(disk.dir, "filler")
        fillDisk(filler)
        const fullAt = finishedCount(runs)
        yield* Effect.sleep(1_500)
        // The store's writes failed with SQLITE_FULL, and the jobs ran on meanwhile.
        const full = logs.warnings().filter((entry) => /SQLITE_FULL|disk is full/.test(errorChain(entry.cause)))
        expect(full.length).toBeGreaterThan(0)
        expect(finishedCount(runs)).toBeGreaterThan(fullAt)
        expect(Option.isNone(yield* Fiber.poll(awaiting))).toBe(true)

        rmSync(filler)
        const statuses = yield* Fiber.join(awaiting)
        for (const status of statuses) expect(status).toMatchObject({ state: "completed", completedChunks: total })
        const raw = new Database(join(disk.dir, "jobs.db"), { readonly: true })
        const stored = raw.prepare("SELECT state, completed_chunks FROM effect_jobs ORDER BY id").all()
        raw.close()
        expect(stored).toEqual(ids.map(() => ({ state: "completed", completed_chunks: total })))
      })
    )
  }, 30_000)
})

// --- A PostgreSQL server stopped and started again ----------------------------------------------------------

const clusterNote = pgClusterUnavailable()

describe.skipIf(clusterNote !== undefined)(
  `a PostgreSQL server stopped and started again${clusterNote === undefined ? "" : ` (skipped: ${clusterNote})`}`,
  () => {
    let cluster: PgCluster
    beforeAll(async () => {
      cluster = await startPgCluster()
    }, 60_000)
    afterAll(() => cluster?.remove(), 60_000)

    const storeIn = (schema: string) =>
      SqlJobRepository.layerPg({ url: cluster.url, schema, flushInterval: 50, connectTimeout: "2 seconds" })

    const storedState = (schema: string, id: JobId) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ state: string; completed_chunks: string }>`
          SELECT state, completed_chunks FROM ${sql(schema)}.effect_jobs WHERE id = ${id}`).pipe(
          Effect.map((rows) => ({ state: rows[0]?.state, completedChunks: Number(rows[0]?.completed_chunks) })),
          Effect.provide(PgClient.layer({ url: Redacted.make(cluster.url) }))
        )

    it.scopedLive("down across a job's end: the end is written once it is back, and awaitJob returns only then", () =>
      withLogs((logs) =>
        Effect.gen(function*() {
          const runs = new ChunkRuns()
          const manager = yield* sqlManager(storeIn("across_end"), runs.worker("a", 50), {
            heartbeatInterval: 500,
            staleAfter: 30_000,
            pollInterval: 100
          })
          const total = 30
          const id = yield* manager.submitJob(chunks(total))
          const awaiting = yield* Effect.fork(manager.awaitJob(id))
          yield* eventually(() => finishedCount(runs) >= 6, 5_000)
          yield* Effect.promise(() => cluster.stop())
          const stoppedAt = Date.now()
          // The job runs to its end while the server is down; its end cannot be written.
          yield* eventually(() => finishedCount(runs) >= total, 5_000)
          yield* Effect.sleep(Math.max(0, stoppedAt + 6_000 - Date.now()))
          expect(Option.isNone(yield* Fiber.poll(awaiting))).toBe(true)
          expect(logs.warnings(id).some((entry) => entry.level === "ERROR")).toBe(true)

          yield* Effect.promise(() => cluster.start())
          const status = yield* Fiber.join(awaiting)
          expect(status).toMatchObject({ state: "completed", completedChunks: total })
          expect(yield* storedState("across_end", id)).toEqual({ state: "completed", completedChunks: total })
        })
      ), 30_000)

    it.scopedLive("down for longer than staleAfter: the job stops here, is queued again once it is back, and completes", () =>
      withLogs(() =>
        Effect.gen(function*() {
          const staleAfter = 2_000
          const runs = new ChunkRuns()
          const manager = yield* sqlManager(storeIn("past_stale"), runs.worker("a", 50), {
            heartbeatInterval: 200,
            staleAfter,
            pollInterval: 100
          })
          const total = 120
          const id = yield* manager.submitJob(chunks(total))
          const awaiting = yield* Effect.fork(manager.awaitJob(id))
          yield* eventually(() => finishedCount(runs) >= 20, 5_000)
          yield* Effect.promise(() => cluster.stop())
          const stoppedAt = Date.now()
          yield* Effect.sleep(staleAfter + 1_500)
          // Ownership could not be renewed: nothing runs here, nothing started after it expired.
          expect(runs.inFlight(id)).toEqual([])
          expect(runs.of(id).filter((run) => run.startedAt >= stoppedAt + staleAfter)).toEqual([])
          expect(finishedCount(runs)).toBeLessThan(total)
          expect(Option.isNone(yield* Fiber.poll(awaiting))).toBe(true)

          yield* Effect.promise(() => cluster.start())
          const status = yield* Fiber.join(awaiting)
          expect(status).toMatchObject({ state: "completed", completedChunks: total })
          expect(runs.finished(id).size).toBe(total)
          expect(yield* storedState("past_stale", id)).toEqual({ state: "completed", completedChunks: total })
        })
      ), 30_000)
  }
)
