// The effect-jobs dashboard: a page of jobs with live progress, and a job view with its controls. It talks
// to the HTTP API of `effect-jobs serve` (same origin) and renders every value as text, never as HTML.

const tokenKey = "effect-jobs-token"
const pageSize = 50
const states = ["pending", "running", "paused", "completed", "failed", "cancelled"]
const active = new Set(["pending", "running", "paused"])

const $ = (id) => document.getElementById(id)

/** An element with attributes (`on*` functions become listeners) and children (strings become text). */
const h = (tag, attributes = {}, ...children) => {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value)
    else if (name === "style") Object.assign(element.style, value)
    else element.setAttribute(name, value === true ? "" : String(value))
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) element.append(child instanceof Node ? child : String(child))
  }
  return element
}

// --- the token ---------------------------------------------------------------------------------------------

/** A token given as `/?token=T` is kept for this tab and taken out of the address bar (and history). */
const takeTokenFromUrl = () => {
  const params = new URLSearchParams(location.search)
  const token = params.get("token")
  if (token === null) return
  sessionStorage.setItem(tokenKey, token)
  params.delete("token")
  const query = params.toString()
  history.replaceState(null, "", `${location.pathname}${query === "" ? "" : `?${query}`}${location.hash}`)
}

let askingForToken
/** Shows the token form; resolves once a token was entered. */
const askForToken = (refused) => {
  if (askingForToken !== undefined) return askingForToken
  const dialog = $("token-dialog")
  $("token-refused").hidden = !refused
  $("token-input").value = ""
  askingForToken = new Promise((resolve) => {
    const onSubmit = (event) => {
      event.preventDefault()
      const token = $("token-input").value.trim()
      if (token === "") return
      sessionStorage.setItem(tokenKey, token)
      $("token-form").removeEventListener("submit", onSubmit)
      dialog.close()
      askingForToken = undefined
      resolve()
    }
    $("token-form").addEventListener("submit", onSubmit)
  })
  if (!dialog.open) dialog.showModal()
  return askingForToken
}

// --- the API -----------------------------------------------------------------------------------------------

/** Calls the API; a 401 asks for the token and tries again. Other answers are returned as they are. */
const api = async (path, init = {}) => {
  for (;;) {
    const token = sessionStorage.getItem(tokenKey)
    const headers = { ...(init.headers ?? {}), ...(token === null ? {} : { authorization: `Bearer ${token}` }) }
    const response = await fetch(`/api${path}`, { ...init, headers })
    if (response.status !== 401) return response
    await askForToken(token !== null)
  }
}

/** The JSON of a successful answer; a failed one throws an Error with the API's message. */
const json = async (response) => {
  const body = await response.json().catch(() => undefined)
  if (response.ok) return body
  const error = new Error(body?.message ?? `${response.status} ${response.statusText}`)
  error.status = response.status
  error.tag = body?._tag
  throw error
}

/**
 * The `data:` messages of a Server-Sent Events answer, parsed as JSON, until it ends; `onOpen` is called
 * once the server has answered.
 */
async function* events(path, signal, onOpen = () => {}) {
  const response = await api(path, { signal, headers: { accept: "text/event-stream" } })
  if (!response.ok) await json(response)
  onOpen()
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ""
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart())
      if (data.length > 0) yield JSON.parse(data.join("\n"))
    }
  }
}

const showProblem = (error) => {
  const problem = $("problem")
  problem.textContent = error === undefined ? "" : `Could not reach the job store: ${error.message}`
  problem.hidden = error === undefined
}

// --- formatting --------------------------------------------------------------------------------------------

