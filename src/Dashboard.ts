/**
 * The web dashboard and HTTP API of a job store (`effect-jobs serve`): the `JobApi` routes, their OpenAPI
 * document at `/api/openapi.json`, and at `/` one self-contained page (HTML, CSS and JavaScript served from
 * the package, no CDN) that lists the jobs with live progress and controls them. It reads and controls the
 * store in context through `JobClient`, whichever processes run the jobs.
 *
 * Security:
 * - With a `token`, every `/api` request needs `Authorization: Bearer <token>` (compared in constant
 *   time); others get 401. The page asks for the token once (or takes it from `/?token=...`) and keeps it
 *   in the browser tab's `sessionStorage`.
 * - Without a token, `layerNode` listens on a loopback address only (anything else is refused with
 *   `InvalidOption`), and requests whose `Host` is not a loopback name are refused (403), so that a web page
 *   elsewhere cannot reach the API through DNS rebinding.
 * - A request that changes something (`POST`, `DELETE`) from another origin (its `Origin` is not this
 *   server, or `Sec-Fetch-Site: cross-site`) is refused (403).
 * - Every response carries `Cache-Control: no-store`, a Content-Security-Policy that allows this server's
 *   own scripts, styles and connections only, `X-Content-Type-Options: nosniff`, `Referrer-Policy:
 *   no-referrer` and refuses framing.
 *
 * Live updates are read from the store every `watchInterval` (default 250 ms): an event stream sends at
 * most one change of a job per interval. Closing the layer ends the event streams, so the server stops at
 * once.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import { control, type Control } from "./internal/control.js"
import type { FeedEvent, JobFeed } from "./internal/jobFeed.js"
import * as Feed from "./internal/jobFeed.js"
import { isLoopback } from "./internal/loopback.js"
import { DurationInput } from "./internal/schemas.js"
import type { Speed } from "./internal/terminal.js"
import { constantTimeEqual, Secret, toRedacted } from "./internal/workerProtocol.js"
import type { JobStatus } from "./Job.js"
import * as Api from "./JobApi.js"
import type { JobClient } from "./JobClient.js"
import * as JobClientModule from "./JobClient.js"
import * as JobError from "./JobError.js"
import { JobRepository } from "./JobRepository.js"

/**
 * Options of {@link layer}.
 *
 * @since 0.1.0
 */
export const Options = Schema.Struct({
  /** The bearer token every `/api` request must carry; without one, only loopback clients are served. */
  token: Schema.optional(Secret),
  /** How often the store is read for live updates (default 250 millis; more than zero). */
  watchInterval: Schema.optional(DurationInput.pipe(
    Schema.filter((input) => Duration.toMillis(Duration.decode(input)) > 0 || "must be longer than zero")
  )),
  /** An owner silent this long is shown as gone (default 5,000 millis, as managers' `staleAfter`). */
  staleAfter: Schema.optional(Schema.Int.pipe(Schema.positive()))
}).annotations({ identifier: "DashboardOptions" })
/** @since 0.1.0 */
export type Options = typeof Options.Encoded

/**
 * Options of {@link layerNode}: the dashboard's, and where to listen (host default `127.0.0.1`; port 0
 * picks a free port; default 8080).
 *
 * @since 0.1.0
 */
export const NodeOptions = Schema.Struct({
  ...Options.fields,
  host: Schema.optional(Schema.NonEmptyString),
  port: Schema.optional(Schema.Int.pipe(Schema.between(0, 65_535)))
}).annotations({ identifier: "DashboardNodeOptions" })
/** @since 0.1.0 */
export type NodeOptions = typeof NodeOptions.Encoded


const decode = <A, I>(schema: Schema.Schema<A, I>, input: unknown) =>
  Effect.mapError(
    Schema.decodeUnknown(schema, { onExcessProperty: "error" })(input),
    (error) => new JobError.InvalidOption(JobError.firstIssue(error))
  )

// --- the page -------------------------------------------------------------------------------------------

const assets = new URL("../dashboard/", import.meta.url)

