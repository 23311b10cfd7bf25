// The run viewer: polls the run dir's JSON every POLL_MS and redraws what changed. Every text that came
// from the run (prompts, completions, names) goes into the page as text, never as HTML.
"use strict";

const POLL_MS = 2000;
const COLORS = ["#3867d6", "#20bf6b", "#eb3b5a", "#f7b731", "#8854d0", "#0fb9b1", "#fa8231", "#4b6584"];
const CHARTS = [
  { id: "reward", title: "Reward (batch mean)", series: [["orchestrator", "reward_mean"]] },
  { id: "eval", title: "Evals", series: "eval", empty: "no evals in this run ([[orchestrator.eval]])" },
  { id: "loss", title: "Loss", series: [["trainer", "loss"]] },
  { id: "throughput", title: "Throughput (tokens/s)",
    series: [["orchestrator", "tokens_per_s", "generated"], ["trainer", "tokens_per_s", "trained"]] },
  { id: "lag", title: "Off-policy lag (steps)", series: [["orchestrator", "off_policy_max"]] },
  { id: "mismatch", title: "Trainer-inference mismatch KL", series: [["trainer", "mismatch_kl"]] },
];

const state = { metricsTag: null, rows: [], steps: [], step: null, hidden: new Set(), problems: {} };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "svg") continue;
    if (key === "text") node.textContent = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const magnitude = Math.abs(value);
  return magnitude >= 100 ? value.toFixed(0) : magnitude >= 1 ? value.toFixed(2) : value.toPrecision(3);
}

function showProblems(source, list) {
  state.problems[source] = list;
  const all = Object.values(state.problems).flat();
  $("problems").hidden = all.length === 0;
  $("problems").textContent = all.join("\n");
}

async function getJSON(url, headers = {}) {
  const response = await fetch(url, { headers, cache: "no-store" });
  if (response.status === 304) return { notModified: true };
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || body.error || `${url}: HTTP ${response.status}`);
  return { body, tag: response.headers.get("ETag") };
}

// -- curves ---------------------------------------------------------------------------------------------

function seriesOf(chart) {
  if (chart.series !== "eval") {
    return chart.series.map(([component, field, label]) => ({
      key: `${component}/${field}`, label: label || `${component} ${field}`,
      points: state.rows.filter((r) => r.component === component && typeof r[field] === "number")
        .map((r) => [r.step, r[field]]),
    }));
  }
  const fields = new Set();
  for (const r of state.rows) if (r.component === "eval") for (const k of Object.keys(r)) if (/(avg|pass)@\d+$/.test(k)) fields.add(k);
  return [...fields].sort().map((field) => ({
    key: `eval/${field}`, label: field,
    points: state.rows.filter((r) => r.component === "eval" && typeof r[field] === "number").map((r) => [r.step, r[field]]),
  }));
}

