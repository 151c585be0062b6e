// The dashboard (admins only): it polls visionPipeline.admin.overview every few seconds
// (polling, not a subscription: one cheap query that already sums every table it shows) and
// retries or cancels failed jobs through admin.retryJobs / admin.cancelJobs.
import {
  $, ago, el, loadConfig, money, mutate, query, showSignIn, statusWord, svg, when, whoAmI,
} from "./common.js";

const POLL_MS = 3000;
const COUNTED = ["pending", "gemini_analyzing", "deepseek_generating", "complete", "error"];
const STAGE_WORDS = { gemini: "Vision", deepseek: "Content", cancelled: "Cancelled" };
let timer = null;

function rows(table, items, cells, empty) {
  const body = $(`#${table} tbody`);
  if (!items.length) {
    const span = $(`#${table} thead tr`).children.length;
    body.replaceChildren(el("tr", {}, el("td", { colspan: span, class: "muted", text: empty })));
    return;
  }
  body.replaceChildren(...items.map((item) => el("tr", { "data-job": item.jobId ?? null },
    cells(item).map((cell) => (cell instanceof Node ? el("td", {}, cell) : el("td", { text: String(cell ?? "") }))))));
}

function counts(data) {
  $("#counts").replaceChildren(...COUNTED.map((status) => el("li", { class: `count ${status}`, "data-status": status },
    el("span", { class: "number", text: String(data.counts[status] ?? 0) }),
    el("span", { class: "label", text: statusWord(status) }))));
  $("#oldest").textContent = data.oldestWaitingAgeMs === null || data.oldestWaitingAgeMs === undefined
    ? "Nothing is waiting."
    : `The oldest waiting job has waited ${ago(data.oldestWaitingAgeMs)}.`;
  const hits = data.cacheHitsToday ?? 0;
  $("#cache-hits").textContent = `Cache hits today: ${hits} ${hits === 1 ? "stage answer" : "stage answers"} reused (no provider call).`;
}

