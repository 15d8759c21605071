/**
 * The two ends of the chunk entity's protocol (src/internal/attemptBatches.ts) without a cluster: a
 * dispatcher's batcher over a recording transport, a runner's attempt table over controllable slots, and
 * the two joined by an in-memory transport.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import type { RunReply, Settled, SlotResult } from "../src/internal/attemptBatches.js"
import { makeAttemptTable, makeBatcher } from "../src/internal/attemptBatches.js"

type Attempt = { readonly name: string }
type Keyed = Attempt & { readonly key: string }

/** Lets the event loop take a few turns (the batcher flushes at the end of a turn). */
const turns = (count = 3) =>
  Effect.promise(async () => {
    for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve))
  })

/** A transport that records every request and answers `run` with what the test puts in `replies`. */
const recordingTransport = () => {
  const runs: Array<{ readonly entityId: string; readonly start: ReadonlyArray<Keyed>; readonly awaiting: ReadonlyArray<string> }> = []
  const interrupts: Array<{ readonly entityId: string; readonly keys: ReadonlyArray<string> }> = []
  const pending: Array<Deferred.Deferred<RunReply, string>> = []
  const interruptAnswers: Array<Deferred.Deferred<void>> = []
  return {
    runs,
    interrupts,
    pending,
    interruptAnswers,
    transport: {
      run: (entityId: string, start: ReadonlyArray<Keyed>, awaiting: ReadonlyArray<string>) =>
        Effect.suspend(() => {
          runs.push({ entityId, start, awaiting })
          const reply = Deferred.unsafeMake<RunReply, string>(undefined as never)
          pending.push(reply)
          return Deferred.await(reply)
        }),
      interrupt: (entityId: string, keys: ReadonlyArray<string>) =>
        Effect.suspend(() => {
          interrupts.push({ entityId, keys })
          const answered = Deferred.unsafeMake<void>(undefined as never)
          interruptAnswers.push(answered)
          return Deferred.await(answered)
        })
    }
  }
}

const reply = (settled: ReadonlyArray<Settled>): RunReply => ({ runner: "r1", capacity: 4, settled })

/** A batcher over a recording transport (interrupt confirmations bounded by 1 s). */
const recordingBatcher = Effect.gen(function*() {
  const recorded = recordingTransport()
  const batcher = yield* makeBatcher<Attempt>(recorded.transport, { keyPrefix: "d/", confirmWithin: "1 second" })
  return { batcher, recorded }
})

