/**
 * The typed inputs of the two APIs. The `@ts-expect-error` lines and `expectTypeOf` assertions are checked by
 * `npm run typecheck` (this file is in the project): a misspelt or missing field must stay a compile error,
 * and an unused `@ts-expect-error` fails the typecheck too. At run time, the same bad inputs from a
 * JavaScript caller are still refused with a typed error that names the field.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { expectTypeOf } from "vitest"
import * as ChunkWorker from "../src/ChunkWorker.js"
import type { JobPage, JobSpecInput, ListQueryInput } from "../src/Job.js"
import type { PruneOptionsInput } from "../src/JobClient.js"
import type { InvalidJobSpec, InvalidOption, JobNotFound, RepositoryError } from "../src/JobError.js"
import * as JobManager from "../src/JobManager.js"
import * as JobRepository from "../src/JobRepository.js"
import { createJobManager, executeJob, type PromiseJobManager } from "../src/promise.js"

type Manager = JobManager.JobManager["Type"]

/** Never called: its body only has to compile (or, on the marked lines, not to). */
export const effectApiTypes = (manager: Manager) => {
  // Valid inputs compile.
  manager.submitJob({
    name: "render",
    metadata: { owner: "ops", tags: ["a", "b"], nested: { n: 1, ok: true, none: null } },
    chunks: [{ id: 0, payload: { start: 0, end: 23 } }, { id: 1, payload: "plain" }],
    finalize: { name: "concat", payload: { out: "film.mp4" } }
  })
  manager.runJob({ chunks: { start: 0, end: 239, size: 24 } })
  manager.submitJob({ chunks: { source: "lines", payload: { file: "urls.txt" } } })
  manager.submitJob({ chunks: { source: "lines" } })
  // @ts-expect-error a stream source is named by `source`
  manager.submitJob({ chunks: { sourceName: "lines" } })
  manager.listJobs()
  manager.listJobs({ state: "running", limit: 10, cursor: "c" })
  manager.listJobs({ state: ["pending", "paused"] })
  manager.pruneJobs({ olderThan: "7 days", states: ["completed"] })
  manager.pruneJobs({ olderThan: new Date() })

  // @ts-expect-error `chunk` is not a field of a spec (and `chunks` is missing)
  manager.submitJob({ chunk: [] })
  // @ts-expect-error misspelt `name`
  manager.submitJob({ nmae: "render", chunks: [] })
  // @ts-expect-error a chunk needs a payload
  manager.submitJob({ chunks: [{ id: 0 }] })
  // @ts-expect-error a range plan needs a size
  manager.runJob({ chunks: { start: 0, end: 9 } })
  // @ts-expect-error metadata is a JSON object, not a string
  manager.runJob({ metadata: "x", chunks: [] })
  // @ts-expect-error a payload is JSON: no functions
  manager.submitJob({ chunks: [{ id: 0, payload: () => 1 }] })
  // @ts-expect-error `status` is not a field of a listing query
  manager.listJobs({ status: "x" })
  // @ts-expect-error not a job state
  manager.listJobs({ state: "done" })
  // @ts-expect-error `limit` is a number
  manager.listJobs({ limit: "10" })
  manager.listChunks("job_1", { state: ["failed", "running"], limit: 100 })
  // @ts-expect-error not a chunk state
  manager.listChunks("job_1", { state: "cancelled" })
  // @ts-expect-error `status` is not a field of a chunk query
  manager.listChunks("job_1", { status: "failed" })
  // @ts-expect-error misspelt `olderThan`
  manager.pruneJobs({ olderThen: "7 days" })
  // @ts-expect-error only terminal states are pruned
  manager.pruneJobs({ olderThan: "1 day", states: ["running"] })

  // @ts-expect-error misspelt option `concurrency`
  JobManager.layer({ concurency: 4 })

  expectTypeOf(manager.submitJob).parameter(0).toEqualTypeOf<JobSpecInput>()
  expectTypeOf(manager.runJob).parameter(0).toEqualTypeOf<JobSpecInput>()
  expectTypeOf(manager.listJobs).parameter(0).toEqualTypeOf<ListQueryInput | undefined>()
  expectTypeOf(manager.pruneJobs).parameter(0).toEqualTypeOf<PruneOptionsInput>()
  expectTypeOf(manager.listJobs()).toEqualTypeOf<Effect.Effect<JobPage, InvalidOption | RepositoryError>>()
  expectTypeOf(manager.submitJob).returns.toMatchTypeOf<Effect.Effect<unknown, InvalidJobSpec | RepositoryError>>()
}

/** The Promise facade takes the same inputs and returns the same shapes (see the README's API table). */
export const promiseApiTypes = (manager: PromiseJobManager) => {
  // @ts-expect-error `chunk` is not a field of a spec
  manager.submitJob({ chunk: [] })
  // @ts-expect-error `status` is not a field of a listing query
  manager.listJobs({ status: "x" })
  // @ts-expect-error misspelt option `concurrency`
  createJobManager({ worker: async () => {}, concurency: 4 })
  // @ts-expect-error `chunk` is not a field of a spec
  executeJob({ chunk: [] }, { worker: async () => {} })

  expectTypeOf<Parameters<PromiseJobManager["submitJob"]>>().toEqualTypeOf<Parameters<Manager["submitJob"]>>()
  expectTypeOf<Parameters<PromiseJobManager["listJobs"]>>().toEqualTypeOf<Parameters<Manager["listJobs"]>>()
  expectTypeOf<Parameters<PromiseJobManager["listChunks"]>>().toEqualTypeOf<Parameters<Manager["listChunks"]>>()
  expectTypeOf<Awaited<ReturnType<PromiseJobManager["listChunks"]>>>().toEqualTypeOf<
    Effect.Effect.Success<ReturnType<Manager["listChunks"]>>
  >()
  // The same page shape, `{ jobs, nextCursor? }`, from both listJobs.
  expectTypeOf<Awaited<ReturnType<PromiseJobManager["listJobs"]>>>().toEqualTypeOf<
    Effect.Effect.Success<ReturnType<Manager["listJobs"]>>
  >()
  // Where the facade differs on purpose: getJob of an unknown id resolves with undefined.
  expectTypeOf<Awaited<ReturnType<PromiseJobManager["getJob"]>>>().toEqualTypeOf<
    Effect.Effect.Success<ReturnType<Manager["getJob"]>> | undefined
  >()
  expectTypeOf<Effect.Effect.Error<ReturnType<Manager["getJob"]>>>().toEqualTypeOf<JobNotFound | RepositoryError>()
}

describe("typed inputs, from a JavaScript caller", () => {
  const Manager = JobManager.layer().pipe(
    Layer.provide(JobRepository.layerMemory),
    Layer.provide(ChunkWorker.layer(() => Effect.void))
  )

  it.effect("a misspelt spec or query is still refused at run time, naming the field, and nothing is stored", () =>
    Effect.gen(function*() {
      const manager = yield* JobManager.JobManager
      const untyped = manager as unknown as { [K in keyof Manager]: (input: unknown) => Effect.Effect<unknown, { readonly message: string }> }
      const spec = yield* Effect.flip(untyped.submitJob({ chunk: [] }))
      expect(spec).toMatchObject({ _tag: "InvalidJobSpec" })
      expect(spec.message).toContain("chunks")
      const query = yield* Effect.flip(untyped.listJobs({ status: "x" }))
      expect(query).toMatchObject({ _tag: "InvalidOption" })
      expect(query.message).toContain("status")
      expect(yield* manager.listJobs()).toEqual({ jobs: [] })
    }).pipe(Effect.provide(Manager)))
})
