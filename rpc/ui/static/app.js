// The page: choose an image, start a job, watch it live, read the result; the history of the
// caller's jobs, live. The job being watched is in the URL (?job=N), so a reload resumes it.
import {
  $, ApiError, el, loadConfig, money, mutate, query, showSignIn, statusWord, subscribe,
  uploadImage, when, whoAmI,
} from "./common.js";
import { renderPartial, renderResult } from "./result.js";

const STAGES = ["pending", "gemini_analyzing", "deepseek_generating", "complete"];
// errorStage (storage/jobstate.py's Stage) → the status it failed in, and how to say it.
const FAILED_STAGE = {
  gemini: ["gemini_analyzing", "while analysing the image (vision stage)"],
  deepseek: ["deepseek_generating", "while writing the content (content stage)"],
  cancelled: ["pending", "because it was cancelled"],
};
const HISTORY_PAGE = 100;
const HISTORY_PAGES = 5; // getJobHistory is oldest first: read up to 500 to show the newest
const HISTORY_SHOWN = 30;

const jobs = new Map(); // jobId → history summary {jobId, status, progress, imageUrl, …}
let chosenFile = null;
let previewUrl = null;
let stopWatching = null;
let watchedId = null;

function pickFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    $("#form-error").textContent = `${file.name || "That"} is not an image.`;
    return;
  }
  chosenFile = file;
  $("#url").value = "";
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  const preview = $("#preview");
  preview.src = previewUrl;
  preview.alt = `Chosen image: ${file.name || "pasted image"}`;
  preview.hidden = false;
  $("#drop-help").textContent = `${file.name || "Pasted image"} (${Math.ceil(file.size / 1024)} KB).`
    + " Drop, paste or press Enter to choose another.";
  $("#form-error").textContent = "";
}

function setUpChoosing() {
  const drop = $("#drop");
  const input = $("#file");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  input.addEventListener("change", () => pickFile(input.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    pickFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData ? event.clipboardData.items : [])]
      .find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) { event.preventDefault(); pickFile(item.getAsFile()); }
  });
  $("#url").addEventListener("input", () => {
    if ($("#url").value.trim() && chosenFile) {
      chosenFile = null;
      $("#preview").hidden = true;
      $("#drop-help").textContent = "Using the URL below. Drop, paste or press Enter to pick a file instead.";
    }
  });
  const slider = $("#creativity");
  slider.addEventListener("input", () => {
    $("#creativity-value").textContent = Number(slider.value).toFixed(1);
  });
}

async function imageUrlForJob() {
  if (chosenFile) return (await uploadImage(chosenFile)).imageUrl;
  const url = $("#url").value.trim();
  if (!url) throw new ApiError("Choose an image file or give the image's URL.", "BAD_REQUEST");
  return url;
}

// One idempotencyKey per Start click: a retry of the same click (the answer lost on the way)
// sends it again and gets the job that click made, never a second one.
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const CREATE_TRIES = 3;

async function createJob(input) {
  for (let tried = 1; ; tried += 1) {
    try {
      return await mutate("visionPipeline.createJob", input);
    } catch (failure) {
      // fetch's TypeError: no answer arrived (the request may or may not have been made).
      if (failure instanceof ApiError || tried >= CREATE_TRIES) throw failure;
      await new Promise((resolve) => { setTimeout(resolve, 500 * tried); });
    }
  }
}

// "Spent today $0.42 of $2.00" (visionPipeline.getUsage), under the form's heading.
async function refreshUsage() {
  const line = $("#spend");
  try {
    const usage = await query("visionPipeline.getUsage");
    const spent = `Spent today ${money(usage.spentTodayUsd)}`;
    if (usage.budgetUsd === null || usage.budgetUsd === undefined) {
      line.textContent = usage.exempt ? `${spent} (no daily budget: admin)` : `${spent} (no daily budget)`;
    } else {
      const reached = usage.remainingUsd <= 0 ? ` — budget reached until ${when(usage.resetsAt)}` : "";
      line.textContent = `${spent} of ${money(usage.budgetUsd)}${reached}`;
    }
    line.dataset.spent = String(usage.spentTodayUsd);
  } catch {
    line.textContent = "";
  }
}

