#!/usr/bin/env node
/**
 * `effect-jobs`: list, show, watch, cancel, pause, resume, retry, delete and prune the jobs of a store, and
 * serve its dashboard, whichever process runs the jobs.
 *
 *     effect-jobs list [--state running] [--limit 20] [--db jobs.db | --pg URL] [--json]
 *     effect-jobs show|watch|cancel|pause|resume|retry|delete <job>
 *     effect-jobs prune --older-than 7d [--state completed]
 *     effect-jobs serve [--host 127.0.0.1] [--port 8080] [--token T]
 *     effect-jobs runner --pg URL --worker ./worker.mjs [--concurrency 4]     (cluster mode)
 *     effect-jobs submit --pg URL --spec job.json [--wait] [--json]          (cluster mode)
 *
 * `<job>` is an id, a unique prefix of one (6 characters or more) or a job name. Exit codes: 0 done; 1 an
 * unknown job, a refused operation or a store error (one line on stderr, `effect-jobs: <message>`); 2 a
 * usage error (`effect-jobs: <option>: <problem>`); 130 interrupted (Ctrl+C; `serve` stops with 0). Nothing
 * is redrawn, and no terminal escape is written, unless stdout is a terminal.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { run } from "./internal/cli/main.js"

run(process.argv.slice(2)).pipe(
  Effect.flatMap((code) => Effect.sync(() => void (code === 0 ? undefined : (process.exitCode = code)))),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // Ctrl+C: 130, unless the command set its own code (serve stops cleanly with 0).
    // The command is done and its store closed: exit once stdout and stderr are flushed, even when a handle
    // outlived the store (a PostgreSQL LISTEN connection still being opened when a quick command closed it
    // stays open, and would keep the process alive).
    teardown: (exit, onExit) => {
      const code = process.exitCode !== undefined
        ? Number(process.exitCode)
        : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
        ? 130
        : 0
      process.stdout.write("", () => process.stderr.write("", () => process.exit(code)))
      onExit(code)
    }
  })
)
