/**
 * Optional peer dependencies (`@effect/sql-pg`, the cluster's packages): imported only when a feature needs them, so a user who does
 * not use the feature need not install them, and one who does gets one line naming the package to install.
 */
import * as Effect from "effect/Effect"
import { describeError, RepositoryError } from "../JobError.js"

/** Whether `error` says that `name` itself (not one of its own dependencies) could not be found. */
const isMissing = (error: unknown, name: string): boolean =>
  typeof error === "object" && error !== null &&
  ((error as { readonly code?: unknown }).code === "ERR_MODULE_NOT_FOUND" ||
    (error as { readonly code?: unknown }).code === "MODULE_NOT_FOUND") &&
  String((error as { readonly message?: unknown }).message).includes(`'${name}'`)

/**
 * The optional peers a project may lack, with the versions to install: the latest of each is for Effect 4, so
 * a bare `npm install <name>` would not fit.
 */
const peerVersions = {
  "@effect/sql-pg": "0.53",
  "@effect/cluster": "0.60.2",
  "@effect/rpc": "0.76.2",
  "@effect/workflow": "0.19.1",
  "@effect/experimental": "0.61.1"
} as const

/** What to run to install the optional peer `name`, at the version that fits this package. */
const installCommand = (name: string): string =>
  `npm install ${name}${Object.hasOwn(peerVersions, name) ? `@${peerVersions[name as keyof typeof peerVersions]}` : ""}`

/**
 * Loads the optional peer `name` with `load` (an `import()` of it, so that its types are checked here). Fails
 * with a `RepositoryError` whose detail is, when the package is not installed, `<feature> needs the package
 * <name>: npm install <name>@<version>`.
 */
export const importPeer = <M>(
  name: string,
  feature: string,
  load: () => Promise<M>
): Effect.Effect<M, RepositoryError> =>
  Effect.tryPromise({
    try: load,
    catch: (error) =>
      new RepositoryError({
        operation: "open",
        detail: isMissing(error, name)
          ? `${feature} needs the package ${name}: ${installCommand(name)}`
          : `could not load ${name}: ${describeError(error)}`
      })
  })


/**
 * Loads the cluster module with `load` (an `import()` of `Cluster.js`). Fails with a `RepositoryError` whose
 * detail is, when one of the packages it needs is not installed, `cluster mode needs the package <name>:
 * npm install <name>@<version>`.
 */
export const importCluster = <M>(load: () => Promise<M>): Effect.Effect<M, RepositoryError> =>
  Effect.tryPromise({
    try: load,
    catch: (error) => {
      const missing = Object.keys(peerVersions).find((name) => isMissing(error, name))
      return new RepositoryError({
        operation: "open",
        detail: missing === undefined
          ? `could not load cluster mode: ${describeError(error)}`
          : `cluster mode needs the package ${missing}: ${installCommand(missing)}`
      })
    }
  })
