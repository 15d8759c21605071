/**
 * The PostgreSQL sessions of the store and the cluster end a transaction left idle (a process stopped inside
 * it) after a timeout, so its row locks cannot block the processes taking its jobs over.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { defaultIdleTransactionTimeout, withIdleTransactionTimeout } from "../src/internal/pgSession.js"

const pgUrl = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"

describe("PostgreSQL sessions", () => {
  it("a URL without options gets the timeout; one with its own options, or not a URL, is kept as it is", () => {
    const url = withIdleTransactionTimeout("postgres://u@h:5432/db?sslmode=disable", Duration.seconds(5))
    expect(new URL(url).searchParams.get("options")).toBe("-c idle_in_transaction_session_timeout=5000")
    expect(new URL(url).searchParams.get("sslmode")).toBe("disable")
    const own = "postgres://u@h/db?options=-c%20statement_timeout%3D1000"
    expect(withIdleTransactionTimeout(own, Duration.seconds(5))).toBe(own)
    expect(withIdleTransactionTimeout("not a url", Duration.seconds(5))).toBe("not a url")
  })

  it.live("a session opened with such a URL has the timeout set (the store opens its sessions so)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [setting] = yield* sql<{ idle_in_transaction_session_timeout: string }>`SHOW idle_in_transaction_session_timeout`
      expect(setting!.idle_in_transaction_session_timeout).toBe("5s")
    }).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(withIdleTransactionTimeout(pgUrl, defaultIdleTransactionTimeout)) }))
    ))
})