const asset = (file: string, contentType: string) =>
  Effect.sync(() =>
    HttpServerResponse.uint8Array(readFileSync(new URL(file, assets)), { contentType: `${contentType}; charset=utf-8` })
  )

const PageLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const [page, script, style] = yield* Effect.all([
      asset("index.html", "text/html"),
      asset("app.js", "text/javascript"),
      asset("app.css", "text/css")
    ])
    yield* router.get("/", Effect.succeed(page))
    yield* router.get("/app.js", Effect.succeed(script))
    yield* router.get("/app.css", Effect.succeed(style))
  })
)

// --- views ----------------------------------------------------------------------------------------------

/** A job as the API shows it. */
const viewOf = (status: JobStatus, gone: ReadonlyMap<string, number | undefined>, speed: Speed): Api.JobView => {
  const silent = status.state === "running" && status.owner !== undefined && gone.has(status.owner)
    ? { millis: gone.get(status.owner) }
    : undefined
  return {
    ...status,
    ...(silent === undefined ? {} : { ownerGone: true }),
    ...(silent?.millis === undefined ? {} : { ownerSilentMillis: silent.millis }),
    ...(speed.rate === undefined ? {} : { rate: speed.rate }),
    ...(speed.etaSeconds === undefined ? {} : { etaSeconds: speed.etaSeconds })
  }
}

const encodeView = Schema.encodeSync(Api.JobView)

type DomainError = JobError.JobNotFound | JobError.InvalidJobState | JobError.InvalidOption | JobError.RepositoryError

type ApiErrorOf<E> = E extends JobError.JobNotFound ? Api.JobNotFound
  : E extends JobError.InvalidJobState ? Api.InvalidJobState
  : E extends JobError.InvalidOption ? Api.InvalidOption
  : E extends JobError.RepositoryError ? Api.RepositoryError
  : never

/** The wire form of a domain error: the same fields, and its message. */
const toApiError = (error: DomainError): Api.JobNotFound | Api.InvalidJobState | Api.InvalidOption | Api.RepositoryError => {
  switch (error._tag) {
    case "JobNotFound":
      return new Api.JobNotFound({ jobId: error.jobId, message: error.message })
    case "InvalidJobState":
      return new Api.InvalidJobState({
        jobId: error.jobId,
        state: error.state,
        operation: error.operation,
        detail: error.detail,
        message: error.message
      })
    case "InvalidOption":
      return new Api.InvalidOption({ path: error.path, detail: error.detail, message: error.message })
    case "RepositoryError":
      return new Api.RepositoryError({ operation: error.operation, detail: error.detail, message: error.message })
  }
}

const answer = <A, E extends DomainError, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, ApiErrorOf<E>, R> =>
  Effect.mapError(effect, (error) => toApiError(error) as ApiErrorOf<E>)

// --- live updates ---------------------------------------------------------------------------------------

/** How often an idle event stream sends a comment, so that proxies keep it open. */
const keepAliveInterval = Duration.seconds(15)

/**
 * A Server-Sent Events response of `events`, ending with them or when the server closes. A comment is sent
 * at once (so the client sees the response start) and then every 15 seconds.
 */
const eventStream = (events: Stream.Stream<unknown>, closing: Deferred.Deferred<void>) =>
  HttpServerResponse.stream(
    Stream.merge(
      Stream.map(events, (event) => `data: ${JSON.stringify(event)}\n\n`),
      Stream.repeatEffectWithSchedule(Effect.succeed(": keep-alive\n\n"), Schedule.spaced(keepAliveInterval)),
      { haltStrategy: "left" }
    ).pipe(Stream.interruptWhen(Deferred.await(closing)), Stream.encodeText),
    { contentType: "text/event-stream", headers: { "x-accel-buffering": "no" } }
  )

/** What the handlers share: the client of the store, its change feed, and the server's end. */
class Backend extends Context.Tag("effect-jobs/Dashboard/Backend")<Backend, {
  readonly client: JobClient
  readonly feed: JobFeed
  readonly closing: Deferred.Deferred<void>
  readonly watchInterval: number
}>() {}

