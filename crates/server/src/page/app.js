// orrery's page: submit jobs, follow their progress (server-sent events read through fetch, so that the token
// travels in a header) and play the results.
"use strict";

const $ = (id) => document.getElementById(id);
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const cards = new Map(); // job id -> card element
let nextPage = null;

$("token").value = localStorage.getItem("orrery-token") || "";
$("token").addEventListener("change", () => {
  localStorage.setItem("orrery-token", $("token").value.trim());
  reload();
});

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = authHeaders(opts.headers);
  const response = await fetch(path, opts);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : null;
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : response.status + " " + response.statusText);
  }
  return body;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function describe(s) {
  const parts = [s.mode, s.width + "x" + s.height, s.frames + " frames", "seed " + s.seed];
  if (s.sampling) parts.push(s.sampling.steps + (s.sampling.steps === 1 ? " step" : " steps"), "guidance " + s.sampling.guidance);
  return parts.join(" · ");
}

function card(job) {
  let c = cards.get(job.id);
  if (!c) {
    c = el("div", "card");
    c.dataset.id = job.id;
    c.append(el("div", "status"), el("div", "prompt"), el("div", "meta"), el("progress"), el("div", "error"));
    const cancel = el("button", "secondary", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", async () => {
      try {
        update(await api("/v1/jobs/" + job.id, { method: "DELETE" }));
      } catch (e) {
        c.querySelector(".error").textContent = e.message;
      }
    });
    c.append(cancel);
    cards.set(job.id, c);
  }
  return c;
}

// Shows a job's state on its card; `job` may be a full job or a progress event.
function update(job) {
  const c = card(job);
  const status = c.querySelector(".status");
  status.textContent = job.status;
  status.className = "status " + job.status;
  c.dataset.status = job.status;
  if (job.settings) {
    c.querySelector(".prompt").textContent = job.settings.prompt;
    c.querySelector(".meta").textContent = describe(job.settings);
  }
  const bar = c.querySelector("progress");
  bar.max = 1;
  bar.value = job.progress || 0;
  bar.hidden = FINAL.has(job.status);
  c.querySelector(".error").textContent = job.error || "";
  c.querySelector("button").hidden = FINAL.has(job.status);
  if (job.status === "succeeded" && !c.querySelector("video")) showVideo(c, job.id);
  return c;
}

async function showVideo(c, id) {
  const video = el("video");
  video.controls = true;
  video.loop = true;
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.dataset.id = id;
  c.insertBefore(video, c.querySelector(".prompt"));
  try {
    const response = await fetch("/v1/jobs/" + id + "/video", { headers: authHeaders() });
    if (!response.ok) throw new Error("video: " + response.status);
    video.src = URL.createObjectURL(await response.blob());
  } catch (e) {
    c.querySelector(".error").textContent = e.message;
  }
}

// Reads the job's server-sent events until it is final.
async function follow(id) {
  try {
    const response = await fetch("/v1/jobs/" + id + "/events", { headers: authHeaders() });
    if (!response.ok || !response.body) throw new Error("events: " + response.status);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (data) {
          const event = JSON.parse(data);
          update(event);
          if (FINAL.has(event.status)) {
            update(await api("/v1/jobs/" + id));
            return;
          }
        }
      }
    }
  } catch (e) {
    // The stream broke (server restarted): poll until final.
  }
  for (;;) {
    await new Promise((r) => setTimeout(r, 2000));
    try {
      const job = await api("/v1/jobs/" + id);
      update(job);
      if (FINAL.has(job.status)) return;
    } catch (e) {
      // Keep polling: the server may be restarting.
    }
  }
}

function show(job, atTop) {
  const fresh = !cards.has(job.id);
  const c = update(job);
  if (fresh) {
    if (atTop) $("gallery").prepend(c);
    else $("gallery").append(c);
    if (!FINAL.has(job.status)) follow(job.id);
  }
}

async function loadPage(before) {
  const query = "?limit=24" + (before ? "&before=" + before : "");
  const page = await api("/v1/jobs" + query);
  page.jobs.forEach((job) => show(job, false));
  nextPage = page.next;
  $("more").hidden = !nextPage;
}

async function reload() {
  cards.clear();
  $("gallery").replaceChildren();
  $("form-error").textContent = "";
  try {
    await loadPage(null);
  } catch (e) {
    $("form-error").textContent = e.message;
  }
}

$("more").addEventListener("click", () => loadPage(nextPage).catch((e) => ($("form-error").textContent = e.message)));

function settings() {
  const s = { prompt: $("prompt").value };
  const num = (id, key, parse) => {
    const v = $(id).value.trim();
    if (v !== "") s[key] = parse(v);
  };
  num("seed", "seed", (v) => parseInt(v, 10));
  num("frames", "frames", (v) => parseInt(v, 10));
  num("steps", "steps", (v) => parseInt(v, 10));
  num("guidance", "guidance", parseFloat);
  if ($("size").value.trim()) s.size = $("size").value.trim();
  if ($("negative-prompt").value.trim()) s.negative_prompt = $("negative-prompt").value;
  if ($("truncate").checked) s.truncate = true;
  return s;
}

$("job-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("form-error").textContent = "";
  $("submit").disabled = true;
  try {
    const file = $("input-file").files[0];
    let options;
    if (file) {
      const form = new FormData();
      form.append("settings", JSON.stringify(settings()));
      form.append(file.type.startsWith("video/") ? "video" : "image", file);
      options = { method: "POST", body: form };
    } else {
      options = { method: "POST", body: JSON.stringify(settings()), headers: { "Content-Type": "application/json" } };
    }
    const queued = await api("/v1/jobs", options);
    show(await api("/v1/jobs/" + queued.id), true);
  } catch (e) {
    $("form-error").textContent = e.message;
  } finally {
    $("submit").disabled = false;
  }
});

reload();
