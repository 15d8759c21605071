/** Plain-text rendering for the CLI: aligned tables and one-line progress bars. */
import type { JobStatus } from "../Job.js"

/** Columns padded to their widest cell; numbers-looking cells are right-aligned. */
export const renderTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, column) => {
      const width = widths[column] ?? cell.length
      return /^[\d.]+(%|\/\d+)?$/.test(cell) ? cell.padStart(width) : cell.padEnd(width)
    }).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

/** `job_…  running  [█████░░░░░]  52%  13/25 chunks` */
export const renderProgressLine = (status: JobStatus, width = 30): string => {
  const filled = Math.round((status.progress / 100) * width)
  const bar = "█".repeat(filled) + "░".repeat(width - filled)
  const state = status.phase === undefined ? status.state : `${status.state} (${status.phase})`
  const failed = status.failedChunks > 0 ? `, ${status.failedChunks} failed` : ""
  return `${status.name ?? status.id}  ${state.padEnd(10)}  ${bar}  ${String(status.progress).padStart(3)}%  ${status.completedChunks}/${status.totalChunks} chunks${failed}`
}
