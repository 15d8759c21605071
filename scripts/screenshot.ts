/**
 * Takes the README's screenshots of the dashboard: runs a few jobs in every state on a memory store, serves
 * the dashboard on a free port, and saves what headless Chromium shows to `docs/dashboard.png` (the list)
 * and `docs/dashboard-job.png` (a running job).
 *
 *     npx tsx scripts/screenshot.ts        (needs Debian's chromium: apt-get install chromium)
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdirSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import * as ChunkWorker from "../src/ChunkWorker.js"
import * as Dashboard from "../src/Dashboard.js"
import type { JobSpecInput } from "../src/Job.js"
import * as JobManager from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import { launchChromium } from "../test/support/chromium.js"

const docs = fileURLToPath(new URL("../docs/", import.meta.url))

/** Renders a frame range in 60-140 ms; the credits' third chunk keeps failing. */
const worker = ChunkWorker.layerPromise(async (chunk, { jobId, signal }) => {
  const { start } = chunk.payload as { readonly start: number }
  await sleep(60 + Math.random() * 80, undefined, { signal })
  if (names.get(jobId) === "credits" && start === 48) throw new Error("render node dropped frames 48-71: out of memory")
})

const names = new Map<string, string>()

const frames = (name: string, count: number) => ({ name, chunks: { start: 0, end: count - 1, size: 24 } })

const program = Effect.gen(function*() {
  const manager = yield* JobManager.JobManager
  const server = yield* HttpServer.HttpServer
  const url = server.address._tag === "TcpAddress" ? `http://127.0.0.1:${server.address.port}` : ""
  const submit = (spec: JobSpecInput & { readonly name: string }) =>
    Effect.tap(manager.submitJob(spec), (id) => Effect.sync(() => names.set(id, spec.name)))

  const intro = yield* submit(frames("intro", 240))
  yield* submit(frames("credits", 480))
  yield* manager.awaitJob(intro)
  yield* submit(frames("trailer", 57_600))
  const teaser = yield* submit(frames("teaser", 14_400))
  const act2 = yield* submit(frames("act-2", 28_800))
  const act3 = yield* submit(frames("act-3", 28_800))
  yield* submit(frames("finale", 9_600))
  yield* submit(frames("epilogue", 4_800))
  yield* Effect.sleep("1 second")
  yield* manager.cancelJob(act3)
  yield* Effect.sleep("4 seconds")
  yield* manager.pauseJob(act2)
  // Long enough for every running job to have a rate and an ETA.
  yield* Effect.sleep("6 seconds")

  const browser = yield* Effect.promise(launchChromium)
  yield* Effect.promise(async () => {
    mkdirSync(docs, { recursive: true })
    const page = await browser.newPage({ viewport: { width: 1280, height: 520 }, deviceScaleFactor: 1.5 })
    await page.goto(url)
    await page.locator(`tr[data-id="${teaser}"] td.rate`).filter({ hasText: "/s" }).waitFor()
    await page.screenshot({ path: `${docs}dashboard.png` })
    await page.goto(`${url}/#/jobs/${teaser}`)
    await page.locator(".facts div", { hasText: "ETA" }).filter({ hasText: /\d/ }).waitFor()
    await page.setViewportSize({ width: 1000, height: 560 })
    await page.screenshot({ path: `${docs}dashboard-job.png` })
    await browser.close()
  })
  yield* Effect.log(`saved ${docs}dashboard.png and ${docs}dashboard-job.png`)
})

const store = JobRepository.layerMemory

program.pipe(
  Effect.provide(Layer.mergeAll(
    JobManager.layer({ concurrency: 4, maxConcurrentJobs: 3, retry: { attempts: 2, initialDelay: 50 } }).pipe(
      Layer.provide(worker)
    ),
    Dashboard.layerNode({ port: 0 })
  ).pipe(Layer.provide(store))),
  Effect.runPromise
)
