/**
 * Listing stays fast however many jobs a store holds: with 100,000 jobs, every documented filter of
 * `list` (all jobs or by state, one state or several, newest first, from a cursor) is read from an index,
 * never by scanning or sorting the table. Checked on the query plan of the statement the store really runs
 * (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL), and on the pages it returns.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as Statement from "@effect/sql/Statement"
import * as StatementModule from "@effect/sql/Statement"
import * as PgClient from "@effect/sql-pg/PgClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { encodeCursor } from "../src/internal/cursor.js"
import type { JobId, JobState, ListQuery } from "../src/Job.js"
import { JobRepository } from "../src/JobRepository.js"
import * as SqlJobRepository from "../src/SqlJobRepository.js"

const pgUrl = process.env["EFFECT_JOBS_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"
const jobs = 100_000
const base = 1_700_000_000_000

/** Job `i` (1..100,000): created at `base + i`, in a state that cycles through four (1 in 10 pending). */
const stateOf = (i: number): JobState =>
  i % 10 === 0 ? "pending" : i % 10 === 1 ? "running" : i % 10 === 2 ? "failed" : "completed"
const idOf = (i: number) => `job_${String(i).padStart(8, "0")}` as JobId
const stateSql = `CASE i % 10 WHEN 0 THEN 'pending' WHEN 1 THEN 'running' WHEN 2 THEN 'failed' ELSE 'completed' END`

/** The ids a page should hold: the jobs in `states`, newest first, older than `before` (an `i`). */
const expectedIds = (states: ReadonlyArray<JobState> | undefined, before: number, limit: number) => {
  const ids: Array<string> = []
  for (let i = before - 1; i >= 1 && ids.length < limit; i--) {
    if (states === undefined || states.includes(stateOf(i))) ids.push(idOf(i))
  }
  return ids
}

interface Case {
  readonly title: string
  readonly states: ReadonlyArray<JobState> | undefined
  /** Page after job `i` (a deep page), or the first page. */
  readonly after: number | undefined
}

const cases: ReadonlyArray<Case> = [
  { title: "all jobs, first page", states: undefined, after: undefined },
  { title: "all jobs, a deep page", states: undefined, after: 50_001 },
  { title: "one state, first page", states: ["pending"], after: undefined },
  { title: "one state, a deep page", states: ["failed"], after: 30_003 },
  { title: "several states, first page", states: ["pending", "failed"], after: undefined },
  { title: "several states, a deep page", states: ["running", "pending", "failed"], after: 70_007 }
]

const queryOf = (c: Case): ListQuery => ({
  ...(c.states === undefined ? {} : { state: c.states.length === 1 ? c.states[0]! : c.states }),
  ...(c.after === undefined ? {} : { cursor: encodeCursor({ createdAt: base + c.after, id: idOf(c.after) }) })
})

/** Runs `list` and returns its page with the one statement it ran, compiled as the database got it. */
const listCapturing = (query: ListQuery) =>
  Effect.gen(function*() {
    const repo = yield* JobRepository
    const statements: Array<readonly [string, ReadonlyArray<unknown>]> = []
    const capture: Statement.Statement.Transformer = (statement) =>
      Effect.sync(() => {
        statements.push(statement.compile())
        return statement
      })
    const page = yield* StatementModule.withTransformer(repo.list(query), capture)
    expect(statements).toHaveLength(1)
    return { page, statement: statements[0]! }
  })

const checkPage = (c: Case, ids: ReadonlyArray<string>) =>
  expect(ids).toEqual(expectedIds(c.states, c.after ?? jobs + 1, 50))

