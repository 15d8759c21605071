/**
 * Listing and cancelling jobs with the Promise facade.
 *
 * Four jobs go to a manager that runs two at a time, so two of them wait as `pending`. The script lists
 * the jobs by state, cancels a pending job and a running one, "cancels" a finished one (a no-op that
 * returns its unchanged status), and lists the final states.
 *
 *     npx tsx examples/cancel-and-list.ts [--fast]
 */
import { setTimeout as sleep } from "node:timers/promises"
import type { Job, PromiseJobManager, PromiseWorker } from "effect-jobs"
import { createJobManager } from "effect-jobs"

const chunkMillis = process.argv.includes("--fast") ? 5 : 50

/** Renders a chunk in `chunkMillis`; when the signal fires, the timer is cleared and the promise rejects. */
const render: PromiseWorker = (_chunk, { signal }) => sleep(chunkMillis, undefined, { signal })

const describe = (status: Job.JobStatus): string =>
  `${status.name?.padEnd(8)} ${status.state.padEnd(9)} ${status.completedChunks}/${status.totalChunks} chunks`

/** Resolves once the job has completed a chunk (or has ended). */
const firstChunkDone = async (manager: PromiseJobManager, id: string): Promise<void> => {
  for await (const status of manager.watchJob(id)) {
    if (status.completedChunks > 0) return
  }
}

const manager = await createJobManager({ worker: render, concurrency: 2, maxConcurrentJobs: 2 })
try {
  const [intro, act1, act2, credits] = [
    await manager.submitJob({ name: "intro", chunks: { start: 0, end: 399, size: 10 } }),
    await manager.submitJob({ name: "act-1", chunks: { start: 400, end: 799, size: 10 } }),
    await manager.submitJob({ name: "act-2", chunks: { start: 800, end: 1199, size: 10 } }),
    await manager.submitJob({ name: "credits", chunks: { start: 1200, end: 1599, size: 10 } })
  ] as const
  await firstChunkDone(manager, intro)

  console.log("Four jobs submitted, two run at a time:")
  for (const state of ["running", "pending"] as const) {
    const names = (await manager.listJobs({ state })).jobs.map((status) => status.name)
    console.log(`  ${state}: ${names.join(", ")}`)
  }

  console.log("\ncancelJob(credits), pending: it never starts")
  console.log(`  ${describe(await manager.cancelJob(credits))}`)

  console.log("cancelJob(intro), running: its chunks in flight are aborted, and act-2 takes its slot")
  console.log(`  ${describe(await manager.cancelJob(intro))}`)

  console.log("cancelJob(act-1) once it has completed: a no-op, the status is unchanged")
  await manager.waitForJob(act1)
  console.log(`  ${describe(await manager.cancelJob(act1))}`)

  await manager.waitForJob(act2)
  console.log("\nFinal states (listJobs, newest first):")
  for (const status of (await manager.listJobs()).jobs) console.log(`  ${describe(status)}`)
} finally {
  await manager.close()
}
