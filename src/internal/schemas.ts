/** Schemas of option values shared by the modules that take them. */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * Whether a duration input is written as a negative or NaN amount: `Duration` would turn it into zero
 * (`-5`, `"-5 seconds"`, `NaN`, `[-1, 0]`), and it must be refused instead.
 */
const isNegativeOrNaN = (input: unknown): boolean => {
  if (typeof input === "number") return !(input >= 0)
  if (typeof input === "bigint") return input < 0n
  if (typeof input === "string") return input.startsWith("-")
  if (Array.isArray(input)) return input.some((part) => typeof part === "number" && !(part >= 0))
  return false
}

const durationInput = (positive: boolean) =>
  Schema.declare(
    (input: unknown): input is Duration.DurationInput =>
      !isNegativeOrNaN(input) && Option.match(Duration.decodeUnknown(input), {
        onNone: () => false,
        onSome: (duration) =>
          Duration.isFinite(duration) && (positive ? Duration.toMillis(duration) > 0 : Duration.toMillis(duration) >= 0)
      }),
    {
      identifier: positive ? "PositiveDurationInput" : "DurationInput",
      description: "a duration: milliseconds as a number, or a string such as \"5 seconds\"",
      message: () =>
        `expected a finite duration ${
          positive ? "greater than zero" : "of zero or more"
        } (milliseconds, or a string such as "2 seconds")`
    }
  )

/** A finite, non-negative duration input (milliseconds, or a string such as `"2 seconds"`). */
export const DurationInput = durationInput(false)

/** A finite duration input greater than zero: for a timeout or a bound where zero makes no sense. */
export const PositiveDurationInput = durationInput(true)

/** A function option: only that it is a function can be checked; `description` says which one. */
export const FunctionInput = <F extends (...args: Array<any>) => unknown>(description: string) =>
  Schema.declare((input: unknown): input is F => typeof input === "function", {
    message: () => `expected ${description}`
  })
