/**
 * A throwaway PostgreSQL cluster that a test can stop and start again: `initdb` into a temporary directory,
 * the server on a free port of 127.0.0.1 with its socket in that directory, trust authentication, no fsync.
 * PostgreSQL refuses to run as root, so when the tests run as root its programs run as the `postgres` user
 * (`runuser -u postgres --`). Programs are run with argument arrays, never through a shell of ours.
 *
 * `pgClusterUnavailable()` says why a cluster cannot be made on this machine (`undefined` when it can), so a
 * test can skip with that note.
 */
import { execFile } from "node:child_process"
import { accessSync, chownSync, constants, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)

/** Where the PostgreSQL programs are (`EFFECT_JOBS_TEST_PG_BIN`, or PostgreSQL 15 as Debian installs it). */
const binDir = process.env["EFFECT_JOBS_TEST_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"
const isRoot = process.getuid?.() === 0

export interface PgCluster {
  /** A connection URL (user `postgres`, database `postgres`). */
  readonly url: string
  readonly port: number
  /** Starts the server and waits until it accepts connections. */
  readonly start: () => Promise<void>
  /** Stops the server with a fast shutdown (connections are closed, nothing is lost) and waits for it. */
  readonly stop: () => Promise<void>
  /** Stops the server at once if it runs, and removes the cluster's files. */
  readonly remove: () => Promise<void>
}

/** Why no cluster can be made here, or `undefined`. */
export const pgClusterUnavailable = (): string | undefined => {
  for (const program of ["initdb", "pg_ctl"]) {
    try {
      accessSync(join(binDir, program), constants.X_OK)
    } catch {
      return `no ${program} in ${binDir} (set EFFECT_JOBS_TEST_PG_BIN)`
    }
  }
  if (isRoot) {
    try {
      accessSync("/usr/sbin/runuser", constants.X_OK)
    } catch {
      return "running as root, and no runuser to run PostgreSQL as the postgres user"
    }
  }
  return undefined
}

/** Runs a PostgreSQL program (as the `postgres` user when we are root); fails with its output. */
const pg = async (program: string, args: ReadonlyArray<string>): Promise<void> => {
  const file = join(binDir, program)
  const [command, argv] = isRoot ? ["/usr/sbin/runuser", ["-u", "postgres", "--", file, ...args]] : [file, [...args]]
  try {
    await run(command, argv, { timeout: 60_000 })
  } catch (error) {
    const { stderr = "", stdout = "" } = error as { stderr?: string; stdout?: string }
    throw new Error(`${program} ${args.join(" ")} failed: ${String(error)}\n${stdout}${stderr}`)
  }
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port")))
    })
  })

/** The uid and gid of the `postgres` user. */
const postgresUser = (): { readonly uid: number; readonly gid: number } => {
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((entry) => entry.startsWith("postgres:"))
  const [, , uid, gid] = line?.split(":") ?? []
  if (uid === undefined || gid === undefined) throw new Error("no postgres user in /etc/passwd")
  return { uid: Number(uid), gid: Number(gid) }
}

/** Makes and starts a cluster; `remove` it when done (in a finalizer). */
export const startPgCluster = async (): Promise<PgCluster> => {
  const dir = mkdtempSync(join(tmpdir(), "effect-jobs-pg-"))
  if (isRoot) {
    const { gid, uid } = postgresUser()
    chownSync(dir, uid, gid)
  }
  const data = join(dir, "data")
  const port = await freePort()
  const start = () =>
    pg("pg_ctl", [
      "-D",
      data,
      "-l",
      join(dir, "server.log"),
      "-w",
      "-t",
      "30",
      // pg_ctl hands these to the server through a shell: they are ours (a number and a temporary path).
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`,
      "start"
    ])
  let removed = false
  const cluster: PgCluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop: () => pg("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]),
    remove: async () => {
      if (removed) return
      removed = true
      await pg("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    }
  }
  try {
    await pg("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"])
    await start()
  } catch (error) {
    await cluster.remove()
    throw error
  }
  return cluster
}
