import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { existsSync, realpathSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { ChunkContext } from "../src/ChunkWorker.js"
import type { Chunk, JobId } from "../src/Job.js"
import * as JobExecutor from "../src/JobExecutor.js"
import type * as JobError from "../src/JobError.js"
import * as ProcessWorker from "../src/ProcessWorker.js"
import { eventually, isGone } from "./util.js"

const node = process.execPath
const jobId = "job_process" as JobId

const contextOf = (attempt = 1): ChunkContext => ({
  jobId,
  attempt,
  signal: new AbortController().signal,
  reportProgress: () => {}
})
const chunk = (id: number, payload: Chunk["payload"] = null): Chunk => ({ id, payload })

/** A worker running `node -e script ...args`. */
const nodeWorker = (
  script: string,
  options: Omit<ProcessWorker.Options, "command"> & { readonly args?: (chunk: Chunk) => ReadonlyArray<string> } = {}
) => {
  const { args, ...rest } = options
  return Effect.provide(
    ProcessWorker.make({ ...rest, command: (chunk) => ({ command: node, args: ["-e", script, ...(args?.(chunk) ?? [])] }) }),
    NodeContext.layer
  )
}

/**
 * A worker running `command`; the pids its processes print on stdout (lines of digits) are delivered
 * through the returned deferred once there are `count`.
 */
const pidReportingWorker = (
  command: ProcessWorker.ProcessCommand,
  options: Omit<ProcessWorker.Options, "command" | "onOutput">,
  count = 1
) =>
  Effect.gen(function*() {
    const pids = yield* Deferred.make<ReadonlyArray<number>>()
    const seen: Array<number> = []
    const worker = yield* Effect.provide(
      ProcessWorker.make({
        ...options,
        command: () => command,
        onOutput: ({ line, stream }) =>
          Effect.suspend(() => {
            if (stream === "stdout" && /^\d+$/.test(line)) seen.push(Number(line))
            return seen.length === count ? Deferred.succeed(pids, [...seen]) : Effect.void
          })
      }),
      NodeContext.layer
    )
    return { worker, pids }
  })

/** `node -e script`. */
const nodeScript = (script: string): ProcessWorker.ProcessCommand => ({ command: node, args: ["-e", script] })

/** `sh -c script`: the tests' own fixed scripts, for what only a shell does in one line (`&`, `trap`). */
const shScript = (script: string, ...args: ReadonlyArray<string>): ProcessWorker.ProcessCommand => ({
  command: "sh",
  args: ["-c", script, "sh", ...args]
})

describe("ProcessWorker", () => {
  it.live("succeeds with the output tails when the process exits with code 0", () =>
    Effect.gen(function*() {
      const worker = yield* nodeWorker(
        "process.stdout.write('frames ' + process.argv[1] + '-' + process.argv[2]); console.error('encoder ready')",
        { args: (chunk) => [String((chunk.payload as { start: number }).start), String((chunk.payload as { end: number }).end)] }
      )
      const output = yield* worker.run(chunk(0, { start: 0, end: 9 }), contextOf())
      assert.deepStrictEqual(output, {
        stdout: "frames 0-9",
        stderr: "encoder ready\n",
        stdoutTruncated: false,
        stderrTruncated: false
      })
    }))

  it.live("closes the process's stdin and gives it the configured environment and working directory", () =>
    Effect.gen(function*() {
      const cwd = realpathSync(tmpdir())
      const worker = yield* Effect.provide(
        ProcessWorker.make({
          command: () => ({
            command: node,
            args: [
              "-e",
              "let n = 0; process.stdin.on('data', (d) => { n += d.length }); process.stdin.on('end', () => " +
              "process.stdout.write([n, process.env.FRAME_RATE, process.env.CODEC, process.cwd()].join(' ')))"
            ],
            env: { CODEC: "av1" }
          }),
          env: { FRAME_RATE: "24", CODEC: "h264" },
          cwd
        }),
        NodeContext.layer
      )
      const output = (yield* worker.run(chunk(0), contextOf())) as ProcessWorker.ProcessOutput
      assert.strictEqual(output.stdout, `0 24 av1 ${cwd}`)
    }))

  it.live("a non-zero exit code fails the attempt with ProcessFailed, its exit code and the stderr tail", () =>
    Effect.gen(function*() {
      const worker = yield* nodeWorker("console.error('first line'); console.error('codec not found'); process.exit(3)")
      const error = yield* Effect.flip(worker.run(chunk(0), contextOf()))
      assert.instanceOf(error, ProcessWorker.ProcessFailed)
      const failure = error as ProcessWorker.ProcessFailed
      assert.strictEqual(failure.reason, "ExitCode")
      assert.strictEqual(failure.exitCode, 3)
      assert.strictEqual(failure.stderrTail, "first line\ncodec not found\n")
      assert.include(failure.message, "exited with code 3: codec not found")
    }))

  it.live("keeps only the tail of the output and streams every line to onOutput, in order", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const worker = yield* nodeWorker(
        "for (let i = 1; i <= 2000; i++) console.log('line ' + i); process.stderr.write('progress 1\\rprogress 2\\r\\nlast')",
        {
          maxOutputBytes: 100,
          onOutput: ({ line, stream }) => Effect.sync(() => lines.push(`${stream}:${line}`))
        }
      )
      const output = (yield* worker.run(chunk(0), contextOf())) as ProcessWorker.ProcessOutput
      assert.strictEqual(Buffer.byteLength(output.stdout), 100)
      assert.isTrue(output.stdout.endsWith("line 1999\nline 2000\n"))
      assert.isTrue(output.stdoutTruncated)
      assert.strictEqual(output.stderr, "progress 1\rprogress 2\r\nlast")
      assert.isFalse(output.stderrTruncated)
      const stdoutLines = lines.filter((line) => line.startsWith("stdout:"))
      assert.strictEqual(stdoutLines.length, 2000)
      assert.deepStrictEqual(stdoutLines.slice(0, 2), ["stdout:line 1", "stdout:line 2"])
      assert.strictEqual(stdoutLines[1999], "stdout:line 2000")
      assert.deepStrictEqual(lines.filter((line) => line.startsWith("stderr:")), [
        "stderr:progress 1",
        "stderr:progress 2",
        "stderr:last"
      ])
    }))

  it.live("interrupting the attempt kills the process with SIGTERM, well within the grace period", () =>
    Effect.gen(function*() {
      const { pids, worker } = yield* pidReportingWorker(
        nodeScript("console.log(process.pid); setInterval(() => {}, 1000)"),
        { killGracePeriod: 5_000 }
      )
      const fiber = yield* Effect.fork(worker.run(chunk(0), contextOf()))
      const [childPid] = yield* Deferred.await(pids)
      assert.isFalse(isGone(childPid!))
      const started = Date.now()
      const exit = yield* Fiber.interrupt(fiber)
      const elapsed = Date.now() - started
      assert.isTrue(Exit.isInterrupted(exit))
      assert.isTrue(isGone(childPid!), "the process is gone when the interruption completes")
      assert.isBelow(elapsed, 1_000)
    }))

  it.live("a process that ignores SIGTERM gets SIGKILL once the grace period is over", () =>
    Effect.gen(function*() {
      const gracePeriod = 300
      const { pids, worker } = yield* pidReportingWorker(
        nodeScript("process.on('SIGTERM', () => {}); console.log(process.pid); setInterval(() => {}, 1000)"),
        { killGracePeriod: gracePeriod }
      )
      const fiber = yield* Effect.fork(worker.run(chunk(0), contextOf()))
      const [childPid] = yield* Deferred.await(pids)
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      const elapsed = Date.now() - started
      assert.isTrue(isGone(childPid!))
      assert.isAtLeast(elapsed, gracePeriod - 20, "SIGTERM alone did not stop it")
      assert.isBelow(elapsed, gracePeriod + 1_000)
    }))

  it.live("a completed attempt leaves no process of its group behind, even one whose parent exited first", () =>
    Effect.gen(function*() {
      // The first sleep keeps stdout open (the attempt must not wait for it), the second does not.
      const worker = yield* Effect.provide(
        ProcessWorker.make({ command: () => shScript("sleep 100 & echo $!; sleep 100 >/dev/null 2>&1 & echo $!; exit 0") }),
        NodeContext.layer
      )
      const output = (yield* worker.run(chunk(0), contextOf())) as ProcessWorker.ProcessOutput
      const sleeps = output.stdout.trim().split("\n").map(Number)
      assert.strictEqual(sleeps.length, 2)
      for (const pid of sleeps) assert.isTrue(Number.isInteger(pid) && pid > 0)
      assert.deepStrictEqual(sleeps.filter((pid) => !isGone(pid)), [], "every sleep is gone when the attempt completes")
    }))

  it.live("a descendant that ignores SIGTERM gets SIGKILL after the grace period, once its leader has exited", () =>
    Effect.gen(function*() {
      const gracePeriod = 300
      const worker = yield* Effect.provide(
        ProcessWorker.make({
          // The sleep inherits the ignored SIGTERM; the leader exits at once.
          command: () => shScript("trap '' TERM; sleep 100 >/dev/null & echo $!; exit 0"),
          killGracePeriod: gracePeriod
        }),
        NodeContext.layer
      )
      const started = Date.now()
      const output = (yield* worker.run(chunk(0), contextOf())) as ProcessWorker.ProcessOutput
      const elapsed = Date.now() - started
      const sleep = Number(output.stdout.trim())
      assert.isTrue(Number.isInteger(sleep) && sleep > 0)
      assert.isTrue(isGone(sleep), "the sleep is gone when the attempt completes")
      assert.isAtLeast(elapsed, gracePeriod - 20, "SIGTERM alone did not stop it")
    }))

  it.live("cancelling after the leader exited still waits for the rest of its group to be killed", () =>
    Effect.gen(function*() {
      // The leader prints the sleep's pid and its own, and exits; the sleep ignores SIGTERM, so the attempt
      // is still ending the group (waiting out the grace period) when it is cancelled.
      const { pids, worker } = yield* pidReportingWorker(
        shScript("trap '' TERM; sleep 100 & echo $!; echo $$; exit 0"),
        { killGracePeriod: 2_000 },
        2
      )
      const fiber = yield* Effect.fork(worker.run(chunk(0), contextOf()))
      const [sleep, leader] = yield* Deferred.await(pids)
      yield* eventually(() => isGone(leader!))
      assert.isFalse(isGone(sleep!))
      yield* Fiber.interrupt(fiber)
      assert.isTrue(isGone(sleep!), "the sleep is gone when the interruption completes")
    }))

  it.live("cancelling keeps the attempt until the processes that ignore SIGTERM got SIGKILL", () =>
    Effect.gen(function*() {
      const gracePeriod = 300
      // The leader waits (and dies of SIGTERM); the subshell and its sleep ignore SIGTERM.
      const { pids, worker } = yield* pidReportingWorker(
        shScript("(trap '' TERM; sleep 100 & echo $!; wait) & echo $!; wait"),
        { killGracePeriod: gracePeriod },
        2
      )
      const fiber = yield* Effect.fork(worker.run(chunk(0), contextOf()))
      const descendants = yield* Deferred.await(pids)
      assert.deepStrictEqual(descendants.filter(isGone), [])
      const started = Date.now()
      const exit = yield* Fiber.interrupt(fiber)
      const elapsed = Date.now() - started
      assert.isTrue(Exit.isInterrupted(exit))
      assert.deepStrictEqual(descendants.filter((pid) => !isGone(pid)), [], "gone when the interruption completes")
      assert.isAtLeast(elapsed, gracePeriod - 20, "SIGTERM alone did not stop them")
    }))

  it.live("a process that left the group and holds the output open fails the attempt instead of holding it", () => {
    const marker = join(tmpdir(), `effect-jobs-setsid-${process.pid}-${Date.now()}`)
    let daemon: number | undefined
    return Effect.gen(function*() {
      // The daemon starts a new session (out of reach of the group's signals), keeping stdout; the leader
      // exits once the daemon has left the group.
      const { pids, worker } = yield* pidReportingWorker(
        shScript(
          "setsid sh -c 'echo $$; : > \"$1\"; exec sleep 100' daemon \"$1\" & " +
            "while [ ! -e \"$1\" ]; do sleep 0.01; done",
          marker
        ),
        { killGracePeriod: 200 }
      )
      const error = yield* Effect.flip(worker.run(chunk(0), contextOf()))
      daemon = (yield* Deferred.await(pids))[0]
      assert.instanceOf(error, ProcessWorker.ProcessFailed)
      assert.strictEqual((error as ProcessWorker.ProcessFailed).reason, "Output")
      assert.include((error as ProcessWorker.ProcessFailed).detail, "after the process group ended")
    }).pipe(Effect.ensuring(Effect.sync(() => {
      if (daemon !== undefined && !isGone(daemon)) process.kill(daemon, "SIGKILL")
      rmSync(marker, { force: true })
    })))
  })

  it.live("arguments with shell metacharacters reach the program verbatim, and no shell runs them", () =>
    Effect.gen(function*() {
      const marker = join(tmpdir(), `effect-jobs-shell-${process.pid}-${Date.now()}`)
      const args = [`$(touch ${marker}-a)`, `; touch ${marker}-b`, `\`touch ${marker}-c\``, `| touch ${marker}-d`, "*", "&&", "'\""]
      const worker = yield* nodeWorker("process.stdout.write(JSON.stringify(process.argv.slice(1)))", {
        args: () => args
      })
      const output = (yield* worker.run(chunk(0), contextOf())) as ProcessWorker.ProcessOutput
      assert.deepStrictEqual(JSON.parse(output.stdout), args)
      for (const suffix of ["a", "b", "c", "d"]) assert.isFalse(existsSync(`${marker}-${suffix}`))
    }))

  it.live("a program that does not exist fails the chunk at once (NonRetryable Spawn)", () =>
    Effect.gen(function*() {
      const worker = yield* Effect.provide(
        ProcessWorker.make({ command: () => ({ command: "effect-jobs-no-such-program" }) }),
        NodeContext.layer
      )
      const error = yield* Effect.flip(worker.run(chunk(0), contextOf()))
      assert.strictEqual((error as JobError.NonRetryable)._tag, "NonRetryable")
      const cause = (error as JobError.NonRetryable).cause as ProcessWorker.ProcessFailed
      assert.strictEqual(cause.reason, "Spawn")
    }))

  it.live("a command function that throws or returns arguments with NUL fails with NonRetryable InvalidCommand", () =>
    Effect.gen(function*() {
      const throwing = yield* Effect.provide(
        ProcessWorker.make({
          command: () => {
            throw new Error("no frames")
          }
        }),
        NodeContext.layer
      )
      const thrown = (yield* Effect.flip(throwing.run(chunk(0), contextOf()))) as JobError.NonRetryable
      assert.strictEqual(thrown._tag, "NonRetryable")
      assert.include((thrown.cause as ProcessWorker.ProcessFailed).message, "no frames")
      const nul = yield* Effect.provide(
        ProcessWorker.make({ command: () => ({ command: node, args: ["a\u0000b"] }) }),
        NodeContext.layer
      )
      const invalid = (yield* Effect.flip(nul.run(chunk(0), contextOf()))) as JobError.NonRetryable
      assert.strictEqual((invalid.cause as ProcessWorker.ProcessFailed).reason, "InvalidCommand")
      assert.include((invalid.cause as ProcessWorker.ProcessFailed).detail, "args[0]")
    }))

  it.live("invalid options fail with InvalidOption naming the option", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(
        ProcessWorker.make({ command: () => ({ command: node }), maxOutputBytes: 0 }),
        NodeContext.layer
      ))
      assert.strictEqual(error._tag, "InvalidOption")
      assert.deepStrictEqual(error.path, ["maxOutputBytes"])
    }))

  it.live("runs a job's chunks through JobExecutor; cancelling the job kills every running process", () =>
    Effect.gen(function*() {
      const pids: Array<number> = []
      const running = yield* Deferred.make<void>()
      const workerLayer = ProcessWorker.layer({
        command: (chunk) => ({
          command: node,
          args: ["-e", chunk.id < 2 ? "console.log(process.pid); setInterval(() => {}, 1000)" : "", String(chunk.id)]
        }),
        killGracePeriod: 5_000,
        onOutput: ({ line }) =>
          Effect.suspend(() => {
            pids.push(Number(line))
            return pids.length === 2 ? Deferred.succeed(running, undefined) : Effect.void
          })
      }).pipe(Layer.provide(NodeContext.layer))
      const spec = { chunks: [chunk(0), chunk(1), chunk(2), chunk(3)] }
      const fiber = yield* Effect.fork(
        Effect.provide(JobExecutor.execute(spec, { jobId, concurrency: 2 }), workerLayer)
      )
      yield* Deferred.await(running)
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      assert.strictEqual(pids.length, 2)
      for (const pid of pids) assert.isTrue(isGone(pid))

      const summary = yield* Effect.provide(
        JobExecutor.execute({ chunks: [chunk(2), chunk(3)] }, { jobId, concurrency: 2 }),
        workerLayer
      )
      assert.deepStrictEqual(summary, { totalChunks: 2, completedChunks: 2, failedChunks: 0, skippedChunks: 0 })
    }))
})
