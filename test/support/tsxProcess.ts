/**
 * Runs a TypeScript file of this repository in a child process (never a shell) with its output piped (so
 * not a TTY): `node --import tsx <file>`, one process, so a signal sent to it (SIGINT, SIGKILL) reaches the
 * program itself, not a launcher in front of it. Every process started here is killed by `killAll`.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process"
import type { Readable } from "node:stream"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

export interface TsxProcess {
  readonly child: ChildProcessByStdio<null, Readable, Readable>
  readonly stdout: () => string
  readonly stderr: () => string
  /** The exit code once the process has exited and its output is read. */
  readonly exited: Promise<number | null>
}

const running = new Set<{ readonly process: TsxProcess; readonly detached: boolean }>()

/**
 * Starts `file` (relative to the repository root). `detached` puts it in a process group of its own, so
 * `killAll` also kills what it started.
 */
export const startTsx = (
  file: string,
  args: ReadonlyArray<string> = [],
  options: { readonly detached?: boolean } = {}
): TsxProcess => {
  const detached = options.detached ?? false
  const child = spawn(process.execPath, ["--import", "tsx", file, ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    detached
  })
  let stdout = ""
  let stderr = ""
  child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text))
  child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text))
  const entry = {
    detached,
    process: {
      child,
      stdout: () => stdout,
      stderr: () => stderr,
      exited: new Promise<number | null>((resolve, reject) => {
        child.on("error", reject)
        child.on("close", (code) => {
          running.delete(entry)
          resolve(code)
        })
      })
    }
  }
  running.add(entry)
  return entry.process
}

/** The exit code; fails if the process has not exited within `timeoutMillis`. */
export const exitCode = async (started: TsxProcess, timeoutMillis = 10_000): Promise<number | null> => {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no exit within ${timeoutMillis} ms:\n${started.stdout()}${started.stderr()}`)),
      timeoutMillis
    )
  })
  return Promise.race([started.exited, timedOut]).finally(() => clearTimeout(timer))
}

/** Runs `file` to its end: its exit code and output. */
export const runTsx = async (file: string, args: ReadonlyArray<string> = [], timeoutMillis = 20_000) => {
  const started = startTsx(file, args)
  const code = await exitCode(started, timeoutMillis)
  return { code, stdout: started.stdout(), stderr: started.stderr() }
}

/** Kills every process started here that is still running (its whole group when detached). */
export const killAll = (): void => {
  for (const { detached, process: started } of running) {
    if (detached) process.kill(-started.child.pid!, "SIGKILL")
    else started.child.kill("SIGKILL")
  }
  running.clear()
}
