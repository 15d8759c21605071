/**
 * Cluster mode with real processes on 127.0.0.1: runners (test/fixtures/clusterRunner.ts) joined over a
 * fresh PostgreSQL database per test. Jobs are submitted from this process with `Cluster.submitJob` (no
 * owner: a runner claims them), and followed through the store. The runners' workers log every chunk event
 * to a file, with the runner's pid.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Cluster from "../src/Cluster.js"
import type { JobSpecInput, JobStatus } from "../src/Job.js"
import * as JobClient from "../src/JobClient.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import type { TsxProcess } from "./support/tsxProcess.js"
import { exitCode, killAll, runTsx, startTsx } from "./support/tsxProcess.js"

const adminUrl = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"

interface ChunkEvent {
  readonly e: "start" | "end" | "abort" | "finalize"
  readonly pid: number
  readonly job: string
  readonly chunk: number
  readonly attempt: number
  readonly t: number
}

/** Everything the tests started, undone after them. */
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  killAll()
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
})

/** Runs one statement on the database at `url` (default: the admin database); its rows. */
const query = (statement: string, url = adminUrl): Promise<ReadonlyArray<Record<string, unknown>>> =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<Record<string, unknown>>(statement)).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url) }))
    )
  )
const admin = (statement: string): Promise<void> => query(statement).then(() => {})

