/**
 * The HTTP API of a job store, as an `@effect/platform` `HttpApi`: the routes, what they take and answer,
 * and their errors. `Dashboard` serves it (and the OpenAPI document made from these definitions at
 * `/api/openapi.json`); `HttpApiClient.make(JobApi)` gives a typed client of it.
 *
 * Routes (all under `/api`; every one needs `Authorization: Bearer <token>` when the server has a token):
 * - `GET /jobs?state=&limit=&cursor=`: a page of jobs, newest first: `{ jobs, nextCursor? }`.
 * - `GET /jobs/:id`: the job (with its `metadata`).
 * - `GET /jobs/:id/chunks?state=&limit=&cursor=`: a page of the job's chunks in chunk-id order: `{ chunks,
 *   nextCursor? }`, each chunk `{ id, state, attempts, result?, error?, startedAt?, finishedAt? }` (a chunk in
 *   flight shows as `pending`: the server does not run the job).
 * - `POST /jobs/:id/cancel`: the job once it has ended (`cancelled`, or the state it reached first; a job
 *   that had already ended is returned as it is).
 * - `POST /jobs/:id/pause`, `POST /jobs/:id/resume`: the job once it is `paused`, resp. queued again; 409
 *   when it has ended.
 * - `POST /jobs/:id/retry`: `201` and the new job that re-drives a failed one; 409 unless it failed.
 * - `DELETE /jobs/:id`: the deleted job; 409 unless it has ended.
 * - `GET /jobs/:id/events`: Server-Sent Events, one `data:` line of JSON job per change (at most one per
 *   the server's watch interval), ending after the terminal one.
 * - `GET /events`: Server-Sent Events of every job's changes (a new job, a change of state or progress):
 *   `data: {"type":"changed","job":{...}}` or `data: {"type":"deleted","id":"..."}`.
 *
 * Errors are JSON with a `_tag` and a `message`: 400 `HttpApiDecodeError` (a query parameter that does not
 * decode; `issues` names it) or `InvalidOption` (a bad cursor), 401 `Unauthorized`, 404 `JobNotFound`,
 * 409 `InvalidJobState`, 503 `RepositoryError` (the store failed).
 *
 * @since 0.1.0
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Schema from "effect/Schema"
import { ChunkInfo, ChunkState, JobState, JobStatus } from "./Job.js"

/**
 * A job as the API shows it: its stored status, and what the server observes about it: whether the owner
 * of a `running` job is gone (no heartbeat for the server's `staleAfter`; nothing runs the job until a live
 * manager takes it over), and how fast a running job goes.
 *
 * @since 0.1.0
 */
export const JobView = Schema.Struct({
  ...JobStatus.fields,
  /** Set on a `running` job whose owner stopped heartbeating. */
  ownerGone: Schema.optional(Schema.Boolean),
  /** With `ownerGone`: milliseconds since the owner's last heartbeat (absent when it has none). */
  ownerSilentMillis: Schema.optional(Schema.Number),
  /** Chunks settled per second while the server watched it run (paused time is not counted). */
  rate: Schema.optional(Schema.Number),
  /** Seconds left at that rate. */
  etaSeconds: Schema.optional(Schema.Number)
}).annotations({ identifier: "Job" })
/** @since 0.1.0 */
export type JobView = typeof JobView.Type

/**
 * A page of jobs, newest first; `nextCursor` (absent on the last page) is the `cursor` of the next one.
 *
 * @since 0.1.0
 */
export const JobPageView = Schema.Struct({
  jobs: Schema.Array(JobView),
  nextCursor: Schema.optional(Schema.String)
}).annotations({ identifier: "JobPage" })

/**
 * The query of `GET /api/jobs`: `state` (repeat it for several), `limit` (1 to 1000, default 50) and the
 * `cursor` of the previous page.
 *
 * @since 0.1.0
 */
export const ListParams = Schema.Struct({
  state: Schema.optional(Schema.Union(JobState, Schema.Array(JobState))),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000))),
  cursor: Schema.optional(Schema.String)
})

/**
 * A page of a job's chunks in chunk-id order; `nextCursor` (absent on the last page) is the `cursor` of the
 * next one.
 *
 * @since 0.2.0
 */
export const ChunkPageView = Schema.Struct({
  chunks: Schema.Array(ChunkInfo),
  nextCursor: Schema.optional(Schema.String)
}).annotations({ identifier: "ChunkPage" })

/**
 * The query of `GET /api/jobs/:id/chunks`: `state` (repeat it for several), `limit` (1 to 1000, default 100)
 * and the `cursor` of the previous page.
 *
 * @since 0.2.0
 */
export const ChunkParams = Schema.Struct({
  state: Schema.optional(Schema.Union(ChunkState, Schema.Array(ChunkState))),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000))),
  cursor: Schema.optional(Schema.String)
})

