// A complete job laid out for a person: the image, the palette as swatches with their hex
// codes, mood and tone, composition, brand insights, each content piece with a copy button,
// tokens and cost. The models may send more fields than SEED_API §5 names: shown as they come.
import { el, money, query } from "./common.js";

const HEX = /#(?:[0-9a-f]{6}|[0-9a-f]{3})\b/i;

function words(key) {
  const text = key.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function text(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map(text).join(", ");
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${words(k)}: ${text(v)}`).join("; ");
  return String(value);
}

function fields(object, skip = []) {
  const entries = Object.entries(object || {}).filter(([k, v]) => !skip.includes(k) && v !== null && v !== "");
  if (!entries.length) return el("p", { class: "muted", text: "Nothing was reported." });
  return el("dl", { class: "fields" }, entries.flatMap(([key, value]) => [
    el("dt", { text: words(key) }), el("dd", { text: text(value) })]));
}

function swatch(color) {
  const hex = (String(color).match(HEX) || [null])[0];
  const chip = el("span", { class: "chip", "aria-hidden": "true" });
  if (hex) chip.style.backgroundColor = hex; // CSSOM, which the page's CSP allows
  const name = String(color) === hex ? "" : String(color);
  return el("li", { class: "swatch", "data-hex": hex ? hex.toUpperCase() : "" },
    chip, el("code", { text: hex ? hex.toUpperCase() : "?" }), name ? el("small", { text: name }) : null);
}

function palette(colors) {
  const group = (label, list) => (list && list.length
    ? [el("h4", { text: label }), el("ul", { class: "swatches", "aria-label": `${label} colours` }, list.map(swatch))]
    : []);
  return el("section", { class: "block", "aria-labelledby": "palette-h" },
    el("h3", { id: "palette-h", text: "Palette" }),
    group("Primary", colors && colors.primary),
    group("Secondary", colors && colors.secondary),
    colors && colors.description ? el("p", { text: colors.description }) : null);
}

async function copy(textToCopy, button) {
  try {
    await navigator.clipboard.writeText(textToCopy);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed: select the text instead";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
}

function piece(content, index) {
  const hashtags = Array.isArray(content.hashtags) ? content.hashtags.join(" ") : "";
  const whole = [content.title, content.body, hashtags].filter(Boolean).join("\n\n");
  const title = content.title || `Piece ${index + 1}`;
  const button = el("button", { type: "button", class: "copy", "aria-label": `Copy “${title}”`, text: "Copy" });
  button.addEventListener("click", () => copy(whole, button));
  return el("article", { class: "piece" },
    el("header", {}, el("h4", { text: title }), button),
    el("p", { class: "body", text: content.body || text(content) }),
    hashtags ? el("p", { class: "tags", text: hashtags }) : null);
}

function image(summary, preview) {
  const url = preview || (summary && summary.imageUrl && summary.imageUrl.startsWith("/api/images/") ? summary.imageUrl : null);
  if (url) return el("img", { class: "analysed", src: url, alt: "The analysed image" });
  if (summary && summary.imageUrl) {
    return el("p", {}, "Image: ", el("a", { href: summary.imageUrl, rel: "noreferrer", text: summary.imageUrl }));
  }
  return null;
}

function usageLine(state, usage) {
  const parts = [];
  if (usage) {
    parts.push(`Vision: ${usage.geminiInputTokens} in / ${usage.geminiOutputTokens} out tokens`);
    parts.push(`content: ${usage.deepseekInputTokens} in / ${usage.deepseekOutputTokens} out tokens`);
  }
  parts.push(`cost ${money(usage ? usage.costUsd : state.costUsd)}`);
  return parts.join("; ");
}

// A "cached" badge per stage whose answer came from the result cache (getJobUsage's
// visionCachedFrom / contentCachedFrom: the job it was reused from).
function cacheBadges(usage) {
  const stages = [["vision", "Vision", usage && usage.visionCachedFrom],
    ["content", "Content", usage && usage.contentCachedFrom]];
  return stages.filter(([, , from]) => from).map(([id, word, from]) => el("span", {
    class: "badge cached", id: `${id}-cached`, text: `${word}: cached`,
    title: `${word} answer reused from job ${from}: no provider call, no cost`,
  }));
}

export function renderResult(container, state, summary, preview) {
  const analysis = state.geminOutput || {};
  const pieces = Array.isArray(state.deepseekOutput) ? state.deepseekOutput : [];
  const usage = el("p", { class: "usage muted", id: "usage", text: usageLine(state, null) });
  const cached = el("p", { class: "cache-badges", id: "cache-badges" });
  container.replaceChildren(
    el("div", { class: "overview" },
      image(summary, preview),
      el("div", {}, palette(analysis.colors),
        el("section", { class: "block", "aria-labelledby": "mood-h" },
          el("h3", { id: "mood-h", text: "Mood and tone" }), fields(analysis.mood_and_tone)))),
    el("div", { class: "columns" },
      el("section", { class: "block", "aria-labelledby": "composition-h" },
        el("h3", { id: "composition-h", text: "Composition" }), fields(analysis.composition)),
      el("section", { class: "block", "aria-labelledby": "brand-h" },
        el("h3", { id: "brand-h", text: "Brand insights" }), fields(analysis.brand_insights))),
    el("section", { class: "block", "aria-labelledby": "content-h" },
      el("h3", { id: "content-h", text: `Content (${pieces.length} ${pieces.length === 1 ? "piece" : "pieces"})` }),
      pieces.map(piece)),
    usage, cached);
  query("visionPipeline.getJobUsage", { jobId: state.jobId })
    .then((found) => {
      usage.textContent = usageLine(state, found);
      cached.replaceChildren(...cacheBadges(found));
    })
    .catch(() => { /* tokens unknown: the cost alone stays */ });
}

// The content being written (status deepseek_generating): the pieces parsed so far from the
// streamed answer (partialPieces of the job's events), the last one possibly cut short.
export function renderPartial(container, pieces) {
  container.replaceChildren(
    el("section", { class: "block", "aria-labelledby": "writing-h" },
      el("h3", { id: "writing-h", text: "Writing the content…" }),
      pieces.map((content, index) => el("article", { class: "piece partial" },
        el("header", {}, el("h4", { text: content.title || `Piece ${index + 1}` })),
        content.body ? el("p", { class: "body", text: String(content.body) }) : null,
        Array.isArray(content.hashtags) && content.hashtags.length
          ? el("p", { class: "tags", text: content.hashtags.join(" ") }) : null))));
}
