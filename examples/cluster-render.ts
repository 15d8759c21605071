/**
 * Cluster mode on one machine: three runner processes on 127.0.0.1 join a cluster in PostgreSQL, a job is
 * submitted to the cluster, and its chunks spread over the runners. Each line says which runner ran which
 * chunk. A third of the way in, one runner (not the job's owner) is killed with SIGKILL: the chunks it was
 * running are sent to the others, and the job still completes.
 *
 *     npx tsx examples/cluster-render.ts [--pg postgres://postgres@127.0.0.1:5432/test] [--chunks 36] [--ms 400]
 *
 * The runners are this file started again with `--runner N`, each a Promise-facade manager in cluster mode.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process"
import type { Readable } from "node:stream"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { Effect, Layer, ManagedRuntime } from "effect"
import { createJobManager, JobClient } from "effect-jobs"
import * as Cluster from "effect-jobs/Cluster"
import * as SqlJobRepository from "effect-jobs/SqlJobRepository"

const { values } = parseArgs({
  options: {
    pg: { type: "string", default: process.env["EFFECT_JOBS_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test" },
    chunks: { type: "string", default: "36" },
    ms: { type: "string", default: "400" },
    runner: { type: "string" }
  }
})
const postgres = values.pg
const chunkMillis = Number(values.ms)

// --- A runner: runs chunks for the cluster and prints one line per chunk it runs ---

if (values.runner !== undefined) {
  const manager = await createJobManager({
    cluster: { postgres, capacity: 3 },
    concurrency: 6,
    worker: async (chunk, { signal }) => {
      console.log(JSON.stringify({ ran: chunk.id }))
      await sleep(chunkMillis, undefined, { signal })
    }
  })
  console.log(JSON.stringify({ ready: process.pid }))
  const leave = () => void manager.close().then(() => process.exit(0))
  process.once("SIGTERM", leave)
  process.once("SIGINT", leave)
} else {
  await main()
}

async function main(): Promise<void> {
  const self = fileURLToPath(import.meta.url)
  const ranBy = new Map<number, number>() // how many chunks each runner ran
  const runners: Array<ChildProcessByStdio<null, Readable, null>> = []
  const ready = new Set<number>()
  for (const n of [1, 2, 3]) {
    const child = spawn(process.execPath, [...process.execArgv, self, "--runner", String(n), "--pg", postgres, "--ms", String(chunkMillis)], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    runners.push(child)
    let pending = ""
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      pending += text
      const lines = pending.split("\n")
      pending = lines.pop()!
      for (const line of lines) {
        if (!line.startsWith("{")) continue // the cluster's own log lines
        const event = JSON.parse(line) as { readonly ready?: number; readonly ran?: number }
        if (event.ready !== undefined) ready.add(n)
        if (event.ran !== undefined) {
          ranBy.set(n, (ranBy.get(n) ?? 0) + 1)
          console.log(`chunk ${String(event.ran).padStart(2)} -> runner ${n}`)
        }
      }
    })
  }
  const stopAll = () => runners.forEach((child) => child.exitCode === null && child.kill("SIGTERM"))
  process.once("SIGINT", () => {
    stopAll()
    process.exit(130)
  })
  while (ready.size < 3) await sleep(50)
  await sleep(2_000) // the runners share out the cluster's shards
  console.log("3 runners joined the cluster")

  const runtime = ManagedRuntime.make(Layer.orDie(SqlJobRepository.layerPg({ url: postgres })))
  const total = Number(values.chunks)
  const submitted = await runtime.runPromise(Cluster.submitJob({
    name: "cluster-render",
    chunks: Array.from({ length: total }, (_, id) => ({ id, payload: { frame: id } }))
  }))
  const get = () => runtime.runPromise(Effect.flatMap(JobClient.make(), (client) => client.getJob(submitted.id)))

  let killed: number | undefined
  for (;;) {
    const status = await get()
    if (status.state === "completed" || status.state === "failed" || status.state === "cancelled") {
      console.log(`job ${status.id} ${status.state}: ${status.completedChunks}/${status.totalChunks} chunks`)
      break
    }
    if (killed === undefined && status.completedChunks >= total / 3) {
      const ownerPid = Number(status.owner?.split(":")[1])
      const victim = runners.findIndex((child) => child.pid !== ownerPid)
      killed = victim + 1
      runners[victim]!.kill("SIGKILL")
      console.log(`killed runner ${killed} (SIGKILL) with the job ${status.completedChunks}/${total} done`)
    }
    await sleep(100)
  }
  const counts = [1, 2, 3].map((n) => `runner ${n}: ${ranBy.get(n) ?? 0}`)
  console.log(`chunks run (a killed runner's chunks in flight run again elsewhere): ${counts.join(", ")}`)
  await runtime.dispose()
  stopAll()
}
