/**
 * The `effect-jobs` CLI, run as a user runs it (a child process, no shell, output piped: not a TTY), against
 * an SQLite store whose jobs another process runs (`test/fixtures/runner.ts`). Each case checks the exit code
 * and the exact first line of stderr.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Redacted from "effect/Redacted"
import { run } from "../src/internal/cli/main.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"
import type { TsxProcess } from "./support/tsxProcess.js"
import { exitCode, killAll, runTsx, startTsx } from "./support/tsxProcess.js"

const cli = (args: ReadonlyArray<string>) => runTsx("src/cli.ts", args)

/**
 * The same program in this process: its exit code and what it printed. For the many usage errors, which
 * end before any store is opened (a process per case would cost seconds each).
 */
const cliHere = (args: ReadonlyArray<string>) =>
  Effect.runPromise(Effect.gen(function*() {
    const stdout: Array<string> = []
    const stderr: Array<string> = []
    const base = yield* Console.consoleWith(Effect.succeed)
    const code = yield* Console.withConsole(run(args), {
      ...base,
      log: (...parts) => Effect.sync(() => void stdout.push(`${parts.join(" ")}\n`)),
      error: (...parts) => Effect.sync(() => void stderr.push(`${parts.join(" ")}\n`))
    })
    return { code, stdout: stdout.join(""), stderr: stderr.join("") }
  }))

const firstLine = (text: string) => text.split("\n")[0]

const long = (name: string) => ({ name, chunks: { start: 0, end: 99_999, size: 1 } })

/** Submitted in this order; at most 4 run at once, so `encode` starts once `finished` and `broken` end. */
const specs = [
  { name: "finished", chunks: [{ id: 0, payload: { ms: 1 } }] },
  { name: "broken", chunks: [{ id: 0, payload: { ms: 1, fail: true } }] },
  long("render"),
  long("render"),
  long("encode")
]

