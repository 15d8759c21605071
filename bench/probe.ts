import { createJobManager, executeJob } from "../src/promise.js"
const N = 100_000
const tick = () => new Promise<void>((r) => setImmediate(r))
const worker = async (_c: unknown, ctx: { signal: AbortSignal }) => { void ctx.signal; await tick() }
async function time(name: string, f: () => Promise<unknown>) {
  const t = performance.now(); await f(); const ms = performance.now() - t
  console.log(name.padEnd(24), (ms * 1000 / N).toFixed(2), "us/chunk")
}
const spec = { chunks: { start: 0, end: N - 1, size: 1 } }
for (let i = 0; i < 2; i++) {
  await time("executeJob plain", () => executeJob(spec, { worker, concurrency: 16 }))
  await time("executeJob +timeout", () => executeJob(spec, { worker, concurrency: 16, chunkTimeout: 60000 }))
  await time("executeJob +progress", () => executeJob(spec, { worker, concurrency: 16, onProgress: () => {} }))
  const m = await createJobManager({ worker, concurrency: 16 })
  await time("manager", async () => { const id = await m.submitJob(spec); await m.waitForJob(id) })
  await time("manager+watch", async () => { const id = await m.submitJob(spec); const w = (async () => { for await (const _ of m.watchJob(id)) {} })(); await m.waitForJob(id); await w })
  await m.close()
}