const backendLayer = (watchInterval: number, staleAfter: number) =>
  Layer.scoped(
    Backend,
    Effect.gen(function*() {
      const repository = yield* JobRepository
      const client = yield* Effect.provideService(
        JobClientModule.make({ pollInterval: watchInterval, staleAfter }),
        JobRepository,
        repository
      )
      const feed = yield* Feed.make(repository, client, watchInterval)
      const closing = yield* Deferred.make<void>()
      // Runs before the server closes (the server is built first): open event streams end, so it can.
      yield* Effect.addFinalizer(() => Deferred.succeed(closing, undefined))
      return { client, feed, closing, watchInterval }
    })
  )

// --- handlers -------------------------------------------------------------------------------------------

const JobsLive = HttpApiBuilder.group(Api.JobApi, "jobs", (handlers) =>
  Effect.gen(function*() {
    const { client, closing, feed } = yield* Backend

    const views = (statuses: ReadonlyArray<JobStatus>) =>
      Effect.gen(function*() {
        const gone = yield* client.goneOwners(statuses)
        const now = yield* Clock.currentTimeMillis
        return statuses.map((status) => viewOf(status, gone, feed.speed(status, now)))
      })
    const view = (status: JobStatus) => Effect.map(views([status]), (all) => all[0]!)

    /** Tells the feed's listeners about a change made here, and returns the job's view. */
    const changed = (status: JobStatus) =>
      Effect.tap(view(status), () =>
        Effect.flatMap(client.goneOwners([status]), (gone) => feed.announce({ _tag: "Changed", status, gone })))

    const act = (action: Control, id: string) =>
      Effect.gen(function*() {
        const before = yield* client.getJob(id)
        const outcome = yield* control(client, action, before)
        return yield* changed(outcome.status)
      })

    const feedEvent = (event: FeedEvent) =>
      Effect.gen(function*() {
        if (event._tag === "Deleted") return { type: "deleted", id: event.id }
        const now = yield* Clock.currentTimeMillis
        return { type: "changed", job: encodeView(viewOf(event.status, event.gone, feed.speed(event.status, now))) }
      })

    return handlers
      .handle("list", ({ urlParams }) =>
        answer(Effect.flatMap(client.listJobs(urlParams), (page) =>
          Effect.map(views(page.jobs), (jobs) => ({
            jobs,
            ...(page.nextCursor === undefined ? {} : { nextCursor: page.nextCursor })
          })))))
      .handle("get", ({ path }) => answer(Effect.flatMap(client.getJob(path.id), view)))
      .handle("chunks", ({ path, urlParams }) => answer(client.listChunks(path.id, urlParams)))
      // A cancel never fails with InvalidJobState: it is idempotent.
      .handle("cancel", ({ path }) => answer(Effect.catchTag(act("cancel", path.id), "InvalidJobState", Effect.die)))
      .handle("pause", ({ path }) => answer(act("pause", path.id)))
      .handle("resume", ({ path }) => answer(act("resume", path.id)))
      .handle("retry", ({ path }) => answer(Effect.flatMap(client.retryJob(path.id), changed)))
      .handle("delete", ({ path }) =>
        answer(Effect.gen(function*() {
          const deleted = yield* client.deleteJob(path.id)
          yield* feed.announce({ _tag: "Deleted", id: deleted.id })
          return yield* view(deleted)
        })))
      .handle("watch", ({ path }) =>
        answer(Effect.map(client.getJob(path.id), (first) =>
          eventStream(
            client.watchJob(first.id).pipe(
              Stream.mapEffect((status) => Effect.map(view(status), encodeView)),
              // Deleted as it ended: the stream just ends.
              Stream.catchAll(() => Stream.empty)
            ),
            closing
          ))))
      .handle("events", () => Effect.succeed(eventStream(Stream.mapEffect(feed.changes, feedEvent), closing)))
  }))

const DocsLive = HttpApiBuilder.group(
  Api.JobApi,
  "docs",
  (handlers) => handlers.handle("openapi", () => Effect.succeed(OpenApi.fromApi(Api.JobApi)))
)

