import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as GroupCommit from "../src/internal/groupCommit.js"

describe("GroupCommit", () => {
  it.live("callers interrupted at any step of submit never wedge the group commit: a later submit is answered", () =>
    Effect.gen(function*() {
      const written: Array<number> = []
      const commit = yield* GroupCommit.make((group: ReadonlyArray<number>) =>
        Effect.sync(() => {
          written.push(...group)
          return group.map((item) => Exit.succeed(item))
        })
      )
      /** `effect` after `steps` steps of the run loop. */
      const after = (steps: number, effect: Effect.Effect<number>): Effect.Effect<number> =>
        steps === 0 ? effect : Effect.suspend(() => after(steps - 1, effect))
      for (let item = 0; item < 300; item++) {
        // The caller's fiber yields (its op count, 2,048, is spent) at a step of `submit` that moves with `item`,
        // and is interrupted there.
        const caller = yield* Effect.fork(after(1_950 + (item % 100), commit.submit(item)))
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(caller)
      }
      const last = yield* Effect.timeout(commit.submit(300), "5 seconds").pipe(Effect.option)
      expect(last).toStrictEqual(Option.some(300))
      expect(written).toContain(300)
    }))
})
