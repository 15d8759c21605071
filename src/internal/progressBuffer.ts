/**
 * The write-behind buffer of the SQL store: the latest progress of each job reported in this process and the
 * completed chunk ids not yet written, plain bookkeeping with no Effect in it. The store's flush takes what
 * is new out of it, writes it, and marks it written (or gives it back when the write did not happen).
 *
 * Fencing: an entry remembers the lease its reports were made under. Leases of a job only grow, so a report
 * under an older lease than the entry's comes from an owner that lost the job (refused), and one under a
 * newer lease replaces the entry (its older holder lost the job). A write that finds the job's lease moved on
 * drops the entry and remembers the lease as lost, so the next report under it is refused.
 */
import type { Chunk, JobId, JobStatus } from "../Job.js"
import { isTerminal, withProgress } from "../Job.js"
import type { ChunkRecord, ProgressUpdate } from "../JobRepository.js"
import { RangeSet } from "./rangeSet.js"

/** Progress of one job reported in this process. */
export interface Pending {
  completedChunks: number
  failedChunks: number
  /** The in-chunk progress of the chunks in flight, in chunks. */
  partialChunks: number
  /** When the counts were reported (millis). */
  at: number
  /** `"finalizing"` once reported, until written. */
  phase: "finalizing" | undefined
  /** The lease the reports were made under (`undefined`: unfenced). */
  lease: number | undefined
  /** Completed chunk ids reported since the last write. */
  chunks: RangeSet
  /** Chunk records reported since the last write, by chunk id (`undefined` until the first one). */
  records: Map<number, ChunkRecord> | undefined
  /** A streamed job's chunks pulled since the last write and not completed since, by id. */
  pulled: Map<number, Chunk> | undefined
  /** Whether the job is streamed: its completed chunks' pull records are removed by the write. */
  streamed: boolean
  /** A streamed job's total, once its stream has ended. */
  totalChunks: number | undefined
  /** Bumped by every report; `written` is the version the database has. */
  version: number
  written: number
}

/** What one write takes out of a {@link Pending}: given back if the write does not happen. */
export interface Taken {
  readonly id: JobId
  readonly entry: Pending
  readonly version: number
  readonly completedChunks: number
  readonly failedChunks: number
  readonly partialChunks: number
  readonly at: number
  readonly phase: "finalizing" | undefined
  readonly lease: number | undefined
  readonly chunks: RangeSet
  readonly records: Map<number, ChunkRecord> | undefined
  readonly pulled: Map<number, Chunk> | undefined
  readonly streamed: boolean
  readonly totalChunks: number | undefined
}

export class ProgressBuffer {
  readonly #entries = new Map<JobId, Pending>()
  /** The highest lease of each job known to be lost: reports under it, or an older one, are refused. */
  readonly #lostUpTo = new Map<JobId, number>()
  /** Reads in progress: entries already written stay while one runs, so its overlay never goes back. */
  #readers = 0

  get(id: JobId): Pending | undefined {
    return this.#entries.get(id)
  }

  /** Whether `lease` of job `id` is known here to be lost. */
  isLost(id: JobId, lease: number | undefined): boolean {
    if (lease === undefined) return false
    const lost = this.#lostUpTo.get(id)
    return lost !== undefined && lease <= lost
  }

  /** Records a report as of `at`; `false` (nothing recorded) when its lease is known to be lost. */
  record(id: JobId, progress: ProgressUpdate, at: number): boolean {
    let entry = this.#entries.get(id)
    const lease = progress.lease
    if (entry !== undefined && lease !== undefined && entry.lease !== undefined && lease !== entry.lease) {
      if (lease < entry.lease) {
        this.#markLostUpTo(id, lease)
        return false
      }
      // A newer holder: what the older one buffered must not land.
      this.markLost(id, entry.lease)
      entry = undefined
    }
    if (entry === undefined) {
      entry = {
        completedChunks: 0,
        failedChunks: 0,
        partialChunks: 0,
        at,
        phase: undefined,
        lease: progress.lease,
        chunks: RangeSet.empty(),
        records: undefined,
        pulled: undefined,
        streamed: false,
        totalChunks: undefined,
        version: 0,
        written: 0
      }
      this.#entries.set(id, entry)
    }
    entry.completedChunks = progress.completedChunks
    entry.failedChunks = progress.failedChunks
    entry.partialChunks = progress.partialChunks ?? 0
    entry.at = at
    entry.lease = progress.lease
    if (progress.phase !== undefined) entry.phase = progress.phase
    if (progress.pulled !== undefined) {
      entry.streamed = true
      for (const chunk of progress.pulled) (entry.pulled ??= new Map()).set(chunk.id, chunk)
    }
    if (progress.totalChunks !== undefined) entry.totalChunks = progress.totalChunks
    if (progress.completedChunkIds !== undefined) {
      for (const chunkId of progress.completedChunkIds) {
        entry.chunks.add(chunkId)
        entry.pulled?.delete(chunkId)
      }
    }
    if (progress.chunks !== undefined) {
      const records = entry.records ??= new Map()
      for (const record of progress.chunks) records.set(record.id, record)
    }
    entry.version++
    return true
  }

