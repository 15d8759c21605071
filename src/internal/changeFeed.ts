/**
 * How the SQL store learns that jobs may have changed, in this process or another one sharing the database,
 * as a {@link VersionSignal} that waiters (stop requests, cross-process cancel and watch) wait on.
 *
 * - Writes made through this store bump it at once (`announce`).
 * - SQLite: a background fiber reads `PRAGMA data_version` every `pollInterval` (10 ms by default), which
 *   changes whenever another connection committed a write to the file.
 * - PostgreSQL: `announce` also sends `NOTIFY` on the store's channel, which every store on the same schema
 *   listens to (the listener restarts after a failure), and the signal is bumped every `pollInterval`
 *   (1 second) in case a notification was lost.
 * - `claimSignal` is bumped only when a job may have become claimable without its owner going stale (stored
 *   or resumed without an owner, or its owner retired): by this store's `announceClaimable` and `bump(true)`,
 *   and on PostgreSQL by the notifications of other stores' (not by the polls: the managers' periodic
 *   recovery is the fallback).
 *
 * The background fibers live in the store's scope and log (never die of) a failed read.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { logFailure, loop } from "./supervised.js"
import { VersionSignal } from "./versionSignal.js"

/** The payload prefix of a stop request's notification (PostgreSQL). */
const stopPrefix = "stop:"
/** The payload prefix of the notification of a job that may be claimed (PostgreSQL). */
const claimPrefix = "claim:"

export interface ChangeSource {
  readonly dialect: "sqlite" | "pg"
  readonly pollInterval: Duration.Duration
  /** PostgreSQL with a `PgClient`: the channel changes are notified on, and how to listen to it (its `listen`). */
  readonly notify: {
    readonly channel: string
    readonly listen: (channel: string) => Stream.Stream<string, SqlError>
  } | undefined
}

export interface ChangeFeed {
  readonly signal: VersionSignal
  /**
   * Bumped when a stop request may have been stored: by this store (`announceStop`) or by another process.
   * Only then: this store's own creates and transitions store no request, and a look for requests after each
   * of them was a statement per write. SQLite: by commits of other connections (`data_version`); PostgreSQL:
   * by notifications of stop requests and by the poll (every change, without notifications).
   */
  readonly stopSignal: VersionSignal
  /**
   * Bumped when a job may have become claimable before any owner went stale: stored without an owner, or
   * its owner retired. By this store (`announceClaimable`) and, on PostgreSQL, by other processes' stores
   * (notified; a lost notification is not made up: managers recover orphans periodically anyway).
   */
  readonly claimSignal: VersionSignal
  /** A write through this store changed `id` (or several jobs: `"*"`): bump, and tell the other processes. */
  readonly announce: (id: string) => Effect.Effect<void>
  /** A write through this store left `id` (or several jobs: `"*"`) claimable: as `announce`, and bumps `claimSignal`. */
  readonly announceClaimable: (id: string) => Effect.Effect<void>
  /** A stop request of `id` was stored through this store: as `announce`, and bumps `stopSignal`. */
  readonly announceStop: (id: string) => Effect.Effect<void>
  /**
   * PostgreSQL with notifications: a scalar subquery that notifies the other processes that `id` (or several
   * jobs: `"*"`) changed, as `announce` does (`claimable`: as `announceClaimable` does), for a write to select
   * with the rows it wrote, sparing `announce`'s own statement; then `bump` instead of `announce`. Unlike
   * `announce`'s, a failed notification (a full notification queue) fails that write. `undefined` otherwise.
   */
  readonly notification: (id: string, claimable: boolean) => Fragment | undefined
  /** A write through this store changed jobs, and its statement selected `notification`: bump this store's signals only. */
  readonly bump: (claimable: boolean) => Effect.Effect<void>
}

/**
 * The `announce` operations and `bump`: bump `signal` and the operation's own signal, then `send` (to other
 * processes).
 */
const announcers = (
  signal: VersionSignal,
  stopSignal: VersionSignal,
  claimSignal: VersionSignal,
  send: (payload: string) => Effect.Effect<void>
): Pick<ChangeFeed, "announce" | "announceStop" | "announceClaimable" | "bump"> => {
  const announceWith = (own: VersionSignal, prefix: string) => (id: string) =>
    Effect.zipRight(
      Effect.sync(() => {
        signal.bump()
        if (own !== signal) own.bump()
      }),
      send(`${prefix}${id}`)
    )
  return {
    announce: announceWith(signal, ""),
    announceStop: announceWith(stopSignal, stopPrefix),
    announceClaimable: announceWith(claimSignal, claimPrefix),
    bump: (claimable) =>
      Effect.sync(() => {
        signal.bump()
        if (claimable) claimSignal.bump()
      })
  }
}

export const make = (
  sql: SqlClient.SqlClient,
  source: ChangeSource
): Effect.Effect<ChangeFeed, never, Scope.Scope> =>
  Effect.gen(function*() {
    const signal = new VersionSignal()
    const claimSignal = new VersionSignal()
    const fork = (step: Effect.Effect<unknown, unknown>, name: string) =>
      Effect.forkScoped(loop(step, { module: "SqlJobRepository", name, spacing: source.pollInterval }))

    if (source.dialect === "sqlite") {
      const dataVersion = Effect.map(
        sql<{ readonly data_version: number }>`PRAGMA data_version`,
        (rows) => rows[0]?.data_version
      )
      const stopSignal = new VersionSignal()
      let seen = yield* Effect.orElseSucceed(dataVersion, () => undefined)
      yield* fork(
        Effect.map(dataVersion, (version) => {
          if (version === seen) return
          seen = version
          signal.bump()
          stopSignal.bump()
        }),
        "looking for changes by other processes"
      )
      return {
        signal,
        stopSignal,
        claimSignal,
        notification: () => undefined,
        ...announcers(signal, stopSignal, claimSignal, () => Effect.void)
      }
    }

    const notify = source.notify
    // With notifications, stop requests are announced as `stop:<id>`: only those (and the poll) wake the look
    // for requests. Without, every change does.
    const stopSignal = notify === undefined ? signal : new VersionSignal()
    if (notify !== undefined) {
      // The listener ends only by failing (a dropped connection): it is started again after `pollInterval`.
      yield* fork(
        Stream.runForEach(notify.listen(notify.channel), (payload) =>
          Effect.sync(() => {
            signal.bump()
            if (payload.startsWith(stopPrefix)) stopSignal.bump()
            else if (payload.startsWith(claimPrefix)) claimSignal.bump()
          })),
        "listening for changes by other processes"
      )
    }
    yield* fork(
      Effect.sync(() => {
        signal.bump()
        if (stopSignal !== signal) stopSignal.bump()
      }),
      "looking for changes by other processes"
    )
    const send = (payload: string) =>
      notify === undefined
        ? Effect.void
        : logFailure("notifying other processes of a change failed; they see it at their next poll")(
          sql`SELECT pg_notify(${notify.channel}, ${payload})`
        )
    return {
      signal,
      stopSignal,
      claimSignal,
      notification: (id, claimable) =>
        notify === undefined
          ? undefined
          : sql`(SELECT pg_notify(${notify.channel}, ${claimable ? `${claimPrefix}${id}` : id}))`,
      ...announcers(signal, stopSignal, claimSignal, send)
    }
  })
