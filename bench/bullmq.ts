/** BullMQ on the local Redis: the durable-queue comparison (S2) and the flow of the cluster comparison (S6). */
import { FlowProducer, Queue, QueueEvents, Worker } from "bullmq"
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

/** The queues of a flow benchmark: the parents' and the children's (the chunks'). */
const flowQueues = (queue: string) => ({ parents: `${queue}-parents`, chunks: `${queue}-chunks` })

/**
 * A BullMQ worker process of the flow benchmark (S6): runs the chunks of `queue` (`data.ms` milliseconds of
 * sleep, 0: one setImmediate) with `concurrency`, and the parents when `parent`; prints `ready` once
 * connected, then runs until killed.
 */
export const bullFlowWorker = async (options: {
  readonly queue: string
  readonly concurrency: number
  readonly parent: boolean
}): Promise<void> => {
  const queues = flowQueues(options.queue)
  const chunks = new Worker(
    queues.chunks,
    async (job: { readonly data: { readonly ms: number } }) => {
      if (job.data.ms === 0) await new Promise<void>((resolve) => setImmediate(resolve))
      else await new Promise<void>((resolve) => setTimeout(resolve, job.data.ms))
    },
    { connection, concurrency: options.concurrency }
  )
  await chunks.waitUntilReady()
  if (options.parent) await new Worker(queues.parents, async () => "done", { connection }).waitUntilReady()
  process.stdout.write("ready\n")
}

/**
 * One job as a BullMQ flow: a parent with `chunks` children of `ms` milliseconds, run by the workers of
 * {@link bullFlowWorker}; the seconds from `FlowProducer.add` until the parent completed.
 */
export const bullFlow = async (queue: string, chunks: number, ms: number): Promise<number> => {
  const queues = flowQueues(queue)
  const events = new QueueEvents(queues.parents, { connection })
  const producer = new FlowProducer({ connection })
  try {
    await events.waitUntilReady()
    const started = performance.now()
    const flow = await producer.add({
      name: "job",
      queueName: queues.parents,
      children: Array.from({ length: chunks }, (_, chunk) => ({
        name: "chunk",
        queueName: queues.chunks,
        data: { chunk, ms },
        opts: { removeOnComplete: true, attempts: 3 }
      }))
    })
    await flow.job.waitUntilFinished(events)
    return (performance.now() - started) / 1000
  } finally {
    await producer.close()
    await events.close()
  }
}

/** Deletes the queues of a flow benchmark. */
export const bullFlowCleanup = async (queue: string): Promise<void> => {
  for (const name of Object.values(flowQueues(queue))) {
    const handle = new Queue(name, { connection })
    await handle.obliterate({ force: true })
    await handle.close()
  }
}