describe("batcher (a dispatcher's end)", () => {
  it.scoped("sends the attempts of one turn to one entity in one request, and answers each on its own", () =>
    Effect.gen(function*() {
      const { batcher, recorded } = yield* recordingBatcher
      const fibers = yield* Effect.forEach(
        ["a", "b", "c"],
        (name) => Effect.fork(batcher.submit(name === "c" ? "other" : "slot-1", { name })),
        { concurrency: "unbounded" }
      )
      yield* turns()
      expect(recorded.runs.map((run) => [run.entityId, run.start.map((attempt) => attempt.name), run.awaiting])).toEqual([
        ["slot-1", ["a", "b"], []],
        ["other", ["c"], []]
      ])
      const [a, b] = recorded.runs[0]!.start.map((attempt) => attempt.key)
      // Only `a` settled: `a` is answered, `b` is waited for in the next request (nothing sent again).
      yield* Deferred.succeed(recorded.pending[0]!, reply([{ key: a!, outcome: "failure", message: "boom" }]))
      expect(yield* Fiber.join(fibers[0]!)).toEqual({ outcome: "failure", message: "boom", runner: "r1", capacity: 4 })
      yield* turns()
      expect(recorded.runs[2]).toEqual({ entityId: "slot-1", start: [], awaiting: [b] })
      yield* Deferred.succeed(recorded.pending[2]!, reply([{ key: b!, outcome: "done" }]))
      expect((yield* Fiber.join(fibers[1]!)).outcome).toBe("done")
      expect(fibers[2]!.unsafePoll()).toBeNull()
      yield* Deferred.succeed(recorded.pending[1]!, reply([{ key: recorded.runs[1]!.start[0]!.key, outcome: "done" }]))
      expect((yield* Fiber.join(fibers[2]!)).outcome).toBe("done")
    }))

  it.scoped("answers every attempt of a request that failed (no runner answered) as lost", () =>
    Effect.gen(function*() {
      const { batcher, recorded } = yield* recordingBatcher
      const fibers = yield* Effect.forEach(["a", "b"], (name) => Effect.fork(batcher.submit("slot-1", { name })))
      yield* turns()
      yield* Deferred.fail(recorded.pending[0]!, "runner unavailable")
      for (const fiber of fibers) expect((yield* Fiber.join(fiber)).outcome).toBe("lost")
      // They are sent elsewhere next: the runner is asked to stop them, in case it still runs them.
      yield* turns()
      expect(recorded.interrupts).toEqual([{ entityId: "slot-1", keys: recorded.runs[0]!.start.map((attempt) => attempt.key) }])
    }))

  it.scoped("an interruption waits for the runner's answer at most confirmWithin (a hung runner never answers)", () =>
    Effect.gen(function*() {
      const { batcher, recorded } = yield* recordingBatcher
      const sent = yield* Effect.fork(batcher.submit("slot-1", { name: "a" }))
      yield* turns()
      const interrupting = yield* Effect.fork(Fiber.interrupt(sent))
      yield* turns()
      expect(recorded.interrupts).toHaveLength(1)
      yield* TestClock.adjust("999 millis")
      expect(interrupting.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      expect(Exit.isInterrupted(yield* Fiber.join(interrupting))).toBe(true)
    }))

  it.scoped("interrupting an attempt sent interrupts it on the runner and waits for the runner's answer; one not sent yet sends nothing", () =>
    Effect.gen(function*() {
      const { batcher, recorded } = yield* recordingBatcher
      const sent = yield* Effect.fork(batcher.submit("slot-1", { name: "a" }))
      yield* turns()
      const key = recorded.runs[0]!.start[0]!.key
      const interrupting = yield* Effect.fork(Fiber.interrupt(sent))
      yield* turns()
      expect(recorded.interrupts).toEqual([{ entityId: "slot-1", keys: [key] }])
      // Not confirmed by the runner yet: the interruption waits.
      expect(interrupting.unsafePoll()).toBeNull()
      yield* Deferred.succeed(recorded.interruptAnswers[0]!, undefined)
      expect(Exit.isInterrupted(yield* Fiber.join(interrupting))).toBe(true)

      const unsent = yield* Effect.fork(batcher.submit("slot-1", { name: "b" }))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(unsent)
      yield* turns()
      expect(recorded.runs).toHaveLength(1)
      expect(recorded.interrupts).toHaveLength(1)
    }))
})

/** Slots whose attempts end when the test says so (by attempt name), recording what ran and what was interrupted. */
const controlledSlots = () => {
  const ends = new Map<string, Deferred.Deferred<SlotResult>>()
  const started: Array<string> = []
  const interrupted: Array<string> = []
  const end = (name: string, result: SlotResult) => Deferred.succeed(ends.get(name)!, result)
  const run = (attempt: Keyed): Effect.Effect<SlotResult> =>
    Effect.suspend(() => {
      started.push(attempt.name)
      const ended = Deferred.unsafeMake<SlotResult>(undefined as never)
      ends.set(attempt.name, ended)
      return Deferred.await(ended).pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted.push(attempt.name))))
    })
  return { run, end, started, interrupted }
}