const duration = (seconds) => {
  const s = Math.max(0, Math.round(seconds))
  const two = (n) => String(n).padStart(2, "0")
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`
  return `${Math.floor(s / 86400)}d${two(Math.floor(s / 3600) % 24)}h`
}

const age = (iso) => `${duration((Date.now() - Date.parse(iso)) / 1000)} ago`
const time = (iso) => (iso === undefined ? "–" : new Date(iso).toLocaleString())
const rate = (job) => (job.state === "running" && job.rate !== undefined ? `${job.rate.toFixed(1)}/s` : "–")
const eta = (job) => {
  if (job.state === "running") return job.etaSeconds === undefined ? "–" : duration(job.etaSeconds)
  if (job.finishedAt !== undefined && job.startedAt !== undefined) {
    return `took ${duration((Date.parse(job.finishedAt) - Date.parse(job.startedAt)) / 1000)}`
  }
  return "–"
}
/** `host:pid` of an owner `host:pid:random`. */
const ownerName = (owner) => owner.split(":").slice(0, 2).join(":")

const badge = (job) => h("span", { class: "badge", "data-state": job.state, title: job.error }, job.phase ?? job.state)

const goneMark = (job) =>
  job.ownerGone
    ? h(
      "span",
      { class: "gone", title: "its owner stopped heartbeating: nothing runs this job until a manager takes it over" },
      job.ownerSilentMillis === undefined ? "owner gone" : `owner gone ${duration(job.ownerSilentMillis / 1000)}`
    )
    : undefined

const bar = (job) => {
  // A streamed job has no total until its stream has ended.
  const total = Math.max(job.totalChunks ?? 0, 1)
  const done = !job.totalChunks ? job.progress : (job.completedChunks * 100) / total
  const failed = !job.totalChunks ? 0 : (job.failedChunks * 100) / total
  return h(
    "div",
    { class: "bar", "data-state": job.state, "data-progress": job.progress, title: `${job.progress}%` },
    h("div", { class: "done", style: { width: `${done}%` } }),
    h("div", { class: "failed", style: { width: `${failed}%` } }),
    h("span", { class: "label" }, job.state === "paused" ? `paused · ${job.progress}%` : `${job.progress}%`)
  )
}

const chunks = (job) =>
  `${job.completedChunks}/${job.totalChunks ?? "?"}${job.failedChunks > 0 ? ` · ${job.failedChunks} failed` : ""}`

// --- the list ----------------------------------------------------------------------------------------------

const list = {
  state: undefined,
  /** Cursors of the pages before the current one; the current page's cursor is the last. */
  cursors: [undefined],
  nextCursor: undefined,
  rows: new Map(),
  reloading: undefined
}

const row = (job) =>
  h(
    "tr",
    { "data-id": job.id, "data-state": job.state },
    h("td", { class: "name" }, h("a", { href: `#/jobs/${job.id}` }, job.name ?? "(unnamed)")),
    h("td", { class: "id", title: job.id }, job.id),
    h("td", { class: "state" }, badge(job), goneMark(job)),
    h("td", { class: "progress" }, bar(job)),
    h("td", { class: "num chunks" }, chunks(job)),
    h("td", { class: "num rate" }, rate(job)),
    h("td", { class: "num eta" }, eta(job)),
    h("td", { class: "owner", title: job.owner ?? "" }, job.owner === undefined ? "–" : ownerName(job.owner)),
    h("td", { class: "num age", "data-created": job.createdAt }, age(job.createdAt)),
    h(
      "td",
      {},
      active.has(job.state)
        ? h("button", { type: "button", class: "small danger", "data-action": "cancel", onclick: () => act(job.id, "cancel") }, "Cancel")
        : undefined
    )
  )

const renderFilters = () => {
  const filters = $("filters")
  filters.replaceChildren(
    ...[undefined, ...states].map((state) =>
      h(
        "button",
        {
          type: "button",
          "data-filter": state ?? "all",
          "aria-pressed": String(list.state === state),
          onclick: () => {
            location.hash = state === undefined ? "#/" : `#/?state=${state}`
          }
        },
        state ?? "all"
      )
    )
  )
}

