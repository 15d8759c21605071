/**
 * Split brain, with real processes on SQLite and PostgreSQL: an owner stopped (SIGSTOP) past `staleAfter`
 * loses its job to another manager. Resumed (SIGCONT), it must start at most its chunks' worth of work,
 * write nothing that lands, hear a cancel, and leave the job to the new owner when it is shut down.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import type { JobId, JobStatus } from "../src/Job.js"
import { isTerminal } from "../src/Job.js"
import * as JobClient from "../src/JobClient.js"
import { JobRepository } from "../src/JobRepository.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import { killAll, startTsx, type TsxProcess } from "./support/tsxProcess.js"

const pgUrl = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"
const dir = mkdtempSync(join(tmpdir(), "effect-jobs-split-brain-"))
afterAll(() => {
  killAll()
  rmSync(dir, { recursive: true, force: true })
})

// A stall of `staleAfter` gets the job taken over. (Much shorter, and a manager starved of CPU by a loaded
// machine looks gone too: ownership then moves back and forth, legitimately, which these tests allow for.)
const timings = { concurrency: 4, heartbeatInterval: 100, staleAfter: 1000, flushInterval: 50, chunkMillis: 5 }

type StoreConfig = { readonly sqlite: string } | { readonly pg: string; readonly schema: string }

interface LogEntry {
  readonly event: "start" | "end"
  readonly chunk: number
  readonly at: number
}

const readLog = (log: string): Array<LogEntry> =>
  existsSync(log)
    ? readFileSync(log, "utf8").split("\n").filter((line) => line !== "").map((line) => {
      const [event, chunk, at] = line.split(" ")
      return { event: event as LogEntry["event"], chunk: Number(chunk), at: Number(at) }
    })
    : []

const until = async (condition: () => boolean, what: string, timeoutMillis = 20_000) => {
  const deadline = Date.now() + timeoutMillis
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const pause = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

const startManager = (store: StoreConfig, name: string, submit?: { chunks: number }) => {
  const log = join(dir, `${name}.log`)
  const idFile = join(dir, `${name}.id`)
  const config = {
    store,
    log,
    ...timings,
    ...(submit === undefined ? {} : { submit: { chunks: submit.chunks, idFile } })
  }
  const process = startTsx("test/fixtures/stallable.ts", [JSON.stringify(config)])
  return { process, log, idFile }
}

const ready = (started: TsxProcess, what: string) => until(() => started.stderr().includes("ready\n"), `${what} to start`)

/** A store client in this process: reads statuses (nothing buffered here) and cancels. */
const storeClient = (store: StoreConfig) => {
  const layer = "sqlite" in store
    ? SqlJobRepository.layerSqlite({ filename: store.sqlite })
    : SqlJobRepository.layerPg({ url: store.pg, schema: store.schema })
  const runtime = ManagedRuntime.make(layer)
  const run = <A, E>(effect: Effect.Effect<A, E, JobRepository>) => runtime.runPromise(effect)
  return {
    get: (id: JobId) => run(Effect.map(Effect.flatMap(JobRepository, (repo) => repo.get(id)), Option.getOrThrow)),
    cancel: (id: JobId) => run(Effect.flatMap(JobClient.make(), (client) => client.cancelJob(id))),
    dispose: () => runtime.dispose()
  }
}

/** The owners, leases and states a job went through, as seen by polling (for failure messages). */
const history = (seen: ReadonlyArray<JobStatus>): string => {
  const steps: Array<string> = []
  for (const status of seen) {
    const step = `${status.owner ?? "-"} lease ${status.lease} ${status.state} ${status.completedChunks}`
    if (steps[steps.length - 1]?.startsWith(`${status.owner ?? "-"} lease ${status.lease} ${status.state}`) !== true) {
      steps.push(step)
    }
  }
  return steps.join(" -> ")
}

/** Reads the job every 5 ms until stopped; records every time its stored progress went backwards. */
const watchProgress = (client: ReturnType<typeof storeClient>, id: JobId) => {
  const regressions: Array<string> = []
  const seen: Array<JobStatus> = []
  let running = true
  const done = (async () => {
    let previous = -1
    while (running) {
      const status = await client.get(id)
      seen.push(status)
      if (status.completedChunks < previous) regressions.push(`${previous} then ${status.completedChunks}`)
      previous = status.completedChunks
      await pause(5)
    }
  })()
  return {
    regressions,
    seen,
    stop: async () => {
      running = false
      await done
    }
  }
}