describe("attempt table (a runner's end)", () => {
  it.scoped("answers a request as soon as one of its attempts settles, the rest in later requests; an unknown attempt is lost", () =>
    Effect.gen(function*() {
      const slots = controlledSlots()
      const table = yield* makeAttemptTable(slots.run, { orphanAfter: "30 seconds", leaving: () => false })
      const first = yield* Effect.fork(table.run([{ key: "k1", name: "a" }, { key: "k2", name: "b" }], []))
      yield* turns()
      expect(slots.started).toEqual(["a", "b"])
      expect(first.unsafePoll()).toBeNull()
      yield* slots.end("a", { outcome: "done" })
      expect(yield* Fiber.join(first)).toEqual([{ key: "k1", outcome: "done" }])
      // `b` is still running: a request waiting for it (and starting `c`) gets whichever settles first.
      const second = yield* Effect.fork(table.run([{ key: "k3", name: "c" }], ["k2"]))
      yield* turns()
      yield* slots.end("b", { outcome: "non-retryable", message: "bad frame" })
      yield* slots.end("c", { outcome: "busy" })
      expect(yield* Fiber.join(second)).toEqual([
        { key: "k3", outcome: "busy" },
        { key: "k2", outcome: "non-retryable", message: "bad frame" }
      ])
      expect(yield* table.run([], ["k1", "nobody"])).toEqual([
        { key: "k1", outcome: "lost" },
        { key: "nobody", outcome: "lost" }
      ])
    }))

  it.scoped("interrupts attempts on request (the answer comes once they ended), and an interrupt that overtakes the start cancels it", () =>
    Effect.gen(function*() {
      const slots = controlledSlots()
      const table = yield* makeAttemptTable(slots.run, { orphanAfter: "30 seconds", leaving: () => false })
      const waiting = yield* Effect.fork(table.run([{ key: "k1", name: "a" }], []))
      yield* turns()
      yield* table.interrupt(["k1"])
      expect(slots.interrupted).toEqual(["a"])
      expect(yield* Fiber.join(waiting)).toEqual([{ key: "k1", outcome: "interrupted" }])

      yield* table.interrupt(["k2"])
      expect(yield* table.run([{ key: "k2", name: "b" }], [])).toEqual([{ key: "k2", outcome: "interrupted" }])
      expect(slots.started).toEqual(["a"])
    }))

  it.scoped("interrupts the attempts of one interrupt all at once", () =>
    Effect.gen(function*() {
      const stopping: Array<string> = []
      const stopped = yield* Deferred.make<void>()
      // Attempts whose worker takes a while to stop once interrupted.
      const table = yield* makeAttemptTable(
        (attempt: Keyed) =>
          Effect.never.pipe(
            Effect.as<SlotResult>({ outcome: "done" }),
            Effect.onInterrupt(() => Effect.zipRight(Effect.sync(() => stopping.push(attempt.name)), Deferred.await(stopped)))
          ),
        { orphanAfter: "30 seconds", leaving: () => false }
      )
      yield* Effect.fork(table.run([{ key: "k1", name: "a" }, { key: "k2", name: "b" }], []))
      yield* turns()
      const interrupting = yield* Effect.fork(table.interrupt(["k1", "k2"]))
      yield* turns()
      expect(stopping.sort()).toEqual(["a", "b"])
      expect(interrupting.unsafePoll()).toBeNull()
      yield* Deferred.succeed(stopped, undefined)
      yield* Fiber.join(interrupting)
    }))

  it.scoped("answers a request after orphanAfter / 2 even with nothing settled, so an abandoned request does not keep its attempts", () =>
    Effect.gen(function*() {
      const slots = controlledSlots()
      const table = yield* makeAttemptTable(slots.run, { orphanAfter: "10 seconds", leaving: () => false })
      const request = yield* Effect.fork(table.run([{ key: "k1", name: "a" }], []))
      yield* turns()
      yield* TestClock.adjust("5 seconds")
      yield* turns()
      expect(yield* Fiber.join(request)).toEqual([])
      // Nobody waits for it again (the dispatcher that sent it is gone): interrupted after orphanAfter.
      yield* TestClock.adjust("10 seconds")
      expect(slots.interrupted).toEqual(["a"])
    }))

  it.scoped("while the runner is leaving, a request waits for all its attempts (the next one would be refused)", () =>
    Effect.gen(function*() {
      const slots = controlledSlots()
      let leaving = false
      const table = yield* makeAttemptTable(slots.run, { orphanAfter: "30 seconds", leaving: () => leaving })
      const request = yield* Effect.fork(table.run([{ key: "k1", name: "a" }, { key: "k2", name: "b" }], []))
      yield* turns()
      leaving = true
      yield* slots.end("a", { outcome: "done" })
      yield* turns()
      expect(request.unsafePoll()).toBeNull()
      yield* slots.end("b", { outcome: "done" })
      expect(yield* Fiber.join(request)).toEqual([{ key: "k1", outcome: "done" }, { key: "k2", outcome: "done" }])
    }))

  it.scoped("interrupting a request interrupts the attempts it waits for", () =>
    Effect.gen(function*() {
      const slots = controlledSlots()
      const table = yield* makeAttemptTable(slots.run, { orphanAfter: "30 seconds", leaving: () => false })
      const request = yield* Effect.fork(table.run([{ key: "k1", name: "a" }, { key: "k2", name: "b" }], []))
      yield* turns()
      yield* Fiber.interrupt(request)
      expect(slots.interrupted.sort()).toEqual(["a", "b"])
    }))

  it.scoped("interrupts an attempt no request waited for during orphanAfter, and drops answers nobody collected", () =>
    Effect.gen(function*() {
      const slots = controlledSlots()
      const table = yield* makeAttemptTable(slots.run, { orphanAfter: "10 seconds", leaving: () => false })
      const first = yield* Effect.fork(table.run([{ key: "k1", name: "a" }, { key: "k2", name: "b" }, { key: "k3", name: "c" }], []))
      yield* turns()
      yield* slots.end("a", { outcome: "done" })
      expect(yield* Fiber.join(first)).toEqual([{ key: "k1", outcome: "done" }])
      // Nobody waits for `b` or `c` from now on (their dispatcher died); `c` settles, nobody collects it.
      yield* slots.end("c", { outcome: "done" })
      yield* turns()
      yield* TestClock.adjust(Duration.seconds(9))
      expect(slots.interrupted).toEqual([])
      yield* TestClock.adjust(Duration.seconds(6))
      expect(slots.interrupted).toEqual(["b"])
      expect(yield* table.run([], ["k3"])).toEqual([{ key: "k3", outcome: "lost" }])
    }))
})

