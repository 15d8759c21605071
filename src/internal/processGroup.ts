/**
 * Signals to a POSIX process group, and whether it still has a live process. `ProcessWorker` uses them on
 * the group its attempt's process leads: the Node `CommandExecutor` spawns every process detached, so in a
 * new session and process group whose id is the process's pid.
 *
 * A process id is not given to a new process while a group of that id still has a process (a zombie
 * included), so signalling a group that answers cannot reach an unrelated one. Once the group is empty its
 * id may be reused, so callers stop signalling it as soon as they have seen it gone. (The one signal sent
 * after the leader was reaped, to learn whether its group is empty, could only reach another group if the
 * kernel had handed out every other pid since: it allocates them in increasing order up to `pid_max`.)
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs"

/**
 * Sends `signal` (0 only checks) to every process of the group `pgid`. Returns false when no process of
 * the group could get it: the group is empty (ESRCH) or holds only processes of another user (EPERM).
 */
export const signal = (pgid: number, signal: NodeJS.Signals | 0): boolean => {
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}

/**
 * Whether `/proc` shows this process's own pid namespace (it does not when it is absent, as on macOS, or
 * mounted from another namespace): only then may its pids be compared with ours.
 */
let procUsable: boolean | undefined
const procIsOurs = (): boolean => {
  if (procUsable === undefined) {
    try {
      procUsable = readlinkSync("/proc/self") === String(process.pid)
    } catch {
      procUsable = false
    }
  }
  return procUsable
}

/** Whether `/proc/<pid>` is a process of the group `pgid` that has not exited (neither a zombie nor dead). */
const isLiveMember = (pid: string, pgid: number): boolean => {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  } catch {
    return false // it is gone
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so count from the last ")".
  const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(pgrp) === pgid && state !== "Z" && state !== "X"
}

/** The pids `/proc` lists as live processes of the group `pgid`. */
const liveMembers = (pgid: number): ReadonlyArray<string> =>
  readdirSync("/proc").filter((entry) => /^\d+$/.test(entry) && isLiveMember(entry, pgid))

/**
 * A check of whether a process of the group `pgid` is still alive: one that has exited is not, even before
 * it has been reaped.
 *
 * A process whose parent exits first is handed to PID 1 (or to a subreaper), which is supposed to reap it.
 * Until then it is a zombie: it has exited and closed its files, yet it still belongs to its group and
 * `kill(-pgid, 0)` still answers for it. On a normal Linux host (systemd, tini, a container's `--init`)
 * that lasts a moment; but a container whose PID 1 never reaps (some sandboxes run such an init) keeps these
 * zombies forever, and a wait on `kill(-pgid, 0)` alone would never end. So when the group answers, `/proc`
 * decides (on Linux): the group is alive only if one of its processes is neither a zombie nor dead. Where
 * there is no usable `/proc`, the answer of `kill(-pgid, 0)` stands (macOS's launchd reaps orphans).
 *
 * Reading all of `/proc` costs about 35 µs a process, so the check remembers the live processes it found
 * and looks at them first: it reads all of `/proc` again only once they have all exited.
 */
export const liveness = (pgid: number): () => boolean => {
  let live: ReadonlyArray<string> = []
  return () => {
    if (!signal(pgid, 0)) return false
    if (!procIsOurs()) return true
    if (live.some((pid) => isLiveMember(pid, pgid))) return true
    live = liveMembers(pgid)
    return live.length > 0
  }
}
