"use strict";
// The fitaas web page: plain JavaScript over the HTTP API, polling for live progress.
const api = "/api/v1";
const TABLE_ROWS = 1000;  // rows of results the page shows (the downloads hold all)
let token = localStorage.getItem("fitaas-token") || "";
let currentJob = null;
let sortKey = null, sortUp = true, lastRows = [], lastLabels = [], plotShownFor = -1, tableShownFor = -1;

const $ = (id) => document.getElementById(id);

// Every value from the service goes into the page as text, never as markup.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "width") node.style.width = value;
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

async function call(path, options = {}) {
  options.headers = Object.assign({ Authorization: "Bearer " + token }, options.headers || {});
  const response = await fetch(api + path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { const body = await response.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) {}
    const error = new Error(detail); error.status = response.status; throw error;
  }
  return response;
}

async function login(candidate) {
  token = candidate;
  try {
    const me = await (await call("/me")).json();
    localStorage.setItem("fitaas-token", token);
    $("who").textContent = me.name + (me.groups.length ? " (" + me.groups.join(", ") + ")" : "") + " ";
    const out = document.createElement("a"); out.href = "#"; out.textContent = "log out"; out.id = "logout";
    out.onclick = (e) => { e.preventDefault(); localStorage.removeItem("fitaas-token"); location.hash = ""; location.reload(); };
    $("who").appendChild(out);
    $("login").hidden = true; $("app").hidden = false;
    const endpoints = await (await call("/endpoints")).json();
    $("endpoint").replaceChildren(...endpoints.map((e) => el("option", {}, e.name)));
    poll();
  } catch (e) {
    $("login").hidden = false; $("app").hidden = true;
    if (candidate) $("login-error").textContent = e.status === 401
      ? "Login failed: the service does not know this token. Tokens come from your site's admin "
        + "(`fitaas admin user add NAME` prints a new user's token; `fitaas admin token rotate NAME` a new one)."
      : "Login failed: " + e.message;
  }
}

// One refresh at a time, every 2 s while the page is visible (a slow answer delays the next
// one instead of piling requests on a busy service).
async function poll() {
  if (!document.hidden) {
    try { await refresh(); $("service-error").textContent = ""; }
    catch (e) { $("service-error").textContent = "The service did not answer: " + e.message; }
  }
  setTimeout(poll, 2000);
}

function bar(job) {
  const pct = job.total ? Math.round(100 * job.done / job.total) : 0;
  return [el("span", { className: "bar" }, el("span", { width: pct + "%" })),
    ` ${job.done}/${job.total}` + (job.failed ? ` (${job.failed} failed)` : "")];
}

async function refresh() {
  const jobs = await (await call("/jobs")).json();
  const body = $("jobs").querySelector("tbody");
  body.replaceChildren(...jobs.map((job) => el("tr", {},
    el("td", {}, el("a", { href: "#job=" + encodeURIComponent(job.id) }, job.id.slice(0, 8))),
    el("td", {}, job.task), el("td", {}, job.endpoint), el("td", { className: "state" }, job.state),
    el("td", {}, ...bar(job)), el("td", {}, job.elapsed == null ? "" : job.elapsed.toFixed(1) + " s"),
    el("td", {}, job.owner))));
  const match = location.hash.match(/job=([0-9a-f]+)/);
  if (match) await showJob(match[1]); else $("job").hidden = true;
}

