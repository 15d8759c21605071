/**
 * The one check every JSON value entering effect-jobs goes through (specs, metadata, chunk payloads,
 * finalize payloads, and chunks and results on the worker wire): it walks the value once and returns a
 * fresh plain copy, or the first problem and its path.
 *
 * Accepted: `null`, booleans, finite numbers, strings, arrays (of `Array.prototype`) and plain objects
 * (of `Object.prototype` or no prototype). Properties whose value is `undefined` are left out, as
 * `JSON.stringify` leaves them out. Everything else is refused: `undefined` in an array, `NaN`,
 * `Infinity`, bigints, symbols, functions, class instances (`Date`, `Map`, typed arrays, ...), proxies,
 * circular structures, nesting deeper than the limit, a `__proto__` key, a `constructor` key holding a
 * `prototype` key, and a value whose getter or proxy trap throws. Each property is read once, so the copy
 * is what was checked, and no key of the copy can reach a prototype.
 */
import * as Either from "effect/Either"
import { types } from "node:util"
import type { Json } from "../Job.js"

/** Why a value was refused, and where (`path` is relative to the value walked). */
export interface JsonIssue {
  readonly path: ReadonlyArray<string | number>
  readonly detail: string
}

/** The deepest nesting of arrays and objects in a JSON value (a scalar is 0 deep, `[]` and `{}` are 1). */
export const maxJsonDepth = 64

/**
 * Marks the places where a JSON value starts inside a larger document (see {@link CopyOptions.layout}):
 * `"json"` marks one; an object maps property names to layouts, a one-element array gives the layout of
 * every element.
 */
export type Layout = "json" | { readonly [key: string]: Layout } | readonly [Layout]

/** Options of {@link copyJson}. */
export interface CopyOptions {
  /**
   * Refuse the value, with `message`, once its JSON encoding (UTF-8, no whitespace) exceeds `bytes`; the
   * walk stops there, so a huge value costs no more than the limit.
   */
  readonly maxBytes?: { readonly bytes: number; readonly message: string } | undefined
  /**
   * For a document that holds JSON values at known places (a job spec): depth is counted from each
   * place marked `"json"`, so each of those values may nest `maxJsonDepth` levels. Without a layout the
   * walked value is itself the JSON value.
   */
  readonly layout?: Layout | undefined
}

class Refused {
  constructor(readonly message: string) {}
}

const describe = (value: unknown): string => {
  if (value === undefined) return "undefined"
  if (typeof value === "number") return String(value)
  if (typeof value !== "object") return `a ${typeof value}`
  if (types.isProxy(value)) return "a Proxy"
  const prototype = Object.getPrototypeOf(value) as { readonly constructor?: unknown } | null
  const constructor = prototype === null ? undefined : Object.getOwnPropertyDescriptor(prototype, "constructor")
  const name = typeof constructor?.value === "function" ? (constructor.value as { name?: unknown }).name : undefined
  return typeof name === "string" && name !== "" ? `a ${name}` : "an object with a prototype"
}

const notJson = (value: unknown): Refused =>
  new Refused(
    `expected plain JSON (null, a boolean, a finite number, a string, an array or a plain object), got ${
      describe(value)
    }`
  )

const describeThrown = (error: unknown): string => {
  try {
    return error instanceof Error ? error.message : String(error)
  } catch {
    return "a value that cannot be shown"
  }
}

/** Bytes of the JSON encoding of a finite number. */
const numberBytes = (value: number): number => {
  if (!Number.isInteger(value) || Math.abs(value) >= 1e21) return JSON.stringify(value).length
  let digits = 1
  for (let bound = 10, magnitude = Math.abs(value); magnitude >= bound; bound *= 10) digits++
  return value < 0 ? digits + 1 : digits
}

/** Bytes of the JSON encoding of a string (UTF-8, with its quotes and escapes), counted up to `limit`. */
const stringBytes = (value: string, limit: number): number => {
  let bytes = 2 + value.length
  if (bytes > limit) return bytes
  for (let index = 0; index < value.length && bytes <= limit; index++) {
    const code = value.charCodeAt(index)
    if (code < 0x80) {
      if (code === 0x22 || code === 0x5c) bytes += 1
      else if (code < 0x20) bytes += code === 8 || code === 9 || code === 10 || code === 12 || code === 13 ? 1 : 5
    } else if (code < 0x800) {
      bytes += 1
    } else if (code >= 0xd800 && code <= 0xdbff) {
      const next = value.charCodeAt(index + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2 // a pair: 4 bytes for 2 code units
        index++
      } else {
        bytes += 5 // a lone surrogate is written as \udxxx
      }
    } else {
      bytes += code >= 0xdc00 && code <= 0xdfff ? 5 : 2
    }
  }
  return bytes
}