function drawChart(chart, box) {
  const series = seriesOf(chart).filter((s) => s.points.length);
  box.replaceChildren(el("h3", { text: chart.title }));
  if (!series.length) {
    box.append(el("div", { class: "empty", text: chart.empty || "no data yet" }));
    return;
  }
  // Drawn at the box's own width (no stretching), so the labels keep their shape.
  const W = Math.max(300, box.clientWidth - 20), H = 200, L = 58, R = 10, T = 8, B = 22;
  const shown = series.filter((s) => !state.hidden.has(s.key));
  const all = (shown.length ? shown : series).flatMap((s) => s.points);
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05;
  y0 = y0 >= 0 ? Math.max(0, y0 - pad) : y0 - pad;  // counts and rates never dip below 0 on the axis
  y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const svg = el("svg", { svg: true, viewBox: `0 0 ${W} ${H}`, "data-chart": chart.id });
  const axis = el("g", { svg: true, class: "axis" });
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    axis.append(el("line", { svg: true, x1: L, x2: W - R, y1: Y(y), y2: Y(y) }));
    axis.append(el("text", { svg: true, x: L - 4, y: Y(y) + 3, "text-anchor": "end", text: fmt(y) }));
  }
  for (const x of new Set([0, 1, 2, 3, 4].map((i) => Math.round(x0 + ((x1 - x0) * i) / 4)))) {
    axis.append(el("text", { svg: true, x: X(x), y: H - 6, "text-anchor": "middle", text: fmt(x) }));
  }
  svg.append(axis);
  series.forEach((s, i) => {
    if (state.hidden.has(s.key)) return;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    svg.append(el("path", { svg: true, class: "series", d, stroke: COLORS[i % COLORS.length],
      "data-series": s.key, "data-points": s.points.length }));
  });
  const cursor = el("line", { svg: true, class: "cursor", y1: T, y2: H - B, visibility: "hidden" });
  svg.append(cursor);
  const tip = el("div", { class: "tooltip", hidden: "" });
  svg.addEventListener("mousemove", (event) => {
    const rect = svg.getBoundingClientRect();
    const x = x0 + (((event.clientX - rect.left) / rect.width) * W - L) / (W - L - R) * (x1 - x0);
    const lines = [];
    let nearest = null;
    for (const s of series) {
      if (state.hidden.has(s.key)) continue;
      const p = s.points.reduce((a, b) => (Math.abs(b[0] - x) < Math.abs(a[0] - x) ? b : a));
      nearest = nearest === null || Math.abs(p[0] - x) < Math.abs(nearest - x) ? p[0] : nearest;
      lines.push(`${s.label}: ${fmt(p[1])} (step ${p[0]})`);
    }
    if (nearest === null) return;
    cursor.setAttribute("x1", X(nearest));
    cursor.setAttribute("x2", X(nearest));
    cursor.setAttribute("visibility", "visible");
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    tip.style.left = `${Math.min(event.clientX - box.getBoundingClientRect().left + 12, box.clientWidth - 180)}px`;
    tip.style.top = `${event.clientY - box.getBoundingClientRect().top + 12}px`;
  });
  svg.addEventListener("mouseleave", () => { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); });
  const legend = el("div", { class: "legend" });
  series.forEach((s, i) => {
    const item = el("span", { class: state.hidden.has(s.key) ? "off" : "", title: "show or hide",
      onclick: () => { state.hidden.has(s.key) ? state.hidden.delete(s.key) : state.hidden.add(s.key); drawCharts(); } },
      el("i", { style: `background:${COLORS[i % COLORS.length]}` }), s.label);
    legend.append(item);
  });
  box.append(svg, legend, tip);
}

function drawCharts() {
  const root = $("charts");
  for (const chart of CHARTS) {
    let box = document.getElementById(`chart-${chart.id}`);
    if (!box) root.append((box = el("div", { class: "chart", id: `chart-${chart.id}` })));
    drawChart(chart, box);
  }
}

// -- rollouts -------------------------------------------------------------------------------------------

function messageNode(message) {
  if (typeof message === "string") return el("div", { class: "message", text: message });
  const role = message.role || "?";
  const node = el("div", { class: `message ${role}` }, el("span", { class: "role", text: role }));
  if (message.content) node.append(typeof message.content === "string" ? message.content : JSON.stringify(message.content));
  for (const call of message.tool_calls || []) {
    const f = call.function || call;
    node.append(el("div", { class: "tool-call", text: `→ ${f.name}(${typeof f.arguments === "string" ? f.arguments : JSON.stringify(f.arguments)})` }));
  }
  return node;
}

function rolloutNode(r) {
  const meta = el("div", { class: "meta" });
  const parts = [["step", r.step], ["#", r.index], ["reward", r.reward], ["advantage", r.advantage],
    ["tokens", r.tokens], ["policy", r.policy_version], ["lag", r.off_policy_lag]];
  for (const [name, value] of parts) meta.append(`${name} `, el("b", { text: fmt(value) }), "  ");
  const node = el("div", { class: "rollout", "data-step": r.step, "data-reward": r.reward }, meta);
  const prompt = Array.isArray(r.prompt) ? r.prompt : [r.prompt];
  const completion = Array.isArray(r.completion) ? r.completion : [r.completion];
  for (const m of [...prompt, ...completion]) node.append(messageNode(m));
  if (r.answer !== null && r.answer !== undefined) node.append(el("div", { class: "meta", text: `answer: ${r.answer}` }));
  return node;
}