const loadList = async () => {
  const params = new URLSearchParams({ limit: String(pageSize) })
  if (list.state !== undefined) params.set("state", list.state)
  const cursor = list.cursors[list.cursors.length - 1]
  if (cursor !== undefined) params.set("cursor", cursor)
  const page = await json(await api(`/jobs?${params}`))
  list.nextCursor = page.nextCursor
  list.rows = new Map(page.jobs.map((job) => [job.id, job]))
  $("rows").replaceChildren(...page.jobs.map(row))
  $("empty").hidden = page.jobs.length > 0
  $("newer").disabled = list.cursors.length === 1
  $("older").disabled = page.nextCursor === undefined
  $("page-label").textContent = `page ${list.cursors.length}`
  showProblem(undefined)
}

/** Reloads the list soon (once for a burst of changes). */
const reloadSoon = () => {
  list.reloading ??= setTimeout(() => {
    list.reloading = undefined
    if (!$("list-view").hidden) loadList().catch(showProblem)
  }, 300)
}

const onListEvent = (event) => {
  if (event.type === "deleted") {
    if (list.rows.delete(event.id)) document.querySelector(`tr[data-id="${CSS.escape(event.id)}"]`)?.remove()
    return
  }
  const job = event.job
  if (list.rows.has(job.id)) {
    list.rows.set(job.id, job)
    document.querySelector(`tr[data-id="${CSS.escape(job.id)}"]`)?.replaceWith(row(job))
    return
  }
  // A job not shown: on the first page, a new job that matches the filter appears.
  const newest = [...list.rows.values()][0]
  const matches = list.state === undefined || list.state === job.state
  if (list.cursors.length === 1 && matches && (newest === undefined || job.createdAt >= newest.createdAt)) reloadSoon()
}

const showAnswer = (element, text, failed) => {
  element.textContent = text
  element.classList.toggle("error", failed)
  element.hidden = false
}

/** Runs an action on a job through the API and shows its answer. */
const act = async (id, action) => {
  const target = $("job-view").hidden ? $("list-answer") : $("job-answer")
  const [method, path] = action === "delete" ? ["DELETE", `/jobs/${id}`] : ["POST", `/jobs/${id}/${action}`]
  try {
    const job = await json(await api(path, { method }))
    if (action === "delete") {
      showAnswer(target, `Deleted job ${job.id}.`, false)
      onListEvent({ type: "deleted", id: job.id })
      if (!$("job-view").hidden) showDeleted(job)
      return
    }
    if (action === "retry") {
      showAnswer(target, `Job ${job.id} re-drives this one; a job manager on the store will run it.`, false)
      return
    }
    showAnswer(target, `Job ${job.id} is ${job.state}.`, false)
    onListEvent({ type: "changed", job })
    if (!$("job-view").hidden && current.job?.id === job.id) renderJob(job)
  } catch (error) {
    showAnswer(target, `${action} refused: ${error.message}`, true)
  }
}

// --- one job -----------------------------------------------------------------------------------------------

const current = { job: undefined, watching: undefined, confirmDelete: false }

const fact = (label, value) => h("div", {}, h("span", {}, label), value)

