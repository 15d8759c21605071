/**
 * A real render with ffmpeg. The frames of a generated test video are cut into chunks; each chunk is
 * encoded by its own ffmpeg process (`ProcessWorker`) into a segment, and the job's finalize step joins
 * the segments into one file (ffmpeg's concat demuxer, no re-encoding). A progress bar follows the job.
 *
 * Ctrl+C cancels the job: every ffmpeg process is stopped (SIGTERM, then SIGKILL after 2 s) before the job
 * is stored `cancelled`, and the process exits with code 130.
 *
 *     npx tsx examples/video-render.ts [--frames 1440] [--chunk 48] [--concurrency N] [--out render.mp4]
 *     npx tsx examples/video-render.ts --fast      # a tiny video, for tests
 *
 * ffmpeg comes from PATH when it is there, else from the `@ffmpeg-installer/ffmpeg` package.
 */
import { Command as Cli, Options, ValidationError } from "@effect/cli"
import { Command, type CommandExecutor, FileSystem } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Data, Effect, Exit, Layer, Option, Schema, Stream } from "effect"
import { type Finalizer, Job, JobManager, JobRepository, ProcessWorker } from "effect-jobs"
import { accessSync, constants } from "node:fs"
import { availableParallelism } from "node:os"
import { basename, delimiter, join, resolve } from "node:path"

const frameRate = 24

interface Settings {
  readonly frames: number
  readonly chunk: number
  readonly concurrency: number
  readonly size: string
  /** The video to write, and the directory its segments are rendered into (removed at the end). */
  readonly out: string
  readonly parts: string
  readonly ffmpeg: string
}

class FfmpegNotFound extends Data.TaggedError("FfmpegNotFound")<{ readonly message: string }> {}

class FfmpegFailed extends Data.TaggedError("FfmpegFailed")<{ readonly step: string; readonly exitCode: number }> {
  override get message() {
    return `ffmpeg ${this.step} exited with code ${this.exitCode}`
  }
}

class RenderFailed extends Data.TaggedError("RenderFailed")<{ readonly message: string }> {}

const isExecutable = (file: string): boolean => {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** ffmpeg from PATH if there is one, else the binary shipped in the `@ffmpeg-installer/ffmpeg` package. */
const findFfmpeg = Effect.suspend(() => {
  const name = process.platform === "win32" ? "ffmpeg.exe" : "ffmpeg"
  const onPath = (process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== "").map((dir) => join(dir, name))
    .find(isExecutable)
  return onPath !== undefined ? Effect.succeed(onPath) : Effect.tryPromise({
    try: async () => (await import("@ffmpeg-installer/ffmpeg")).default.path,
    catch: (error) => new FfmpegNotFound({ message: `no ffmpeg on PATH, and @ffmpeg-installer/ffmpeg has none: ${error}` })
  })
})

// ---------------------------------------------------------------------------------------------------------
// The render: a chunk is a frame range encoded by one ffmpeg process; the finalize step joins the segments

const segmentName = (chunkId: number) => `segment-${String(chunkId).padStart(5, "0")}.mp4`

/** Chunk `{ start, end }` (inclusive frames) of a `testsrc` video, encoded as H.264 into its own segment. */
const RenderNode = (settings: Settings) =>
  ProcessWorker.layer({
    command: (chunk) => {
      const { end, start } = chunk.payload as { readonly start: number; readonly end: number }
      return {
        command: settings.ffmpeg,
        args: [
          // `-progress pipe:1` prints `frame=N` lines on stdout as it encodes.
          ...["-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-progress", "pipe:1"],
          ...["-f", "lavfi", "-i", `testsrc=size=${settings.size}:rate=${frameRate}`],
          ...["-vf", `trim=start_frame=${start}:end_frame=${end + 1},setpts=PTS-STARTPTS`],
          ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
          ...["-y", join(settings.parts, segmentName(chunk.id))]
        ]
      }
    },
    killGracePeriod: "2 seconds",
    // ffmpeg's frame counter becomes the chunk's progress, so the bar moves inside long chunks too.
    onOutput: ({ chunk, context, line, stream }) =>
      Effect.sync(() => {
        const frame = stream === "stdout" ? /^frame=(\d+)$/.exec(line) : null
        if (frame === null) return
        const { end, start } = chunk.payload as { readonly start: number; readonly end: number }
        context.reportProgress(Number(frame[1]) / (end - start + 1))
      })
  })

/**
 * The finalize step: joins the segments, in order, into the output with ffmpeg's concat demuxer. Its
 * ffmpeg is stopped (SIGTERM to its process group) if the job is cancelled meanwhile.
 */
const concatSegments = (settings: Settings) => (context: Finalizer.FinalizeContext) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const list = join(settings.parts, "segments.txt")
    const names = Array.from({ length: Job.totalChunks(context.spec) ?? 0 }, (_, id) => `file '${segmentName(id)}'\n`)
    yield* fs.writeFileString(list, names.join(""))
    const exitCode = yield* Command.make(
      settings.ffmpeg,
      ...["-hide_banner", "-nostdin", "-loglevel", "error", "-f", "concat", "-i", list, "-c", "copy", "-y", settings.out]
    ).pipe(Command.stderr("inherit"), Command.exitCode)
    if (exitCode !== 0) return yield* new FfmpegFailed({ step: "concat", exitCode })
  })