// Each command is a process of its own (a second or more on a busy machine).
describe("effect-jobs CLI", { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "effect-jobs-cli-"))
  const db = join(dir, "jobs.db")
  let runner: TsxProcess
  let ids: Record<"finished" | "broken" | "render1" | "render2" | "encode", string>
  const store = ["--db", db]
  const stateOf = async (id: string) => JSON.parse((await cli(["show", id, "--json", ...store])).stdout).state as string

  beforeAll(async () => {
    runner = startTsx("test/fixtures/runner.ts", [db, JSON.stringify(specs)])
    await vi.waitFor(() => expect(runner.stdout()).toContain("{\"ids\""), { timeout: 30_000, interval: 50 })
    const [finished, broken, render1, render2, encode] = JSON.parse(runner.stdout()).ids as Array<string>
    ids = { finished: finished!, broken: broken!, render1: render1!, render2: render2!, encode: encode! }
    await vi.waitFor(async () => {
      const { stdout } = await cli(["list", "--state", "running", "--json", ...store])
      expect(stdout.trim().split("\n")).toHaveLength(3)
    }, { timeout: 30_000, interval: 200 })
  }, 90_000)

  afterAll(async () => {
    killAll()
    rmSync(dir, { recursive: true, force: true })
  })

  describe("reading", () => {
    it("list prints a table of the jobs, newest first, filtered by state", async () => {
      const all = await cli(["list", ...store])
      expect(all.code).toBe(0)
      expect(all.stderr).toBe("")
      const lines = all.stdout.trim().split("\n")
      expect(lines[0]).toMatch(/^id\s+name\s+state\s+progress\s+chunks\s+created$/)
      expect(lines.slice(1).map((line) => line.split(/\s+/)[0])).toEqual(
        [ids.encode, ids.render2, ids.render1, ids.broken, ids.finished]
      )
      expect(lines[5]).toMatch(/finished\s+completed\s+100%\s+1\/1/)
      const done = await cli(["list", "--state", "completed,failed", ...store])
      expect(done.stdout.trim().split("\n").slice(1).map((line) => line.split(/\s+/)[1])).toEqual(["broken", "finished"])
      const page = await cli(["list", "--limit", "2", ...store])
      expect(page.stdout.trim().split("\n")).toHaveLength(4)
      const cursor = /--cursor (\S+)\)$/.exec(page.stdout.trim())![1]!
      const next = await cli(["list", "--limit", "2", "--cursor", cursor, ...store])
      expect(next.stdout.trim().split("\n")[1]).toContain(ids.render1)
    })

    it("--json prints one JSON object per job", async () => {
      const { code, stdout } = await cli(["list", ...store, "--json", "--limit", "1"])
      expect(code).toBe(0)
      const lines = stdout.trim().split("\n").map((line) => JSON.parse(line))
      expect(lines).toEqual([expect.objectContaining({ id: ids.encode, name: "encode", totalChunks: 100_000 })])
      const shown = await cli(["show", ids.finished, ...store, "--json"])
      expect(JSON.parse(shown.stdout)).toMatchObject({ id: ids.finished, state: "completed", progress: 100 })
    })

    it("show --chunks lists a job's chunks in id order, filtered by state, a page at a time", async () => {
      const broken = await cli(["show", ids.broken, "--chunks", ...store])
      expect(broken.code).toBe(0)
      const lines = broken.stdout.trim().split("\n")
      expect(lines[0]).toMatch(/^chunk\s+state\s+attempts\s+finished\s+result\s+error$/)
      expect(lines[1]).toMatch(/^\s*0\s+failed\s+1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+-\s+chunk 0 was told to fail$/)
      const json = await cli(["show", ids.broken, "--chunks", "--json", ...store])
      expect(JSON.parse(json.stdout)).toMatchObject({ id: 0, state: "failed", attempts: 1, error: "chunk 0 was told to fail" })
      const render = await cli(["show", ids.render1, "--chunks", "--limit", "3", ...store])
      const rows = render.stdout.trim().split("\n")
      expect(rows.slice(1, 4).map((line) => line.trim().split(/\s+/)[0])).toEqual(["0", "1", "2"])
      expect(rows[4]).toBe("(more chunks: add --cursor 2)")
      const next = await cli(["show", ids.render1, "--chunks", "--limit", "1", "--cursor", "2", ...store])
      expect(next.stdout.trim().split("\n")[1]!.trim().split(/\s+/)[0]).toBe("3")
      const none = await cli(["show", ids.render1, "--chunks", "--state", "failed", ...store])
      expect(none.stdout.trim().split("\n")).toHaveLength(1)
      const usage = await cli(["show", ids.render1, "--state", "failed", ...store])
      expect(usage.code).toBe(2)
      expect(firstLine(usage.stderr)).toBe("effect-jobs: --state: only with --chunks")
      const cursor = await cli(["show", ids.render1, "--chunks", "--cursor", "x", ...store])
      expect(cursor.code).toBe(2)
      expect(firstLine(cursor.stderr)).toBe("effect-jobs: --cursor: not a cursor of a chunk listing")
      const bad = await cli(["show", ids.render1, "--chunks", "--state", "done", ...store])
      expect(bad.code).toBe(2)
      expect(firstLine(bad.stderr)).toBe(
        'effect-jobs: --state: "done" is not a chunk state (one of completed, failed, running, pending)'
      )
    })

    it("a job is named by its id, a unique prefix of 6 characters or more, or its name", async () => {
      const byPrefix = await cli(["show", ids.broken.slice(0, -4), ...store])
      expect(byPrefix.code).toBe(0)
      expect(byPrefix.stdout).toMatch(new RegExp(`^id\\s+${ids.broken}$`, "m"))
      expect(byPrefix.stdout).toMatch(/^state\s+failed$/m)
      expect(byPrefix.stdout).toMatch(/^error\s+chunk 0 failed after 1 attempt: chunk 0 was told to fail$/m)
      const byName = await cli(["show", "encode", ...store])
      expect(byName.stdout).toMatch(new RegExp(`^id\\s+${ids.encode}$`, "m"))
    })

    it("an ambiguous name or prefix is a usage error (exit 2) listing the candidates", async () => {
      const byName = await cli(["show", "render", ...store])
      expect(byName.code).toBe(2)
      expect(firstLine(byName.stderr)).toBe("effect-jobs: render: names 2 jobs; give an id (or a longer prefix):")
      const candidates = byName.stderr.trim().split("\n").slice(2)
      expect(candidates.map((line) => line.trim().split(/\s+/)[0])).toEqual([ids.render2, ids.render1])
      expect(byName.stdout).toBe("")
      // The ids start with their creation time: these five share a prefix.
      const all = Object.values(ids)
      let shared = all[0]!
      while (!all.every((id) => id.startsWith(shared))) shared = shared.slice(0, -1)
      expect(shared.length).toBeGreaterThanOrEqual(6)
      const byPrefix = await cli(["pause", shared, ...store])
      expect(byPrefix.code).toBe(2)
      expect(firstLine(byPrefix.stderr)).toBe(`effect-jobs: ${shared}: names 5 jobs; give an id (or a longer prefix):`)
      expect(await stateOf(ids.render1)).toBe("running")
    })

    it("an unknown job, a too short prefix: exit 1 and one line", async () => {
      const unknown = await cli(["show", "job_nope", ...store])
      expect(unknown.code).toBe(1)
      expect(unknown.stderr).toBe("effect-jobs: no job with id, id prefix or name \"job_nope\"\n")
      const short = await cli(["cancel", "job_0", ...store])
      expect(short.code).toBe(1)
      expect(short.stderr).toBe(
        "effect-jobs: no job with id, id prefix or name \"job_0\" (an id prefix needs at least 6 characters)\n"
      )
    })

    it("watch shows the rate and ETA of a running job, without terminal escapes when piped", async () => {
      const watching = startTsx("src/cli.ts", ["watch", ids.render1, ...store])
      await vi.waitFor(() => expect(watching.stdout()).toMatch(/chunks\/s {2}ETA \d/), { timeout: 20_000, interval: 100 })
      watching.child.kill("SIGINT")
      expect(await exitCode(watching)).toBe(130)
      const line = watching.stdout().trim().split("\n").find((text) => text.includes("chunks/s"))!
      expect(line).toMatch(/^render {2}running +[█░]{30} +\d+% {2}\d+\/100000 chunks {2}\d+\.\d chunks\/s {2}ETA \d+[smhd]/)
      expect(watching.stdout()).not.toContain("\x1b")
    })

    it("watch exits with 0 for a completed job and 1 for a failed one", async () => {
      const completed = await cli(["watch", ids.finished, ...store])
      expect(completed.code).toBe(0)
      expect(completed.stdout.trim()).toMatch(/^finished {2}completed +█{30} {2}100% {2}1\/1 chunks$/)
      const failed = await cli(["watch", "broken", ...store])
      expect(failed.code).toBe(1)
      expect(failed.stderr).toBe(
        `effect-jobs: job ${ids.broken} failed: chunk 0 failed after 1 attempt: chunk 0 was told to fail\n`
      )
    })
  })

  describe("controlling jobs run by another process", () => {
    it("pause, resume and cancel reach the running job; repeating them says why nothing changed", async () => {
      const paused = await cli(["pause", "encode", ...store])
      expect(paused).toMatchObject({ code: 0, stdout: `${ids.encode} paused\n`, stderr: "" })
      const again = await cli(["pause", "encode", ...store])
      expect(again).toMatchObject({
        code: 0,
        stdout: `${ids.encode} paused\n`,
        stderr: `effect-jobs: job ${ids.encode} is already paused\n`
      })
      const resumed = await cli(["resume", "encode", ...store])
      expect(resumed).toMatchObject({ code: 0, stdout: `${ids.encode} pending\n`, stderr: "" })
      // The runner claims the ownerless job and runs it again.
      await vi.waitFor(async () => expect(await stateOf(ids.encode)).toBe("running"), { timeout: 20_000, interval: 200 })
      const notPaused = await cli(["resume", "encode", ...store])
      expect(notPaused.code).toBe(0)
      expect(notPaused.stderr).toBe(`effect-jobs: job ${ids.encode} is running, not paused; there is nothing to resume\n`)
      const cancelled = await cli(["cancel", "encode", ...store])
      expect(cancelled).toMatchObject({ code: 0, stdout: `${ids.encode} cancelled\n`, stderr: "" })
      const twice = await cli(["cancel", "encode", ...store])
      expect(twice).toMatchObject({
        code: 0,
        stdout: `${ids.encode} cancelled\n`,
        stderr: `effect-jobs: job ${ids.encode} was already cancelled\n`
      })
    })

    it("cancel of a finished job exits 0; pause and resume of one exit 1, saying why", async () => {
      const cancel = await cli(["cancel", "finished", ...store])
      expect(cancel).toMatchObject({
        code: 0,
        stdout: `${ids.finished} completed\n`,
        stderr: `effect-jobs: job ${ids.finished} had already completed; there is nothing to cancel\n`
      })
      for (const action of ["pause", "resume"]) {
        const refused = await cli([action, "finished", ...store])
        expect(refused.code).toBe(1)
        expect(refused.stdout).toBe("")
        expect(refused.stderr).toBe(
          `effect-jobs: cannot ${action} job ${ids.finished}: it is completed; a job that has ended cannot be ${action}d\n`
        )
      }
    })

    it("retry re-drives a failed job as a new job that the runner picks up; other jobs are refused", async () => {
      const retried = await cli(["retry", "broken", ...store])
      expect(retried.code).toBe(0)
      const id = /^(job_\S+) pending$/.exec(retried.stdout.trim())![1]!
      expect(firstLine(retried.stderr)).toBe(
        `effect-jobs: job ${id} re-drives job ${ids.broken}; a job manager running on this store will pick it up`
      )
      // Its chunk is told to fail again.
      await vi.waitFor(async () => expect(await stateOf(id)).toBe("failed"), { timeout: 20_000, interval: 200 })
      const refused = await cli(["retry", "finished", ...store])
      expect(refused.code).toBe(1)
      expect(refused.stderr).toBe(
        `effect-jobs: cannot retry job ${ids.finished}: it is completed; only a failed job can be re-driven\n`
      )
    })

    it("delete removes a finished job; a running one is refused", async () => {
      const refused = await cli(["delete", ids.render2, ...store])
      expect(refused.code).toBe(1)
      expect(refused.stderr).toBe(
        `effect-jobs: cannot delete job ${ids.render2}: it is running; only a completed, failed or cancelled job can be deleted (cancel it first)\n`
      )
      const deleted = await cli(["delete", "finished", ...store])
      expect(deleted).toMatchObject({ code: 0, stdout: `${ids.finished} deleted\n` })
      expect((await cli(["show", ids.finished, ...store])).code).toBe(1)
    })

    it("prune deletes the jobs that ended longer ago than --older-than", async () => {
      const kept = await cli(["prune", "--older-than", "1h", ...store])
      expect(kept).toMatchObject({ code: 0, stdout: "deleted 0 jobs\n" })
      const pruned = await cli(["prune", "--older-than", "0s", "--state", "cancelled", ...store])
      expect(pruned).toMatchObject({ code: 0, stdout: "deleted 1 job\n" })
      expect((await cli(["show", ids.encode, ...store])).code).toBe(1)
      expect(await stateOf(ids.render1)).toBe("running")
    })

    it("a running job whose owner died is shown as such by list and show", async () => {
      runner.child.kill("SIGKILL")
      await exitCode(runner)
      // The CLI takes an owner silent for 5 s as gone.
      await vi.waitFor(async () => {
        const { stdout } = await cli(["list", "--state", "running", ...store])
        const lines = stdout.trim().split("\n").slice(1)
        expect(lines).toHaveLength(2)
        for (const line of lines) expect(line).toMatch(/\srunning \(owner gone \d+s\)\s/)
      }, { timeout: 20_000, interval: 500 })
      const shown = await cli(["show", ids.render1, ...store])
      expect(shown.stdout).toMatch(/^state\s+running \(owner gone \d+s\)$/m)
      expect(shown.stdout).toMatch(/^owner\s+\S+:\d+:\S+ \(gone\)$/m)
    })
  })

  it("a usage error exits with 2 and one line on stderr", async () => {
    const result = await cli(["list", "--limit", "-1", ...store])
    expect(result).toMatchObject({
      code: 2,
      stdout: "",
      stderr: "effect-jobs: --limit: must be an integer from 1 to 1000, got -1\n"
    })
  })

  describe("usage errors: exit code 2 and effect-jobs: <option>: <problem>", () => {
    const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
      [["list", "--limit", "many"], "effect-jobs: --limit: must be an integer from 1 to 1000, got many"],
      [["list", "--limit", "-1"], "effect-jobs: --limit: must be an integer from 1 to 1000, got -1"],
      [
        ["list", "--state", "bogus"],
        "effect-jobs: --state: \"bogus\" is not a job state (one of pending, running, paused, completed, failed, cancelled)"
      ],
      [["list", "--db", "a.db", "--pg", "postgres://localhost/db"], "effect-jobs: --db: give --db FILE or --pg URL, not both"],
      [
        ["list", "--pg", "notaurl"],
        "effect-jobs: --pg: \"notaurl\" is not a PostgreSQL URL (expected postgres://user@host:5432/database)"
      ],
      [["list", "--frams"], "effect-jobs: --frams: unknown option (see effect-jobs list --help)"],
      [["list", "--limit"], "effect-jobs: --limit: needs a value"],
      [["show"], "effect-jobs: <job>: missing (a job id, a unique prefix of one (6 characters or more), or a job name)"],
      [["show", "a", "b"], "effect-jobs: b: unexpected argument (see effect-jobs show --help)"],
      [
        ["frobnicate"],
        "effect-jobs: frobnicate: unknown command (commands: list, show, watch, cancel, pause, resume, retry, delete, prune, serve, runner, submit)"
      ],
      [["prune"], "effect-jobs: --older-than: required (e.g. --older-than 7d)"],
      [["prune", "--older-than", "7x"], "effect-jobs: --older-than: \"7x\" is not an age (e.g. 30m, 12h, 7d, 2w)"],
      [["prune", "--older-than", "1d", "--state", "running"], "effect-jobs: --state: \"running\" is not a state of a job that has ended (one of completed, failed, cancelled)"],
      [
        ["serve", "--host", "0.0.0.0"],
        "effect-jobs: --host: listening on 0.0.0.0 needs --token T (without a token the dashboard listens on 127.0.0.1 only)"
      ],
      [["serve", "--port", "70000"], "effect-jobs: --port: must be an integer from 0 to 65535, got 70000"]
    ]
    for (const [args, line] of cases) {
      it(args.join(" "), async () => {
        const result = await cliHere(args)
        expect(result.code).toBe(2)
        expect(firstLine(result.stderr)).toBe(line)
        expect(result.stdout).toBe("")
      })
    }
  })

  describe("stores", () => {
    it("a missing store, an empty file or a foreign file: exit 1, one line, and the file is left as it was", async () => {
      const missing = join(dir, "missing.db")
      const absent = await cli(["list", "--db", missing])
      expect(absent.code).toBe(1)
      expect(absent.stderr).toBe(
        `effect-jobs: job store error during open: no job store at ${missing} (a job manager creates one on first use)\n`
      )
      expect(() => statSync(missing)).toThrow()

      const empty = join(dir, "empty.db")
      writeFileSync(empty, "")
      const before = statSync(empty)
      const zero = await cli(["cancel", "job_0123456789", "--db", empty])
      expect(zero.code).toBe(1)
      expect(zero.stderr).toBe(
        `effect-jobs: job store error during open: SQLite file ${
          JSON.stringify(empty)
        }: it is not an effect-jobs store (it is empty); a job manager creates one on first use\n`
      )
      const after = statSync(empty)
      expect([after.size, after.mtimeMs]).toEqual([0, before.mtimeMs])

      const foreign = join(dir, "notes.txt")
      writeFileSync(foreign, "not a database at all, just some text that is long enough to be a header\n".repeat(10))
      const bad = await cli(["list", "--db", foreign])
      expect(bad.code).toBe(1)
      expect(bad.stderr.trim().split("\n")).toHaveLength(1)
      expect(bad.stderr).toMatch(/^effect-jobs: job store error during open: SQLite file .* is not a readable SQLite database/)
    })
  })

  describe("help", () => {
    it("has no terminal escapes when piped, and lists the commands and options", async () => {
      const help = await cli(["--help"])
      expect(help.code).toBe(0)
      expect(help.stdout).not.toContain("\x1b")
      expect(firstLine(help.stdout)).toBe("Usage: effect-jobs <command> [options]")
      expect(help.stdout).toMatch(/^ {2}prune {3}delete the jobs that ended more than a given time ago$/m)
      const list = await cli(["list", "--help"])
      expect(list.code).toBe(0)
      expect(list.stdout).not.toContain("\x1b")
      expect(list.stdout).toMatch(/^ {2}--state STATE +only jobs in this state/m)
      expect((await cli(["--version"])).stdout).toBe("0.1.0\n")
    })
  })
})

describe("effect-jobs CLI on PostgreSQL", { timeout: 60_000 }, () => {
  const pgUrl = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"

  it("exits once a quick command is done, though the store was closed while it was still opening its LISTEN connection", async () => {
    const admin = (statement: string) =>
      Effect.runPromise(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(
          Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl) }))
        )
      )
    const database = `effect_jobs_cli_${process.pid}`
    await admin(`DROP DATABASE IF EXISTS ${database}`)
    await admin(`CREATE DATABASE ${database}`)
    try {
      const url = pgUrl.replace(/\/[^/]*$/, `/${database}`)
      await Effect.runPromise(Effect.scoped(Layer.build(SqlJobRepository.layerPg({ url }))))
      // Without an explicit exit, `list` printed its table and then never exited (runTsx gives up after 20 s).
      const listed = await cli(["list", "--pg", url])
      expect(listed.code).toBe(0)
      expect(listed.stdout).toMatch(/^id\s+name\s+state/)
      const json = await cli(["list", "--pg", url, "--json"])
      expect(json.code).toBe(0)
    } finally {
      await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
    }
  })
})