/** @since 0.1.0 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/** @since 0.1.0 */
export class JobNotFound extends Schema.TaggedError<JobNotFound>()(
  "JobNotFound",
  { jobId: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** The job's state does not allow the operation; `detail` says why. @since 0.1.0 */
export class InvalidJobState extends Schema.TaggedError<InvalidJobState>()(
  "InvalidJobState",
  {
    jobId: Schema.String,
    state: Schema.String,
    operation: Schema.String,
    detail: Schema.String,
    message: Schema.String
  },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** @since 0.1.0 */
export class InvalidOption extends Schema.TaggedError<InvalidOption>()(
  "InvalidOption",
  { path: Schema.Array(Schema.Union(Schema.String, Schema.Number)), detail: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** The job store failed; the request changed nothing it reports as done. @since 0.1.0 */
export class RepositoryError extends Schema.TaggedError<RepositoryError>()(
  "RepositoryError",
  { operation: Schema.String, detail: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/**
 * Every `/api` route checks the bearer token (when the server has one).
 *
 * @since 0.1.0
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("effect-jobs/JobApi/Authorization", {
  failure: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

const IdPath = Schema.Struct({ id: Schema.String })

const EventStream = HttpApiSchema.Text({ contentType: "text/event-stream" })

/**
 * The job routes.
 *
 * @since 0.1.0
 */
export class JobsGroup extends HttpApiGroup.make("jobs")
  .add(
    HttpApiEndpoint.get("list", "/jobs")
      .setUrlParams(ListParams)
      .addSuccess(JobPageView)
      .addError(InvalidOption)
      .annotate(OpenApi.Summary, "A page of jobs, newest first")
  )
  .add(
    HttpApiEndpoint.get("get", "/jobs/:id")
      .setPath(IdPath)
      .addSuccess(JobView)
      .addError(JobNotFound)
      .annotate(OpenApi.Summary, "One job")
  )
  .add(
    HttpApiEndpoint.get("chunks", "/jobs/:id/chunks")
      .setPath(IdPath)
      .setUrlParams(ChunkParams)
      .addSuccess(ChunkPageView)
      .addError(JobNotFound)
      .addError(InvalidOption)
      .annotate(OpenApi.Summary, "A page of a job's chunks in chunk-id order: state, attempts, result, last error")
  )
  .add(
    HttpApiEndpoint.post("cancel", "/jobs/:id/cancel")
      .setPath(IdPath)
      .addSuccess(JobView)
      .addError(JobNotFound)
      .annotate(OpenApi.Summary, "Cancel a job; answers once it has ended")
  )
  .add(
    HttpApiEndpoint.post("pause", "/jobs/:id/pause")
      .setPath(IdPath)
      .addSuccess(JobView)
      .addError(JobNotFound)
      .addError(InvalidJobState)
      .annotate(OpenApi.Summary, "Pause a job; its completed chunks are kept")
  )
  .add(
    HttpApiEndpoint.post("resume", "/jobs/:id/resume")
      .setPath(IdPath)
      .addSuccess(JobView)
      .addError(JobNotFound)
      .addError(InvalidJobState)
      .annotate(OpenApi.Summary, "Queue a paused job again")
  )
  .add(
    HttpApiEndpoint.post("retry", "/jobs/:id/retry")
      .setPath(IdPath)
      .addSuccess(JobView, { status: 201 })
      .addError(JobNotFound)
      .addError(InvalidJobState)
      .annotate(OpenApi.Summary, "Re-drive a failed job as a new job")
  )
  .add(
    HttpApiEndpoint.del("delete", "/jobs/:id")
      .setPath(IdPath)
      .addSuccess(JobView)
      .addError(JobNotFound)
      .addError(InvalidJobState)
      .annotate(OpenApi.Summary, "Delete a job that has ended")
  )
  .add(
    HttpApiEndpoint.get("watch", "/jobs/:id/events")
      .setPath(IdPath)
      .addSuccess(EventStream)
      .addError(JobNotFound)
      .annotate(OpenApi.Summary, "Server-Sent Events: the job at each change, ending after its terminal state")
  )
  .add(
    HttpApiEndpoint.get("events", "/events")
      .addSuccess(EventStream)
      .annotate(OpenApi.Summary, "Server-Sent Events: every job's changes")
  )
  .addError(RepositoryError)
  .middleware(Authorization)
{}

/**
 * The OpenAPI document of the API.
 *
 * @since 0.1.0
 */
export class DocsGroup extends HttpApiGroup.make("docs")
  .add(HttpApiEndpoint.get("openapi", "/openapi.json").addSuccess(Schema.Unknown))
  .middleware(Authorization)
  .annotate(OpenApi.Exclude, true)
{}

/**
 * The API.
 *
 * @since 0.1.0
 */
export class JobApi extends HttpApi.make("effect-jobs")
  .add(JobsGroup)
  .add(DocsGroup)
  .prefix("/api")
  .annotate(OpenApi.Title, "effect-jobs")
  .annotate(OpenApi.Description, "Read and control the jobs of an effect-jobs store.")
{}
