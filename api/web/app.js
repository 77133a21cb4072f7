// The service's web page: submit files or a URL, follow each job live, read, play and download
// the transcripts, list the caller's jobs. Plain JavaScript against the HTTP API; no framework.

const KEY_STORAGE = "transcribe.apiKey";
const POLL_WAIT_S = 1; // long-poll: answered at once when the job ends, else after a second
const MAX_FOLLOWED = 4; // jobs followed at once: a browser opens only six connections per host
const HISTORY_PAGE = 20;
const TERMINAL = new Set(["finished", "failed", "canceled", "stopped"]);
const LIVE = new Set(["queued", "started", "deferred", "scheduled"]);
const WAITING = new Set(["queued", "deferred", "scheduled"]);
const SPEAKER_COLOURS = 8;

const page = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  hasEvents: false,
  formats: ["json", "txt", "srt", "vtt", "tsv", "rttm"],
  session: [],
  cursor: null,
  viewing: null,
  words: [],
  segments: [],
  chosen: [],
};

const $ = (id) => document.getElementById(id);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

// --- Talking to the API ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }

  static async of(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = describeDetail(await response.json()) || message;
    } catch {
      // not JSON: the status line says it
    }
    return new ApiError(response.status, message);
  }
}

function describeDetail(body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const where = (item.loc || []).filter((part) => part !== "body" && part !== "query");
        return where.length ? `${where.join(".")}: ${item.msg}` : item.msg;
      })
      .join("; ");
  }
  return (body && body.error && body.error.message) || "";
}

function withKey(headers = {}) {
  return page.key ? { ...headers, Authorization: `Bearer ${page.key}` } : headers;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: withKey(options.headers) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "the server could not be reached");
  }
  if (!response.ok) {
    const error = await ApiError.of(response);
    if (error.status === 401) askForKey(error.message);
    throw error;
  }
  return response;
}

async function getJson(path, options) {
  return (await api(path, options)).json();
}

const jobPath = (prefix, id) => `${prefix}/${encodeURIComponent(id)}`;

class Slots {
  constructor(count) {
    this.free = count;
    this.waiting = [];
  }

  async take() {
    if (this.free > 0) {
      this.free -= 1;
      return;
    }
    await new Promise((resolve) => this.waiting.push(resolve));
  }

  give() {
    const next = this.waiting.shift();
    if (next) next();
    else this.free += 1;
  }
}

const followed = new Slots(MAX_FOLLOWED);

// --- What the server offers -----------------------------------------------------------------

function fillSelect(select, values, { blank, label = (value) => value } = {}) {
  select.replaceChildren();
  if (blank) select.append(el("option", { value: "", text: blank }));
  for (const value of values) select.append(el("option", { value, text: label(value) }));
}

function languageName() {
  try {
    const names = new Intl.DisplayNames([navigator.language || "en"], { type: "language" });
    return (code) => {
      try {
        const name = names.of(code);
        return name && name !== code ? `${name} (${code})` : code;
      } catch {
        return code;
      }
    };
  } catch {
    return (code) => code;
  }
}

async function loadServer() {
  const response = await fetch("/openapi.json");
  const document_ = await response.json();
  const schemas = document_.components.schemas;
  const values = (name) => (schemas[name] && schemas[name].enum) || [];
  page.hasEvents = "/jobs/{job_id}/events" in document_.paths;
  page.formats = values("OutputFormat").length ? values("OutputFormat") : page.formats;
  fillSelect($("engine"), values("EngineName"));
  fillSelect($("model"), values("ModelName"), { blank: "server's default" });
  fillSelect($("language"), values("Language"), { blank: "detect", label: languageName() });
  fillSelect($("task"), values("Task"));
  for (const status of values("PublicStatus")) {
    $("status-filter").append(el("option", { value: status, text: status }));
  }
  engineChanged();
}

async function showHealth() {
  try {
    const health = await (await fetch("/health")).json();
    const workers = `${health.workers} worker${health.workers === 1 ? "" : "s"}`;
    $("health").textContent = health.redis
      ? `${workers} · ${health.queued} queued`
      : "the job store is unavailable";
  } catch {
    $("health").textContent = "the server could not be reached";
  }
}

function engineChanged() {
  // hotwords are a whisperx option; timestamped refuses them
  const whisperx = $("engine").value === "whisperx";
  $("hotwords-field").hidden = !whisperx;
  $("hotwords").disabled = !whisperx;
}

