/**
 * Statuses built from fields already checked (a transition of a stored status, a new job, a row read back):
 * a status is built at every change of every job, so on the path of each job's submit, start and end.
 */
import { JobStatus } from "../Job.js"

type Fields = ConstructorParameters<typeof JobStatus>[0]

/** The fields of a status, an optional one given as `undefined` when it is absent. */
export type StatusFields = { readonly [K in keyof Fields]: Fields[K] | (undefined extends Fields[K] ? undefined : never) }

/**
 * The status `new JobStatus(fields, true)` makes (same prototype, the same own fields in the schema's order, the
 * fields given as `undefined` left out), without the per-call work of Schema's class constructor: it lists the
 * class's fields to merge defaults (JobStatus has none) and copies the fields twice.
 */
export const makeStatus = (fields: StatusFields): JobStatus => {
  const status = Object.create(JobStatus.prototype) as { -readonly [K in keyof Fields]: Fields[K] }
  status.id = fields.id
  if (fields.name !== undefined) status.name = fields.name
  status.state = fields.state
  if (fields.totalChunks !== undefined) status.totalChunks = fields.totalChunks
  status.completedChunks = fields.completedChunks
  status.failedChunks = fields.failedChunks
  status.progress = fields.progress
  if (fields.error !== undefined) status.error = fields.error
  status.createdAt = fields.createdAt
  status.updatedAt = fields.updatedAt
  if (fields.startedAt !== undefined) status.startedAt = fields.startedAt
  if (fields.finishedAt !== undefined) status.finishedAt = fields.finishedAt
  if (fields.owner !== undefined) status.owner = fields.owner
  status.lease = fields.lease
  if (fields.phase !== undefined) status.phase = fields.phase
  if (fields.retryOf !== undefined) status.retryOf = fields.retryOf
  if (fields.metadata !== undefined) status.metadata = fields.metadata
  return status as JobStatus
}
