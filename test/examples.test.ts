/**
 * The examples run as a user runs them: `tsx examples/<name>.ts` in a child process, output piped (so not
 * a TTY), Ctrl+C sent as SIGINT.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import type { TsxProcess } from "./support/tsxProcess.js"
import { killAll, runTsx, startTsx } from "./support/tsxProcess.js"

afterEach(killAll)

const start = (file: string, args: ReadonlyArray<string> = []) => startTsx(`examples/${file}`, args)
const run = (file: string, args: ReadonlyArray<string> = []) => runTsx(`examples/${file}`, args)

/** Resolves once stdout matches `pattern`; fails if the process exits first or `timeoutMillis` passes. */
const waitForOutput = (example: TsxProcess, pattern: RegExp, timeoutMillis = 10_000): Promise<void> =>
  new Promise((resolve, reject) => {
    const check = () => {
      if (!pattern.test(example.stdout())) return
      done()
      resolve()
    }
    const onExit = () => {
      done()
      reject(new Error(`exited before printing ${pattern}:\n${example.stdout()}${example.stderr()}`))
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`no ${pattern} within ${timeoutMillis} ms:\n${example.stdout()}${example.stderr()}`))
    }, timeoutMillis)
    const done = () => {
      clearTimeout(timer)
      example.child.stdout.off("data", check)
      example.child.off("close", onExit)
    }
    example.child.stdout.on("data", check)
    example.child.on("close", onExit)
    check()
  })

describe("examples/render-farm.ts", () => {
  it("renders both jobs, printing plain progress lines when stdout is not a TTY", async () => {
    const { code, stderr, stdout } = await run("render-farm.ts", ["--fast"])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).not.toContain("\x1b[")
    expect(stdout).toMatch(/^trailer\s+running\s+0\/25 chunks\s+0%/m)
    expect(stdout).toMatch(/^trailer\s+completed\s+25\/25 chunks\s+100%/m)
    // The summary table.
    expect(stdout).toMatch(/^job\s+state\s+chunks\s+failed\s+retries\s+time$/m)
    expect(stdout).toMatch(/^trailer\s+completed\s+25\/25\s+0\s+\d+\s+[\d.]+s$/m)
    expect(stdout).toMatch(/^teaser\s+completed\s+7\/7\s+0\s+\d+\s+[\d.]+s$/m)
  })

  it("reports a job whose chunks run out of attempts as failed, and exits with 1", async () => {
    const { code, stdout } = await run("render-farm.ts", ["--fast", "--frames", "48", "--failure-rate", "1"])
    expect(code).toBe(1)
    expect(stdout).toMatch(/^trailer\s+failed\s+/m)
    expect(stdout).toMatch(/failed after 5 attempts: render node dropped frames/)
  })

  it("rejects an unknown flag with a one-line error and exit code 2", async () => {
    const { code, stderr, stdout } = await run("render-farm.ts", ["--frams", "10"])
    expect(code).toBe(2)
    expect(stdout).toBe("")
    expect(stderr.trimEnd().split("\n")).toEqual([expect.stringContaining("Unknown option '--frams'")])
  })

  it("cancels both jobs on Ctrl+C and exits with 130", async () => {
    const example = start("render-farm.ts", ["--frames", "24000", "--latency", "100-200"])
    await waitForOutput(example, /^\w+\s+running\s+.*\b[1-9]\d%/m)
    example.child.kill("SIGINT")
    expect(await example.exited).toBe(130)
    const stdout = example.stdout()
    expect(stdout).toMatch(/^trailer\s+cancelled\s+\d+\/1000\s/m)
    expect(stdout).toMatch(/^teaser\s+cancelled\s+\d+\/250\s/m)
    expect(stdout).toContain("Render cancelled")
  })
})

