import { describe, expect, it } from "@effect/vitest"
import * as Equal from "effect/Equal"
import * as Schema from "effect/Schema"
import type { JobId } from "../src/Job.js"
import { JobStatus } from "../src/Job.js"
import { makeStatus } from "../src/internal/jobStatus.js"

const at = (millis: number) => new Date(millis)

const full = {
  id: "job_1" as JobId,
  name: "render",
  state: "failed" as const,
  totalChunks: 10,
  completedChunks: 8,
  failedChunks: 2,
  progress: 100,
  error: "chunk 3 failed",
  createdAt: at(1),
  updatedAt: at(5),
  startedAt: at(2),
  finishedAt: at(5),
  owner: "host:1:abc",
  lease: 3,
  phase: "finalizing" as const,
  retryOf: "job_0" as JobId,
  metadata: { user: "ada" }
}

describe("makeStatus", () => {
  it("makes what the class constructor makes: prototype, fields and their order, equality, schema", () => {
    const { error: _error, finishedAt: _finishedAt, metadata: _metadata, name: _name, phase: _phase, retryOf: _retryOf, startedAt: _startedAt, totalChunks: _totalChunks, owner: _owner, ...required } = full
    for (const fields of [full, required]) {
      const made = makeStatus(fields)
      const constructed = new JobStatus(fields, true)
      expect(Object.getPrototypeOf(made)).toBe(JobStatus.prototype)
      expect(made).toBeInstanceOf(JobStatus)
      expect(Reflect.ownKeys(made)).toEqual(Reflect.ownKeys(constructed))
      expect(Equal.equals(made, constructed)).toBe(true)
      expect(JSON.stringify(made)).toBe(JSON.stringify(constructed))
      expect(String(made)).toBe(String(constructed))
      expect(Schema.is(JobStatus)(made)).toBe(true)
      expect(made).toEqual(new JobStatus(fields))
    }
  })

  it("leaves out the optional fields given as undefined", () => {
    const made = makeStatus({ ...full, name: undefined, error: undefined, metadata: undefined })
    expect(Object.hasOwn(made, "name") || Object.hasOwn(made, "error") || Object.hasOwn(made, "metadata")).toBe(false)
    const { error: _error, metadata: _metadata, name: _name, ...rest } = full
    expect(Equal.equals(made, new JobStatus(rest, true))).toBe(true)
  })
})
