/**
 * The dashboard's HTTP API, over real sockets: every route and error, against the memory store (jobs run by
 * a manager in this process) and an SQLite store (jobs run by another process); authentication, binding
 * and the requests refused from elsewhere.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { type IncomingHttpHeaders, request as httpRequest } from "node:http"
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest"
import * as Dashboard from "../src/Dashboard.js"
import * as JobApi from "../src/JobApi.js"
import * as JobRepositoryModule from "../src/JobRepository.js"
import type { Served } from "./support/dashboard.js"
import { readEvents, serveMemory, serveSqlite, testOptions } from "./support/dashboard.js"
import { exitCode, killAll, startTsx } from "./support/tsxProcess.js"

interface View {
  readonly id: string
  readonly name?: string
  readonly state: string
  readonly completedChunks: number
  readonly failedChunks: number
  readonly progress: number
  readonly retryOf?: string
  readonly owner?: string
  readonly ownerGone?: boolean
  readonly ownerSilentMillis?: number
  readonly rate?: number
  readonly error?: string
}

type FeedEvent = { readonly type: "changed"; readonly job: View } | { readonly type: "deleted"; readonly id: string }

/** The states of a job in a feed, in order. */
const statesOf = (events: ReadonlyArray<FeedEvent>, id: string): Array<string> =>
  events.flatMap((event) => event.type === "changed" && event.job.id === id ? [event.job.state] : [])

/** A GET with the given Host header (fetch does not let one set it). */
const getWithHost = (url: string, host: string, headers: Record<string, string> = {}) =>
  new Promise<{ readonly status: number; readonly headers: IncomingHttpHeaders; readonly body: string }>(
    (resolve, reject) => {
      const request = httpRequest(url, { headers: { ...headers, host } }, (response) => {
        let body = ""
        response.setEncoding("utf8").on("data", (text: string) => (body += text))
        response.on("end", () => resolve({ status: response.statusCode!, headers: response.headers, body }))
      })
      request.on("error", reject).end()
    }
  )

const long = (name: string) => ({ name, chunks: { start: 0, end: 99_999, size: 1 } })

/** Submitted in this order, at most 4 running at once: `queued` waits as `pending`. */
const specs = [
  { name: "done", chunks: [{ id: 0, payload: { ms: 1 } }] },
  { name: "failed", chunks: [{ id: 0, payload: { ms: 1, fail: true } }, { id: 1, payload: { ms: 1 } }] },
  long("watched"),
  long("paused"),
  long("busy"),
  long("orphan"),
  long("queued")
] as const
type Name = (typeof specs)[number]["name"]

const securityHeaders = (response: Response) => ({
  cache: response.headers.get("cache-control"),
  csp: response.headers.get("content-security-policy"),
  nosniff: response.headers.get("x-content-type-options")
})