describe("examples/render-farm.ts --db", () => {
  const dir = mkdtempSync(join(tmpdir(), "effect-jobs-demo-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("prints the ids and the commands to try first; a job paused and resumed with the CLI shows it", async () => {
    const db = join(dir, "jobs.db")
    const example = start("render-farm.ts", ["--db", db, "--latency", "100-200"])
    await waitForOutput(example, /^trailer\s+running\s/m, 30_000)
    const lines = example.stdout().split("\n")
    expect(lines[0]).toMatch(/^trailer: job_\w+$/)
    expect(lines[1]).toMatch(/^teaser: job_\w+$/)
    // A few minutes of work by default: 2,400 chunks of 100-200 ms, 8 at a time.
    expect(lines[3]).toMatch(/^The trailer takes about \d+\.\ds \(--frames N changes it\)\. In another terminal, try:$/)
    expect(lines[4]).toBe(`  npx effect-jobs serve --db ${db}            # a web dashboard on http://127.0.0.1:8080/`)
    expect(lines.findIndex((line) => /^trailer\s+running/.test(line))).toBeGreaterThan(4)

    // Paused once it has a rate (the line of its first 10 % step).
    await waitForOutput(example, /^trailer\s+running\s.*chunks\/s/m, 60_000)
    expect((await runTsx("src/cli.ts", ["pause", "trailer", "--db", db])).stdout).toMatch(/^job_\w+ paused$/m)
    await waitForOutput(example, /^trailer\s+paused\s+\d+\/2400 chunks/m, 30_000)
    expect((await runTsx("src/cli.ts", ["resume", "trailer", "--db", db])).stdout).toMatch(/^job_\w+ pending$/m)
    // The demo's manager takes the job over again and runs it.
    await waitForOutput(example, /^trailer\s+paused\s[\s\S]*^trailer\s+running\s/m, 30_000)
    // Its rate leaves the paused time (seconds, here) out: it is about what it was before the pause.
    const rates = example.stdout().split("\n").filter((line) => /^trailer\s+(running|paused)/.test(line))
    const rate = (line: string | undefined) => Number(/([\d.]+) chunks\/s/.exec(line ?? "")?.[1])
    const paused = rates.findIndex((line) => /^trailer\s+paused/.test(line))
    expect(rate(rates[paused + 1])).toBeGreaterThan(rate(rates[paused - 1]) * 0.6)
    example.child.kill("SIGINT")
    expect(await example.exited).toBe(130)
  })
})

describe("examples/effect-program.ts", () => {
  it("renders both jobs, printing a line per 10 % step", async () => {
    const { code, stderr, stdout } = await run("effect-program.ts", ["--fast"])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).toMatch(/^trailer\s+running\s+0%\s+0\/25 chunks$/m)
    expect(stdout).toMatch(/^trailer\s+completed\s+100%\s+25\/25 chunks$/m)
    expect(stdout).toMatch(/^trailer completed in [\d.]+s$/m)
    expect(stdout).toMatch(/^teaser completed in [\d.]+s$/m)
  })

  it("cancels the jobs when interrupted by Ctrl+C, and exits with 130", async () => {
    const example = start("effect-program.ts")
    await waitForOutput(example, /^trailer\s+running\s+[1-9]\d%/m)
    example.child.kill("SIGINT")
    expect(await example.exited).toBe(130)
    expect(example.stdout()).toMatch(/^trailer\s+cancelled\s+/m)
  })
})

describe("examples/cancel-and-list.ts", () => {
  it("cancels a pending and a running job, leaves a finished one unchanged, and lists the final states", async () => {
    const { code, stderr, stdout } = await run("cancel-and-list.ts", ["--fast"])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).toMatch(/running: act-1, intro\n\s+pending: credits, act-2/)
    const finalStates = stdout.slice(stdout.indexOf("Final states"))
    expect(finalStates).toMatch(/credits\s+cancelled 0\/40 chunks/)
    expect(finalStates).toMatch(/act-2\s+completed 40\/40 chunks/)
    expect(finalStates).toMatch(/act-1\s+completed 40\/40 chunks/)
    expect(finalStates).toMatch(/intro\s+cancelled \d+\/40 chunks/)
  })
})

describe("examples/tracing.ts", () => {
  it("prints the exported spans as a tree and a summary of the metrics", async () => {
    const { code, stderr, stdout } = await run("tracing.ts", ["--chunks", "2"])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).toMatch(/completed: 2\/2 chunks/)
    // The job span, then its chunks' spans nested under it, one line each with a duration.
    const lines = stdout.split("\n")
    const jobLine = lines.findIndex((line) => /effect-jobs\.job {2}job\.id=job_\w+ +[\d.]+ ms$/.test(line))
    expect(jobLine).toBeGreaterThan(-1)
    const chunkLines = lines.flatMap((line, index) =>
      /effect-jobs\.chunk {2}chunk\.id=\d+ +[\d.]+ ms$/.test(line) ? [index] : [])
    expect(chunkLines).toHaveLength(2)
    for (const index of chunkLines) {
      expect(index).toBeGreaterThan(jobLine)
      expect(lines[index]!.indexOf("effect-jobs.chunk")).toBeGreaterThan(lines[jobLine]!.indexOf("effect-jobs.job"))
    }
    expect(stdout).toMatch(/^ {2}JobManager\.runJob +[\d.]+ ms$/m)
    // The metrics, one line each: two chunks started and succeeded.
    expect(stdout).toMatch(/^ {2}effect_jobs_chunks_started +2$/m)
    expect(stdout).toMatch(/^ {2}effect_jobs_chunks_succeeded +2$/m)
    expect(stdout).toMatch(/^ {2}effect_jobs_chunk_duration_ms +count 2, mean [\d.]+, max [\d.]+ \(ms\)$/m)
    // Readable: no raw exporter objects, a few lines.
    expect(stdout).not.toContain("traceId")
    expect(stdout.trimEnd().split("\n").length).toBeLessThan(20)
  })
})