/** One walk: the path to the value being read, its ancestors (for cycles) and the bytes left. */
class Walk {
  readonly path: Array<string | number> = []
  private readonly ancestors: Array<object> = []
  private remaining: number

  constructor(private readonly maxBytes: CopyOptions["maxBytes"]) {
    this.remaining = maxBytes === undefined ? Number.POSITIVE_INFINITY : maxBytes.bytes
  }

  private spend(bytes: number): void {
    this.remaining -= bytes
    if (this.remaining < 0) throw new Refused(this.maxBytes!.message)
  }

  private enter(value: object, depth: number): void {
    if (this.ancestors.includes(value)) throw new Refused("a circular reference (JSON cannot hold one)")
    if (depth > maxJsonDepth) throw new Refused(`nested deeper than ${maxJsonDepth} levels`)
    this.ancestors.push(value)
  }

  copy(value: unknown, depth: number, layout: Layout | undefined): Json {
    const counting = this.maxBytes !== undefined
    switch (typeof value) {
      case "string":
        if (counting) this.spend(stringBytes(value, this.remaining))
        return value
      case "number":
        if (!Number.isFinite(value)) throw notJson(value)
        if (counting) this.spend(numberBytes(value))
        return value
      case "boolean":
        if (counting) this.spend(value ? 4 : 5)
        return value
      case "object":
        break
      default:
        throw notJson(value)
    }
    if (value === null) {
      if (counting) this.spend(4)
      return null
    }
    if (types.isProxy(value)) throw notJson(value)
    const nextDepth = layout === "json" ? 1 : depth + 1
    const prototype = Object.getPrototypeOf(value)
    if (prototype === Array.prototype) {
      const array = value as ReadonlyArray<unknown>
      this.enter(array, nextDepth)
      const elementLayout = layout === undefined || layout === "json" || !Array.isArray(layout) ? undefined : layout[0]
      const length = array.length
      if (counting) this.spend(length === 0 ? 2 : length + 1)
      const out: Array<Json> = new Array(length)
      for (let index = 0; index < length; index++) {
        this.path.push(index)
        const element = array[index]
        if (element === undefined) throw new Refused("expected plain JSON, got undefined (in an array)")
        out[index] = this.copy(element, nextDepth, elementLayout)
        this.path.pop()
      }
      this.ancestors.pop()
      return out
    }
    if (prototype !== Object.prototype && prototype !== null) throw notJson(value)
    this.enter(value, nextDepth)
    const record = value as { readonly [key: string]: unknown }
    const fields = layout === undefined || layout === "json" || Array.isArray(layout)
      ? undefined
      : layout as { readonly [key: string]: Layout }
    if (counting) this.spend(2)
    const out: { [key: string]: Json } = {}
    let written = 0
    for (const key of Object.keys(record)) {
      this.path.push(key)
      if (key === "__proto__") throw new Refused("the key \"__proto__\" is not allowed (it could reach a prototype)")
      const field = record[key]
      if (field !== undefined) {
        if (counting) this.spend(stringBytes(key, this.remaining) + (written === 0 ? 1 : 2))
        const copied = this.copy(field, nextDepth, fields !== undefined && Object.hasOwn(fields, key) ? fields[key] : undefined)
        if (key === "constructor" && typeof copied === "object" && copied !== null && Object.hasOwn(copied, "prototype")) {
          this.path.push("prototype")
          throw new Refused("the key \"prototype\" inside \"constructor\" is not allowed (it could reach a prototype)")
        }
        out[key] = copied
        written++
      }
      this.path.pop()
    }
    this.ancestors.pop()
    return out
  }
}

/**
 * Checks `input` and returns a fresh plain copy of it, or the first problem with its path. Never throws:
 * a getter or proxy trap that throws is reported as a problem at its path.
 */
export const copyJson = (input: unknown, options?: CopyOptions): Either.Either<Json, JsonIssue> => {
  const walk = new Walk(options?.maxBytes)
  try {
    return Either.right(walk.copy(input, 0, options?.layout ?? "json"))
  } catch (error) {
    const detail = error instanceof Refused ? error.message : `reading it threw: ${describeThrown(error)}`
    return Either.left({ path: [...walk.path], detail })
  }
}
