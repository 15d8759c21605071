/**
 * The worker examples run as a user runs them: `tsx examples/<name>.ts` in a child process, output piped,
 * Ctrl+C sent as SIGINT. video-render runs real ffmpeg processes; the test checks the video it writes with
 * ffmpeg, and looks for leftover ffmpeg processes by the unique directory their arguments name.
 */
import { spawnSync } from "node:child_process"
import { accessSync, constants, existsSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { exitCode, killAll, startTsx } from "./support/tsxProcess.js"

let dir = ""

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "effect-jobs-workers-"))
})

afterEach(() => {
  // The example and tsx's child process that runs it; ffmpeg processes have groups of their own.
  killAll()
  rmSync(dir, { recursive: true, force: true })
})

const start = (file: string, args: ReadonlyArray<string> = []) => startTsx(`examples/${file}`, args, { detached: true })
const run = async (file: string, args: ReadonlyArray<string> = []) => {
  const example = start(file, args)
  // Generous: on a loaded machine (the suite runs files in parallel on 2 cores) ffmpeg and tsx start slowly.
  const code = await exitCode(example, 45_000)
  return { code, stdout: example.stdout(), stderr: example.stderr() }
}

/** Resolves once `condition` holds, checked every 20 ms; rejects with `what` after `timeoutMillis`. */
const waitFor = async (what: string, condition: () => boolean, timeoutMillis = 20_000): Promise<void> => {
  const deadline = Date.now() + timeoutMillis
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMillis} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The pids of the processes whose command line contains `text` (pgrep exits with 1 when there is none). */
const processesNaming = (text: string): Array<number> => {
  const result = spawnSync("pgrep", ["-f", text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")], { encoding: "utf8" })
  if (result.status !== 0 && result.status !== 1) throw new Error(`pgrep failed: ${result.stderr}`)
  return result.stdout.split("\n").filter((line) => line !== "").map(Number)
}

const isExecutable = (file: string): boolean => {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The ffmpeg the example uses: from PATH, else the one shipped in `@ffmpeg-installer/ffmpeg`. */
const ffmpeg = async (): Promise<string> =>
  (process.env.PATH ?? "").split(delimiter).filter((path) => path !== "").map((path) => join(path, "ffmpeg"))
    .find(isExecutable) ?? (await import("@ffmpeg-installer/ffmpeg")).default.path

describe("examples/video-render.ts", { timeout: 90_000 }, () => {
  it("renders the segments with ffmpeg and joins them into one video", async () => {
    const out = join(dir, "fast.mp4")
    const { code, stderr, stdout } = await run("video-render.ts", ["--fast", "--out", out])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).toMatch(/^render\s+░+\s+0\/6 chunks\s+0%\s+running$/m)
    expect(stdout).toMatch(/^render\s+█+\s+6\/6 chunks\s+100%\s+completed$/m)
    expect(stdout).toContain(`Wrote ${out}: 48 frames`)
    expect(statSync(out).size).toBeGreaterThan(0)
    expect(existsSync(`${out}.parts`)).toBe(false)
    // ffmpeg reads it back: one H.264 stream of 160x90 with every frame.
    const probe = spawnSync(await ffmpeg(), ["-hide_banner", "-nostdin", "-i", out, "-map", "0:v:0", "-c", "copy", "-f", "null", "-"], {
      encoding: "utf8"
    })
    expect(probe.status).toBe(0)
    expect(probe.stderr).toMatch(/Video: h264\b.*\b160x90\b/)
    expect(probe.stderr).toMatch(/frame=\s*48\b/)
  })

  it("on Ctrl+C stops every ffmpeg process, prints the job cancelled and exits with 130", async () => {
    const out = join(dir, "long.mp4")
    const example = start("video-render.ts", ["--frames", "100000", "--chunk", "4800", "--concurrency", "2", "--out", out])
    await waitFor("the job running", () => /^render\s.*\brunning$/m.test(example.stdout()))
    // The segments go to `<out>.parts/`, which each ffmpeg's arguments name.
    let ffmpegPids: Array<number> = []
    await waitFor("two ffmpeg processes", () => (ffmpegPids = processesNaming(`${out}.parts/`)).length === 2)

    example.child.kill("SIGINT")
    expect(await exitCode(example, 20_000)).toBe(130)
    const output = `stdout:\n${example.stdout()}\nstderr:\n${example.stderr()}`
    expect(example.stdout(), output).toMatch(/^render\s+[█░]+\s+\d+\/21 chunks\s+\d+%\s+cancelled$/m)
    expect(example.stdout()).toContain("Render cancelled (Ctrl+C)")
    expect(processesNaming(`${out}.parts/`)).toEqual([])
    for (const pid of ffmpegPids) expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }))
    expect(existsSync(out)).toBe(false)
  })
})

describe("examples/remote-workers.ts", { timeout: 90_000 }, () => {
  it("runs the job across both worker servers and prints which one ran each chunk", async () => {
    const { code, stderr, stdout } = await run("remote-workers.ts", ["--fast"])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).toMatch(/^east {2}listening on http:\/\/127\.0\.0\.1:\d+$/m)
    expect(stdout).toMatch(/^west {2}listening on http:\/\/127\.0\.0\.1:\d+$/m)
    const runs = [...stdout.matchAll(/^(east|west) {2}chunk +(\d+) {2}frames (\d+)-(\d+)/gm)]
    // Every chunk ran once, and both servers ran some.
    expect(runs.map((match) => Number(match[2])).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(new Set(runs.map((match) => match[1]))).toEqual(new Set(["east", "west"]))
    expect(stdout).toMatch(/^trailer completed: 10\/10 chunks, 0 failed$/m)
    expect(stdout).toMatch(/^(east|west) ran \d+ chunks, (east|west) ran \d+ chunks$/m)
  })
})
