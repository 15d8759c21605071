/**
 * Settings of the PostgreSQL sessions the store and the cluster open.
 */
import * as Duration from "effect/Duration"

/**
 * How long a session of the store may sit idle inside a transaction before PostgreSQL ends it: the default
 * `staleAfter` of a manager, after which other managers take a silent owner's jobs over anyway.
 */
export const defaultIdleTransactionTimeout: Duration.Duration = Duration.seconds(5)

/**
 * `url` with `idle_in_transaction_session_timeout` set for its sessions (unless it sets its own `options`):
 * a process that hangs inside a transaction (SIGSTOP, a frozen VM) keeps its row locks as long as its session
 * lives, and those would block the processes taking its jobs over; PostgreSQL ends such a session after
 * `timeout` (its transaction is rolled back, so none of its writes land). A healthy process never waits that
 * long between the statements of a transaction.
 */
export const withIdleTransactionTimeout = (url: string, timeout: Duration.Duration): string => {
  if (!URL.canParse(url)) return url
  const parsed = new URL(url)
  if (parsed.searchParams.has("options")) return url
  parsed.searchParams.set("options", `-c idle_in_transaction_session_timeout=${Math.ceil(Duration.toMillis(timeout))}`)
  return parsed.toString()
}
