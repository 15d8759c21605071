/**
 * A BullMQ worker process of S6 (see `bullFlowWorker` in bench/bullmq.ts), in a module of its own so that it
 * starts without loading the cluster's modules. argv: one JSON object `{ queue, concurrency, parent }`.
 */
import { bullFlowWorker } from "./bullmq.js"

await bullFlowWorker(JSON.parse(process.argv[2]!))