async function showJob(id) {
  const job = await (await call("/jobs/" + id)).json();
  $("job").hidden = false;
  $("job-id").textContent = id.slice(0, 8);
  $("job-state").textContent = job.state;
  $("job-state").className = "state-" + job.state;
  $("job-bar").style.width = (job.total ? 100 * job.done / job.total : 0) + "%";
  $("job-counts").textContent = `${job.done}/${job.total} done, ${job.failed} failed`;
  $("job-error").textContent = job.error || "";
  $("job-cancel").hidden = !(job.state === "queued" || job.state === "running");
  $("job-cancel").onclick = async () => { await call("/jobs/" + id, { method: "DELETE" }); refresh(); };
  const sweep = job.inputs && job.inputs.pallets && !job.inputs.combine
    ? job.inputs.pallets.map((p) => p.name) : null;
  if (currentJob !== id) {
    currentJob = id; plotShownFor = -1; sortKey = null; tableShownFor = -1;
    $("pallet").replaceChildren(...(sweep || []).map((name) => el("option", {}, name)));
    $("pallet").onchange = () => { plotShownFor = -1; tableShownFor = -1; showJob(id); };
  }
  $("pallet-choice").hidden = !sweep;
  // a sweep's results, pictures and downloads are per pallet
  const which = sweep ? "pallet=" + encodeURIComponent($("pallet").value) : "";
  $("job-json").onclick = (e) => { e.preventDefault(); download(id, "json", which); };
  $("job-csv").onclick = (e) => { e.preventDefault(); download(id, "csv", which); };
  if (job.done !== tableShownFor) {  // something new since the last look
    // the table shows the first TABLE_ROWS finished points (a theory scan may have 10^5)
    const query = `?limit=${TABLE_ROWS}` + (which ? "&" + which : "");
    const results = await (await call(`/jobs/${id}/results${query}`)).json();
    lastRows = results.results; lastLabels = results.labels; tableShownFor = job.done;
    $("table-note").textContent = lastRows.length < TABLE_ROWS ? ""
      : `The first ${TABLE_ROWS} finished points; the results JSON and CSV hold them all.`;
    renderResults(results.labels);
  }
  // The picture comes after every change; the service may send the previous one while it
  // draws the new one (X-Fitaas-Points says which), and the next look asks again.
  if (job.task === "hypotest" && lastLabels.length > 2) {
    $("plot-note").textContent = `No CLs picture here: the points have ${lastLabels.length} labels `
      + `(${lastLabels.join(", ")}), a picture needs a plane: download the JSON and run `
      + "`fitaas plot results.json --slice LABEL=VALUE`.";
  }
  if (job.task === "hypotest" && lastLabels.length === 2 && job.done !== plotShownFor && job.done >= 3) {
    plotShownFor = job.done;
    try {
      const response = await call(`/jobs/${id}/plot.png` + (which ? "?" + which : ""));
      const points = +(response.headers.get("X-Fitaas-Points") || job.done);
      plotShownFor = points;
      const old = $("plot").src; $("plot").src = URL.createObjectURL(await response.blob()); $("plot").hidden = false;
      if (old) URL.revokeObjectURL(old);
      $("plot-note").textContent = `CLs after ${points} of ${job.total} points`;
    } catch (e) { $("plot-note").textContent = e.message; }
  }
}

async function showToys(patch) {
  try {
    const which = $("pallet-choice").hidden ? "" : "&pallet=" + encodeURIComponent($("pallet").value);
    const blob = await (await call(`/jobs/${currentJob}/toys.png?patch=${encodeURIComponent(patch)}${which}`)).blob();
    const old = $("toy-plot").src; $("toy-plot").src = URL.createObjectURL(blob); $("toy-plot").hidden = false;
    if (old) URL.revokeObjectURL(old);
    $("toy-note").textContent = `Toys of ${patch}`;
  } catch (e) { $("toy-note").textContent = e.message; }
}

async function download(id, format, which) {
  const blob = await (await call(`/jobs/${id}/results?format=${format}` + (which ? "&" + which : ""))).blob();
  const name = which ? `${id}-${decodeURIComponent(which.slice(7)).replaceAll("/", "__")}` : id;
  const a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = `${name}.${format}`; a.click();
}