  /** Reports the database does not have yet (a flush writes these). */
  static hasNews(entry: Pending): boolean {
    return entry.version !== entry.written
  }

  /** Anything not in the database: news, or chunk ids a flush could not merge (a corrupt checkpoint). */
  static isPending(entry: Pending): boolean {
    return ProgressBuffer.hasNews(entry) || entry.chunks.size > 0 || entry.records !== undefined ||
      entry.pulled !== undefined
  }

  /** Takes what every entry with news holds, for one flush. */
  takeNews(): Array<Taken> {
    this.prune()
    const batch: Array<Taken> = []
    for (const [id, entry] of this.#entries) {
      if (ProgressBuffer.hasNews(entry)) batch.push(this.take(id, entry))
    }
    return batch
  }

  take(id: JobId, entry: Pending): Taken {
    const chunks = entry.chunks
    const records = entry.records
    const pulled = entry.pulled
    entry.chunks = RangeSet.empty()
    entry.records = undefined
    entry.pulled = undefined
    return {
      id,
      entry,
      version: entry.version,
      completedChunks: entry.completedChunks,
      failedChunks: entry.failedChunks,
      partialChunks: entry.partialChunks,
      at: entry.at,
      phase: entry.phase,
      lease: entry.lease,
      chunks,
      records,
      pulled,
      streamed: entry.streamed,
      totalChunks: entry.totalChunks
    }
  }

  /** The write of `taken` did not happen: its chunk ids go back into the entry. */
  giveBack(taken: Taken): void {
    if (this.#entries.get(taken.id) !== taken.entry) return
    if (taken.chunks.size > 0) taken.entry.chunks = taken.entry.chunks.union(taken.chunks)
    if (taken.records !== undefined) {
      // Records reported since the take are newer.
      const newer = taken.entry.records
      taken.entry.records = taken.records
      if (newer !== undefined) for (const [id, record] of newer) taken.records.set(id, record)
    }
    if (taken.pulled !== undefined) {
      // A chunk completed since the take is in the entry's chunk ids: the write that lands both removes its row.
      const newer = taken.entry.pulled
      taken.entry.pulled = taken.pulled
      if (newer !== undefined) for (const [id, chunk] of newer) taken.pulled.set(id, chunk)
    }
  }

  /** Marks what `taken` held as written, unless newer reports came in meanwhile. */
  markWritten(taken: Taken): void {
    if (this.#entries.get(taken.id) === taken.entry && taken.entry.version === taken.version) {
      taken.entry.written = taken.version
      taken.entry.phase = undefined
    }
  }

  /** The job is gone from the database: its entry goes (only if it is still `entry`, when given). */
  forget(id: JobId, entry?: Pending): void {
    if (entry === undefined || this.#entries.get(id) === entry) this.#entries.delete(id)
  }

  /** `lease` of job `id` is lost: what was buffered under it is dropped and later reports refused. */
  markLost(id: JobId, lease: number): void {
    this.#markLostUpTo(id, lease)
    const entry = this.#entries.get(id)
    if (entry !== undefined && entry.lease !== undefined && entry.lease <= lease) this.#entries.delete(id)
  }

  #markLostUpTo(id: JobId, lease: number): void {
    const known = this.#lostUpTo.get(id)
    if (known === undefined || lease > known) this.#lostUpTo.set(id, lease)
  }

  /** Drops written entries (unless a read is running). */
  prune(): void {
    if (this.#readers > 0) return
    for (const [id, entry] of this.#entries) {
      if (!ProgressBuffer.isPending(entry)) this.#entries.delete(id)
    }
  }

  /**
   * A status with this process's newer progress of the job applied. Progress reported under an older lease
   * than the status's is never applied (its holder lost the job). An entry under a newer lease than the
   * status's means the status was read from a snapshot taken before a write of this process committed (a
   * read racing a transition): the entry's counts, which that write stored, are applied so that reads never
   * see progress go back.
   */
  overlay(status: JobStatus): JobStatus {
    const entry = this.#entries.get(status.id)
    return entry === undefined || isTerminal(status.state) ||
        (entry.lease !== undefined && entry.lease < status.lease)
      ? status
      : withProgress(status, entry, new Date(entry.at))
  }

  startRead(): void {
    this.#readers++
  }

  endRead(): void {
    this.#readers--
    this.prune()
  }
}