const renderJob = (job) => {
  current.job = job
  const allowed = {
    cancel: active.has(job.state),
    pause: job.state === "pending" || job.state === "running",
    resume: job.state === "paused",
    retry: job.state === "failed",
    delete: !active.has(job.state)
  }
  const button = (action, label, extra = {}) =>
    h("button", { type: "button", "data-action": action, disabled: !allowed[action], onclick: () => act(job.id, action), ...extra }, label)
  const answer = $("job-answer")
  $("job").replaceChildren(
    h(
      "div",
      { class: "card big", "data-id": job.id, "data-state": job.state },
      h("h1", {}, job.name ?? "(unnamed)"),
      h("div", { class: "id" }, job.id),
      h("p", {}, badge(job), goneMark(job)),
      bar(job),
      h(
        "div",
        { class: "actions" },
        button("cancel", "Cancel", { class: "danger" }),
        button("pause", "Pause"),
        button("resume", "Resume"),
        button("retry", "Retry"),
        h("button", {
          type: "button",
          class: "danger",
          "data-action": "delete",
          disabled: !allowed.delete,
          onclick: () => {
            if (!current.confirmDelete) {
              current.confirmDelete = true
              renderJob(job)
              return
            }
            current.confirmDelete = false
            act(job.id, "delete")
          }
        }, current.confirmDelete ? "Really delete?" : "Delete")
      ),
      answer ?? h("p", { id: "job-answer", class: "answer", role: "status", hidden: true }),
      h(
        "div",
        { class: "facts" },
        fact("Chunks", chunks(job)),
        fact("Rate", rate(job)),
        fact("ETA", eta(job)),
        fact("Owner", job.owner ?? "–"),
        fact("Created", time(job.createdAt)),
        fact("Started", time(job.startedAt)),
        fact("Finished", time(job.finishedAt)),
        fact("Updated", time(job.updatedAt)),
        job.retryOf === undefined
          ? undefined
          : fact("Retry of", h("a", { href: `#/jobs/${job.retryOf}` }, job.retryOf))
      ),
      job.error === undefined ? undefined : h("div", {}, h("h3", {}, "Error"), h("div", { class: "error-box" }, job.error)),
      job.metadata === undefined
        ? undefined
        : h("div", {}, h("h3", {}, "Metadata"), h("pre", { class: "metadata" }, JSON.stringify(job.metadata, null, 2)))
    )
  )
}

// --- the chunks of one job ---------------------------------------------------------------------------------

const chunkStates = ["completed", "failed", "running", "pending"]
const chunkList = { id: undefined, state: undefined, nextCursor: undefined, pages: 0, reloadAt: 0, timer: undefined }

const short = (value) => {
  if (value === undefined) return "–"
  const text = typeof value === "string" ? value : JSON.stringify(value)
  return text.length > 120 ? `${text.slice(0, 119)}…` : text
}

const chunkRow = (chunk) =>
  h(
    "tr",
    { "data-chunk": String(chunk.id), "data-state": chunk.state },
    h("td", { class: "num" }, String(chunk.id)),
    h("td", {}, h("span", { class: "badge", "data-state": chunk.state }, chunk.state)),
    h("td", { class: "num attempts" }, String(chunk.attempts)),
    h("td", {}, time(chunk.finishedAt)),
    h("td", { class: "result", title: chunk.result === undefined ? "" : JSON.stringify(chunk.result) }, short(chunk.result)),
    h("td", { class: "error", title: chunk.error ?? "" }, short(chunk.error))
  )

const renderChunkFilters = () =>
  $("chunk-filters").replaceChildren(
    ...[undefined, ...chunkStates].map((state) =>
      h("button", {
        type: "button",
        "data-chunk-state": state ?? "all",
        "aria-pressed": String(chunkList.state === state),
        onclick: () => {
          chunkList.state = state
          loadChunks(true).catch(showProblem)
        }
      }, state ?? "all")
    )
  )

/**
 * Loads the first page of the job's chunks (`fresh`), or the next one. A `refresh` (the job changed) is
 * dropped when it answers after more pages were shown, so it never takes back a "More chunks".
 */
const loadChunks = async (fresh, refresh = false) => {
  const id = chunkList.id
  if (id === undefined) return
  const params = new URLSearchParams({ limit: "50" })
  if (chunkList.state !== undefined) params.set("state", chunkList.state)
  if (!fresh && chunkList.nextCursor !== undefined) params.set("cursor", chunkList.nextCursor)
  const page = await json(await api(`/jobs/${encodeURIComponent(id)}/chunks?${params}`))
  if (chunkList.id !== id || (refresh && chunkList.pages > 1)) return
  const rows = page.chunks.map(chunkRow)
  if (fresh) {
    chunkList.pages = 1
    $("chunk-rows").replaceChildren(...rows)
  } else {
    chunkList.pages++
    $("chunk-rows").append(...rows)
  }
  chunkList.nextCursor = page.nextCursor
  $("chunks-more").hidden = page.nextCursor === undefined
  $("chunks-empty").hidden = $("chunk-rows").children.length > 0
  renderChunkFilters()
}

