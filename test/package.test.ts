/**
 * The package as a user gets it: `npm pack`, then installed into a fresh project outside this repository
 * with `effect` as its only other package (npm adds the peer dependencies; install scripts are skipped, so
 * better-sqlite3 is not compiled and nothing here needs the network when npm's cache has the packages).
 *
 * - The installed tree holds one copy of `effect` and of each `@effect/*` package.
 * - Both APIs import from the installed package and run a job; the CLI runs; a PostgreSQL store without the
 *   optional `@effect/sql-pg` is refused with one line naming the package to install.
 * - Every ```ts block of README.md compiles as its own module with `tsc --strict` in a project made by
 *   `tsc --init` (plus Node's types) against the installed package, and the blocks not fenced as
 *   ```ts compile-only run (each must end by itself within seconds). A block is compiled alone, so it
 *   carries its own imports.
 *
 * `dist/` is rebuilt first when it is older than `src/`.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const tsc = join(root, "node_modules", "typescript", "bin", "tsc")

interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The environment of a nested npm: without the `npm_*` variables of the npm that may be running the tests. */
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith("npm_")))

/** Runs a program (never through a shell) and resolves with its exit code and output. */
const run = (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly timeout?: number }
): Promise<Ran> =>
  new Promise((resolve) => {
    execFile(file, args, { cwd: options.cwd, env, timeout: options.timeout ?? 60_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
      resolve({ code, stdout, stderr: error !== null && code === null ? `${stderr}\n${error.message}` : stderr })
    })
  })

const node = (args: ReadonlyArray<string>, cwd: string, timeout?: number) =>
  run(process.execPath, args, { cwd, ...(timeout === undefined ? {} : { timeout }) })

const filesUnder = (dir: string, suffix: string): Array<string> =>
  readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((file) => file.endsWith(suffix)).map((file) => join(dir, file))

/** Builds `dist/` unless every `src/X.ts` has a `dist/X.js` at least as new. */
const ensureBuilt = async (): Promise<void> => {
  const src = join(root, "src")
  const stale = filesUnder(src, ".ts").some((file) => {
    const built = join(root, "dist", relative(src, file).replace(/\.ts$/, ".js"))
    return !existsSync(built) || statSync(built).mtimeMs < statSync(file).mtimeMs
  })
  if (!stale) return
  const built = await node([tsc, "-p", "tsconfig.build.json"], root, 120_000)
  if (built.code !== 0) throw new Error(`npm run build failed:\n${built.stdout}${built.stderr}`)
}

/** The installed packages named `effect` or `@effect/*`, by name, with the directories holding them. */
const effectPackages = (nodeModules: string): Map<string, Array<string>> => {
  const found = new Map<string, Array<string>>()
  const visit = (dir: string): void => {
    if (!existsSync(dir)) return
    for (const entry of readdirSync(dir)) {
      if (entry.startsWith(".")) continue
      const names = entry.startsWith("@") ? readdirSync(join(dir, entry)).map((name) => `${entry}/${name}`) : [entry]
      for (const name of names) {
        const at = join(dir, name)
        if (name === "effect" || name.startsWith("@effect/")) found.set(name, [...(found.get(name) ?? []), at])
        visit(join(at, "node_modules"))
      }
    }
  }
  visit(nodeModules)
  return found
}

interface Block {
  readonly line: number
  readonly compileOnly: boolean
  readonly code: string
}

/** The ```ts blocks of a Markdown text, with the line of their opening fence. */
const tsBlocks = (markdown: string): Array<Block> => {
  const blocks: Array<Block> = []
  const lines = markdown.split("\n")
  for (let index = 0; index < lines.length; index++) {
    const fence = /^```ts(?:\s+(.*))?$/.exec(lines[index]!)
    if (fence === null) continue
    const start = index
    const body: Array<string> = []
    while (++index < lines.length && lines[index] !== "```") body.push(lines[index]!)
    blocks.push({ line: start + 1, compileOnly: (fence[1] ?? "").split(/\s+/).includes("compile-only"), code: body.join("\n") })
  }
  return blocks
}