describe("listing 100,000 jobs reads an index for every filter", () => {
  describe("SQLite (EXPLAIN QUERY PLAN)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-jobs-list-index-"))
    const filename = path.join(dir, "jobs.db")
    const store = SqlJobRepository.layerSqlite({ filename })
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
    let filled = false
    const fill = () => {
      if (filled) return
      const raw = new Database(filename)
      raw.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${jobs})
        INSERT INTO effect_jobs (id, state, total_chunks, created_at, updated_at)
        SELECT printf('job_%08d', i), ${stateSql}, 1, ${base} + i, ${base} + i FROM n`)
      raw.close()
      filled = true
    }

    it.live.each(cases)("$title", (c) =>
      Effect.gen(function*() {
        // The store is created by the layer (its tables and indexes), then filled.
        yield* JobRepository
        fill()
        const { page, statement: [text, params] } = yield* listCapturing(queryOf(c))
        checkPage(c, page.jobs.map((job) => job.id))
        const raw = new Database(filename, { readonly: true })
        const plan = raw.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params) as Array<
          { readonly id: number; readonly parent: number; readonly detail: string }
        >
        raw.close()
        const reads = plan.filter((row) => /\beffect_jobs\b/.test(row.detail))
        expect(reads.length).toBe(c.states === undefined ? 1 : c.states.length)
        for (const row of reads) expect(row.detail).toMatch(/USING (COVERING )?INDEX effect_jobs_(state_)?newest\b/)
        // No sort of the table's rows: a sort may only order pages already read (at most `limit` rows each,
        // when several states are merged), never sit beside a read of the table.
        const readScopes = new Set(reads.map((row) => row.parent))
        const sorts = plan.filter((row) => row.detail.includes("TEMP B-TREE"))
        expect(sorts.filter((sort) => readScopes.has(sort.parent))).toEqual([])
        if (c.states === undefined || c.states.length === 1) expect(sorts).toEqual([])
      }).pipe(Effect.provide(store)), 60_000)
  })

  describe("PostgreSQL (EXPLAIN)", () => {
    const schema = `ej_list_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`
    const pg = PgClient.layer({ url: Redacted.make(pgUrl) })
    const store = SqlJobRepository.layerPg({ url: pgUrl, schema })
    let filled = false
    const fill = Effect.gen(function*() {
      if (filled) return
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`INSERT INTO ${schema}.effect_jobs (id, state, total_chunks, created_at, updated_at)
        SELECT 'job_' || lpad(i::text, 8, '0'), ${stateSql}, 1, ${base} + i, ${base} + i
        FROM generate_series(1, ${jobs}) AS i`)
      yield* sql.unsafe(`ANALYZE ${schema}.effect_jobs`)
      filled = true
    })

    interface PlanNode {
      readonly "Node Type": string
      readonly "Relation Name"?: string
      readonly "Index Name"?: string
      readonly Plans?: ReadonlyArray<PlanNode>
    }
    /** Every read of the jobs table is an index scan with no sort of its rows above it (below a limit). */
    const checkPlan = (node: PlanNode, sortedAbove: boolean, reads: Array<string>): void => {
      if (node["Relation Name"] === "effect_jobs") {
        expect(node["Node Type"]).toMatch(/^Index (Only )?Scan$/)
        expect(node["Index Name"]).toMatch(/^effect_jobs_(state_)?newest$/)
        expect(sortedAbove).toBe(false)
        reads.push(node["Index Name"]!)
      }
      const sorted = node["Node Type"] === "Sort" ? true : node["Node Type"] === "Limit" ? false : sortedAbove
      for (const child of node.Plans ?? []) checkPlan(child, sorted, reads)
    }

    it.live.each(cases)("$title", (c) =>
      Effect.gen(function*() {
        yield* JobRepository
        yield* fill
        const { page, statement: [text, params] } = yield* listCapturing(queryOf(c))
        checkPage(c, page.jobs.map((job) => job.id))
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql.unsafe<{ readonly "QUERY PLAN": ReadonlyArray<{ readonly Plan: PlanNode }> }>(
          `EXPLAIN (FORMAT JSON) ${text}`,
          params as Array<never>
        )
        const reads: Array<string> = []
        checkPlan(rows[0]!["QUERY PLAN"][0]!.Plan, false, reads)
        expect(reads.length).toBe(c.states === undefined ? 1 : c.states.length)
      }).pipe(Effect.provide(Layer.merge(store, pg))), 60_000)

    afterAll(() =>
      Effect.runPromise(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).pipe(
          Effect.provide(pg),
          Effect.ignore
        )
      )
    )
  })
})
