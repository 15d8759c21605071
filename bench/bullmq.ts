/** BullMQ on the local Redis, for the durable-queue comparison (S2). */
import { Queue, Worker } from "bullmq"
import { connect } from "node:net"

const connection = { host: "127.0.0.1", port: 6379 }

/** Whether Redis answers at 127.0.0.1:6379. */
export const bullmqAvailable = (): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(connection.port, connection.host)
    socket.setTimeout(1_000)
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
    socket.once("timeout", () => {
      socket.destroy()
      resolve(false)
    })
  })

/** Enqueues `jobs` no-op jobs (each resolves after one setImmediate) and waits until all completed. */
export const runBullmq = async (jobs: number, concurrency: number): Promise<void> => {
  const name = `effect-jobs-bench-${process.pid}-${Date.now()}`
  const queue = new Queue(name, { connection })
  let completed = 0
  let allDone: () => void = () => {}
  const done = new Promise<void>((resolve) => (allDone = resolve))
  const worker = new Worker(name, () => new Promise<void>((resolve) => setImmediate(resolve)), {
    connection,
    concurrency
  })
  worker.on("completed", () => {
    if (++completed === jobs) allDone()
  })
  for (let offset = 0; offset < jobs; offset += 1_000) {
    const size = Math.min(1_000, jobs - offset)
    await queue.addBulk(Array.from({ length: size }, (_, i) => ({
      name: "chunk",
      data: { chunk: offset + i },
      opts: { removeOnComplete: true, removeOnFail: true, attempts: 3 }
    })))
  }
  await done
  await worker.close()
  await queue.obliterate({ force: true })
  await queue.close()
}