/** One scenario per store; its tests run in order, each changing only the jobs it names. */
const apiSuite = (store: string, serve: typeof serveMemory) =>
  describe(`Dashboard API over ${store}`, () => {
    let served: Served
    const id = (name: Name) => served.ids[specs.findIndex((spec) => spec.name === name)]!
    const request = (method: string, path: string, init: RequestInit = {}) =>
      fetch(`${served.url}${path}`, { method, ...init })
    const call = async (method: string, path: string) => {
      const response = await request(method, path)
      return { status: response.status, body: await response.json() as any, response }
    }
    const get = (name: Name) => call("GET", `/api/jobs/${id(name)}`)

    beforeAll(async () => {
      served = await serve(specs)
      await vi.waitFor(async () => {
        const states = await Promise.all(specs.map(async (spec) => (await get(spec.name)).body.state))
        expect(states).toEqual(["completed", "failed", "running", "running", "running", "running", "pending"])
      }, { timeout: 20_000, interval: 100 })
    }, 60_000)
    afterAll(() => served.close())

    it("GET /api/jobs lists the jobs newest first, filtered by state, paged by cursor", async () => {
      const all = await call("GET", "/api/jobs")
      expect(all.status).toBe(200)
      expect(all.body.jobs.map((job: View) => job.name)).toEqual([...specs].reverse().map((spec) => spec.name))
      expect(all.body.nextCursor).toBeUndefined()
      const running = await call("GET", "/api/jobs?state=running")
      expect(running.body.jobs.map((job: View) => job.name)).toEqual(["orphan", "busy", "paused", "watched"])
      const several = await call("GET", "/api/jobs?state=completed&state=failed")
      expect(several.body.jobs.map((job: View) => job.name)).toEqual(["failed", "done"])
      const first = await call("GET", "/api/jobs?limit=4")
      expect(first.body.jobs).toHaveLength(4)
      const rest = await call("GET", `/api/jobs?limit=4&cursor=${first.body.nextCursor}`)
      expect([...first.body.jobs, ...rest.body.jobs].map((job: View) => job.id)).toEqual(
        all.body.jobs.map((job: View) => job.id)
      )
      expect(rest.body.nextCursor).toBeUndefined()
    })

    it("GET /api/jobs answers 400 naming a bad parameter", async () => {
      for (const [query, path] of [["limit=0", "limit"], ["limit=lots", "limit"], ["state=bogus", "state"]] as const) {
        const answer = await call("GET", `/api/jobs?${query}`)
        expect(answer.status).toBe(400)
        expect(answer.body._tag).toBe("HttpApiDecodeError")
        expect(answer.body.issues[0].path).toEqual([path])
      }
      const cursor = await call("GET", "/api/jobs?cursor=garbage!")
      expect(cursor.status).toBe(400)
      expect(cursor.body).toMatchObject({
        _tag: "InvalidOption",
        path: ["cursor"],
        message: "invalid option cursor: not a cursor returned by listJobs"
      })
    })

    it("GET /api/jobs/:id/chunks pages a job's chunks in id order, filtered by state; 404 and 400", async () => {
      const failed = await call("GET", `/api/jobs/${id("failed")}/chunks?state=failed`)
      expect(failed.status).toBe(200)
      expect(failed.body.chunks).toEqual([
        expect.objectContaining({ id: 0, state: "failed", attempts: 1, error: "chunk 0 was told to fail" })
      ])
      expect(Date.parse(failed.body.chunks[0].finishedAt)).toBeGreaterThan(0)
      const first = await call("GET", `/api/jobs/${id("watched")}/chunks?limit=2`)
      expect(first.body.chunks.map((chunk: { id: number }) => chunk.id)).toEqual([0, 1])
      const next = await call("GET", `/api/jobs/${id("watched")}/chunks?limit=2&cursor=${first.body.nextCursor}`)
      expect(next.body.chunks.map((chunk: { id: number }) => chunk.id)).toEqual([2, 3])
      expect((await call("GET", "/api/jobs/job_nope/chunks")).status).toBe(404)
      const state = await call("GET", `/api/jobs/${id("watched")}/chunks?state=done`)
      expect(state.status).toBe(400)
      expect(state.body.issues[0].path).toEqual(["state"])
      const cursor = await call("GET", `/api/jobs/${id("watched")}/chunks?cursor=x`)
      expect(cursor.body).toMatchObject({ _tag: "InvalidOption", path: ["cursor"] })
    })

    it("GET /api/jobs/:id answers the job with its speed, or 404", async () => {
      await vi.waitFor(async () => expect((await get("busy")).body.rate).toBeGreaterThan(0), { timeout: 10_000 })
      const busy = await get("busy")
      expect(busy.status).toBe(200)
      expect(busy.body).toMatchObject({ id: id("busy"), name: "busy", state: "running", totalChunks: 100_000 })
      expect(busy.body.owner).toMatch(/:\d+:/)
      expect(busy.body.ownerGone).toBeUndefined()
      expect(busy.body.etaSeconds).toBeGreaterThan(0)
      expect((await get("failed")).body).toMatchObject({
        state: "failed",
        failedChunks: 1,
        error: "chunk 0 failed after 1 attempt: chunk 0 was told to fail"
      })
      for (const unknown of ["job_nope", "not%20an%20id"]) {
        const missing = await call("GET", `/api/jobs/${unknown}`)
        expect(missing.status).toBe(404)
        expect(missing.body).toMatchObject({ _tag: "JobNotFound", message: `no job with id ${JSON.stringify(decodeURIComponent(unknown))}` })
      }
    })

    it("POST cancel: a pending job is cancelled; cancelling again or a finished job changes nothing", async () => {
      const cancelled = await call("POST", `/api/jobs/${id("queued")}/cancel`)
      expect(cancelled.status).toBe(200)
      expect(cancelled.body).toMatchObject({ id: id("queued"), state: "cancelled" })
      expect((await call("POST", `/api/jobs/${id("queued")}/cancel`)).body.state).toBe("cancelled")
      const done = await call("POST", `/api/jobs/${id("done")}/cancel`)
      expect(done.status).toBe(200)
      expect(done.body.state).toBe("completed")
      expect((await call("POST", "/api/jobs/job_nope/cancel")).status).toBe(404)
    })

    it("GET /api/jobs/:id/events streams the running job's progress; a cancel ends it with `cancelled`", async () => {
      const response = await request("GET", `/api/jobs/${id("watched")}/events`)
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/event-stream")
      const progress = await readEvents<View>(response.clone(), (events) => events.length >= 3)
      const counts = progress.events.map((event) => event.completedChunks)
      expect(counts[2]).toBeGreaterThan(counts[0]!)
      expect(progress.events.every((event) => event.id === id("watched") && event.state === "running")).toBe(true)

      const ending = readEvents<View>(response)
      const cancelled = await call("POST", `/api/jobs/${id("watched")}/cancel`)
      expect(cancelled.status).toBe(200)
      expect(cancelled.body.state).toBe("cancelled")
      const { ended, events } = await ending
      expect(ended).toBe(true)
      expect(events.at(-1)).toMatchObject({ id: id("watched"), state: "cancelled" })
      // A job that has ended: its status, then the end of the stream.
      const over = await readEvents<View>(await request("GET", `/api/jobs/${id("done")}/events`))
      expect(over).toEqual({ ended: true, events: [expect.objectContaining({ id: id("done"), state: "completed" })] })
      expect((await request("GET", "/api/jobs/job_nope/events")).status).toBe(404)
    })

    it("POST pause and resume: the job is paused, then queued and run again; a finished job is 409", async () => {
      // Its states in the feed, until it runs again after the pause.
      const events = readEvents<FeedEvent>(await request("GET", "/api/events"), (all) => {
        const states = statesOf(all, id("paused"))
        return states.lastIndexOf("running") > states.indexOf("paused") && states.includes("paused")
      })
      const paused = await call("POST", `/api/jobs/${id("paused")}/pause`)
      expect(paused.status).toBe(200)
      expect(paused.body).toMatchObject({ state: "paused" })
      expect(paused.body.owner).toBeUndefined()
      expect((await call("POST", `/api/jobs/${id("paused")}/pause`)).body.state).toBe("paused")
      const resumed = await call("POST", `/api/jobs/${id("paused")}/resume`)
      expect(resumed.status).toBe(200)
      expect(resumed.body.state).toBe("pending")
      // The manager sharing the store takes it over and runs it; the feed tells.
      const seen = statesOf((await events).events, id("paused"))
      expect(seen.slice(seen.indexOf("paused"))).toEqual(expect.arrayContaining(["paused", "pending", "running"]))

      for (const action of ["pause", "resume"]) {
        const refused = await call("POST", `/api/jobs/${id("done")}/${action}`)
        expect(refused.status).toBe(409)
        expect(refused.body).toMatchObject({
          _tag: "InvalidJobState",
          jobId: id("done"),
          state: "completed",
          operation: action,
          message: `cannot ${action} job ${id("done")}: it is completed; a job that has ended cannot be ${action}d`
        })
        expect((await call("POST", `/api/jobs/job_nope/${action}`)).status).toBe(404)
      }
    })

    it("POST retry: 201 and a new job that re-drives the failed one; 409 for a job that did not fail", async () => {
      const events = readEvents<FeedEvent>(
        await request("GET", "/api/events"),
        (all) => all.some((event) => event.type === "changed" && event.job.retryOf === id("failed") && event.job.state === "failed")
      )
      const retry = await call("POST", `/api/jobs/${id("failed")}/retry`)
      expect(retry.status).toBe(201)
      expect(retry.body).toMatchObject({ state: "pending", retryOf: id("failed"), name: "failed", totalChunks: 2 })
      // A manager on the store runs it: its chunk fails again.
      const states = statesOf((await events).events, retry.body.id)
      expect(states[0]).toBe("pending")
      expect(states.at(-1)).toBe("failed")
      const refused = await call("POST", `/api/jobs/${id("done")}/retry`)
      expect(refused.status).toBe(409)
      expect(refused.body).toMatchObject({ _tag: "InvalidJobState", operation: "retry", state: "completed" })
      expect((await call("POST", "/api/jobs/job_nope/retry")).status).toBe(404)
    })

    it("DELETE: a finished job is deleted (and the feed tells); a running one is 409; an unknown one 404", async () => {
      const events = readEvents<FeedEvent>(
        await request("GET", "/api/events"),
        (all) => all.some((event) => event.type === "deleted")
      )
      const refused = await call("DELETE", `/api/jobs/${id("busy")}`)
      expect(refused.status).toBe(409)
      expect(refused.body).toMatchObject({ _tag: "InvalidJobState", operation: "delete", state: "running" })
      expect((await get("busy")).body.state).toBe("running")
      const deleted = await call("DELETE", `/api/jobs/${id("done")}`)
      expect(deleted.status).toBe(200)
      expect(deleted.body).toMatchObject({ id: id("done"), state: "completed" })
      expect((await get("done")).status).toBe(404)
      expect((await call("DELETE", `/api/jobs/${id("done")}`)).status).toBe(404)
      expect((await events).events.filter((event) => event.type === "deleted")).toEqual([{ type: "deleted", id: id("done") }])
    })

    it("GET /api/openapi.json describes every route", async () => {
      const document = await call("GET", "/api/openapi.json")
      expect(document.status).toBe(200)
      expect(Object.keys(document.body.paths).sort()).toEqual([
        "/api/events",
        "/api/jobs",
        "/api/jobs/{id}",
        "/api/jobs/{id}/cancel",
        "/api/jobs/{id}/chunks",
        "/api/jobs/{id}/events",
        "/api/jobs/{id}/pause",
        "/api/jobs/{id}/resume",
        "/api/jobs/{id}/retry"
      ])
      expect(Object.keys(document.body.paths["/api/jobs/{id}"]).sort()).toEqual(["delete", "get"])
      expect(document.body.components.securitySchemes).toMatchObject({ bearer: { type: "http", scheme: "bearer" } })
    })

    it("every answer is not to be cached and carries the Content-Security-Policy", async () => {
      for (const path of ["/", "/app.js", "/api/jobs", "/api/jobs/job_nope", "/nothing-here"]) {
        const response = await request("GET", path)
        expect(securityHeaders(response), path).toEqual({
          cache: "no-store",
          csp: expect.stringContaining("default-src 'none'; script-src 'self'"),
          nosniff: "nosniff"
        })
      }
      const page = await request("GET", "/")
      expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8")
      expect(await page.text()).toContain("<script type=\"module\" src=\"/app.js\"></script>")
    })
  })