const work = mkdtempSync(join(tmpdir(), "effect-jobs-package-"))
const consumer = join(work, "consumer")
let tarball = ""
let packed: ReadonlyArray<string> = []

beforeAll(async () => {
  await ensureBuilt()
  const pack = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", work], { cwd: root })
  if (pack.code !== 0) throw new Error(`npm pack failed:\n${pack.stderr}`)
  const [info] = JSON.parse(pack.stdout) as Array<{ readonly filename: string; readonly files: Array<{ readonly path: string }> }>
  tarball = join(work, info!.filename)
  packed = info!.files.map((file) => file.path)

  mkdirSync(consumer)
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }))
  const effectVersion = (JSON.parse(readFileSync(join(root, "node_modules", "effect", "package.json"), "utf8")) as {
    readonly version: string
  }).version
  const install = await run("npm", [
    "install",
    tarball,
    `effect@${effectVersion}`,
    "--ignore-scripts",
    "--prefer-offline",
    "--no-audit",
    "--no-fund",
    "--loglevel=error"
  ], { cwd: consumer, timeout: 150_000 })
  if (install.code !== 0) throw new Error(`npm install failed:\n${install.stdout}${install.stderr}`)
}, 240_000)

afterAll(() => rmSync(work, { recursive: true, force: true }))

describe("the packed package", () => {
  it("holds the built modules, the README, the LICENSE and the CLI, and no tests", () => {
    expect(packed).toEqual(expect.arrayContaining([
      "LICENSE",
      "README.md",
      "package.json",
      "dist/index.js",
      "dist/index.d.ts",
      "dist/promise.js",
      "dist/cli.js",
      "dist/SqlJobRepository.js"
    ]))
    expect(packed.filter((file) => file.startsWith("test/") || file.startsWith("bench/"))).toEqual([])
    expect(readFileSync(join(root, "LICENSE"), "utf8")).toMatch(/^MIT License/)
  })

  it("installed next to effect alone: one copy of effect and of each @effect package, and no @effect/sql-pg or @effect/cli", () => {
    const packages = effectPackages(join(consumer, "node_modules"))
    const twice = [...packages].filter(([, dirs]) => dirs.length > 1)
    expect(twice).toEqual([])
    expect(packages.get("effect")).toEqual([join(consumer, "node_modules", "effect")])
    // The peers npm added, each once, at the top.
    for (const peer of ["@effect/platform", "@effect/platform-node", "@effect/sql"]) {
      expect(packages.get(peer)).toEqual([join(consumer, "node_modules", ...peer.split("/"))])
    }
    expect(packages.has("@effect/sql-pg")).toBe(false)
    expect(packages.has("@effect/cli")).toBe(false)
  })

  it("both APIs run a job from the installed package; PostgreSQL without @effect/sql-pg says what to install", async () => {
    writeFileSync(
      join(consumer, "smoke.mjs"),
      `import { Effect, Layer } from "effect"
import { ChunkWorker, JobManager, JobRepository, SqlJobRepository } from "effect-jobs"
import { createJobManager } from "effect-jobs/promise"

const Manager = JobManager.layer({ concurrency: 2 }).pipe(
  Layer.provide(JobRepository.layerMemory),
  Layer.provide(ChunkWorker.layer((chunk) => Effect.succeed(chunk.id)))
)
const effectStatus = await Effect.runPromise(
  Effect.provide(Effect.flatMap(JobManager.JobManager, (jobs) => jobs.runJob({ chunks: { start: 0, end: 9, size: 2 } })), Manager)
)
const manager = await createJobManager({ worker: async () => {} })
const promiseStatus = await manager.runJob({ name: "one", chunks: [{ id: 0, payload: null }] })
const page = await manager.listJobs()
await manager.close()
const pg = await createJobManager({ worker: async () => {}, store: "postgres://127.0.0.1:1/none" }).then(
  () => "opened",
  (error) => error.message
)
console.log(JSON.stringify({
  effect: [effectStatus.state, effectStatus.completedChunks],
  promise: [promiseStatus.state, page.jobs.length, page.nextCursor === undefined],
  sqlStore: typeof SqlJobRepository.layerSqlite,
  pg
}))
`
    )
    const smoke = await node(["smoke.mjs"], consumer, 30_000)
    expect(smoke.stderr).toBe("")
    expect(smoke.code).toBe(0)
    expect(JSON.parse(smoke.stdout)).toEqual({
      effect: ["completed", 5],
      promise: ["completed", 1, true],
      sqlStore: "function",
      pg: "job store error during open: the PostgreSQL store needs the package @effect/sql-pg: npm install @effect/sql-pg@0.53"
    })
  })

  it("the CLI runs from the installed package without @effect/cli, and --pg without @effect/sql-pg says what to install", async () => {
    const cli = join(consumer, "node_modules", "effect-jobs", "dist", "cli.js")
    const help = await node([cli, "--help"], consumer, 30_000)
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("effect-jobs")
    const pg = await node([cli, "list", "--pg", "postgres://127.0.0.1:1/none"], consumer, 30_000)
    expect(pg.code).toBe(1)
    expect(pg.stderr.trimEnd().split("\n")).toEqual([expect.stringContaining("npm install @effect/sql-pg@0.53")])
  })
})

