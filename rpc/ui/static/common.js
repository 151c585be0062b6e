// What the page and the dashboard share: a small tRPC client over fetch and EventSource
// (plain JSON in and out, TRPC_WIRE §2 and §7), the sign-in panel, and DOM helpers.
// No transformer: the server answers plain JSON to a client that sends plain JSON, so dates
// arrive as ISO strings. The one exception is uploadImage, which always answers in
// superjson's shape (SEED_API §8); `unwrap` reads both.

const TRPC = "/api/trpc/";
export const UNAUTHED = "Please login (10001)";

export class ApiError extends Error {
  constructor(message, code = "INTERNAL_SERVER_ERROR", status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

// A superjson envelope {json, meta?} holds its value in `json`; a plain value is itself.
function unwrap(value) {
  if (value && typeof value === "object" && !Array.isArray(value) && "json" in value) {
    const keys = Object.keys(value);
    if (keys.every((k) => k === "json" || k === "meta")) return value.json;
  }
  return value;
}

function errorOf(body, status) {
  const shape = unwrap(body && body.error);
  if (shape && typeof shape === "object") {
    const code = (shape.data && shape.data.code) || "INTERNAL_SERVER_ERROR";
    return new ApiError(readableMessage(shape.message, code), code, status);
  }
  return new ApiError(`The server answered ${status}`, "INTERNAL_SERVER_ERROR", status);
}

// Validation errors arrive as a JSON list of issues (TRPC_WIRE §4.4): say them in words.
function readableMessage(message, code) {
  if (code === "BAD_REQUEST" && typeof message === "string" && message.startsWith("[")) {
    try {
      const issues = JSON.parse(message);
      return issues.map((i) => `${(i.path || []).join(".") || "input"}: ${i.message}`).join("; ");
    } catch {
      /* not a list: keep the text */
    }
  }
  return message || code;
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered ${response.status} without JSON`, "PARSE_ERROR",
      response.status);
  }
  if (body && "error" in body) throw errorOf(body, response.status);
  return unwrap(body && body.result ? body.result.data : undefined);
}

function withInput(path, input) {
  const url = TRPC + path;
  return input === undefined ? url : `${url}?input=${encodeURIComponent(JSON.stringify(input))}`;
}

export async function query(path, input) {
  return answer(await fetch(withInput(path, input), { credentials: "same-origin" }));
}

export async function mutate(path, input) {
  const init = { method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json" } };
  if (input !== undefined) init.body = JSON.stringify(input);
  return answer(await fetch(TRPC + path, init));
}

// visionPipeline.uploadImage with a FormData body (what tRPC's httpLink sends for FormData).
export async function uploadImage(file) {
  const form = new FormData();
  form.append("file", file, file.name || "image");
  const response = await fetch(TRPC + "visionPipeline.uploadImage",
    { method: "POST", body: form, credentials: "same-origin" });
  return answer(response);
}

// A tRPC subscription over SSE (TRPC_WIRE §7). The EventSource reconnects by itself when a
// stream ends without `return`, sending Last-Event-ID, so the server resumes after it.
export function subscribe(path, input, { onData, onError, onDone }) {
  const source = new EventSource(withInput(path, input));
  let finished = false;
  const finish = () => { finished = true; source.close(); };
  source.addEventListener("message", (event) => {
    let value;
    try { value = unwrap(JSON.parse(event.data)); } catch { return; }
    onData(value, event.lastEventId);
  });
  source.addEventListener("return", () => { finish(); if (onDone) onDone(); });
  source.addEventListener("serialized-error", (event) => {
    finish();
    let shape = null;
    try { shape = unwrap(JSON.parse(event.data)); } catch { /* keep null */ }
    const code = (shape && shape.data && shape.data.code) || "INTERNAL_SERVER_ERROR";
    if (onError) onError(new ApiError(readableMessage(shape && shape.message, code), code));
  });
  source.addEventListener("error", () => {
    // CONNECTING: the browser retries by itself; CLOSED: it gave up (a non-SSE answer).
    if (!finished && source.readyState === EventSource.CLOSED && onError) {
      onError(new ApiError("Lost the live connection to the server", "CLIENT_CLOSED_REQUEST"));
    }
  });
  return finish;
}

// el("p", {class: "x", text: "hi"}, child, …): attributes, `text`, and event handlers `on…`.
export function el(tag, attrs = {}, ...children) {
  const node = tag === "svg" || attrs.svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false || name === "svg") continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  return el(tag, { ...attrs, svg: true }, ...children);
}

export const $ = (selector) => document.querySelector(selector);

export async function loadConfig() {
  const response = await fetch("/api/ui/config", { credentials: "same-origin" });
  if (!response.ok) throw new ApiError("The page's settings could not be read");
  return response.json();
}

// What a person calls each status (storage/jobstate.py's values).
export const STATUS_WORDS = {
  pending: "Queued",
  gemini_analyzing: "Analysing the image",
  deepseek_generating: "Writing content",
  complete: "Complete",
  error: "Failed",
};

export function statusWord(status) {
  return STATUS_WORDS[status] || status;
}

export function money(usd) {
  const value = Number(usd) || 0;
  return value >= 0.01 || value === 0 ? `$${value.toFixed(2)}` : `$${value.toFixed(5)}`;
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function ago(ms) {
  if (ms === null || ms === undefined) return "–";
  const seconds = Math.round(ms / 1000);
  if (seconds < 90) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 90 ? `${minutes} min` : `${Math.round(minutes / 60)} h`;
}

// Who is signed in: auth.me's row, or null. Shows the name in the header's #who.
export async function whoAmI(config) {
  const user = await query("auth.me");
  const who = $("#who");
  if (who && user) {
    const name = user.name || user.openId;
    who.replaceChildren(el("span", { text: config.auth === "local" ? `${name} (local mode)` : name }));
    if (config.auth === "jwt") {
      who.append(" ", el("button", { type: "button", class: "link", text: "Sign out",
        onclick: async () => { await mutate("auth.logout"); location.reload(); } }));
    }
  }
  return user;
}

// The sign-in panel (JWT_SECRET set, no session): the login link when the template's OAuth
// server is configured, else a form that sends a pasted token to POST /api/auth/session.
export function showSignIn(container, config) {
  const heading = el("h2", { id: "signin-h", text: "Sign in" });
  const parts = [heading, el("p", { text: "This server needs a session: you are not signed in." })];
  if (config.loginUrl) {
    parts.push(el("p", {}, el("a", { href: config.loginUrl, class: "button", text: "Sign in" })));
  } else {
    const message = el("p", { id: "signin-error", class: "error", role: "alert" });
    const form = el("form", { id: "signin-form" },
      el("label", { for: "token", text: "Session token (made by `vision-pipeline token`)" }),
      el("textarea", { id: "token", rows: "3", required: true, autocomplete: "off",
        spellcheck: "false" }),
      el("button", { type: "submit", text: "Sign in with this token" }),
      message);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      message.textContent = "";
      const token = form.querySelector("#token").value.trim();
      const response = await fetch("/api/auth/session", { method: "POST",
        credentials: "same-origin", headers: { "content-type": "application/json" },
        body: JSON.stringify({ token }) });
      if (response.status === 204) {
        // A browser that refuses the cookie (cookies blocked, or a proxy serving https that
        // does not send X-Forwarded-Proto) never sends the session back. Say so.
        if (await query("auth.me")) { location.reload(); return; }
        message.textContent = "The token is valid, but this browser did not keep the session "
          + "cookie: allow cookies for this site (behind a TLS proxy, have it send X-Forwarded-Proto: https).";
        return;
      }
      let reason = `The server answered ${response.status}`;
      try { reason = (await response.json()).error || reason; } catch { /* keep it */ }
      message.textContent = `That token was not accepted: ${reason}`;
    });
    parts.push(form);
  }
  container.replaceChildren(...parts);
  container.setAttribute("aria-labelledby", "signin-h");
  container.hidden = false;
}
