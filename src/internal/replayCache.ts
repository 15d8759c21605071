/**
 * The recently received requests of a worker server, by key (a signature's nonce, or an execution id), each
 * remembered until an expiry time, so that a request received twice can be refused the second time.
 *
 * Memory is bounded: at most `capacity` keys. A new key that finds the cache full is refused; a key is never
 * forgotten before its expiry to make room. Expired keys are dropped as new keys arrive, in constant
 * amortized time: oldest first, stopping at the first that has not expired. So a key may be remembered
 * longer than asked when expiries arrive out of order (after a key from a client whose clock is ahead),
 * never shorter.
 */
export class ReplayCache {
  readonly #capacity: number
  readonly #keys = new Set<string>()
  /** Every remembered key and its expiry, in arrival order, from `#head` on. */
  #queue: Array<string> = []
  #expiries: Array<number> = []
  #head = 0

  constructor(capacity: number) {
    this.#capacity = capacity
  }

  /** How many keys are remembered (expired ones included until the next `add`). */
  get size(): number {
    return this.#keys.size
  }

  /**
   * Forgets the keys whose expiry is before `now`, then remembers `key` until at least `expiresAt`:
   * `"added"`; or `"seen"` if it is remembered already, or `"full"` if `capacity` keys are (and then nothing
   * changes but the forgetting).
   */
  add(key: string, expiresAt: number, now: number): "added" | "seen" | "full" {
    this.#forgetExpired(now)
    if (this.#keys.has(key)) return "seen"
    if (this.#keys.size >= this.#capacity) return "full"
    this.#keys.add(key)
    this.#queue.push(key)
    this.#expiries.push(expiresAt)
    return "added"
  }

  #forgetExpired(now: number): void {
    while (this.#head < this.#queue.length && this.#expiries[this.#head]! < now) {
      this.#keys.delete(this.#queue[this.#head]!)
      this.#head++
    }
    // Drop the forgotten prefix once it is most of the arrays: fewer keys are copied than were forgotten.
    if (this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#expiries = this.#expiries.slice(this.#head)
      this.#head = 0
    }
  }
}
