/**
 * The dashboard page in a real browser: Debian's headless Chromium driven by playwright-core, over stores
 * whose jobs run in another process (SQLite) or in this one (memory). `.ci/run` installs Chromium; without
 * it these tests are skipped.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as HttpServer from "@effect/platform/HttpServer"
import type { Browser, Page } from "playwright-core"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import * as Dashboard from "../src/Dashboard.js"
import type { JobId, JobState } from "../src/Job.js"
import { JobRepository } from "../src/JobRepository.js"
import * as JobRepositoryModule from "../src/JobRepository.js"
import { hasChromium, launchChromium } from "./support/chromium.js"
import type { Served } from "./support/dashboard.js"
import { serveMemory, serveSqlite, testOptions } from "./support/dashboard.js"

const waitOptions = { timeout: 20_000 }

describe.skipIf(!hasChromium)("the dashboard in headless Chromium", () => {
  let browser: Browser
  /** Console errors and page errors (a Content-Security-Policy violation is one) of the test's pages. */
  let problems: Array<string> = []
  const open = async (url: string): Promise<Page> => {
    const page = await browser.newPage()
    page.on("console", (message) => message.type() === "error" && problems.push(message.text()))
    page.on("pageerror", (error) => problems.push(error.message))
    await page.goto(url)
    return page
  }
  const row = (page: Page, id: string) => page.locator(`tr[data-id="${id}"]`)

  beforeAll(async () => {
    browser = await launchChromium()
  }, 60_000)
  afterAll(() => browser?.close())
  afterEach(async () => {
    for (const context of browser.contexts()) await context.close()
    const seen = problems
    problems = []
    expect(seen, seen.join("\n")).toEqual([])
  })

  describe("over an SQLite store whose jobs run in another process", () => {
    let served: Served
    beforeAll(async () => {
      served = await serveSqlite([
        { name: "finished", chunks: [{ id: 0, payload: { ms: 1 } }] },
        { name: "render", chunks: { start: 0, end: 399, size: 1 } },
        { name: "doomed", chunks: { start: 0, end: 99_999, size: 1 } },
        { name: "controlled", chunks: { start: 0, end: 99_999, size: 1 } }
      ])
    }, 60_000)
    afterAll(() => served.close())
    const finished = () => served.ids[0]!
    const render = () => served.ids[1]!
    const doomed = () => served.ids[2]!
    const controlled = () => served.ids[3]!

    it("lists the jobs; the running job's progress bar moves without a reload", async () => {
      const page = await open(served.url)
      await page.evaluate(() => ((window as { loadedOnce?: boolean }).loadedOnce = true))
      await row(page, render()).locator(".badge", { hasText: "running" }).waitFor(waitOptions)
      await expect.poll(() => page.locator("#live").getAttribute("data-state"), waitOptions).toBe("live")
      expect(await page.locator("tbody tr").count()).toBe(4)
      await expect.poll(() => row(page, finished()).locator(".badge").textContent(), waitOptions).toBe("completed")
      const width = () => row(page, render()).locator(".bar .done").evaluate((element) => (element as HTMLElement).style.width)
      const chunks = () => row(page, render()).locator("td.chunks").textContent()
      const first = { width: await width(), chunks: await chunks() }
      await expect.poll(async () => ({ width: await width(), chunks: await chunks() }), waitOptions).not.toEqual(first)
      await expect.poll(() => row(page, render()).locator("td.rate").textContent(), waitOptions).toMatch(/^\d+\.\d\/s$/)
      expect(await row(page, render()).locator("td.owner").textContent()).toMatch(/^[^:]+:\d+$/)
      expect(await page.evaluate(() => (window as { loadedOnce?: boolean }).loadedOnce)).toBe(true)
    })

    it("the Cancel button of a row stores `cancelled`, and the row updates without a reload", async () => {
      const page = await open(served.url)
      await page.evaluate(() => ((window as { loadedOnce?: boolean }).loadedOnce = true))
      await row(page, doomed()).locator(".badge", { hasText: "running" }).waitFor(waitOptions)
      await row(page, doomed()).locator("button[data-action=cancel]").click()
      await row(page, doomed()).locator(".badge", { hasText: "cancelled" }).waitFor(waitOptions)
      await expect.poll(() => page.locator("#list-answer").textContent(), waitOptions).toBe(
        `Job ${doomed()} is cancelled.`
      )
      expect(await row(page, doomed()).locator("button[data-action=cancel]").count()).toBe(0)
      const stored = await (await fetch(`${served.url}/api/jobs/${doomed()}`)).json()
      expect(stored.state).toBe("cancelled")
      expect(await page.evaluate(() => (window as { loadedOnce?: boolean }).loadedOnce)).toBe(true)
    })

    it("the job view shows live progress and its buttons pause, resume, cancel and delete the job", async () => {
      const page = await open(served.url)
      await row(page, controlled()).locator("td.name a").click()
      const card = page.locator(`.card[data-id="${controlled()}"]`)
      await card.waitFor(waitOptions)
      expect(page.url()).toBe(`${served.url}/#/jobs/${controlled()}`)
      const label = () => card.locator(".bar").getAttribute("data-progress")
      const chunks = () => card.locator(".facts div", { hasText: "Chunks" }).textContent()
      const before = await chunks()
      await expect.poll(chunks, waitOptions).not.toBe(before)

      await card.locator("button[data-action=pause]").click()
      await expect.poll(() => page.locator("#job-answer").textContent(), waitOptions).toBe(`Job ${controlled()} is paused.`)
      await page.locator(`.card[data-state="paused"]`).waitFor(waitOptions)
      expect(await card.locator(".bar .label").textContent()).toBe(`paused · ${await label()}%`)
      expect(await card.locator("button[data-action=pause]").isDisabled()).toBe(true)

      await card.locator("button[data-action=resume]").click()
      // The manager in the other process takes it over and runs it again.
      await page.locator(`.card[data-state="running"]`).waitFor(waitOptions)

      await card.locator("button[data-action=cancel]").click()
      await page.locator(`.card[data-state="cancelled"]`).waitFor(waitOptions)
      await card.locator("button[data-action=delete]").click()
      expect(await card.locator("button[data-action=delete]").textContent()).toBe("Really delete?")
      await card.locator("button[data-action=delete]").click()
      await expect.poll(() => page.locator("#job").textContent(), waitOptions).toBe(`Job ${controlled()} was deleted.`)
      expect((await fetch(`${served.url}/api/jobs/${controlled()}`)).status).toBe(404)
    })

    it("a refused action shows the API's answer", async () => {
      const page = await open(`${served.url}/#/jobs/${finished()}`)
      const card = page.locator(`.card[data-id="${finished()}"]`)
      await card.waitFor(waitOptions)
      expect(await card.locator("button[data-action=pause]").isDisabled()).toBe(true)
      expect(await card.locator("button[data-action=retry]").isDisabled()).toBe(true)
      // Deleted elsewhere while the page shows it (its event stream ended with the job).
      expect((await fetch(`${served.url}/api/jobs/${finished()}`, { method: "DELETE" })).status).toBe(200)
      await card.locator("button[data-action=delete]").click()
      await card.locator("button[data-action=delete]").click()
      const answer = page.locator("#job-answer")
      await expect.poll(() => answer.textContent(), waitOptions).toBe(
        `delete refused: no job with id "${finished()}"`
      )
      expect(await answer.getAttribute("class")).toBe("answer error")
      // The browser logs the 404 it was given.
      problems = problems.filter((problem) => !problem.includes("404 (Not Found)"))
    })
  })

  describe("with a token", () => {
    const token = "a-token-only-the-test-knows"
    let served: Served
    beforeAll(async () => {
      served = await serveMemory([{ name: "secret", chunks: { start: 0, end: 99_999, size: 1 } }], { ...testOptions, token })
    }, 60_000)
    afterAll(() => served.close())

    it("asks for the token once, refuses a wrong one, and keeps the right one for the tab", async () => {
      const page = await open(served.url)
      const dialog = page.locator("#token-dialog")
      await dialog.waitFor({ state: "visible", ...waitOptions })
      expect(await page.locator("#token-refused").isHidden()).toBe(true)
      await page.locator("#token-input").fill("not-the-token")
      await page.locator("#token-submit").click()
      await page.locator("#token-refused").waitFor({ state: "visible", ...waitOptions })
      await page.locator("#token-input").fill(token)
      await page.locator("#token-submit").click()
      await row(page, served.ids[0]!).waitFor(waitOptions)
      expect(await dialog.isVisible()).toBe(false)
      expect(await page.evaluate(() => sessionStorage.getItem("effect-jobs-token"))).toBe(token)
      // A reload in the same tab does not ask again.
      await page.reload()
      await row(page, served.ids[0]!).waitFor(waitOptions)
      expect(await dialog.isVisible()).toBe(false)
      // The 401s of the wrong token are the browser's console errors; they are expected here.
      problems = problems.filter((problem) => !problem.includes("401"))
    })

    it("/?token=T opens the dashboard without asking, and takes the token out of the address", async () => {
      const page = await open(`${served.url}/?token=${token}`)
      await row(page, served.ids[0]!).waitFor(waitOptions)
      expect(await page.locator("#token-dialog").isVisible()).toBe(false)
      expect(page.url()).toBe(`${served.url}/`)
    })
  })

  describe("the chunks of a job (memory store, jobs run in this process)", () => {
    let served: Served
    beforeAll(async () => {
      served = await serveMemory([
        {
          name: "segments",
          chunks: [
            { id: 0, payload: { ms: 1, result: { segment: "part-0.mp4" } } },
            { id: 1, payload: { ms: 300, fail: true } },
            { id: 2, payload: { ms: 1 } }
          ]
        },
        { name: "long", chunks: { start: 0, end: 119, size: 1 } }
      ])
    }, 60_000)
    afterAll(() => served.close())

    it("the job view lists its chunks with results and errors, filters them by state, and pages them", async () => {
      const [segments, long] = served.ids
      const page = await open(`${served.url}/#/jobs/${segments}`)
      await page.locator(`.card[data-id="${segments}"][data-state="failed"]`).waitFor(waitOptions)
      const chunkRow = (id: number) => page.locator(`#chunk-rows tr[data-chunk="${id}"]`)
      await chunkRow(1).and(page.locator("[data-state=failed]")).waitFor(waitOptions)
      expect(await chunkRow(1).locator("td.error").textContent()).toBe("chunk 1 was told to fail")
      expect(await chunkRow(1).locator("td.attempts").textContent()).toBe("1")
      expect(await chunkRow(0).locator("td.result").textContent()).toBe(`{"segment":"part-0.mp4"}`)
      expect(await chunkRow(2).getAttribute("data-state")).toBe("completed")
      await page.locator("button[data-chunk-state=failed]").click()
      await expect.poll(() => page.locator("#chunk-rows tr").count(), waitOptions).toBe(1)
      expect(await page.locator("#chunk-rows tr").getAttribute("data-chunk")).toBe("1")

      await page.goto(`${served.url}/#/jobs/${long}`)
      await page.locator(`.card[data-id="${long}"]`).waitFor(waitOptions)
      await expect.poll(() => page.locator("#chunk-rows tr").count(), waitOptions).toBe(50)
      await page.locator("#chunks-more").click()
      await expect.poll(() => page.locator("#chunk-rows tr").count(), waitOptions).toBe(100)
      const ids = await page.locator("#chunk-rows tr").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-chunk")))
      expect(ids).toEqual(Array.from({ length: 100 }, (_, index) => String(index)))
    })
  })

  describe("over a store of 10,000 jobs", () => {
    const total = 10_000
    let url: string
    let dispose: () => Promise<void>
    const states: ReadonlyArray<JobState> = ["completed", "failed", "cancelled", "pending", "paused"]

    beforeAll(async () => {
      const repository = await Effect.runPromise(JobRepositoryModule.makeMemory)
      await Effect.runPromise(Effect.forEach(Array.from({ length: total }, (_, index) => index), (index) =>
        Effect.gen(function*() {
          const id = `job_${String(index).padStart(6, "0")}` as JobId
          yield* repository.create({ id, spec: { name: `job ${index}`, chunks: [] }, totalChunks: 0 })
          const state = states[index % states.length]!
          if (state === "completed" || state === "failed") yield* repository.transition(id, ["pending"], "running")
          if (state !== "pending") yield* repository.transition(id, ["pending", "running"], state)
        })))
      const runtime = ManagedRuntime.make(
        Dashboard.layerNode(testOptions).pipe(Layer.provide(Layer.succeed(JobRepository, repository)))
      )
      url = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (server) =>
        server.address._tag === "TcpAddress" ? `http://127.0.0.1:${server.address.port}` : ""))
      dispose = () => runtime.dispose()
    }, 120_000)
    afterAll(() => dispose())

    it("shows one page of 50 at a time, pages older and newer, and filters by state", async () => {
      const page = await open(url)
      const ids = () => page.locator("tbody tr").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-id")))
      await page.locator("tbody tr").first().waitFor(waitOptions)
      const first = await ids()
      expect(first).toHaveLength(50)
      // Newest first: the ids were created in order.
      expect(first[0]).toBe(`job_${String(total - 1).padStart(6, "0")}`)
      expect(await page.locator("#page-label").textContent()).toBe("page 1")
      expect(await page.locator("#newer").isDisabled()).toBe(true)

      const seen = new Set(first)
      for (let pageNumber = 2; pageNumber <= 4; pageNumber++) {
        await page.locator("#older").click()
        await expect.poll(() => page.locator("#page-label").textContent(), waitOptions).toBe(`page ${pageNumber}`)
        const shown = await ids()
        expect(shown).toHaveLength(50)
        for (const id of shown) {
          expect(seen.has(id)).toBe(false)
          seen.add(id)
        }
      }
      expect(seen.size).toBe(200)
      expect(await page.locator("tbody tr").count()).toBe(50)
      await page.locator("#newer").click()
      await expect.poll(() => page.locator("#page-label").textContent(), waitOptions).toBe("page 3")

      await page.locator("button[data-filter=failed]").click()
      await expect.poll(() => page.locator("#page-label").textContent(), waitOptions).toBe("page 1")
      await expect.poll(async () => new Set(await page.locator("tbody .badge").allTextContents()), waitOptions).toEqual(
        new Set(["failed"])
      )
      expect(await page.locator("tbody tr").count()).toBe(50)
      expect(page.url()).toBe(`${url}/#/?state=failed`)
    })
  })
})