const stores: ReadonlyArray<readonly [string, () => Promise<{ store: StoreConfig; cleanup: () => Promise<void> }>]> = [
  ["SQLite", async () => ({ store: { sqlite: join(dir, `${crypto.randomUUID()}.db`) }, cleanup: async () => {} })],
  ["PostgreSQL", async () => {
    const schema = `split_brain_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`
    return {
      store: { pg: pgUrl, schema },
      cleanup: () =>
        Effect.runPromise(
          Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`).pipe(
            Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl) })),
            Effect.ignore
          )
        )
    }
  }]
]

/**
 * Starts owner A with a job, stops it once it has completed `progressBeforeStop` chunks, starts manager B and
 * waits until B runs the job, then resumes A. Returns when A has been resumed.
 */
const takeOver = async (store: StoreConfig, chunks: number) => {
  const a = startManager(store, `a-${crypto.randomUUID()}`, { chunks })
  await ready(a.process, "owner A")
  await until(() => readLog(a.log).filter((entry) => entry.event === "end").length >= 100, "owner A's progress")
  const id = readFileSync(a.idFile, "utf8") as JobId
  a.process.child.kill("SIGSTOP")
  const client = storeClient(store)
  const stalled = await client.get(id)
  const b = startManager(store, `b-${crypto.randomUUID()}`)
  await ready(b.process, "manager B")
  await until(() => readLog(b.log).filter((entry) => entry.event === "start").length >= 20, "manager B to take the job over")
  const progress = watchProgress(client, id)
  const resumedAt = Date.now()
  a.process.child.kill("SIGCONT")
  /**
   * The chunks A started after it resumed, while it was the stale owner: until it took the job back itself
   * (legitimately: when B looked gone to it), if it did.
   */
  const startedByStaleA = () => {
    const retaken = progress.seen.find((status) => status.owner === stalled.owner && status.lease > stalled.lease)
    const until = retaken?.updatedAt.getTime() ?? Number.POSITIVE_INFINITY
    return readLog(a.log).filter((entry) => entry.event === "start" && entry.at >= resumedAt && entry.at < until)
  }
  return { a, b, id, client, progress, startedByStaleA }
}

describe.each(stores)("split brain on %s", (_name, makeStore) => {
  it("a stalled owner resumed after a takeover starts at most its in-flight chunks, and nothing after a cancel returns", async () => {
    const { store, cleanup } = await makeStore()
    const { a, b, client, id, progress, startedByStaleA } = await takeOver(store, 3000)
    try {
      // The resumed owner's heartbeat finds the lease moved on within a heartbeat or two.
      await pause(1000)
      const cancelled = await client.cancel(id)
      const cancelReturned = Date.now()
      expect(cancelled.state).toBe("cancelled")
      await pause(1000)
      await progress.stop()
      const final = await client.get(id)

      const seen = history(progress.seen)
      expect(startedByStaleA().length, seen).toBeLessThanOrEqual(timings.concurrency)
      const startsAfterCancel = [...readLog(a.log), ...readLog(b.log)]
        .filter((entry) => entry.event === "start" && entry.at > cancelReturned)
      expect(startsAfterCancel, seen).toEqual([])
      expect(progress.regressions, seen).toEqual([])
      // Ended once: the cancel stands, and nothing changed the job after it.
      expect(final).toMatchObject({ state: "cancelled", lease: cancelled.lease })
      expect(final.finishedAt).toEqual(cancelled.finishedAt)
      expect(final.completedChunks).toBe(cancelled.completedChunks)
      expect(progress.seen.filter((status) => isTerminal(status.state)).every((status) => status.state === "cancelled"))
        .toBe(true)
    } finally {
      a.process.child.kill("SIGKILL")
      b.process.child.kill("SIGKILL")
      await progress.stop()
      await client.dispose()
      await cleanup()
    }
  }, 60_000)

  it("SIGTERM of the resumed stale owner leaves the job with the new owner, which completes it", async () => {
    const { store, cleanup } = await makeStore()
    const chunks = 1500
    const { a, b, client, id, progress, startedByStaleA } = await takeOver(store, chunks)
    try {
      a.process.child.kill("SIGTERM")
      expect(await a.process.exited).toBe(0)
      await until(() => progress.seen.some((status) => isTerminal(status.state)), "the job to end", 40_000)
      const ended = await client.get(id)
      await pause(500)
      await progress.stop()

      const seen = history(progress.seen)
      expect(ended, seen).toMatchObject({ state: "completed", completedChunks: chunks, failedChunks: 0 })
      expect(await client.get(id), seen).toEqual(ended)
      expect(progress.regressions, seen).toEqual([])
      expect(startedByStaleA().length, seen).toBeLessThanOrEqual(timings.concurrency)
      // Every chunk completed at least once, by one owner or the other.
      const completed = new Set([...readLog(a.log), ...readLog(b.log)].filter((e) => e.event === "end").map((e) => e.chunk))
      expect(completed.size, seen).toBe(chunks)
    } finally {
      a.process.child.kill("SIGKILL")
      b.process.child.kill("SIGKILL")
      await progress.stop()
      await client.dispose()
      await cleanup()
    }
  }, 60_000)
})
