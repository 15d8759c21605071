/** Schemas of option values shared by the modules that take them. */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/** A finite, non-negative duration input (milliseconds, or a string such as `"2 seconds"`). */
export const DurationInput = Schema.declare(
  (input: unknown): input is Duration.DurationInput =>
    // `Duration` turns a negative number into zero; refuse it instead.
    !(typeof input === "number" && input < 0) && Option.match(Duration.decodeUnknown(input), {
      onNone: () => false,
      onSome: (duration) => Duration.isFinite(duration) && Duration.toMillis(duration) >= 0
    }),
  {
    identifier: "DurationInput",
    description: "a duration: milliseconds as a number, or a string such as \"5 seconds\"",
    message: () => "expected a finite, non-negative duration (milliseconds, or a string such as \"2 seconds\")"
  }
)

/** A function option: only that it is a function can be checked; `description` says which one. */
export const FunctionInput = <F extends (...args: Array<any>) => unknown>(description: string) =>
  Schema.declare((input: unknown): input is F => typeof input === "function", {
    message: () => `expected ${description}`
  })