/** The job changed: its first page of chunks is read again (at most once a second; not once more are shown). */
const chunksChanged = () => {
  if (chunkList.pages > 1 || chunkList.timer !== undefined) return
  const wait = Math.max(0, chunkList.reloadAt - Date.now())
  chunkList.timer = setTimeout(() => {
    chunkList.timer = undefined
    chunkList.reloadAt = Date.now() + 1000
    loadChunks(true, true).catch(() => {})
  }, wait)
}

const showDeleted = (job) => {
  current.watching?.abort()
  chunkList.id = undefined
  $("chunks").hidden = true
  $("job").replaceChildren(h("div", { class: "card" }, h("p", {}, `Job ${job.id} was deleted.`)))
}

const openJob = async (id) => {
  current.watching?.abort()
  current.confirmDelete = false
  $("job").replaceChildren()
  const controller = new AbortController()
  current.watching = controller
  chunkList.id = id
  chunkList.state = undefined
  chunkList.nextCursor = undefined
  $("chunk-rows").replaceChildren()
  $("chunks").hidden = false
  try {
    renderJob(await json(await api(`/jobs/${encodeURIComponent(id)}`, { signal: controller.signal })))
    await loadChunks(true)
    for await (const job of events(`/jobs/${encodeURIComponent(id)}/events`, controller.signal)) {
      renderJob(job)
      chunksChanged()
    }
  } catch (error) {
    if (controller.signal.aborted) return
    if (error.status === 404) {
      $("chunks").hidden = true
      $("job").replaceChildren(h("div", { class: "card" }, h("p", {}, error.message)))
    }
    else showProblem(error)
  }
}

// --- live updates and routing ------------------------------------------------------------------------------

const setLive = (live) => {
  $("live").dataset.state = live ? "live" : "down"
  $("live").textContent = live ? "live" : "reconnecting…"
}

/** Follows every job's changes while the page is open, reconnecting (and reloading the list) after a break. */
const followChanges = async () => {
  let failures = 0
  for (;;) {
    try {
      const opened = () => {
        failures = 0
        setLive(true)
      }
      for await (const event of events("/events", undefined, opened)) onListEvent(event)
    } catch {
      // The connection broke or the server is down: try again.
    }
    setLive(false)
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * 2 ** failures++, 10_000)))
    reloadSoon()
  }
}

const route = () => {
  const hash = location.hash.replace(/^#/, "")
  const jobMatch = /^\/jobs\/(.+)$/.exec(hash)
  $("list-view").hidden = jobMatch !== null
  $("job-view").hidden = jobMatch === null
  if (jobMatch !== null) {
    openJob(decodeURIComponent(jobMatch[1]))
    return
  }
  current.watching?.abort()
  current.job = undefined
  chunkList.id = undefined
  $("chunk-rows").replaceChildren()
  const state = new URLSearchParams(hash.split("?")[1] ?? "").get("state") ?? undefined
  list.state = states.includes(state) ? state : undefined
  list.cursors = [undefined]
  $("list-answer").hidden = true
  renderFilters()
  loadList().catch(showProblem)
}

const start = () => {
  takeTokenFromUrl()
  $("newer").addEventListener("click", () => {
    if (list.cursors.length > 1) list.cursors.pop()
    loadList().catch(showProblem)
  })
  $("chunks-more").addEventListener("click", () => loadChunks(false).catch(showProblem))
  $("older").addEventListener("click", () => {
    if (list.nextCursor === undefined) return
    list.cursors.push(list.nextCursor)
    loadList().catch(showProblem)
  })
  addEventListener("hashchange", route)
  // Ages move on even when nothing else changes.
  setInterval(() => {
    for (const cell of document.querySelectorAll("td.age")) cell.textContent = age(cell.dataset.created)
  }, 5_000)
  route()
  followChanges()
}

start()
