import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { JobId, JobState, ListQuery } from "../src/Job.js"
import * as JobRepository from "../src/JobRepository.js"
import { chunkContract } from "./contract/chunkContract.js"
import { chunkSpec, jobRepositoryContract, moveTo, newJob } from "./contract/JobRepositoryContract.js"

jobRepositoryContract("JobRepository.layerMemory", () => JobRepository.layerMemory)
chunkContract("JobRepository.layerMemory", () => JobRepository.layerMemory)

describe("JobRepository.layerMemory listing by state", () => {
  it.effect("pages of a state among thousands of jobs, some changed and deleted, are those of a full scan", () =>
    Effect.gen(function*() {
      const repo = yield* JobRepository.JobRepository
      const ids = Array.from({ length: 3_000 }, (_, index) => `job_${String(index).padStart(5, "0")}` as JobId)
      yield* repo.createMany(ids.map((id) => newJob(id, chunkSpec(1))))
      // Rare states in a few places (the first and last jobs, a run in the middle), most jobs completed.
      const stateOf = (index: number): JobState =>
        index === 0 || index === 2_999 ? "failed" : index >= 1_500 && index < 1_510 ? "paused" : index % 700 === 3 ? "running" : "completed"
      for (let index = 0; index < ids.length; index++) {
        yield* Effect.provideService(moveTo(ids[index]!, stateOf(index)), JobRepository.JobRepository, repo)
      }
      for (let index = 1; index < ids.length; index += 7) if (stateOf(index) === "completed") yield* repo.delete(ids[index]!)
      yield* repo.transition(ids[1_505]!, ["paused"], "cancelled")

      const all = (query: Omit<ListQuery, "cursor">) =>
        Effect.gen(function*() {
          const seen: Array<string> = []
          let cursor: string | undefined
          do {
            const page = yield* repo.list({ ...query, ...(cursor === undefined ? {} : { cursor }) })
            seen.push(...page.jobs.map((status) => status.id))
            cursor = page.nextCursor
          } while (cursor !== undefined)
          return seen
        })
      /** Every job, newest first, kept when its status is in `states`. */
      const scan = (states: ReadonlyArray<JobState>) =>
        Effect.flatMap(all({ limit: 1_000 }), (listed) =>
          Effect.filter(listed, (id) =>
            Effect.map(repo.get(id as JobId), (status) => status._tag === "Some" && states.includes(status.value.state))))
      for (const states of [["failed"], ["paused", "cancelled"], ["running"], ["completed", "failed"]] as const) {
        const expected = yield* scan(states)
        expect(expected.length).toBeGreaterThan(0)
        expect(yield* all({ state: [...states], limit: 7 })).toEqual(expected)
      }
    }).pipe(Effect.provide(JobRepository.layerMemory)))
})