function optional(selector) {
  const value = $(selector).value.trim();
  return value ? value : undefined;
}

async function start(event) {
  event.preventDefault();
  const error = $("#form-error");
  const button = $("#start-button");
  error.textContent = "";
  if (!$("#purpose").value.trim()) {
    error.textContent = "Say what the content is for (the purpose).";
    $("#purpose").focus();
    return;
  }
  button.disabled = true;
  button.textContent = chosenFile ? "Uploading…" : "Starting…";
  try {
    const imageUrl = await imageUrlForJob();
    button.textContent = "Starting…";
    const created = await createJob({
      imageUrl,
      analysisPurpose: $("#purpose").value.trim(),
      outputFormat: $("#format").value,
      creativityLevel: Number($("#creativity").value),
      imageContext: optional("#context"),
      additionalInstructions: optional("#instructions"),
      idempotencyKey: newKey(),
    });
    history.pushState({ job: created.jobId }, "", `?job=${created.jobId}`);
    await refreshHistory();
    watch(created.jobId);
  } catch (failure) {
    error.textContent = failure.message;
    if (failure.code === "PAYMENT_REQUIRED") refreshUsage();
  } finally {
    button.disabled = false;
    button.textContent = "Start";
  }
}

function showStages(state) {
  const reached = STAGES.indexOf(state.status);
  const failedStatus = (FAILED_STAGE[state.errorStage] || ["pending"])[0];
  const failedAt = state.status === "error" ? STAGES.indexOf(failedStatus) : -1;
  for (const item of document.querySelectorAll("#stages li")) {
    const index = STAGES.indexOf(item.dataset.stage);
    item.className = "";
    if (failedAt >= 0) {
      if (index < failedAt) item.className = "done";
      else if (index === failedAt) item.className = "failed";
    } else if (index < reached || state.status === "complete") item.className = "done";
    else if (index === reached) item.className = "current";
    item.toggleAttribute("aria-current", item.className === "current");
  }
}

function showState(state) {
  showStages(state);
  $("#progress").value = state.progress || 0;
  const status = $("#status");
  const retry = state.status === "pending" && state.errorMessage ? ` (${state.errorMessage})` : "";
  status.textContent = `${statusWord(state.status)}, ${state.progress || 0}%${retry}`;
  const failure = $("#failure");
  failure.hidden = state.status !== "error";
  if (state.status === "error") {
    const where = (FAILED_STAGE[state.errorStage] || [null, state.errorStage ? `at ${state.errorStage}` : ""])[1];
    failure.replaceChildren(
      el("h3", { text: `The job failed ${where}`.trim() }),
      el("p", { text: state.errorMessage || "No reason was given." }),
      el("p", { class: "muted", text: `Attempts that failed: ${state.retryCount || 0}. Cost so far: ${money(state.costUsd)}.` }));
  }
  const streaming = $("#streaming");
  const partial = state.status === "deepseek_generating" && Array.isArray(state.partialPieces);
  streaming.hidden = !partial;
  if (partial) renderPartial(streaming, state.partialPieces);
  const result = $("#result");
  if (state.status === "complete") {
    result.hidden = false;
    renderResult(result, state, jobs.get(state.jobId), chosenPreview(state.jobId));
  } else {
    result.hidden = true;
  }
  const summary = jobs.get(state.jobId);
  if (summary) { summary.status = state.status; summary.progress = state.progress; drawHistory(); }
}

function chosenPreview(jobId) {
  return jobId === watchedId && previewUrl ? previewUrl : null;
}

