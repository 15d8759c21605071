/** Plain-text rendering for the CLI: aligned tables, one-line progress bars, durations. */
import type { JobStatus } from "../Job.js"

/** Columns padded to their widest cell; numbers-looking cells are right-aligned unless `alignNumbers` is false. */
export const renderTable = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  alignNumbers = true
): string => {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, column) => {
      const width = widths[column] ?? cell.length
      return alignNumbers && /^[\d.]+(%|\/\d+)?$/.test(cell) ? cell.padStart(width) : cell.padEnd(width)
    }).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

/** `45s`, `2m05s`, `1h02m`, `3d04h`: the two largest units of a duration in milliseconds. */
export const formatDuration = (millis: number): string => {
  const seconds = Math.max(0, Math.round(millis / 1000))
  const two = (value: number) => String(value).padStart(2, "0")
  if (seconds < 60) return `${seconds}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${two(seconds % 60)}s`
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h${two(Math.floor(seconds / 60) % 60)}m`
  return `${Math.floor(seconds / 86_400)}d${two(Math.floor(seconds / 3600) % 24)}h`
}

/**
 * The state of a job as the CLI shows it: with its phase, and for a `running` job whose owner is gone
 * (`ownerSilence`: milliseconds since its last heartbeat, `null` when it has none) how long it has been.
 */
export const describeState = (status: JobStatus, ownerSilence?: number | null): string => {
  const state = status.phase === undefined ? status.state : `${status.state} (${status.phase})`
  if (ownerSilence === undefined || status.state !== "running") return state
  return `${status.state} (owner gone${ownerSilence === null ? "" : ` ${formatDuration(ownerSilence)}`})`
}

/** How fast a job runs, as a watcher measured it. */
export interface Speed {
  /** Chunks per second. */
  readonly rate?: number | undefined
  readonly etaSeconds?: number | undefined
}

/** `trailer  running  [█████░░░░░]  52%  13/25 chunks  4.2 chunks/s  ETA 3s` */
export const renderProgressLine = (status: JobStatus, speed: Speed = {}, width = 30): string => {
  const filled = Math.round((status.progress / 100) * width)
  const bar = "█".repeat(filled) + "░".repeat(width - filled)
  const failed = status.failedChunks > 0 ? `, ${status.failedChunks} failed` : ""
  const rate = speed.rate === undefined || status.state !== "running" ? "" : `  ${speed.rate.toFixed(1)} chunks/s`
  const eta = speed.etaSeconds === undefined || status.state !== "running"
    ? ""
    : `  ETA ${formatDuration(speed.etaSeconds * 1000)}`
  return `${status.name ?? status.id}  ${describeState(status).padEnd(10)}  ${bar}  ${
    String(status.progress).padStart(3)
  }%  ${status.completedChunks}/${status.totalChunks ?? "?"} chunks${failed}${rate}${eta}`
}
