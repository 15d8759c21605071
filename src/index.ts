/**
 * effect-jobs: an Effect orchestration core for chunked jobs.
 *
 * @since 0.1.0
 */

/** Interruption <-> `AbortSignal`. @since 0.1.0 */
export * as Abort from "./Abort.js"
/** How one chunk is executed. @since 0.1.0 */
export * as ChunkWorker from "./ChunkWorker.js"
/** The web dashboard and HTTP API of a job store (`effect-jobs serve`). @since 0.1.0 */
export * as Dashboard from "./Dashboard.js"
/** The finalize step of a job. @since 0.1.0 */
export * as Finalizer from "./Finalizer.js"
/** Controls the jobs of a store without running any (the CLI's engine). @since 0.1.0 */
export * as JobClient from "./JobClient.js"
/** A worker that sends each chunk to remote HTTP workers. @since 0.1.0 */
export * as HttpWorker from "./HttpWorker.js"
/** The HTTP API of a job store, as an `HttpApi` (routes, schemas, errors). @since 0.1.0 */
export * as JobApi from "./JobApi.js"
/** Domain schemas: ids, states, chunks, specs, statuses. @since 0.1.0 */
export * as Job from "./Job.js"
/** Tagged errors. @since 0.1.0 */
export * as JobError from "./JobError.js"
/** Runs one job's chunks. @since 0.1.0 */
export * as JobExecutor from "./JobExecutor.js"
/** The metrics effect-jobs records. @since 0.1.0 */
export * as JobMetrics from "./JobMetrics.js"
/** The job lifecycle service. @since 0.1.0 */
export * as JobManager from "./JobManager.js"
/** The job store service. @since 0.1.0 */
export * as JobRepository from "./JobRepository.js"
/** A worker that runs each chunk in a child process. @since 0.1.0 */
export * as ProcessWorker from "./ProcessWorker.js"
/** An HTTP server that runs chunks for remote clients (and a Lambda-style adapter). @since 0.1.0 */
export * as WorkerServer from "./WorkerServer.js"
/** The Promise facade (also at `effect-jobs/promise`). @since 0.1.0 */
export {
  createJobManager,
  executeJob,
  type ExecuteJobOptions,
  type ExecuteStreamJobOptions,
  type JobManagerOptions,
  type ListJobsQuery,
  type PromiseFinalizer,
  type PromiseFinalizeContext,
  type PromiseJobManager,
  type PromiseWorker,
  type PruneJobsOptions,
  type StreamJobSpec,
  type WorkerOptions
} from "./promise.js"