function rewardBounds() {
  const read = (id) => ($(id).value === "" ? null : Number($(id).value));
  return [read("min-reward"), read("max-reward")];
}

function showRollouts(rollouts, what) {
  const [lo, hi] = rewardBounds();
  const kept = rollouts.filter((r) => (lo === null || r.reward >= lo) && (hi === null || r.reward <= hi));
  $("rollout-status").textContent = `${what}: ${kept.length} of ${rollouts.length} rollouts`;
  $("rollout-list").replaceChildren(...kept.map(rolloutNode));
}

async function loadRollouts() {
  const query = $("search").value.trim();
  try {
    if (query) {
      const [lo, hi] = rewardBounds();
      const params = new URLSearchParams({ q: query });
      if (lo !== null) params.set("min_reward", lo);
      if (hi !== null) params.set("max_reward", hi);
      const { body } = await getJSON(`api/search?${params}`);
      showProblems("rollouts", body.problems);
      showRollouts(body.rollouts, `"${query}" in every step${body.truncated ? " (the newest matches)" : ""}`);
    } else if (state.step !== null) {
      const { body } = await getJSON(`api/samples/${state.step}`);
      showProblems("rollouts", body.problems);
      showRollouts(body.rollouts, `step ${state.step}`);
    } else {
      $("rollout-status").textContent = "no rollouts yet: samples/step_<N>.jsonl appear as steps land";
    }
  } catch (error) {
    showProblems("rollouts", [String(error.message || error)]);
    $("rollout-status").textContent = `step ${state.step}: not shown (see above)`;
    $("rollout-list").replaceChildren();
  }
}

function setSteps(steps) {
  const changed = steps.join() !== state.steps.join();
  state.steps = steps;
  if (changed) {
    $("step-select").replaceChildren(...steps.map((s) => el("option", { value: s, text: `step ${s}` })));
  }
  let wanted = state.step;
  if ($("follow").checked || wanted === null || !steps.includes(wanted)) wanted = steps.length ? steps[steps.length - 1] : null;
  const moved = wanted !== state.step;
  state.step = wanted;
  if (wanted !== null) $("step-select").value = String(wanted);
  return moved;
}

function moveStep(by) {
  const i = state.steps.indexOf(state.step) + by;
  if (i < 0 || i >= state.steps.length) return;
  $("follow").checked = false;
  state.step = state.steps[i];
  $("step-select").value = String(state.step);
  loadRollouts();
}

// -- polling --------------------------------------------------------------------------------------------

async function poll() {
  try {
    const { body: run } = await getJSON("api/run");
    $("run-name").textContent = run.name;
    $("run-state").textContent = run.state;
    $("run-state").className = `state ${run.state.replace(" ", "-")}`;
    const meta = [`step ${run.step}${run.max_steps ? ` / ${run.max_steps}` : ""}`];
    if (run.model) meta.push(`model ${run.model}`);
    if (run.env) meta.push(`env ${run.env}`);
    $("run-meta").textContent = meta.join(" · ");
    showProblems("run", run.problems);
    const metrics = await getJSON("api/metrics", state.metricsTag ? { "If-None-Match": state.metricsTag } : {});
    if (!metrics.notModified) {
      state.rows = metrics.body.rows;
      state.metricsTag = metrics.tag;
      drawCharts();
    }
    if (setSteps(run.sample_steps) && !$("search").value.trim()) await loadRollouts();
    showProblems("poll", []);
  } catch (error) {
    showProblems("poll", [`the viewer's server did not answer (${error.message || error}); retrying`]);
  }
  setTimeout(poll, POLL_MS);
}

$("prev-step").addEventListener("click", () => moveStep(-1));
$("next-step").addEventListener("click", () => moveStep(1));
$("step-select").addEventListener("change", () => { $("follow").checked = false; state.step = Number($("step-select").value); loadRollouts(); });
let typing = null;
for (const id of ["search", "min-reward", "max-reward"]) {
  $(id).addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(loadRollouts, 250); });
}
window.addEventListener("resize", () => drawCharts());
drawCharts();
poll();
