/**
 * A simulated distributed render, driven through the Promise facade.
 *
 * Two jobs ("trailer" and "teaser") cut their frames into chunks and send them to simulated cloud render
 * nodes that take a random time per chunk and sometimes drop one; retries absorb the drops. Each job gets
 * a live progress bar, then a summary table is printed. Ctrl+C cancels both jobs (they are stored as
 * `cancelled`) and exits with code 130.
 *
 * With `--db FILE` the jobs are kept in an SQLite store that other processes can read and control: the
 * ids and the commands to try are printed first, and the render defaults to a few minutes of work
 * (`--frames` changes it). A job paused from elsewhere shows `paused`; its rate leaves the paused time out.
 *
 *     npm start
 *     npx tsx examples/render-farm.ts --frames 2400 --chunk 48 --concurrency 16 --latency 100-600
 *     npx tsx examples/render-farm.ts --fast --failure-rate 0.3
 *     npm start -- --db jobs.db      then, in another terminal: npx effect-jobs serve --db jobs.db
 */
import { setTimeout as sleep } from "node:timers/promises"
import { parseArgs } from "node:util"
import type { PromiseJobManager, PromiseWorker } from "effect-jobs"
import { createJobManager, Job, JobError } from "effect-jobs"

const usage =
  "Usage: render-farm [--frames N] [--chunk N] [--concurrency N] [--latency MIN-MAX | --fast] [--failure-rate P] [--db FILE]"

interface Settings {
  readonly frames: number
  readonly chunk: number
  readonly concurrency: number
  /** Milliseconds a render node takes per chunk, picked at random in this range. */
  readonly latency: { readonly min: number; readonly max: number }
  /** The share of chunk attempts a render node drops, 0..1. */
  readonly failureRate: number
  /** An SQLite job store, so the jobs can be watched and controlled with the CLI from another terminal. */
  readonly db: string | undefined
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------------------
// Command line

/** Frames of the trailer by default: a few seconds of work, or a few minutes with `--db`. */
const defaultFrames = { memory: 600, db: 57_600 }

const flags = {
  frames: { type: "string" },
  chunk: { type: "string", default: "24" },
  concurrency: { type: "string", default: "8" },
  latency: { type: "string" },
  fast: { type: "boolean", default: false },
  "failure-rate": { type: "string", default: "0.1" },
  db: { type: "string" }
} as const

const parseFlags = (args: Array<string>) => {
  try {
    return parseArgs({ args, options: flags, strict: true }).values
  } catch (error) {
    throw new UsageError((error as Error).message) // an unknown flag, a missing value, a stray argument
  }
}

const parseSettings = (args: Array<string>): Settings => {
  const values = parseFlags(args)
  if (values.fast && values.latency !== undefined) throw new UsageError("use --latency or --fast, not both")
  return {
    frames: positiveInteger("--frames", values.frames ?? String(values.db === undefined ? defaultFrames.memory : defaultFrames.db)),
    chunk: positiveInteger("--chunk", values.chunk),
    concurrency: positiveInteger("--concurrency", values.concurrency),
    latency: values.fast ? { min: 1, max: 5 } : latencyRange(values.latency ?? "200-800"),
    failureRate: probability("--failure-rate", values["failure-rate"]),
    db: values.db
  }
}

const positiveInteger = (flag: string, text: string): number => {
  const value = Number(text)
  if (!/^\d+$/.test(text) || value < 1) {
    throw new UsageError(`${flag} expects a positive integer, got "${text}"`)
  }
  return value
}

const latencyRange = (text: string): Settings["latency"] => {
  const match = /^(\d+)-(\d+)$/.exec(text)
  const [min, max] = [Number(match?.[1]), Number(match?.[2])]
  if (!(min <= max)) {
    throw new UsageError(`--latency expects MIN-MAX in milliseconds (e.g. 50-250), got "${text}"`)
  }
  return { min, max }
}

const probability = (flag: string, text: string): number => {
  const value = Number(text)
  if (text.trim() === "" || !(value >= 0 && value <= 1)) {
    throw new UsageError(`${flag} expects a number from 0 to 1, got "${text}"`)
  }
  return value
}

// ---------------------------------------------------------------------------------------------------------
// The simulated render farm

/** The payload of a range plan's chunk: an inclusive range of frames. */
type FrameRange = { readonly start: number; readonly end: number }

interface RenderFarm {
  readonly worker: PromiseWorker
  /** How many chunk attempts of the job were retries. */
  readonly retriesOf: (jobId: string) => number
}

const makeRenderFarm = ({ latency, failureRate }: Settings): RenderFarm => {
  const retries = new Map<string, number>()
  const worker: PromiseWorker = async (chunk, { jobId, attempt, signal }) => {
    if (attempt > 1) retries.set(jobId, (retries.get(jobId) ?? 0) + 1)
    // Rendering takes a while; if the signal fires first, the timer is cleared and this rejects.
    await sleep(latency.min + Math.random() * (latency.max - latency.min), undefined, { signal })
    if (Math.random() < failureRate) {
      const { start, end } = chunk.payload as FrameRange
      throw new Error(`render node dropped frames ${start}-${end}`)
    }
  }
  return { worker, retriesOf: (jobId) => retries.get(jobId) ?? 0 }
}

// ---------------------------------------------------------------------------------------------------------
// Progress display

interface Dashboard {
  readonly update: (status: Job.JobStatus) => void
}

const settledChunks = (status: Job.JobStatus): number => status.completedChunks + status.failedChunks

/**
 * Chunks settled per second of running time: the time a job spends paused or waiting is left out. Fed
 * with each status of one job as it arrives.
 */
class Speedometer {
  #runningMillis = 0
  #runningSince: number | undefined
  #settledBefore: number | undefined