function cell(row, key) {
  if (key === "patch" || key === "status") return row[key];
  if (key === "reason") return row.reason || row.error || "";
  if (key.startsWith("value:")) return row.values[+key.slice(6)];
  if (key === "cls_obs") return row.cls_obs == null ? null : row.cls_obs;
  if (key === "toys") return row.toys ? `${row.toys.ntoys.sb}+${row.toys.ntoys.b}, ±${row.toys.errors.cls_obs.toPrecision(2)}` : null;
  if (key.startsWith("cls_exp")) return row.cls_exp ? row.cls_exp[+key.slice(7)] : null;
  return null;
}

// CLs as the command line's table shows it: four decimals, "<0.0001" below.
function formatNumber(v) {
  if (!Number.isFinite(v)) return String(v);
  return v < 1e-4 ? "<0.0001" : v.toFixed(4);
}

function renderResults(labels) {
  const toys = lastRows.some((r) => r.toys);
  const keys = ["patch", ...labels.map((l, i) => "value:" + i), "status", "cls_obs", "cls_exp2", "cls_exp1", "cls_exp3", ...(toys ? ["toys"] : []), "reason"];
  const names = ["patch", ...labels, "status", "CLs obs", "CLs exp", "−1σ", "+1σ", ...(toys ? ["toys (s+b, b), ± MC"] : []), "reason"];
  $("toy-note").hidden = !toys;
  const head = $("results").querySelector("thead");
  head.replaceChildren(el("tr", {}, ...names.map((n, i) =>
    el("th", { dataset: { key: keys[i] } }, n + (sortKey === keys[i] ? (sortUp ? " ▲" : " ▼") : "")))));
  for (const th of head.querySelectorAll("th")) th.onclick = () => {
    if (sortKey === th.dataset.key) sortUp = !sortUp; else { sortKey = th.dataset.key; sortUp = true; }
    renderResults(labels);
  };
  const rows = lastRows.slice();
  if (sortKey) rows.sort((a, b) => {
    const x = cell(a, sortKey), y = cell(b, sortKey);
    if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
    return (x < y ? -1 : 1) * (sortUp ? 1 : -1);
  });
  const body = $("results").querySelector("tbody");
  body.replaceChildren(...rows.map((row) => {
    const tr = el("tr", { className: row.status }, ...keys.map((k) => {
      const v = cell(row, k);
      return el("td", {}, v === null ? "" : typeof v === "number" && !k.startsWith("value:") ? formatNumber(v) : String(v));
    }));
    if (row.toys) tr.onclick = () => showToys(row.patch);
    return tr;
  }));
}

$("login-form").onsubmit = (e) => { e.preventDefault(); login($("token").value.trim()); };
$("submit-form").onsubmit = async (e) => {
  e.preventDefault();
  $("submit-status").textContent = "uploading…";
  try {
    const ws = await (await call("/workspaces", { method: "POST", body: $("ws-file").files[0] })).json();
    let patchset = null;
    if ($("ps-file").files.length) patchset = (await (await call("/patchsets", { method: "POST", body: $("ps-file").files[0] })).json()).digest;
    const options = {};
    if (+$("ntoys").value > 0) Object.assign(options, { calctype: "toybased", ntoys: +$("ntoys").value });
    if ($("poi-value").value !== "" && +$("poi-value").value !== 1) options.poi_value = +$("poi-value").value;
    if ($("cl").value !== "" && +$("cl").value !== 0.95) options.level = +(1 - $("cl").value).toFixed(12);
    const patches = $("patches").value.split(",").map((s) => s.trim()).filter((s) => s);
    const job = await (await call("/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        workspace: ws.digest, patchset, task: $("task").value, endpoint: $("endpoint").value,
        patches: patches.length ? patches : null, options,
      }),
    })).json();
    $("submit-status").textContent = "submitted job " + job.id.slice(0, 8);
    location.hash = "job=" + job.id;
    refresh();
  } catch (err) { $("submit-status").textContent = "Error: " + err.message; }
};
window.onhashchange = refresh;
login(token);
