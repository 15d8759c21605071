/** The speed a watcher measures from the statuses of a running job. */
import { describe, expect, it } from "vitest"
import type { JobState } from "../src/Job.js"
import { JobStatus } from "../src/Job.js"
import { RateMeter } from "../src/internal/rate.js"
import { formatDuration } from "../src/internal/terminal.js"

const status = (state: JobState, at: number, completedChunks: number) =>
  new JobStatus({
    id: "job_rate" as JobStatus["id"],
    state,
    totalChunks: 1_000,
    completedChunks,
    failedChunks: 0,
    progress: Math.floor(completedChunks / 10),
    createdAt: new Date(0),
    updatedAt: new Date(at),
    lease: 1
  })

describe("RateMeter", () => {
  it("measures chunks per second of running time, and the time left at that rate", () => {
    const meter = new RateMeter()
    meter.observe(status("running", 10_000, 100))
    expect(meter.rate(10_500)).toBeUndefined()
    meter.observe(status("running", 12_000, 140))
    expect(meter.rate(12_000)).toBe(20)
    expect(meter.etaSeconds(status("running", 12_000, 140), 12_000)).toBe(43)
    // A job that stops settling chunks slows down as time passes.
    expect(meter.rate(14_000)).toBe(10)
  })

  it("leaves paused time out: a resumed job is measured afresh", () => {
    const meter = new RateMeter()
    meter.observe(status("running", 0, 0))
    meter.observe(status("running", 2_000, 40))
    meter.observe(status("paused", 2_100, 40))
    expect(meter.rate(60_000)).toBeUndefined()
    meter.observe(status("running", 60_000, 40))
    meter.observe(status("running", 62_000, 80))
    expect(meter.rate(62_000)).toBe(20)
  })

  it("measures over the last window of time", () => {
    const meter = new RateMeter(10_000)
    meter.observe(status("running", 0, 0))
    meter.observe(status("running", 5_000, 500))
    for (let second = 6; second <= 30; second++) meter.observe(status("running", second * 1_000, 500 + (second - 5) * 10))
    // 10 chunks a second lately, not the 100 a second of the start.
    expect(meter.rate(30_000)).toBeCloseTo(10, 5)
  })
})

describe("formatDuration", () => {
  it("shows the two largest units", () => {
    expect([0, 45_400, 125_000, 3_720_000, 273_600_000].map(formatDuration)).toEqual(["0s", "45s", "2m05s", "1h02m", "3d04h"])
  })
})