// Completed and failed jobs per 5-minute bucket as side-by-side bars, with a text summary for
// screen readers (the drawing itself is hidden from them).
function chart(buckets) {
  const width = 600;
  const height = 140;
  const pad = 22;
  const top = Math.max(1, ...buckets.map((b) => Math.max(b.completed, b.failed)));
  const slot = (width - pad) / Math.max(buckets.length, 1);
  const bar = Math.max(2, slot / 2 - 3);
  const scale = (n) => ((height - pad) * n) / top;
  const shapes = [
    svg("line", { x1: pad, y1: height - pad, x2: width, y2: height - pad, class: "axis" }),
    svg("text", { x: 0, y: 12, class: "tick", text: String(top) }),
    svg("text", { x: 0, y: height - pad, class: "tick", text: "0" }),
  ];
  buckets.forEach((b, i) => {
    const x = pad + i * slot + 2;
    shapes.push(svg("rect", { x, y: height - pad - scale(b.completed), width: bar, height: scale(b.completed), class: "done" },
      svg("title", { text: `${new Date(b.start).toLocaleTimeString()}: ${b.completed} completed` })));
    shapes.push(svg("rect", { x: x + bar + 1, y: height - pad - scale(b.failed), width: bar, height: scale(b.failed), class: "failed" },
      svg("title", { text: `${new Date(b.start).toLocaleTimeString()}: ${b.failed} failed` })));
    if (i % 3 === 0) {
      const label = new Date(b.start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      shapes.push(svg("text", { x, y: height - 6, class: "tick", text: label }));
    }
  });
  const completed = buckets.reduce((n, b) => n + b.completed, 0);
  const failed = buckets.reduce((n, b) => n + b.failed, 0);
  $("#chart").replaceChildren(
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-hidden": "true", class: "bars" }, shapes),
    el("p", { id: "hour-summary", text: `${completed} completed and ${failed} failed in the last hour, in 5-minute bars.` }),
    el("p", { class: "legend" }, el("span", { class: "key done" }), " completed ", el("span", { class: "key failed" }), " failed"));
}

async function act(procedure, jobId, verb) {
  try {
    const outcome = await mutate(procedure, { jobIds: [jobId] });
    const skipped = (outcome.skipped || []).find((s) => s.jobId === jobId);
    $("#action").textContent = skipped ? `Job #${jobId} was not ${verb}: ${skipped.reason}` : `Job #${jobId} ${verb}.`;
  } catch (failure) {
    $("#action").textContent = `Job #${jobId} could not be ${verb}: ${failure.message}`;
  }
  refresh();
}

function failureActions(f) {
  return el("span", { class: "actions" },
    el("button", { type: "button", "aria-label": `Retry job ${f.jobId}`, text: "Retry",
      onclick: () => act("visionPipeline.admin.retryJobs", f.jobId, "retried") }),
    el("button", { type: "button", class: "secondary", "aria-label": `Cancel job ${f.jobId}`, text: "Cancel",
      onclick: () => act("visionPipeline.admin.cancelJobs", f.jobId, "cancelled") }));
}

function draw(data) {
  counts(data);
  chart(data.lastHour || []);
  rows("in-flight", data.inFlight || [], (j) => [`#${j.jobId}`, j.userId, statusWord(j.status), j.workerId || "–", j.attempt, ago(j.leaseAgeMs),
    j.streamedChars === null || j.streamedChars === undefined ? "–" : `${j.streamedChars} characters`], "No job is running.");
  rows("waiting-users", data.waitingByUser || [], (u) => [u.openId ? `${u.openId} (#${u.userId})` : `#${u.userId}`, u.waiting, u.running], "Nothing is waiting.");
  rows("workers", data.workers || [], (w) => [w.workerId, w.host, w.pid, `${w.running} of ${w.concurrency}`, when(w.startedAt), when(w.lastSeenAt),
    el("span", { class: `badge ${w.alive ? "complete" : "error"}`, text: w.alive ? "alive" : "silent" })], "No worker has reported.");
  rows("failures", data.recentFailures || [], (f) => [`#${f.jobId}`, f.userId, STAGE_WORDS[f.errorStage] || f.errorStage || "–", f.errorMessage || "", f.retryCount, when(f.updatedAt), failureActions(f)], "No failures.");
  rows("spend", data.spendPerDay || [], (d) => [d.day, d.jobs, money(d.costUsd)], "No spend yet.");
  spendToday(data);
  $("#updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
}

// "Spend today: $1.20 (3 jobs finished today, UTC). Daily budget per user: $2.00."
function spendToday(data) {
  const today = new Date().toISOString().slice(0, 10);
  const day = (data.spendPerDay || []).find((d) => d.day === today) || { costUsd: 0, jobs: 0 };
  const budget = data.userDailyBudgetUsd
    ? `Daily budget per user: ${money(data.userDailyBudgetUsd)} (admins exempt; \`users set-budget\` sets one user's).`
    : "No daily budget per user (USER_DAILY_BUDGET_USD is 0).";
  $("#spend-today").textContent =
    `Spend today: ${money(day.costUsd)} (${day.jobs} jobs finished today, UTC). ${budget}`;
}

async function refresh() {
  clearTimeout(timer);
  try {
    draw(await query("visionPipeline.admin.overview"));
    $("#board").hidden = false;
  } catch (failure) {
    if (failure.code === "FORBIDDEN") {
      $("#board").hidden = true;
      $("#refused").hidden = false;
      return; // no point asking again
    }
    $("#updated").textContent = `Could not refresh: ${failure.message}`;
    $("#board").hidden = false;
  }
  // A hidden tab asks nothing: the overview counts every job, so polls cost the database.
  if (!document.hidden) timer = setTimeout(refresh, POLL_MS);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && !$("#board").hidden) refresh();
});

async function main() {
  const config = await loadConfig();
  $("#page-link").href = config.pageUrl;
  const user = await whoAmI(config);
  $("#boot").hidden = true;
  if (!user) { showSignIn($("#signin"), config); return; }
  if (user.role !== "admin") { $("#refused").hidden = false; return; }
  await refresh();
}

main().catch((failure) => {
  $("#boot").hidden = false;
  $("#boot").textContent = `The dashboard could not start: ${failure.message}`;
});