describe("batcher and attempt table together", () => {
  it.scoped("attempts that start together and end together cost one request and one reply", () =>
    Effect.gen(function*() {
      const slots = controlledSlots()
      const table = yield* makeAttemptTable(slots.run, { orphanAfter: "30 seconds", leaving: () => false })
      let requests = 0
      const batcher = yield* makeBatcher<Attempt>({
        run: (_, start, awaiting) => Effect.suspend(() => {
          requests++
          return Effect.map(table.run(start, awaiting), (settled) => reply(settled))
        }),
        interrupt: (_, keys) => table.interrupt(keys)
      }, { keyPrefix: "d/", confirmWithin: "1 second" })
      const names = ["a", "b", "c", "d"]
      const fibers = yield* Effect.forEach(names, (name) => Effect.fork(batcher.submit("slot-1", { name })))
      yield* turns()
      expect(slots.started).toEqual(names)
      yield* Effect.forEach(names, (name) => slots.end(name, { outcome: "done" }))
      for (const fiber of fibers) expect((yield* Fiber.join(fiber)).outcome).toBe("done")
      expect(requests).toBe(1)
      // One that ends later is answered on its own, in the request that waits for the rest.
      const [e, f] = yield* Effect.forEach(["e", "f"], (name) => Effect.fork(batcher.submit("slot-1", { name })))
      yield* turns()
      yield* slots.end("e", { outcome: "done" })
      expect((yield* Fiber.join(e!)).outcome).toBe("done")
      expect(f!.unsafePoll()).toBeNull()
      yield* turns()
      yield* slots.end("f", { outcome: "done" })
      expect((yield* Fiber.join(f!)).outcome).toBe("done")
      expect(requests).toBe(3)
    }))
})