describe("a typed client made from JobApi", () => {
  it("reads and controls jobs, failing with the API's typed errors", async () => {
    const token = "client-token"
    const served = await serveMemory([long("typed")], { ...testOptions, token })
    try {
      const program = Effect.gen(function*() {
        const client = yield* HttpApiClient.make(JobApi.JobApi, {
          baseUrl: served.url,
          transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
        })
        const page = yield* client.jobs.list({ urlParams: { state: ["running", "pending"] } })
        const cancelled = yield* client.jobs.cancel({ path: { id: served.ids[0]! } })
        const missing = yield* Effect.flip(client.jobs.get({ path: { id: "job_nope" } }))
        return { names: page.jobs.map((job) => job.name), state: cancelled.state, missing }
      })
      const result = await Effect.runPromise(program.pipe(Effect.provide(FetchHttpClient.layer)))
      expect(result.names).toEqual(["typed"])
      expect(result.state).toBe("cancelled")
      expect(result.missing).toBeInstanceOf(JobApi.JobNotFound)
      expect(result.missing).toMatchObject({ jobId: "job_nope", message: "no job with id \"job_nope\"" })
    } finally {
      await served.close()
    }
  })
})

apiSuite("the memory store (jobs run in this process)", serveMemory)
apiSuite("an SQLite store (jobs run in another process)", serveSqlite)

