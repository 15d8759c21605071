/** How the CLI writes: results on stdout, notes and errors on stderr, terminal escapes only on a terminal. */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { ChunkInfo, JobStatus } from "../../Job.js"
import { ChunkInfo as ChunkInfoSchema, JobStatus as JobStatusSchema } from "../../Job.js"

/** Whether stdout is a terminal (only then does the CLI redraw lines in place). */
export const isTerminal = (): boolean => process.stdout.isTTY === true

const encodeStatus = Schema.encodeSync(JobStatusSchema)

/** One job as one line of JSON. */
export const printJson = (status: JobStatus): Effect.Effect<void> => Console.log(JSON.stringify(encodeStatus(status)))

const encodeChunk = Schema.encodeSync(ChunkInfoSchema)

/** One chunk as one line of JSON. */
export const printChunkJson = (chunk: ChunkInfo): Effect.Effect<void> => Console.log(JSON.stringify(encodeChunk(chunk)))

/** A note on stderr, prefixed with the program's name; it does not change the exit code. */
export const note = (text: string): Effect.Effect<void> => Console.error(`effect-jobs: ${text}`)

/** `2025-01-01 12:00:00` (UTC), or `-`. */
export const when = (date: Date | undefined): string =>
  date === undefined ? "-" : date.toISOString().replace("T", " ").slice(0, 19)