describe("README.md", () => {
  const blocks = tsBlocks(readFileSync(join(root, "README.md"), "utf8"))
  const project = join(consumer, "readme")
  const fileOf = (block: Block) => `line-${block.line}.ts`
  let compiled: Ran | undefined

  /** Compiles every block once (a project of `tsc --init`, with Node's types); later tests reuse the result. */
  const compile = async (): Promise<Ran> => {
    if (compiled !== undefined) return compiled
    mkdirSync(project, { recursive: true })
    const init = await node([tsc, "--init"], project, 30_000)
    if (init.code !== 0) throw new Error(`tsc --init failed:\n${init.stdout}`)
    writeFileSync(join(project, "tsconfig.init.json"), readFileSync(join(project, "tsconfig.json")))
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        extends: "./tsconfig.init.json",
        compilerOptions: {
          strict: true,
          types: ["node"],
          typeRoots: [join(root, "node_modules", "@types")],
          outDir: "out",
          rootDir: "."
        },
        include: ["*.ts"]
      })
    )
    for (const block of blocks) writeFileSync(join(project, fileOf(block)), block.code)
    compiled = await node([tsc, "-p", "tsconfig.json", "--strict"], project, 120_000)
    return compiled
  }

  it("has ts blocks, some of them runnable", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5)
    expect(blocks.filter((block) => !block.compileOnly).length).toBeGreaterThanOrEqual(3)
  })

  it("every ts block compiles with tsc --strict against the installed package", async () => {
    const result = await compile()
    // Errors name the README's lines: `line-50.ts(3,7)` is README.md line 50 + 3.
    const errors = result.stdout.replace(/^line-(\d+)\.ts\((\d+),(\d+)\)/gm, (_, block: string, line: string, column: string) =>
      `README.md:${Number(block) + Number(line)}:${column}`)
    expect(errors, "each ```ts block compiles alone: give it its own imports and values").toBe("")
    expect(result.code).toBe(0)
  }, 150_000)

  it("the blocks not marked compile-only run and end by themselves, without errors", async () => {
    const result = await compile()
    expect(result.code).toBe(0)
    for (const block of blocks.filter((block) => !block.compileOnly)) {
      const cwd = mkdtempSync(join(work, "run-"))
      const ran = await node([join(project, "out", fileOf(block).replace(/\.ts$/, ".js"))], cwd, 45_000)
      expect(
        { line: block.line, code: ran.code, stderr: ran.stderr },
        "a block that cannot run by itself within seconds is fenced ```ts compile-only"
      ).toEqual({ line: block.line, code: 0, stderr: "" })
    }
  }, 300_000)
})