/** A fresh database, dropped after the test; its URL. */
const freshDatabase = async (): Promise<string> => {
  const name = `ej_cluster_${process.pid}_${Math.random().toString(36).slice(2, 10)}`
  await admin(`CREATE DATABASE ${name}`)
  cleanups.push(() => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

interface Harness {
  readonly url: string
  readonly log: string
  readonly events: () => ReadonlyArray<ChunkEvent>
  readonly start: (options: { readonly capacity: number; readonly shardsPerGroup?: number; readonly manager?: object }) => TsxProcess
  readonly submit: (spec: JobSpecInput) => Promise<JobStatus>
  readonly get: (id: string) => Promise<JobStatus>
  /** Polls `get` until `done` holds (fails after `timeoutMillis`). */
  readonly until: (id: string, done: (status: JobStatus) => boolean, timeoutMillis?: number) => Promise<JobStatus>
}

const harness = async (): Promise<Harness> => {
  const url = await freshDatabase()
  const dir = mkdtempSync(join(tmpdir(), "ej-cluster-"))
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
  const log = join(dir, "events.jsonl")
  writeFileSync(log, "")
  const runtime = ManagedRuntime.make(
    Layer.orDie(SqlJobRepository.layerPg({ url, stopPollInterval: "200 millis" }))
  )
  cleanups.push(() => runtime.dispose())
  const get = (id: string) =>
    runtime.runPromise(Effect.flatMap(JobClient.make(), (jobs) => jobs.getJob(id)))
  return {
    url,
    log,
    events: () =>
      readFileSync(log, "utf8").split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as ChunkEvent),
    start: (options) =>
      startTsx("test/fixtures/clusterRunner.ts", [JSON.stringify({ pg: url, log, ...options })]),
    submit: (spec) => runtime.runPromise(Cluster.submitJob(spec)),
    get,
    until: async (id, done, timeoutMillis = 60_000) => {
      const deadline = Date.now() + timeoutMillis
      for (;;) {
        const status = await get(id)
        if (done(status)) return status
        if (Date.now() > deadline) throw new Error(`job ${id} still ${status.state} after ${timeoutMillis} ms`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }
}

const waitFor = async (what: string | (() => string), check: () => boolean, timeoutMillis = 30_000): Promise<void> => {
  const deadline = Date.now() + timeoutMillis
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** How many shards a runner said it holds last. */
const shardsHeld = (runner: TsxProcess): number => {
  const reports = runner.stdout().match(/\{"shards":\d+\}/g) ?? []
  const last = reports[reports.length - 1]
  return last === undefined ? 0 : (JSON.parse(last) as { readonly shards: number }).shards
}

/** Starts the runners and waits until each has joined and the cluster's 300 shards are shared out. */
const startRunners = async (
  h: Harness,
  runners: ReadonlyArray<{ readonly capacity: number; readonly manager?: object }>
): Promise<ReadonlyArray<TsxProcess>> => {
  const started = runners.map((options) => h.start(options))
  await Promise.all(started.map((runner) =>
    waitFor(() => `a runner to join:\n${runner.stdout()}${runner.stderr()}`, () => runner.stdout().includes("\"ready\""), 150_000)
  ))
  // Shards move to a runner that joins over a few seconds; attempts sent meanwhile to a shard in transit wait.
  await waitFor("the shards to settle", () => started.reduce((sum, runner) => sum + shardsHeld(runner), 0) === 300, 120_000)
  return started
}

const chunksOf = (count: number, ms: number) => Array.from({ length: count }, (_, id) => ({ id, payload: { ms } }))

/** For each pid, the largest number of chunks (of any job) in flight on it at once, by the events. */
const peakInFlight = (events: ReadonlyArray<ChunkEvent>): Map<number, number> => {
  const now = new Map<number, number>()
  const peak = new Map<number, number>()
  for (const event of [...events].sort((a, b) => a.t - b.t || (a.e === "start" ? 1 : -1))) {
    const count = (now.get(event.pid) ?? 0) + (event.e === "start" ? 1 : -1)
    now.set(event.pid, count)
    peak.set(event.pid, Math.max(peak.get(event.pid) ?? 0, count))
  }
  return peak
}

const startsBy = (events: ReadonlyArray<ChunkEvent>, job: string): Map<number, number> => {
  const counts = new Map<number, number>()
  for (const event of events) {
    if (event.e === "start" && event.job === job) counts.set(event.pid, (counts.get(event.pid) ?? 0) + 1)
  }
  return counts
}

const managerOptions = { concurrency: 12, retry: { attempts: 1 } }

/** The chunks of `job` started but not ended (nor aborted) at `at`, on `pid` (any pid when undefined). */
const inFlightAt = (events: ReadonlyArray<ChunkEvent>, job: string, at: number, pid?: number): Set<number> => {
  const running = new Set<number>()
  for (const event of [...events].filter((event) => event.t <= at && event.job === job).sort((a, b) => a.t - b.t)) {
    if (pid !== undefined && event.pid !== pid) continue
    if (event.e === "start") running.add(event.chunk)
    else running.delete(event.chunk)
  }
  return running
}

/** How many chunk ids of `job` started more than once. */
const startedTwice = (events: ReadonlyArray<ChunkEvent>, job: string): number => {
  const counts = new Map<number, number>()
  for (const event of events) {
    if (event.e === "start" && event.job === job) counts.set(event.chunk, (counts.get(event.chunk) ?? 0) + 1)
  }
  return [...counts.values()].filter((count) => count > 1).length
}

const endedChunks = (events: ReadonlyArray<ChunkEvent>, job: string): Set<number> =>
  new Set(events.filter((event) => event.e === "end" && event.job === job).map((event) => event.chunk))

/** When the manager `owner` heartbeat last (epoch millis; 0 when it has no row). */
const heartbeatAt = async (h: Harness, owner: string): Promise<number> => {
  const rows = await query(`SELECT heartbeat_at FROM effect_jobs_owners WHERE owner = '${owner}'`, h.url)
  return rows.length === 0 ? 0 : Number(rows[0]!["heartbeat_at"])
}

const ownerPid = (status: JobStatus): number => Number(status.owner?.split(":")[1])

const isOver = (status: JobStatus) => status.state !== "pending" && status.state !== "running"

// One cluster of three runners of capacity 4 serves these tests in order; the last two kill runners.
describe("cluster mode, 3 runners of capacity 4", () => {
  let h: Harness
  let runners: ReadonlyArray<TsxProcess>
  const alive = () => runners.filter((runner) => runner.child.exitCode === null && runner.child.signalCode === null)

  beforeAll(async () => {
    h = await harness()
    runners = await startRunners(h, [1, 2, 3].map(() => ({ capacity: 4, manager: managerOptions })))
  }, 300_000)

  it("spreads one job's chunks over the runners by their free capacity", async () => {
    const job = await h.submit({ chunks: chunksOf(60, 300) })
    const done = await h.until(job.id, isOver)
    expect(done.state).toBe("completed")
    expect(done.completedChunks).toBe(60)
    const events = h.events()
    const starts = startsBy(events, job.id)
    expect([...starts.keys()].sort()).toEqual(runners.map((runner) => runner.child.pid!).sort())
    for (const count of starts.values()) expect(count).toBeGreaterThanOrEqual(8)
    for (const peak of peakInFlight(events).values()) expect(peak).toBeLessThanOrEqual(4)
    expect(endedChunks(events, job.id).size).toBe(60)
  }, 120_000)

  it("a cancel from another process (the CLI) aborts every chunk in flight on every runner before it returns", async () => {
    const job = await h.submit({ chunks: chunksOf(24, 30_000) })
    await waitFor("12 chunks in flight", () => inFlightAt(h.events(), job.id, Date.now()).size >= 12)
    const cancel = await runTsx("src/cli.ts", ["cancel", "--pg", h.url, job.id], 90_000)
    const returnedAt = Date.now()
    expect(cancel.code, cancel.stderr).toBe(0)
    expect((await h.get(job.id)).state).toBe("cancelled")
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    const events = h.events().filter((event) => event.job === job.id)
    const started = events.filter((event) => event.e === "start")
    expect(new Set(started.map((event) => event.pid)).size).toBe(3)
    expect(started.filter((event) => event.t > returnedAt)).toEqual([])
    const lastAbort = Math.max(...started.map((start) => {
      const abort = events.find((event) => event.e === "abort" && event.chunk === start.chunk && event.pid === start.pid)
      return abort === undefined ? Number.POSITIVE_INFINITY : abort.t
    }))
    console.log(`cluster: the last of ${started.length} chunks aborted ${returnedAt - lastAbort} ms before cancel returned`)
    // The owner stores `cancelled` only once every runner has received the interruption of its chunks.
    expect(lastAbort).toBeLessThanOrEqual(returnedAt)
  }, 120_000)

  it("re-runs only a killed runner's chunks in flight, elsewhere, and the job completes", async () => {
    const job = await h.submit({ chunks: chunksOf(60, 500) })
    const running = await h.until(job.id, (status) => status.state === "running")
    const victim = alive().find((runner) => runner.child.pid !== ownerPid(running))!
    const victimPid = victim.child.pid!
    await waitFor("the victim to run chunks", () => inFlightAt(h.events(), job.id, Date.now(), victimPid).size >= 2)
    victim.child.kill("SIGKILL")
    const killedAt = Date.now()
    const done = await h.until(job.id, isOver, 60_000)
    expect(done.state).toBe("completed")
    const events = h.events()
    const lost = inFlightAt(events, job.id, killedAt, victimPid)
    expect(endedChunks(events, job.id).size).toBe(60)
    expect(startedTwice(events, job.id)).toBeLessThanOrEqual(lost.size)
    const rerunAt = Math.min(
      ...events.filter((event) => event.job === job.id && event.e === "start" && event.t > killedAt && lost.has(event.chunk))
        .map((event) => event.t)
    )
    console.log(`cluster: runner killed with ${lost.size} chunks in flight; re-run ${rerunAt - killedAt} ms later`)
    expect(rerunAt - killedAt).toBeLessThan(12_000)
  }, 120_000)

  it("resumes a job on another runner from its checkpoint when its owner is killed", async () => {
    const job = await h.submit({ chunks: chunksOf(48, 500) })
    const running = await h.until(job.id, (status) => status.state === "running")
    const owner = ownerPid(running)
    await waitFor("chunks to run", () => endedChunks(h.events(), job.id).size >= 8)
    const stored = (await h.get(job.id)).completedChunks // in the checkpoint at the kill, or fewer
    process.kill(owner, "SIGKILL")
    const killedAt = Date.now()
    await h.until(job.id, (status) => status.owner !== running.owner, 30_000)
    const claimedAt = Date.now()
    const done = await h.until(job.id, isOver, 60_000)
    expect(done.state).toBe("completed")
    expect(ownerPid(done)).not.toBe(owner)
    const events = h.events()
    // The chunks the dead owner had sent: started before the takeover (some arrive after the kill), not ended
    // before the kill.
    const ownEvents = events.filter((event) => event.job === job.id)
    const endedByKill = new Set(ownEvents.filter((event) => event.e === "end" && event.t <= killedAt).map((event) => event.chunk))
    const sent = new Set(
      ownEvents.filter((event) => event.e === "start" && event.t < claimedAt && !endedByKill.has(event.chunk)).map((event) => event.chunk)
    )
    // Completions not yet in the checkpoint (written every 200 ms, later on a loaded machine) run again too.
    const endedBefore = new Set(
      events.filter((event) => event.job === job.id && event.e === "end" && event.t <= killedAt).map((event) => event.chunk)
    ).size
    const twice = startedTwice(events, job.id)
    console.log(
      `cluster: owner killed with ${sent.size} chunks in flight, ${endedBefore - stored} completions not yet stored; ${twice} chunks ran twice`
    )
    expect(twice).toBeLessThanOrEqual(sent.size + Math.max(0, endedBefore - stored))
    expect(endedChunks(events, job.id).size).toBe(48)
    console.log(`cluster: owner killed; another runner took the job over ${claimedAt - killedAt} ms later`)
    expect(claimedAt - killedAt).toBeLessThan(12_000)
  }, 120_000)
})

describe("cluster mode, runners of capacity 1 and 6", () => {
  let h: Harness
  let small: TsxProcess
  let big: TsxProcess

  beforeAll(async () => {
    h = await harness()
    const manager = { ...managerOptions, concurrency: 7 }
    ;[small, big] = await startRunners(h, [{ capacity: 1, manager }, { capacity: 6, manager }]) as [TsxProcess, TsxProcess]
  }, 300_000)

  it("never gives a runner more chunks than its capacity, and the big one runs most", async () => {
    const job = await h.submit({ chunks: chunksOf(28, 300) })
    const done = await h.until(job.id, isOver)
    expect(done.state).toBe("completed")
    const events = h.events()
    const peaks = peakInFlight(events)
    expect(peaks.get(small.child.pid!) ?? 0).toBeLessThanOrEqual(1)
    expect(peaks.get(big.child.pid!) ?? 0).toBeLessThanOrEqual(6)
    expect(startsBy(events, job.id).get(big.child.pid!) ?? 0).toBeGreaterThan(14)
  }, 120_000)

  it("refuses at start-up a runner whose shardsPerGroup differs from the cluster's", async () => {
    const mismatched = h.start({ capacity: 1, shardsPerGroup: 100 })
    const code = await exitCode(mismatched, 90_000)
    expect(code).not.toBe(0)
    expect(mismatched.stdout() + mismatched.stderr()).toContain("shardsPerGroup = 100")
    expect(mismatched.stdout()).not.toContain("ready")
  }, 120_000)
})

describe("cluster mode, a runner that hangs", () => {
  let h: Harness
  let runners: ReadonlyArray<TsxProcess>

  beforeAll(async () => {
    h = await harness()
    runners = await startRunners(h, [1, 2].map(() => ({ capacity: 4, manager: { ...managerOptions, concurrency: 8 } })))
  }, 300_000)

  it("a job's owner stopped past its lease (SIGSTOP) and resumed writes nothing; the other runner ends the job once", async () => {
    const job = await h.submit({ chunks: chunksOf(40, 300), finalize: { name: "record" } })
    const running = await h.until(job.id, (status) => status.state === "running")
    const hung = runners.find((runner) => runner.child.pid === ownerPid(running))!
    const other = runners.find((runner) => runner !== hung)!
    await waitFor("chunks to run", () => endedChunks(h.events(), job.id).size >= 4)
    hung.child.kill("SIGSTOP")
    let done: JobStatus
    try {
      const taken = await h.until(job.id, (status) => status.owner !== running.owner, 30_000)
      expect(ownerPid(taken)).toBe(other.child.pid)
      done = await h.until(job.id, isOver, 60_000)
    } finally {
      hung.child.kill("SIGCONT")
    }
    const resumedAt = Date.now()
    expect(done.state).toBe("completed")
    // The resumed runner has heartbeaten twice (each heartbeat checks its leases): whatever it had to write is
    // written or refused by then.
    for (let beat = 0; beat < 2_000 && (await heartbeatAt(h, running.owner!)) < resumedAt + 2_000; beat++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(await h.get(job.id)).toEqual(done)
    const finalized = h.events().filter((event) => event.e === "finalize" && event.job === job.id)
    expect(finalized.map((event) => event.pid)).toEqual([other.child.pid])
    expect(endedChunks(h.events(), job.id).size).toBe(40)
  }, 180_000)
})

describe("cluster mode from the command line, the Promise facade and the example", () => {
  let h: Harness
  let dir: string
  let log: string
  let runners: ReadonlyArray<TsxProcess>

  /** The events of `job` in `log` (written by the worker module and the facade's worker). */
  const jobEvents = (job: string): ReadonlyArray<ChunkEvent> =>
    readFileSync(log, "utf8").split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as ChunkEvent)
      .filter((event) => event.job === job)

  beforeAll(async () => {
    h = await harness()
    dir = mkdtempSync(join(tmpdir(), "ej-cluster-cli-"))
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
    log = join(dir, "events.jsonl")
    writeFileSync(log, "")
    writeFileSync(join(dir, "worker.mjs"), workerModule(log))
    runners = [1, 2].map(() =>
      startTsx("src/cli.ts", ["runner", "--pg", h.url, "--worker", join(dir, "worker.mjs"), "--concurrency", "2"])
    )
    await Promise.all(runners.map((runner) =>
      waitFor(() => `a CLI runner to start:\n${runner.stdout()}${runner.stderr()}`, () => runner.stdout().includes("running up to 2 chunks"), 150_000)
    ))
  }, 300_000)

  it("submit --concurrency 3 --wait --json: one JSON line per change, exit 0 once completed, 3 chunks in flight at most", async () => {
    const spec = join(dir, "job.json")
    writeFileSync(spec, JSON.stringify({ name: "cli", chunks: chunksOf(12, 200) }))
    const submit = await runTsx("src/cli.ts", ["submit", "--pg", h.url, "--spec", spec, "--concurrency", "3", "--wait", "--json"], 120_000)
    expect(submit.code, submit.stderr).toBe(0)
    const lines = submit.stdout.trimEnd().split("\n").map((line) => JSON.parse(line) as JobStatus)
    expect(lines[0]).toMatchObject({ state: "pending", name: "cli", totalChunks: 12 })
    expect(lines.at(-1)).toMatchObject({ id: lines[0]!.id, state: "completed", completedChunks: 12 })
    const events = jobEvents(lines[0]!.id)
    expect(new Set(events.map((event) => event.pid))).toEqual(new Set(runners.map((runner) => runner.child.pid)))
    expect(Math.max(...peakInFlight(events.map((event) => ({ ...event, pid: 0 }))).values())).toBeLessThanOrEqual(3)
  }, 150_000)

  it("createJobManager({ cluster }) joins as a runner and a manager: its job's chunks run here and on the runners", async () => {
    const { createJobManager } = await import("../src/promise.js")
    const manager = await createJobManager({
      cluster: { postgres: h.url, capacity: 2 },
      concurrency: 6,
      worker: async (chunk, { jobId, signal }) => {
        appendFileSync(log, `${JSON.stringify({ e: "start", pid: process.pid, job: jobId, chunk: chunk.id, attempt: 0, t: Date.now() })}\n`)
        await new Promise((resolve) => setTimeout(resolve, 200))
        signal.throwIfAborted()
        appendFileSync(log, `${JSON.stringify({ e: "end", pid: process.pid, job: jobId, chunk: chunk.id, attempt: 0, t: Date.now() })}\n`)
        return { by: process.pid }
      }
    })
    try {
      const status = await manager.runJob({ chunks: chunksOf(18, 0) })
      expect(status).toMatchObject({ state: "completed", completedChunks: 18 })
      const pids = new Set(jobEvents(status.id).map((event) => event.pid))
      expect(pids.has(process.pid)).toBe(true)
      expect(pids.size).toBeGreaterThan(1)
    } finally {
      await manager.close()
    }
  }, 150_000)

  it("examples/cluster-render.ts runs to completion with a runner killed mid-job", async () => {
    const url = await freshDatabase()
    const example = await runTsx("examples/cluster-render.ts", ["--pg", url, "--chunks", "18", "--ms", "300"], 240_000)
    expect(example.code, example.stderr).toBe(0)
    expect(example.stdout).toMatch(/^killed runner \d \(SIGKILL\)/m)
    expect(example.stdout).toMatch(/^job \S+ completed: 18\/18 chunks$/m)
  }, 270_000)
})

/** A worker module for `effect-jobs runner`: sleeps `payload.ms` and logs start, end and abort to `log`. */
const workerModule = (log: string) => `
import { appendFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
const record = (e, jobId, chunk) =>
  appendFileSync(${JSON.stringify(log)}, JSON.stringify({ e, pid: process.pid, job: jobId, chunk: chunk.id, attempt: 0, t: Date.now() }) + "\\n")
export default async (chunk, { signal, jobId }) => {
  record("start", jobId, chunk)
  signal.addEventListener("abort", () => record("abort", jobId, chunk), { once: true })
  await sleep(chunk.payload.ms, undefined, { signal })
  record("end", jobId, chunk)
}
`