const authorizationLayer = (token: Redacted.Redacted<string> | undefined) =>
  Layer.succeed(Api.Authorization, {
    bearer: (given) =>
      token === undefined || constantTimeEqual(Redacted.value(given), Redacted.value(token))
        ? Effect.void
        : Effect.fail(new Api.Unauthorized({ message: "this API needs the dashboard's token: Authorization: Bearer <token>" }))
  })

// --- requests from elsewhere ----------------------------------------------------------------------------

const securityHeaders = {
  "cache-control": "no-store",
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin"
}

/** Why a request is refused before it reaches a route, if it is. */
const refusal = (request: HttpServerRequest.HttpServerRequest, tokenRequired: boolean): string | undefined => {
  const host = request.headers["host"] ?? ""
  if (!tokenRequired && !isLoopback(host.replace(/:\d+$/, ""))) {
    return `this dashboard has no token, so it only answers requests for localhost, not ${JSON.stringify(host)}`
  }
  if (request.method === "GET" || request.method === "HEAD") return undefined
  const origin = request.headers["origin"]
  if (request.headers["sec-fetch-site"] === "cross-site") return "requests from other sites are refused"
  if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`) {
    return `requests from ${origin} are refused`
  }
  return undefined
}

const guard = (tokenRequired: boolean) =>
  HttpMiddleware.make((app) =>
    Effect.gen(function*() {
      yield* HttpApp.appendPreResponseHandler((_, response) =>
        Effect.succeed(HttpServerResponse.setHeaders(response, securityHeaders))
      )
      const request = yield* HttpServerRequest.HttpServerRequest
      const refused = refusal(request, tokenRequired)
      // A response made here, not by the app, does not go through the app's pre-response handlers.
      return refused === undefined
        ? yield* app
        : HttpServerResponse.unsafeJson({ _tag: "Forbidden", message: refused }, { status: 403, headers: securityHeaders })
    })
  )

// --- layers ---------------------------------------------------------------------------------------------

/**
 * Serves the dashboard and the API of the store in context on the `HttpServer` in context (with its
 * platform's services, as `NodeHttpServer.layer` provides them). Bad options fail with `InvalidOption`
 * naming them.
 *
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<
  never,
  JobError.InvalidOption,
  JobRepository | HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices
> =>
  Layer.unwrapEffect(Effect.map(decode(Options, options), (settings) => {
    const token = settings.token === undefined ? undefined : toRedacted(settings.token)
    const watchInterval = Duration.toMillis(Duration.decode(settings.watchInterval ?? 250))
    return HttpApiBuilder.serve(guard(token !== undefined)).pipe(
      Layer.provide(PageLive),
      Layer.provide(HttpApiBuilder.api(Api.JobApi)),
      Layer.provide([JobsLive, DocsLive]),
      Layer.provide([backendLayer(watchInterval, settings.staleAfter ?? 5_000), authorizationLayer(token)])
    )
  }))

/**
 * The dashboard on a Node HTTP server listening on `host` (default `127.0.0.1`) and `port` (default
 * 8080; 0 picks a free one). Without a `token`, a host that is not a loopback address is refused with
 * `InvalidOption` (path `["token"]`). The `HttpServer` it provides tells the address it listens on.
 *
 * @since 0.1.0
 */
export const layerNode = (
  options: NodeOptions = {}
): Layer.Layer<HttpServer.HttpServer, JobError.InvalidOption | ServeError, JobRepository> =>
  Layer.unwrapEffect(Effect.flatMap(decode(NodeOptions, options), ({ host = "127.0.0.1", port = 8080, ...rest }) =>
    rest.token === undefined && !isLoopback(host)
      ? Effect.fail(
        new JobError.InvalidOption({
          path: ["token"],
          detail: `listening on ${host} needs a token (without one the dashboard listens on 127.0.0.1 only)`
        })
      )
      : Effect.succeed(
        layer(rest).pipe(Layer.provideMerge(NodeHttpServer.layer(() => createServer(), { host, port })))
      )))
