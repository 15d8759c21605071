/** The SQL store's write-behind progress buffer: what a read overlays on the row it got from the database. */
import { describe, expect, it } from "vitest"
import type { JobState } from "../src/Job.js"
import { JobStatus } from "../src/Job.js"
import { ProgressBuffer } from "../src/internal/progressBuffer.js"

const id = "job_buffer" as JobStatus["id"]

const row = (state: JobState, lease: number, completedChunks: number) =>
  new JobStatus({
    id,
    state,
    totalChunks: 8,
    completedChunks,
    failedChunks: 0,
    progress: Math.floor(completedChunks * 100 / 8),
    createdAt: new Date(0),
    updatedAt: new Date(0),
    lease
  })

describe("ProgressBuffer.overlay", () => {
  it("applies progress reported under the row's lease", () => {
    const buffer = new ProgressBuffer()
    buffer.record(id, { completedChunks: 5, failedChunks: 0, lease: 1 }, 10)
    expect(buffer.overlay(row("running", 1, 2)).completedChunks).toBe(5)
  })

  it("never applies progress of an older lease: its holder lost the job", () => {
    const buffer = new ProgressBuffer()
    buffer.record(id, { completedChunks: 5, failedChunks: 0, lease: 1 }, 10)
    expect(buffer.overlay(row("running", 2, 2)).completedChunks).toBe(2)
  })

  it("applies progress of a newer lease to a row read before this process's write of that lease committed", () => {
    // A read of the database races a transition of this process (lease 1 -> 2, storing 8 chunks): the read
    // got the row as it was before. Without the overlay it would show 0 after an earlier read showed 8.
    const buffer = new ProgressBuffer()
    buffer.record(id, { completedChunks: 8, failedChunks: 0, lease: 2 }, 10)
    expect(buffer.overlay(row("running", 1, 0)).completedChunks).toBe(8)
  })

  it("leaves a terminal row as stored", () => {
    const buffer = new ProgressBuffer()
    buffer.record(id, { completedChunks: 5, failedChunks: 0, lease: 1 }, 10)
    expect(buffer.overlay(row("failed", 1, 3)).completedChunks).toBe(3)
  })
})