  observe(status: Job.JobStatus, now = Date.now()): void {
    if (this.#runningSince !== undefined) this.#runningMillis += now - this.#runningSince
    this.#runningSince = status.state === "running" ? now : undefined
    // Chunks settled before this watcher saw the job run are not counted.
    if (status.state === "running") this.#settledBefore ??= settledChunks(status)
  }

  /** Undefined until a chunk has settled while the job ran. */
  rate(status: Job.JobStatus, now = Date.now()): number | undefined {
    const settled = settledChunks(status) - (this.#settledBefore ?? settledChunks(status))
    const millis = this.#runningMillis + (this.#runningSince === undefined ? 0 : now - this.#runningSince)
    return settled === 0 || millis <= 0 ? undefined : (settled * 1000) / millis
  }
}

const speedometers = new Map<string, Speedometer>()

const rateOf = (status: Job.JobStatus): number | undefined => speedometers.get(status.id)?.rate(status)

const formatSeconds = (seconds: number): string =>
  seconds < 60 ? `${seconds.toFixed(1)}s` : `${Math.floor(seconds / 60)}m${Math.round(seconds % 60)}s`

/** "12/25 chunks  48%  5.1 chunks/s" */
const describeProgress = (status: Job.JobStatus): string => {
  const rate = rateOf(status)
  const chunks = `${settledChunks(status)}/${status.totalChunks}`.padStart(9)
  const speed = rate === undefined ? "" : `${rate.toFixed(1)} chunks/s`
  return `${chunks} chunks ${`${status.progress}%`.padStart(4)}  ${speed.padStart(13)}`
}

/** "ETA 2.5s" while the job runs, its state otherwise (`paused`, `pending`, or how it ended). */
const etaOrState = (status: Job.JobStatus): string => {
  if (status.state !== "running") return status.state
  const rate = rateOf(status)
  return rate === undefined
    ? "ETA -"
    : status.totalChunks === undefined
    ? "ETA ?"
    : `ETA ${formatSeconds((status.totalChunks - settledChunks(status)) / rate)}`
}

const progressBar = (progress: number, width = 20): string => {
  const filled = Math.round((progress / 100) * width)
  return "█".repeat(filled) + "░".repeat(width - filled)
}

/** Pads a job name to the longest of `names`, so that the columns line up. */
const namePadder = (names: ReadonlyArray<string>) => {
  const width = Math.max(...names.map((name) => name.length))
  return (name: string | undefined) => (name ?? "").padEnd(width)
}

/** One line per job, redrawn in place with ANSI cursor movement. */
const liveDashboard = (out: NodeJS.WriteStream, names: ReadonlyArray<string>): Dashboard => {
  const padName = namePadder(names)
  const lines = names.map((name) => `${padName(name)}  ${progressBar(0)}`)
  out.write(lines.join("\n") + "\n")
  return {
    update: (status) => {
      const progress = `${progressBar(status.progress)} ${describeProgress(status)}  ${etaOrState(status)}`
      lines[names.indexOf(status.name!)] = `${padName(status.name)}  ${progress}`
      // Back to the first line, then rewrite every line, cut to the terminal's width so that none wraps.
      const redrawn = lines.map((line) => `\x1b[2K${line.slice(0, out.columns - 1)}\n`)
      out.write(`\x1b[${lines.length}F${redrawn.join("")}`)
    }
  }
}

/** For logs and pipes: a line per job when its state changes and at every 10 % step. */
const plainDashboard = (out: NodeJS.WritableStream, names: ReadonlyArray<string>): Dashboard => {
  const padName = namePadder(names)
  const printed = new Map<string, string>()
  return {
    update: (status) => {
      const step = `${status.state} ${Math.floor(status.progress / 10)}`
      if (printed.get(status.id) === step) return
      printed.set(status.id, step)
      const eta = status.state === "running" ? `  ${etaOrState(status)}` : ""
      out.write(`${padName(status.name)}  ${status.state.padEnd(9)} ${describeProgress(status)}${eta}\n`)
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Running the jobs

/**
 * Shows the job's progress with `watchJob` until it ends, and returns its final status. Aborting `signal`
 * cancels the job: the status returned is then the stored `cancelled` one.
 */
const followJob = async (
  manager: PromiseJobManager,
  id: string,
  dashboard: Dashboard,
  signal: AbortSignal
): Promise<Job.JobStatus> => {
  const cancel = () => manager.cancelJob(id).catch((error) => console.error(`could not cancel ${id}:`, error))
  signal.addEventListener("abort", cancel, { once: true })
  let last: Job.JobStatus | undefined
  const speedometer = new Speedometer()
  speedometers.set(id, speedometer)
  for await (const status of manager.watchJob(id)) {
    speedometer.observe(status)
    dashboard.update(status)
    last = status
  }
  signal.removeEventListener("abort", cancel)
  // watchJob always ends with the job's terminal status.
  return last!
}

const printSummary = (statuses: ReadonlyArray<Job.JobStatus>, farm: RenderFarm): void => {
  const rows = [
    ["job", "state", "chunks", "failed", "retries", "time"],
    ...statuses.map((status) => [
      status.name ?? status.id,
      status.state,
      `${status.completedChunks}/${status.totalChunks}`,
      String(status.failedChunks),
      String(farm.retriesOf(status.id)),
      status.startedAt && status.finishedAt
        ? formatSeconds((status.finishedAt.getTime() - status.startedAt.getTime()) / 1000)
        : "-"
    ])
  ]
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  // Text columns to the left, numbers to the right.
  const align = (cell: string, column: number) =>
    column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)
  console.log()
  for (const row of rows) console.log(row.map(align).join("   "))
  for (const status of statuses) {
    if (status.error !== undefined) console.log(`\n${status.name}: ${status.error}`)
  }
}

/** How long a job of `chunks` chunks takes on the simulated farm, on average (retries included). */
const expectedSeconds = ({ concurrency, failureRate, latency }: Settings, chunks: number): number =>
  (chunks * ((latency.min + latency.max) / 2 / 1000) / Math.max(1 - failureRate, 0.2)) / concurrency

/** The ids of the jobs and the commands that watch and control them from another terminal. */
const printControls = (settings: Settings, names: ReadonlyArray<string>, ids: ReadonlyArray<string>): void => {
  const store = `--db ${settings.db}`
  for (const [index, id] of ids.entries()) console.log(`${names[index]}: ${id}`)
  const chunks = Math.ceil(settings.frames / settings.chunk)
  console.log(
    `\nThe trailer takes about ${formatSeconds(expectedSeconds(settings, chunks))} (--frames N changes it).` +
      " In another terminal, try:"
  )
  console.log(`  npx effect-jobs serve ${store}            # a web dashboard on http://127.0.0.1:8080/`)
  console.log(`  npx effect-jobs list ${store}`)
  console.log(`  npx effect-jobs pause trailer ${store}    # then resume trailer; a name, an id or its prefix`)
  console.log(`  npx effect-jobs cancel teaser ${store}\n`)
}

const main = async (args: Array<string>): Promise<number> => {
  const settings = parseSettings(args)
  const { frames, chunk, concurrency } = settings
  const specs = [
    { name: "trailer", chunks: { start: 0, end: frames - 1, size: chunk } },
    { name: "teaser", chunks: { start: 0, end: Math.ceil(frames / 4) - 1, size: chunk } }
  ]
  const farm = makeRenderFarm(settings)
  // Rejects with InvalidOption when an option is out of range (e.g. --concurrency 20000).
  const manager = await createJobManager({
    worker: farm.worker,
    concurrency,
    retry: { attempts: 5, initialDelay: 50, maxDelay: 1000 },
    ...(settings.db === undefined ? {} : { store: { sqlite: settings.db } })
  })
  const names = specs.map((spec) => spec.name)

  try {
    const ids = await Promise.all(specs.map((spec) => manager.submitJob(spec)))
    // Printed before the live area starts, so that the redraws never overwrite them.
    if (settings.db !== undefined) printControls(settings, names, ids)
    const dashboard = process.stdout.isTTY
      ? liveDashboard(process.stdout, names)
      : plainDashboard(process.stdout, names)
    const controller = new AbortController()
    process.once("SIGINT", () => controller.abort())
    const statuses = await Promise.all(ids.map((id) => followJob(manager, id, dashboard, controller.signal)))
    printSummary(statuses, farm)
    if (controller.signal.aborted) {
      console.log("\nRender cancelled (Ctrl+C).")
      return 130
    }
    return statuses.every((status) => status.state === "completed") ? 0 : 1
  } finally {
    await manager.close()
  }
}

process.exitCode = await main(process.argv.slice(2)).catch((error: unknown) => {
  if (!(error instanceof UsageError || error instanceof JobError.InvalidOption)) throw error
  console.error(`render-farm: ${error.message}. ${usage}`)
  return 2
})