function watch(jobId) {
  if (stopWatching) stopWatching();
  watchedId = jobId;
  $("#job").hidden = false;
  $("#job-id").textContent = `#${jobId}`;
  $("#result").hidden = true;
  $("#failure").hidden = true;
  $("#streaming").hidden = true;
  $("#status").textContent = "Connecting…";
  stopWatching = subscribe("visionPipeline.onJobProgress", { jobId }, {
    onData: (state) => { if (watchedId === jobId) showState(state); },
    onError: (failure) => {
      if (watchedId !== jobId) return;
      $("#status").textContent = `Cannot follow job #${jobId}: ${failure.message}`;
    },
  });
}

function thumbnail(job) {
  // Only the image store's own images: the page's CSP shows no other host's pictures.
  if (job.imageUrl && job.imageUrl.startsWith("/api/images/")) {
    return el("img", { src: job.imageUrl, alt: "", class: "thumb", loading: "lazy" });
  }
  return el("span", { class: "thumb none", "aria-hidden": "true", text: "URL" });
}

function drawHistory() {
  const newest = [...jobs.values()].sort((a, b) => b.jobId - a.jobId).slice(0, HISTORY_SHOWN);
  $("#history-empty").hidden = newest.length > 0;
  $("#history-list").replaceChildren(...newest.map((job) => el("li",
    { class: job.jobId === watchedId ? "selected" : "" },
    el("a", { href: `?job=${job.jobId}`, "data-job": job.jobId,
      "aria-current": job.jobId === watchedId ? "page" : null },
      thumbnail(job),
      el("span", { class: "what" },
        el("strong", { text: `#${job.jobId} ` }), job.analysisPurpose || "",
        el("small", { class: "muted", text: when(job.createdAt) })),
      el("span", { class: `badge ${job.status}`, "data-status": job.status,
        text: statusWord(job.status) })))));
}

async function refreshHistory() {
  for (let page = 0; page < HISTORY_PAGES; page += 1) {
    const rows = await query("visionPipeline.getJobHistory",
      { limit: HISTORY_PAGE, offset: page * HISTORY_PAGE });
    for (const row of rows) jobs.set(row.jobId, { ...(jobs.get(row.jobId) || {}), ...row });
    if (rows.length < HISTORY_PAGE) break;
  }
  drawHistory();
}

function followMyJobs() {
  subscribe("visionPipeline.onMyJobs", undefined, {
    onData: (state) => {
      if (state.status === "complete" || state.status === "error") refreshUsage();
      const known = jobs.get(state.jobId);
      if (!known) { refreshHistory(); return; }
      known.status = state.status;
      known.progress = state.progress;
      drawHistory();
    },
    onError: () => { $("#history-empty").textContent = "History is not live: reload to update."; },
  });
}

function jobInUrl() {
  const value = new URLSearchParams(location.search).get("job");
  return value && /^\d+$/.test(value) ? Number(value) : null;
}

async function main() {
  const config = await loadConfig();
  $("#admin-link").href = config.adminUrl;
  const user = await whoAmI(config);
  $("#boot").hidden = true;
  if (!user) { showSignIn($("#signin"), config); return; }
  $("#workspace").hidden = false;
  setUpChoosing();
  $("#job-form").addEventListener("submit", start);
  $("#history-list").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-job]");
    if (!link) return;
    event.preventDefault();
    const jobId = Number(link.dataset.job);
    history.pushState({ job: jobId }, "", `?job=${jobId}`);
    watch(jobId);
    drawHistory();
  });
  window.addEventListener("popstate", () => { const id = jobInUrl(); if (id) watch(id); });
  refreshUsage();
  await refreshHistory();
  followMyJobs();
  const jobId = jobInUrl();
  if (jobId) { watch(jobId); drawHistory(); }
}

main().catch((failure) => {
  $("#boot").hidden = false;
  $("#boot").textContent = `The page could not start: ${failure.message}`;
});