// --- The API key ----------------------------------------------------------------------------

function askForKey(message) {
  $("key-section").hidden = false;
  $("key-message").textContent = message;
  $("key-message").className = "error";
  if (!page.key) $("api-key").focus();
}

async function useKey(event) {
  event.preventDefault();
  page.key = $("api-key").value.trim();
  sessionStorage.setItem(KEY_STORAGE, page.key);
  if (await loadHistory(true)) {
    $("key-message").textContent = "Key accepted.";
    $("key-message").className = "muted";
  }
}

function forgetKey() {
  page.key = "";
  sessionStorage.removeItem(KEY_STORAGE);
  $("api-key").value = "";
  $("key-message").textContent = "Key forgotten.";
  $("key-message").className = "muted";
}

// --- Choosing and submitting ----------------------------------------------------------------

function choose(files) {
  page.chosen = [...files];
  $("chosen").replaceChildren(
    ...page.chosen.map((file) => el("li", { text: `${file.name} (${size(file.size)})` })),
  );
}

function size(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function fields() {
  const chosen = {
    engine: $("engine").value,
    model: $("model").value,
    language: $("language").value,
    task: $("task").value,
    beam_size: $("beam_size").value.trim(),
    initial_prompt: $("initial_prompt").value.trim(),
    hotwords: $("hotwords").disabled ? "" : $("hotwords").value.trim(),
  };
  const result = Object.fromEntries(Object.entries(chosen).filter(([, value]) => value !== ""));
  result.word_timestamps = $("word_timestamps").checked;
  result.vad = $("vad").checked;
  if ($("diarize").checked) result.diarize = true;
  return result;
}

function submit(event) {
  event.preventDefault();
  const url = $("url").value.trim();
  $("form-message").textContent = "";
  if (!page.chosen.length && !url) {
    $("form-message").textContent = "Choose or drop a file, or enter an address, first.";
    return;
  }
  if (url && !/^https?:\/\//i.test(url)) {
    $("form-message").textContent = "The address must start with http:// or https://.";
    return;
  }
  const options = fields();
  let uploads = Promise.resolve();
  for (const file of page.chosen) {
    const job = addJob({ name: file.name, audio: URL.createObjectURL(file), status: "uploading" });
    uploads = uploads.then(() => upload(job, file, options)); // one upload at a time
  }
  if (url) {
    const name = decodeURIComponent(new URL(url).pathname.split("/").pop() || url);
    const job = addJob({ name, audio: url, status: "submitting" });
    submitUrl(job, url, options);
  }
  choose([]);
  $("files").value = "";
  $("url").value = "";
}

function upload(job, file, options) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [name, value] of Object.entries(options)) form.append(name, String(value));
    const request = new XMLHttpRequest();
    request.open("POST", "/transcribe");
    for (const [name, value] of Object.entries(withKey())) request.setRequestHeader(name, value);
    request.upload.addEventListener("progress", (progress) => {
      if (progress.lengthComputable) {
        job.percent = (100 * progress.loaded) / progress.total;
        render(job);
      }
    });
    request.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        // not JSON: the status line says it
      }
      if (request.status === 200 && body) {
        accepted(job, body);
      } else {
        const message = describeDetail(body) || `${request.status} ${request.statusText}`;
        if (request.status === 401) askForKey(message);
        failed(job, message);
      }
      resolve();
    });
    request.addEventListener("error", () => {
      failed(job, "the server could not be reached");
      resolve();
    });
    request.send(form);
  });
}

async function submitUrl(job, url, options) {
  try {
    const body = await getJson("/transcribe/url", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ url, ...options }),
    });
    accepted(job, body);
  } catch (error) {
    failed(job, error.message);
  }
}

function accepted(job, body) {
  job.id = body.job_id;
  job.status = body.status;
  job.percent = null;
  render(job);
  follow(job);
}

function failed(job, message) {
  job.status = "failed";
  job.error = message;
  render(job);
}

// --- Following jobs -------------------------------------------------------------------------

class EventParser {
  constructor() {
    this.event = "";
    this.data = [];
  }