describe("Dashboard API: an owner that died", () => {
  afterEach(killAll)

  it("a running job whose owner stopped heartbeating is marked ownerGone, with its silence", async () => {
    const served = await serveSqlite([long("orphaned")])
    try {
      const path = `/api/jobs/${served.ids[0]}`
      await vi.waitFor(async () => expect((await (await fetch(`${served.url}${path}`)).json()).state).toBe("running"))
      served.runner!.child.kill("SIGKILL")
      await exitCode(served.runner!)
      await vi.waitFor(async () => {
        const job = await (await fetch(`${served.url}${path}`)).json() as View
        expect(job).toMatchObject({ state: "running", ownerGone: true })
        expect(job.ownerSilentMillis).toBeGreaterThan(testOptions.staleAfter)
      }, { timeout: 10_000, interval: 200 })
    } finally {
      await served.close()
    }
  })
})

describe("Dashboard authentication and binding", () => {
  const token = "s3cret-token-for-tests"

  it("with a token, every /api request needs it; the page itself does not", async () => {
    const served = await serveMemory([long("private")], { ...testOptions, token })
    try {
      for (const path of ["/api/jobs", `/api/jobs/${served.ids[0]}`, "/api/events", "/api/openapi.json"]) {
        const missing = await fetch(`${served.url}${path}`)
        expect(missing.status, path).toBe(401)
        expect(await missing.json()).toMatchObject({ _tag: "Unauthorized" })
        expect(securityHeaders(missing).cache).toBe("no-store")
        const wrong = await fetch(`${served.url}${path}`, { headers: { authorization: `Bearer ${token}x` } })
        expect(wrong.status, path).toBe(401)
        const right = await fetch(`${served.url}${path}`, { headers: { authorization: `Bearer ${token}` } })
        expect(right.status, path).toBe(200)
        await right.body?.cancel()
      }
      const cancel = await fetch(`${served.url}/api/jobs/${served.ids[0]}/cancel`, { method: "POST" })
      expect(cancel.status).toBe(401)
      const job = await fetch(`${served.url}/api/jobs/${served.ids[0]}`, { headers: { authorization: `Bearer ${token}` } })
      expect((await job.json()).state).not.toBe("cancelled")
      expect((await fetch(`${served.url}/`)).status).toBe(200)
    } finally {
      await served.close()
    }
  })

  it("without a token only loopback Host names are served; changes from another origin are refused", async () => {
    const served = await serveMemory([long("local")])
    try {
      const port = new URL(served.url).port
      const rebound = await getWithHost(`${served.url}/api/jobs`, `attacker.example:${port}`)
      expect(rebound.status).toBe(403)
      expect(JSON.parse(rebound.body)).toMatchObject({ _tag: "Forbidden" })
      expect(rebound.headers["content-security-policy"]).toContain("frame-ancestors 'none'")
      expect((await getWithHost(`${served.url}/api/jobs`, `localhost:${port}`)).status).toBe(200)
      const path = `${served.url}/api/jobs/${served.ids[0]}/cancel`
      for (const headers of [{ origin: "http://attacker.example" }, { "sec-fetch-site": "cross-site" }]) {
        const refused = await fetch(path, { method: "POST", headers })
        expect(refused.status).toBe(403)
      }
      expect((await (await fetch(`${served.url}/api/jobs/${served.ids[0]}`)).json()).state).toBe("running")
      const same = await fetch(path, { method: "POST", headers: { origin: served.url } })
      expect(same.status).toBe(200)
      expect((await same.json()).state).toBe("cancelled")
    } finally {
      await served.close()
    }
  })

  it("with a token, any Host name is served", async () => {
    const served = await serveMemory([], { ...testOptions, token })
    try {
      const answer = await getWithHost(`${served.url}/api/jobs`, "jobs.example.com", { authorization: `Bearer ${token}` })
      expect(answer.status).toBe(200)
    } finally {
      await served.close()
    }
  })

  it("listening elsewhere than on loopback needs a token", async () => {
    const build = (options: Dashboard.NodeOptions) =>
      Effect.runPromiseExit(Effect.scoped(Layer.build(
        Dashboard.layerNode(options).pipe(Layer.provide(JobRepositoryModule.layerMemory))
      )))
    const refused = await build({ host: "0.0.0.0", port: 0 })
    expect(refused).toMatchObject(Exit.fail({
      _tag: "InvalidOption",
      path: ["token"],
      detail: "listening on 0.0.0.0 needs a token (without one the dashboard listens on 127.0.0.1 only)"
    }))
    expect(Exit.isSuccess(await build({ host: "0.0.0.0", port: 0, token }))).toBe(true)
    for (const host of ["127.0.0.1", "localhost", "::1"]) expect(Exit.isSuccess(await build({ host, port: 0 })), host).toBe(true)
    const bad = await build({ port: 0, token: "" })
    expect(bad).toMatchObject(Exit.fail({ _tag: "InvalidOption", path: ["token"] }))
  })
})

describe("effect-jobs serve", () => {
  afterEach(killAll)

  it("serves a store until Ctrl+C, then exits with 0", async () => {
    const served = await serveSqlite([long("served")])
    try {
      const server = startTsx("src/cli.ts", ["serve", "--db", served.file!, "--port", "0"])
      await vi.waitFor(() => expect(server.stdout()).toMatch(/^effect-jobs dashboard of .*: http:\/\/127\.0\.0\.1:\d+\/$/m), {
        timeout: 20_000
      })
      const url = /http:\/\/127\.0\.0\.1:\d+/.exec(server.stdout())![0]
      expect(server.stdout()).toContain("No --token: listening on 127.0.0.1 only")
      const jobs = await (await fetch(`${url}/api/jobs`)).json()
      expect(jobs.jobs.map((job: View) => job.name)).toEqual(["served"])
      // An open event stream does not keep the server from stopping.
      const stream = await fetch(`${url}/api/events`)
      expect(stream.status).toBe(200)
      server.child.kill("SIGINT")
      expect(await exitCode(server)).toBe(0)
    } finally {
      await served.close()
    }
  })
})
