/**
 * A job is stored once `submitJob` resolved: a process killed with SIGKILL right after its submits resolved
 * (and printed their ids) leaves every one of those jobs in the SQLite file, with its spec, in a store that
 * passes an integrity check. With several callers at once the submits are grouped into shared transactions,
 * so the kill also lands while groups are being written.
 */
import Database from "better-sqlite3"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { killAll, startTsx } from "./support/tsxProcess.js"

const dir = mkdtempSync(join(tmpdir(), "effect-jobs-submit-crash-"))
afterAll(() => {
  killAll()
  rmSync(dir, { recursive: true, force: true })
})

/** The complete lines printed so far (a line cut by the kill is not an acknowledgement). */
const printedIds = (stdout: string): Array<string> => stdout.split("\n").slice(0, -1)

describe("SIGKILL right after submitJob resolved", () => {
  it.each([[1, 1], [32, 300]] as const)(
    "%i caller(s), killed once %i ids were printed: every printed job is stored",
    async (callers, printed) => {
      const db = join(dir, `crash-${callers}.db`)
      const submitter = startTsx("test/fixtures/submitter.ts", [db, String(callers)])
      let seen = ""
      await new Promise<void>((resolve, reject) => {
        submitter.child.stdout.on("data", (text: string) => {
          seen += text
          if (printedIds(seen).length >= printed && submitter.child.kill("SIGKILL")) resolve()
        })
        submitter.exited.then(() => reject(new Error(`the submitter exited first: ${submitter.stderr()}`)), reject)
      })
      await submitter.exited
      const acknowledged = printedIds(submitter.stdout())
      expect(acknowledged.length).toBeGreaterThanOrEqual(printed)

      const raw = new Database(db, { readonly: true })
      try {
        expect(raw.pragma("integrity_check", { simple: true })).toBe("ok")
        const ids = (table: string) =>
          new Set((raw.prepare(`SELECT id FROM ${table}`).all() as Array<{ id: string }>).map((row) => row.id))
        const jobs = ids("effect_jobs")
        const specs = ids("effect_jobs_specs")
        expect(acknowledged.filter((id) => !jobs.has(id))).toEqual([])
        expect(acknowledged.filter((id) => !specs.has(id))).toEqual([])
      } finally {
        raw.close()
      }
    },
    60_000
  )
})
