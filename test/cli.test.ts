/**
 * The `effect-jobs` CLI, run as a user runs it (a child process, no shell), against an SQLite store that a
 * manager in this test process is using.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { PromiseJobManager } from "../src/promise.js"
import { createJobManager } from "../src/promise.js"
import { GatedWorker } from "./contract/managerCases.js"
import { runTsx } from "./support/tsxProcess.js"

const cli = (args: ReadonlyArray<string>) => runTsx("src/cli.ts", args)

describe("effect-jobs CLI", () => {
  const dir = mkdtempSync(join(tmpdir(), "effect-jobs-cli-"))
  const db = join(dir, "jobs.db")
  const worker = new GatedWorker()
  let manager: PromiseJobManager
  let running: string
  let done: string

  beforeAll(async () => {
    manager = await createJobManager({ worker: worker.run, concurrency: 2, store: { sqlite: db } })
    done = await manager.submitJob({ name: "finished", chunks: [{ id: 0, payload: null }] })
    await worker.startedAtLeast(1)
    worker.release(0)
    await manager.waitForJob(done)
    running = await manager.submitJob({ name: "render", chunks: { start: 0, end: 9, size: 1 } })
    await worker.startedAtLeast(3)
  })

  afterAll(async () => {
    await manager.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it("list prints a table of the jobs, newest first, filtered by state", async () => {
    const all = await cli(["list", "--db", db])
    expect(all.code).toBe(0)
    const lines = all.stdout.trim().split("\n")
    expect(lines[0]).toMatch(/^id\s+name\s+state\s+progress\s+chunks\s+created$/)
    expect(lines[1]).toContain(running)
    expect(lines[1]).toMatch(/render\s+running/)
    expect(lines[2]).toContain(done)
    const completed = await cli(["list", "--db", db, "--state", "completed"])
    expect(completed.stdout).toContain(done)
    expect(completed.stdout).not.toContain(running)
  })

  it("--json prints one JSON object per job", async () => {
    const { code, stdout } = await cli(["list", "--db", db, "--json", "--limit", "1"])
    expect(code).toBe(0)
    const lines = stdout.trim().split("\n").map((line) => JSON.parse(line))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ id: running, state: "running", name: "render", totalChunks: 10 })
    const shown = await cli(["show", done, "--db", db, "--json"])
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: done, state: "completed", progress: 100 })
  })

  it("an unknown id, a missing store or a foreign file is a one-line error and exit code 1", async () => {
    const unknown = await cli(["show", "job_nope", "--db", db])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr.trim()).toBe("effect-jobs: no job with id \"job_nope\"")
    const missing = await cli(["list", "--db", join(dir, "missing.db")])
    expect(missing.code).toBe(1)
    expect(missing.stderr.trim()).toMatch(/^effect-jobs: .*no job store at .*missing\.db/)
    const foreign = join(dir, "notes.txt")
    writeFileSync(foreign, "not a database at all, just some text that is long enough to be a header\n".repeat(10))
    const bad = await cli(["list", "--db", foreign])
    expect(bad.code).toBe(1)
    expect(bad.stderr.trim().split("\n")).toHaveLength(1)
    expect(bad.stderr).toMatch(/^effect-jobs: /)
  })

  it("a bad argument is a usage error with exit code 2", async () => {
    const result = await cli(["list", "--db", db, "--limit", "many"])
    expect(result.code).toBe(2)
  })

  it("pause, resume and cancel reach the job running in this process", async () => {
    const paused = await cli(["pause", running, "--db", db])
    expect(paused.stdout.trim()).toBe(`${running} paused`)
    expect((await manager.getJob(running))?.state).toBe("paused")
    const startedBefore = worker.started.length

    const resumed = await cli(["resume", running, "--db", db])
    expect(resumed.stdout.trim()).toBe(`${running} pending`)
    // A manager on the store claims the ownerless job and runs the chunks not yet completed.
    await worker.startedAtLeast(startedBefore + 2)

    const cancelled = await cli(["cancel", running, "--db", db])
    expect(cancelled.code).toBe(0)
    expect(cancelled.stdout.trim()).toBe(`${running} cancelled`)
    expect((await manager.getJob(running))?.state).toBe("cancelled")
    const again = await cli(["cancel", running, "--db", db])
    expect(again.stdout.trim()).toBe(`${running} cancelled`)
  })

  it("watch follows a job until it ends", async () => {
    const before = worker.started.length
    const id = await manager.submitJob({ name: "short", chunks: [{ id: 0, payload: null }] })
    const watching = cli(["watch", id, "--db", db])
    await worker.startedAtLeast(before + 1)
    worker.release(0)
    const { code, stdout } = await watching
    expect(code).toBe(0)
    expect(stdout.trim().split("\n").at(-1)).toMatch(/^short\s+completed\s+.*100%\s+1\/1 chunks$/)
  })
})
