import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as fc from "effect/FastCheck"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { JobId, JobState } from "../src/Job.js"
import { isTerminal } from "../src/Job.js"
import { JobManager } from "../src/JobManager.js"
import * as JobManagerModule from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"

interface ChunkPlan {
  readonly millis: number
  readonly fails: boolean
}

type Command =
  | { readonly _tag: "submit"; readonly chunks: ReadonlyArray<ChunkPlan> }
  | { readonly _tag: "cancel"; readonly job: number }
  | { readonly _tag: "tick"; readonly millis: number }

const chunkPlan = fc.record({ millis: fc.integer({ min: 0, max: 20 }), fails: fc.integer({ min: 0, max: 9 }).map((n) => n === 0) })
  .map((plan): ChunkPlan => plan)

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ _tag: fc.constant("submit" as const), chunks: fc.array(chunkPlan, { minLength: 0, maxLength: 5 }) }),
  fc.record({ _tag: fc.constant("cancel" as const), job: fc.nat({ max: 7 }) }),
  fc.record({ _tag: fc.constant("tick" as const), millis: fc.integer({ min: 0, max: 15 }) })
)

type Event =
  | { readonly _tag: "started"; readonly job: JobId; readonly chunk: number }
  | { readonly _tag: "succeeded"; readonly job: JobId; readonly chunk: number }
  | { readonly _tag: "cancelReturned"; readonly job: JobId; readonly state: JobState }

describe("JobManager properties", () => {
  it.effect.prop(
    "random interleavings of submit, cancel and chunk completion keep the lifecycle invariants",
    {
      commands: fc.array(command, { minLength: 1, maxLength: 25 }),
      concurrency: fc.integer({ min: 1, max: 3 }),
      maxConcurrentJobs: fc.integer({ min: 1, max: 3 })
    },
    ({ commands, concurrency, maxConcurrentJobs }) => {
      const log: Array<Event> = []
      const plans = new Map<JobId, ReadonlyArray<ChunkPlan>>()
      const worker = ChunkWorker.make((chunk, { jobId }) =>
        Effect.suspend(() => {
          log.push({ _tag: "started", job: jobId, chunk: chunk.id })
          const plan = chunk.payload as unknown as ChunkPlan
          return Effect.sleep(Duration.millis(plan.millis)).pipe(
            Effect.zipRight(plan.fails ? Effect.fail("chunk failed") : Effect.void),
            Effect.tap(() => Effect.sync(() => log.push({ _tag: "succeeded", job: jobId, chunk: chunk.id })))
          )
        })
      )
      const layer = JobManagerModule.layer({ concurrency, maxConcurrentJobs, retry: { attempts: 1 } }).pipe(
        Layer.provide(JobRepository.layerMemory),
        Layer.provide(Layer.succeed(ChunkWorker.ChunkWorker, worker))
      )
      return Effect.gen(function*() {
        const manager = yield* JobManager
        const ids: Array<JobId> = []
        const cancelledByTest = new Set<JobId>()
        const firstTerminal = new Map<JobId, JobState>()
        const observe = Effect.forEach(ids, (id) =>
          Effect.map(manager.getJob(id), (status) => {
            const seen = firstTerminal.get(id)
            if (seen !== undefined) expect(status.state).toBe(seen)
            else if (isTerminal(status.state)) firstTerminal.set(id, status.state)
          }))

        for (const step of commands) {
          switch (step._tag) {
            case "submit": {
              const spec = { chunks: step.chunks.map((plan, index) => ({ id: index, payload: { ...plan } })) }
              const id = yield* manager.submitJob(spec)
              plans.set(id, step.chunks)
              ids.push(id)
              break
            }
            case "cancel": {
              const id = ids[step.job % Math.max(ids.length, 1)]
              if (id === undefined) break
              cancelledByTest.add(id)
              const status = yield* manager.cancelJob(id)
              log.push({ _tag: "cancelReturned", job: id, state: status.state })
              expect(isTerminal(status.state)).toBe(true)
              break
            }
            case "tick":
              yield* TestClock.adjust(Duration.millis(step.millis))
              break
          }
          yield* observe
        }
        // Up to 10 s of test time, in steps, until every job has ended (each step's timer wake-ups cost real
        // time in TestClock, so a run stops as soon as nothing is left to end).
        for (let waited = 0; waited < 10_000; waited += 100) {
          const statuses = yield* Effect.forEach(ids, (id) => manager.getJob(id))
          if (statuses.every((status) => isTerminal(status.state))) break
          yield* TestClock.adjust(Duration.millis(100))
        }
        yield* observe

        for (const id of ids) {
          const status = yield* manager.getJob(id)
          const plan = plans.get(id)!
          // Every job has ended, in the state it first ended in.
          expect(isTerminal(status.state)).toBe(true)
          expect(status.state).toBe(firstTerminal.get(id))
          // No chunk starts after cancelJob returned.
          const cancelAt = log.findIndex((event) => event._tag === "cancelReturned" && event.job === id)
          if (cancelAt >= 0) {
            expect(log.slice(cancelAt).some((event) => event._tag === "started" && event.job === id)).toBe(false)
          }
          // completed implies every chunk succeeded.
          if (status.state === "completed") {
            const succeeded = new Set(
              log.flatMap((event) => event._tag === "succeeded" && event.job === id ? [event.chunk] : [])
            )
            expect(succeeded.size).toBe(plan.length)
            expect(status.completedChunks).toBe(plan.length)
            expect(status.failedChunks).toBe(0)
          }
          // cancelled only when the test cancelled it; failed only when a chunk failed.
          if (status.state === "cancelled") expect(cancelledByTest.has(id)).toBe(true)
          if (status.state === "failed") expect(plan.some((chunk) => chunk.fails)).toBe(true)
        }
      }).pipe(Effect.provide(layer))
    },
    { timeout: 180_000, fastCheck: { numRuns: 1000 } }
  )
})