/** The job manager: chunks go to ffmpeg processes, and the `concat` finalizer gets this program's services. */
const Renderer = (settings: Settings) =>
  Layer.unwrapEffect(
    Effect.map(Effect.context<CommandExecutor.CommandExecutor | FileSystem.FileSystem>(), (services) =>
      JobManager.layer({
        concurrency: settings.concurrency,
        retry: { attempts: 2 },
        finalizers: { concat: (context) => Effect.provide(concatSegments(settings)(context), services) }
      }))
  ).pipe(Layer.provide(JobRepository.layerMemory), Layer.provide(RenderNode(settings)))

// ---------------------------------------------------------------------------------------------------------
// Progress

const progressBar = (progress: number, width = 24): string => {
  const filled = Math.round((progress / 100) * width)
  return "█".repeat(filled) + "░".repeat(width - filled)
}

/** "render  ██████░░░░░░  12/30 chunks  40%  running" */
const describe = (status: Job.JobStatus): string =>
  `render  ${progressBar(status.progress)}  ${`${status.completedChunks}/${status.totalChunks}`.padStart(7)} chunks ` +
  `${`${status.progress}%`.padStart(4)}  ${status.phase === "finalizing" ? "joining segments" : status.state}`

/** Prints a status: a terminal redraws one line, ended once the job has ended. */
const show = (status: Job.JobStatus) =>
  process.stdout.isTTY
    ? Effect.sync(() => process.stdout.write(`\r\x1b[2K${describe(status)}${Job.isTerminal(status.state) ? "\n" : ""}`))
    : Console.log(describe(status))

/** Every status on a terminal; logs and pipes get a line per state and per 10 % step. */
const showProgress = <E>(statuses: Stream.Stream<Job.JobStatus, E>): Stream.Stream<Job.JobStatus, E> =>
  (process.stdout.isTTY ? statuses : Stream.changesWith(statuses, (a, b) =>
    a.state === b.state && a.phase === b.phase && Math.floor(a.progress / 10) === Math.floor(b.progress / 10))
  ).pipe(Stream.tap(show))

/**
 * Renders the video and returns the job's final status. If this is interrupted (Ctrl+C), the job is
 * cancelled, which stops its ffmpeg processes, and its `cancelled` status is printed.
 */
const render = (settings: Settings) =>
  Effect.gen(function*() {
    const jobs = yield* JobManager.JobManager
    return yield* Effect.acquireUseRelease(
      jobs.submitJob({
        name: basename(settings.out),
        chunks: { start: 0, end: settings.frames - 1, size: settings.chunk },
        finalize: { name: "concat" }
      }),
      // watchJob ends with the job's terminal status.
      (id) => jobs.watchJob(id).pipe(showProgress, Stream.runDrain, Effect.zipRight(jobs.getJob(id))),
      (id, exit) =>
        Exit.isInterrupted(exit)
          ? jobs.cancelJob(id).pipe(
            Effect.tap(show),
            Effect.zipRight(Console.log("Render cancelled (Ctrl+C): every ffmpeg process was stopped.")),
            Effect.orDie
          )
          : Effect.void
    )
  })

const program = (settings: Settings) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    yield* Console.log(
      `Rendering ${settings.frames} frames (${settings.size}, ${frameRate} fps) in chunks of ${settings.chunk}, ` +
        `${settings.concurrency} ffmpeg processes at a time, to ${settings.out}`
    )
    const status = yield* Effect.acquireUseRelease(
      fs.makeDirectory(settings.parts, { recursive: true }),
      () => render(settings).pipe(Effect.provide(Renderer(settings))),
      () => Effect.ignore(fs.remove(settings.parts, { recursive: true }))
    )
    if (status.state !== "completed") return yield* new RenderFailed({ message: status.error ?? status.state })
    const { size } = yield* fs.stat(settings.out)
    const seconds = (status.finishedAt!.getTime() - status.startedAt!.getTime()) / 1000
    yield* Console.log(
      `Wrote ${settings.out}: ${settings.frames} frames (${(settings.frames / frameRate).toFixed(1)} s of video), ` +
        `${(Number(size) / 1e6).toFixed(2)} MB, in ${seconds.toFixed(1)} s`
    )
  })

// ---------------------------------------------------------------------------------------------------------
// Command line

const positive = (name: string, description: string) =>
  Options.integer(name).pipe(
    Options.withSchema(Schema.Int.pipe(Schema.positive())),
    Options.withDescription(description),
    Options.optional
  )

const command = Cli.make("video-render", {
  frames: positive("frames", "frames to render (default 1440, or 48 with --fast)"),
  chunk: positive("chunk", "frames per chunk (default 48, or 8 with --fast)"),
  concurrency: positive("concurrency", "ffmpeg processes at a time (default: one per CPU)"),
  out: Options.text("out").pipe(Options.withDescription("the video to write"), Options.withDefault("render.mp4")),
  fast: Options.boolean("fast").pipe(Options.withDescription("a tiny, short video (160x90, 48 frames)"))
}, (flags) =>
  Effect.flatMap(findFfmpeg, (ffmpeg) => {
    const out = resolve(flags.out)
    return program({
      frames: Option.getOrElse(flags.frames, () => flags.fast ? 48 : 1440),
      chunk: Option.getOrElse(flags.chunk, () => flags.fast ? 8 : 48),
      concurrency: Option.getOrElse(flags.concurrency, () => availableParallelism()),
      size: flags.fast ? "160x90" : "640x360",
      out,
      parts: `${out}.parts`,
      ffmpeg
    })
  }))

Cli.run(command, { name: "video-render", version: "0.1.0" })(process.argv).pipe(
  // @effect/cli has printed the usage error.
  Effect.catchIf(ValidationError.isValidationError, () => Effect.sync(() => (process.exitCode = 2))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    // Interrupted (Ctrl+C): 130, as a shell reports a program stopped by SIGINT.
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
  })
)
