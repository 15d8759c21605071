/**
 * Debian's Chromium (`apt-get install chromium`; `.ci/run` installs it), launched headless by playwright-core
 * for the browser tests and the screenshot script.
 */
import { existsSync } from "node:fs"
import type { Browser } from "playwright-core"
import { chromium } from "playwright-core"

export const executablePath = "/usr/bin/chromium"

export const hasChromium = existsSync(executablePath)

/** Headless, and quiet on a closed network (no background connections that would be refused). */
const args = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath, args })
