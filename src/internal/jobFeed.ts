/**
 * The changes of every job of a store, for watchers of many jobs at once (the dashboard's list): one
 * background fiber reads the store when it signals a change (`JobRepository.changes`), at most once per
 * `interval` and at least once a second (an owner going stale changes no job), and publishes what changed
 * since the last read.
 *
 * Each read lists the jobs that have not ended (they are few, and indexed by state), compares them with the
 * previous read, looks up the ones that left that set (ended, or deleted), and lists the newest jobs to
 * catch those that were created and ended between two reads. It works on any store, whichever processes
 * run the jobs. It also measures the speed of running jobs (see `RateMeter`).
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { JobId, JobState, JobStatus } from "../Job.js"
import type { JobClient } from "../JobClient.js"
import type { InvalidOption, RepositoryError } from "../JobError.js"
import type { JobRepository } from "../JobRepository.js"
import type { CursorKey } from "./cursor.js"
import { compareNewestFirst } from "./cursor.js"
import { RateMeter } from "./rate.js"
import { loop } from "./supervised.js"
import type { Speed } from "./terminal.js"

/**
 * A job changed (`gone`: the owners of running jobs that are gone, as `JobClient.goneOwners` gives them), or
 * was deleted.
 */
export type FeedEvent =
  | {
    readonly _tag: "Changed"
    readonly status: JobStatus
    readonly gone: ReadonlyMap<string, number | undefined>
  }
  | { readonly _tag: "Deleted"; readonly id: JobId }

export interface JobFeed {
  /** The changes published from the moment the stream is run. A consumer far behind loses the oldest. */
  readonly changes: Stream.Stream<FeedEvent>
  /** Publishes a change made by this process at once (the next read would find it too). */
  readonly announce: (event: FeedEvent) => Effect.Effect<void>
  /** How fast a running job goes, as measured by the reads so far. */
  readonly speed: (status: JobStatus, now: number) => Speed
}

const activeStates: ReadonlyArray<JobState> = ["pending", "running", "paused"]

/** Events kept for a subscriber that does not keep up. */
const backlog = 4_096

/** The newest jobs listed by each read, to find those created and ended between two reads. */
const newestPage = 100

/** The longest time between two reads: owners go stale without any job changing. */
const quietRecheckMillis = 1_000

const keyOf = (status: JobStatus): CursorKey => ({ createdAt: status.createdAt.getTime(), id: status.id })

/** What, when it changes, is worth telling: everything a list shows of a job. */
const changeKey = (status: JobStatus, ownerGone: boolean): string =>
  `${status.state}|${status.updatedAt.getTime()}|${status.completedChunks}|${status.failedChunks}|${
    status.phase ?? ""
  }|${status.owner ?? ""}|${ownerGone}`

/** Starts the feed in the current scope; closing the scope stops its reads and ends its streams. */
export const make = (
  repository: JobRepository["Type"],
  client: JobClient,
  interval: number
): Effect.Effect<JobFeed, never, Scope.Scope> =>
  Effect.gen(function*() {
    const hub = yield* Effect.acquireRelease(PubSub.sliding<FeedEvent>(backlog), PubSub.shutdown)
    const meters = new Map<JobId, RateMeter>()
    /** The jobs that had not ended at the last read, with their change keys. */
    let known = new Map<JobId, string>()
    let newest: CursorKey | undefined
    let first = true

    const activeJobs = Effect.gen(function*() {
      const jobs: Array<JobStatus> = []
      let cursor: string | undefined
      do {
        const page = yield* repository.list({ state: activeStates, limit: 1000, ...(cursor === undefined ? {} : { cursor }) })
        jobs.push(...page.jobs)
        cursor = page.nextCursor
      } while (cursor !== undefined)
      return jobs
    })

    const read: Effect.Effect<void, RepositoryError | InvalidOption> = Effect.gen(function*() {
      const active = yield* activeJobs
      const gone = yield* client.goneOwners(active)
      const events: Array<FeedEvent> = []
      const next = new Map<JobId, string>()
      for (const status of active) {
        let meter = meters.get(status.id)
        if (meter === undefined) meters.set(status.id, meter = new RateMeter())
        meter.observe(status)
        const key = changeKey(status, status.owner !== undefined && gone.has(status.owner))
        next.set(status.id, key)
        if (known.get(status.id) !== key) events.push({ _tag: "Changed", status, gone })
      }
      for (const id of known.keys()) {
        if (next.has(id)) continue
        meters.delete(id)
        const now = yield* repository.get(id)
        events.push(Option.isSome(now) ? { _tag: "Changed", status: now.value, gone } : { _tag: "Deleted", id })
      }
      const latest = yield* repository.list({ limit: newestPage })
      for (const status of latest.jobs) {
        if (newest !== undefined && compareNewestFirst(keyOf(status), newest) >= 0) break
        if (!next.has(status.id) && !known.has(status.id)) events.push({ _tag: "Changed", status, gone })
      }
      if (latest.jobs[0] !== undefined) newest = keyOf(latest.jobs[0])
      known = next
      if (first) {
        first = false
        return
      }
      yield* PubSub.publishAll(hub, events)
    })

    let seen: number | undefined
    const waitForChange = Effect.suspend(() =>
      seen === undefined
        ? Effect.void
        : Effect.zipRight(
          Effect.sleep(interval),
          Effect.raceFirst(repository.changes.changedSince(seen), Effect.sleep(quietRecheckMillis))
        )
    )
    const step = Effect.zipRight(waitForChange, Effect.suspend(() => {
      seen = repository.changes.version
      return read
    }))
    yield* Effect.forkScoped(loop(step, { module: "Dashboard", name: "reading the job store for changes", spacing: 0 }))

    return {
      changes: Stream.fromPubSub(hub),
      announce: (event) =>
        Effect.suspend(() => {
          if (event._tag === "Deleted") {
            known.delete(event.id)
            meters.delete(event.id)
          }
          return PubSub.publish(hub, event)
        }),
      speed: (status, now) => {
        const meter = meters.get(status.id)
        if (meter === undefined || status.state !== "running") return {}
        return { rate: meter.rate(now), etaSeconds: meter.etaSeconds(status, now) }
      }
    }
  })