  feed(line) {
    if (line === "") {
      const event = { type: this.event || "message", data: this.data.join("\n") };
      const complete = this.data.length > 0;
      this.event = "";
      this.data = [];
      return complete ? event : null;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.event = value;
    else if (name === "data") this.data.push(value);
    return null;
  }
}

function applyStatus(job, body) {
  job.status = body.status;
  job.stage = body.progress ? body.progress.stage : null;
  job.percent = body.progress ? body.progress.percent : null;
  job.position = body.queue_position ?? null;
  job.error = body.error ?? null;
  if (body.result) job.result = body.result;
  render(job);
}

function applyEvent(job, event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  if (event.type === "status") applyStatus(job, data);
  else if (event.type === "progress") {
    job.status = "started";
    job.stage = data.stage;
    job.percent = data.percent;
    job.position = null;
    render(job);
  } else if (event.type === "segment") {
    job.preview = data.text;
    render(job);
  }
}

// EventSource cannot send an Authorization header: read the stream with fetch() instead.
async function followEvents(job) {
  const response = await api(`${jobPath("/jobs", job.id)}/events`, {
    headers: { Accept: "text/event-stream" },
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new EventParser();
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const lines = (rest + value).split("\n");
    rest = lines.pop();
    for (const line of lines) {
      const event = parser.feed(line.endsWith("\r") ? line.slice(0, -1) : line);
      if (event) applyEvent(job, event);
    }
    if (TERMINAL.has(job.status)) {
      await reader.cancel();
      return;
    }
  }
}

// While a job waits, long-poll: the answers carry its moving queue position. Once it runs,
// its events stream (where the server has one) brings each stage, percent and segment.
async function follow(job) {
  await followed.take();
  let streamed = false;
  try {
    while (!TERMINAL.has(job.status)) {
      if (page.hasEvents && !streamed && !WAITING.has(job.status)) {
        streamed = true;
        try {
          await followEvents(job);
        } catch (error) {
          if (error.status === 401 || error.status === 404) throw error;
          // the stream broke off: go on by long-poll
        }
        if (TERMINAL.has(job.status)) break;
      }
      const body = await getJson(`${jobPath("/status", job.id)}?wait=${POLL_WAIT_S}`);
      applyStatus(job, body);
    }
  } catch (error) {
    job.error = error.message;
    render(job);
  } finally {
    followed.give();
  }
  showHealth();
  loadHistory(true);
  if (job.status === "finished" && !page.viewing) await show(job);
}

async function cancel(job) {
  try {
    const response = await api(jobPath("/jobs", job.id), { method: "DELETE" });
    if (response.status === 204) {
      job.status = "erased";
      render(job);
    } else {
      applyStatus(job, await response.json());
    }
  } catch (error) {
    job.error = error.message;
    render(job);
  }
}

// --- The jobs of this page ------------------------------------------------------------------

function addJob(fieldsOfJob) {
  const job = { id: null, stage: null, percent: 0, position: null, error: null, ...fieldsOfJob };
  // Built once and updated in place, so that a focused button keeps its focus while the job moves.
  const parts = {
    badge: el("span", { class: "badge" }),
    cancel: el("button", { type: "button", text: "Cancel", onclick: () => cancel(job) }),
    open: el("button", { type: "button", text: "Open", onclick: () => show(job) }),
    state: el("div", { class: "state" }),
    bar: el("progress", { max: 100 }),
    preview: el("p", { class: "preview" }),
    error: el("p", { class: "error" }),
  };
  job.parts = parts;
  job.node = el(
    "li",
    { class: "job" },
    el("div", { class: "name" }, job.name, parts.badge),
    el("div", { class: "actions" }, parts.cancel, parts.open),
    parts.state,
    parts.bar,
    parts.preview,
    parts.error,
  );
  page.session.unshift(job);
  $("session-jobs").prepend(job.node);
  $("session-empty").hidden = true;
  render(job);
  return job;
}

function stateText(job) {
  const known = job.percent !== null && job.percent !== undefined;
  const percent = known ? ` ${Math.round(job.percent)}%` : "";
  switch (job.status) {
    case "uploading":
      return `uploading${percent}`;
    case "queued":
      return job.position ? `queued, position ${job.position}` : "queued";
    case "started":
      return `${(job.stage || "started").replace("_", " ")}${percent}`;
    default:
      return job.status;
  }
}

function render(job) {
  const { node, parts } = job;
  node.dataset.status = job.status;
  if (job.id) node.dataset.jobId = job.id;
  parts.badge.className = `badge ${job.status}`;
  parts.badge.textContent = job.status;
  parts.state.textContent = stateText(job);
  parts.bar.setAttribute("aria-label", `${job.name}: ${stateText(job)}`);
  if (job.status === "finished") parts.bar.value = 100;
  else if (!LIVE.has(job.status) && job.status !== "uploading") parts.bar.value = 0;
  else if (job.status === "queued" || job.percent === null || job.percent === undefined) {
    parts.bar.removeAttribute("value"); // indeterminate
  } else parts.bar.value = job.percent;
  parts.cancel.hidden = !(job.id && LIVE.has(job.status));
  parts.open.hidden = job.status !== "finished";
  parts.preview.textContent = LIVE.has(job.status) ? job.preview || "" : "";
  parts.error.textContent = job.error || "";
}

// --- The transcript -------------------------------------------------------------------------

function clock(seconds) {
  const whole = Math.floor(seconds);
  const minutes = Math.floor(whole / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return minutes >= 60
    ? `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${rest}`
    : `${minutes}:${rest}`;
}

function stem(name) {
  const base = name.split("/").pop();
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

async function show(job) {
  try {
    if (!job.result) job.result = (await getJson(jobPath("/jobs", job.id))).result;
  } catch (error) {
    job.error = error.message;
    render(job);
    return;
  }
  page.viewing = job;
  const result = job.result;
  $("viewer").hidden = false;
  $("viewer-title").textContent = `Transcript: ${job.name || job.id}`;
  const player = $("player");
  if (job.audio) {
    if (player.getAttribute("src") !== job.audio) player.src = job.audio;
    player.hidden = false;
    $("audio-note").hidden = true;
  } else {
    player.removeAttribute("src");
    player.hidden = true;
    $("audio-note").hidden = false;
  }
  // rttm holds speaker turns: the server answers 409 for a job that was not diarized.
  const diarized = (result.speakers || []).length > 0 || Boolean(result.diarization_backend);
  $("downloads").replaceChildren(
    ...page.formats.filter((format) => format !== "rttm" || diarized).map((format) =>
      el("button", {
        type: "button",
        text: format.toUpperCase(),
        "aria-label": `Download ${format.toUpperCase()}`,
        "data-format": format,
        onclick: () => download(job, format),
      }),
    ),
  );
  const facts = [`${result.language}`, `${clock(result.duration)}`, `${result.engine} ${result.model}`];
  $("notes").textContent = [facts.join(" · "), ...(result.notes || [])].join(" — ");
  renderTranscript(result);
}

function renderTranscript(result) {
  const speakers = new Map();
  page.words = [];
  page.segments = [];
  const paragraphs = result.segments.map((segment) => {
    const paragraph = el("p", { class: "segment", tabindex: 0, "data-start": segment.start });
    if (segment.speaker) {
      if (!speakers.has(segment.speaker)) speakers.set(segment.speaker, speakers.size);
      paragraph.classList.add(`speaker-${speakers.get(segment.speaker) % SPEAKER_COLOURS}`);
      paragraph.append(el("span", { class: "speaker", text: segment.speaker }));
    }
    paragraph.append(el("span", { class: "time", text: clock(segment.start) }));
    if (segment.words && segment.words.length) {
      segment.words.forEach((word, index) => {
        const span = el("span", {
          class: "word",
          "data-start": word.start,
          "data-end": word.end,
          text: word.word.trim(),
        });
        if (index) paragraph.append(" ");
        paragraph.append(span);
        page.words.push({ start: word.start, end: word.end, node: span });
      });
    } else {
      paragraph.append(segment.text.trim());
    }
    page.segments.push({ start: segment.start, end: segment.end, node: paragraph });
    return paragraph;
  });
  $("transcript").replaceChildren(...paragraphs);
  highlight($("player").currentTime || 0);
}

function seek(seconds) {
  const player = $("player");
  if (!player.hidden) player.currentTime = seconds;
  highlight(seconds);
}

function lastStartingBy(items, seconds) {
  let low = 0;
  let high = items.length - 1;
  let found = null;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (items[middle].start <= seconds + 0.001) {
      found = items[middle];
      low = middle + 1;
    } else high = middle - 1;
  }
  return found;
}

let spokenWord = null;
let spokenSegment = null;

function highlight(seconds) {
  const word = lastStartingBy(page.words, seconds);
  const nowWord = word && seconds < word.end ? word.node : null;
  if (nowWord !== spokenWord) {
    if (spokenWord) spokenWord.classList.remove("current");
    if (nowWord) nowWord.classList.add("current");
    spokenWord = nowWord;
  }
  const segment = lastStartingBy(page.segments, seconds);
  const nowSegment = segment && seconds < segment.end ? segment.node : null;
  if (nowSegment !== spokenSegment) {
    if (spokenSegment) spokenSegment.classList.remove("current");
    if (nowSegment) {
      nowSegment.classList.add("current");
      if (!$("player").paused) nowSegment.scrollIntoView({ block: "nearest" });
    }
    spokenSegment = nowSegment;
  }
}

function followPlayback() {
  const player = $("player");
  highlight(player.currentTime);
  if (!player.paused && !player.ended) requestAnimationFrame(followPlayback);
}

async function download(job, format) {
  try {
    const blob = await (await api(`${jobPath("/result", job.id)}?format=${format}`)).blob();
    const href = URL.createObjectURL(blob);
    const link = el("a", { href, download: `${stem(job.name || job.id)}.${format}`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
  } catch (error) {
    $("notes").textContent = `Download failed: ${error.message}`;
  }
}

// --- The caller's jobs ----------------------------------------------------------------------

async function loadHistory(reset) {
  if (reset) page.cursor = null;
  const parameters = new URLSearchParams({ limit: String(HISTORY_PAGE) });
  const status = $("status-filter").value;
  if (status) parameters.set("status", status);
  if (page.cursor) parameters.set("cursor", page.cursor);
  let listing;
  try {
    listing = await getJson(`/jobs?${parameters}`);
  } catch (error) {
    $("history-message").textContent = error.message;
    return false;
  }
  $("history-message").textContent = "";
  const rows = listing.jobs.map((job) => {
    const known = page.session.find((mine) => mine.id === job.job_id);
    const entry = known || { id: job.job_id, name: job.job_id.slice(0, 8), status: job.status };
    const actions = el("td");
    if (job.status === "finished") {
      actions.append(el("button", { type: "button", text: "Open", onclick: () => show(entry) }));
    } else if (LIVE.has(job.status)) {
      actions.append(
        el("button", {
          type: "button",
          text: "Cancel",
          onclick: async () => {
            await cancel(entry);
            await loadHistory(true);
          },
        }),
      );
    }
    const created = job.created_at ? new Date(job.created_at).toLocaleString() : "";
    return el(
      "tr",
      { "data-job-id": job.job_id },
      el("td", { class: "id", title: job.job_id, text: known ? known.name : job.job_id.slice(0, 8) }),
      el("td", {}, el("span", { class: `badge ${job.status}`, text: job.status })),
      el("td", { text: [job.engine, job.model].filter(Boolean).join(" ") }),
      el("td", { text: created }),
      actions,
    );
  });
  const body = $("history").tBodies[0];
  if (reset) body.replaceChildren(...rows);
  else body.append(...rows);
  page.cursor = listing.next_cursor;
  $("more").hidden = !page.cursor;
  return true;
}

// --- Wiring ---------------------------------------------------------------------------------

function wire() {
  const drop = $("drop");
  const files = $("files");
  files.addEventListener("change", () => choose(files.files));
  drop.addEventListener("click", (event) => {
    if (event.target === drop || event.target.tagName === "P") files.click();
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      files.click();
    }
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files);
  });
  $("submit-form").addEventListener("submit", submit);
  $("engine").addEventListener("change", engineChanged);
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("refresh").addEventListener("click", () => loadHistory(true));
  $("status-filter").addEventListener("change", () => loadHistory(true));
  $("more").addEventListener("click", () => loadHistory(false));
  $("attach").addEventListener("change", () => {
    const file = $("attach").files[0];
    if (file && page.viewing) {
      page.viewing.audio = URL.createObjectURL(file);
      show(page.viewing);
    }
  });

  const transcript = $("transcript");
  transcript.addEventListener("click", (event) => {
    const target = event.target.closest(".word, .segment");
    if (target) seek(Number(target.dataset.start));
  });
  transcript.addEventListener("keydown", (event) => {
    const segment = event.target.closest(".segment");
    if (segment && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      seek(Number(segment.dataset.start));
    }
  });
  const player = $("player");
  player.addEventListener("play", () => requestAnimationFrame(followPlayback));
  for (const name of ["seeked", "timeupdate"]) {
    player.addEventListener(name, () => highlight(player.currentTime));
  }
}

async function start() {
  wire();
  if (page.key) {
    $("api-key").value = page.key;
    $("key-section").hidden = false;
  }
  try {
    await loadServer();
  } catch {
    $("form-message").textContent = "The server's options could not be read; reload the page.";
  }
  showHealth();
  loadHistory(true);
  setInterval(showHealth, 15_000);
}

start();
