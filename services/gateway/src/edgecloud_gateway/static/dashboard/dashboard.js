// The dashboard's few behaviours that need a script: the CSRF header on htmx requests,
// readable errors, the live event stream, live logs, resumable uploads with progress, and
// the graphs. Pages work as plain server-rendered HTML; this only makes them live.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content;
  const API = "/api/v1";

  // --- htmx: CSRF, which answers swap, and errors in words -----------------------------------
  document.addEventListener("htmx:configRequest", (e) => {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf;
  });
  document.addEventListener("DOMContentLoaded", () => {
    // 422 carries the form again with what is wrong: swap it in like a success.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "422", swap: true, error: false },
      { code: "[45]..", swap: false, error: true },
    ];
  });
  document.addEventListener("htmx:responseError", (e) => {
    const xhr = e.detail.xhr;
    const text = (xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain")
      ? xhr.responseText
      : `The request failed (${xhr.status} ${xhr.statusText}).`;
    toast(text, "error");
  });
  document.addEventListener("htmx:sendError", () =>
    toast("The platform did not answer: check your connection and retry.", "error"),
  );

  function toast(text, kind = "info", ttl = 8000) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = `toast ${kind}`;
    item.setAttribute("role", kind === "error" ? "alert" : "status");
    item.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link";
    close.textContent = "Dismiss";
    close.addEventListener("click", () => item.remove());
    item.append(" ", close);
    box.append(item);
    if (ttl) setTimeout(() => item.remove(), ttl);
  }

  // --- the live event stream (opened by htmx's SSE extension on <body>) ----------------------
  const EVENT_KINDS = ["device.status", "container.status", "command", "deployment", "alert", "migration"];
  const listeners = new Set(); // (kind, event) => void, for page behaviours below
  document.addEventListener("htmx:sseOpen", (e) => {
    const source = e.detail.source;
    setLiveState("live");
    if (source.edgecloudAttached) return;
    source.edgecloudAttached = true;
    for (const kind of EVENT_KINDS) {
      source.addEventListener(kind, (message) => {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          return;
        }
        for (const listener of listeners) listener(kind, event);
      });
    }
  });
  document.addEventListener("htmx:sseError", () => setLiveState("reconnecting to live updates…"));

  function setLiveState(text) {
    const state = document.getElementById("live-state");
    if (state) {
      state.textContent = text;
      state.dataset.state = text === "live" ? "live" : "down";
    }
  }

  function describe(kind, e) {
    switch (kind) {
      case "device.status":
        return `Device ${e.key} is ${e.status}${e.reason ? ` (${e.reason})` : ""}`;
      case "container.status":
        return `Container ${e.name} is ${e.state}${e.error ? `: ${e.error}` : ""}`;
      case "command":
        return e.progress
          ? `Pulling ${e.progress.image}: ${e.progress.status}`
          : `Command ${e.action} on ${e.container}: ${e.state}${e.error_code ? ` (${e.error_code})` : ""}`;
      case "deployment":
        return `Deployment ${e.id || e.deployment || ""}: ${e.state}`;
      case "alert":
        return e.transition === "cleared" ? `Cleared: ${e.cleared_message || e.message}` : `Alert: ${e.message}`;
      case "migration":
        return `Migration of ${e.container} from ${e.source} to ${e.target || "?"}: ${e.state}${e.error_code ? ` (${e.error_code})` : ""}`;
      default:
        return kind;
    }
  }

  // Overview: a running feed of what happens.
  listeners.add((kind, event) => {
    const feed = document.getElementById("event-feed");
    if (!feed || (kind === "command" && event.progress)) return;
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    item.append(time, " ", describe(kind, event));
    item.dataset.kind = kind;
    feed.prepend(item);
    while (feed.children.length > 50) feed.lastElementChild.remove();
  });

  // Alerts reach the user on every page.
  listeners.add((kind, event) => {
    if (kind === "alert") toast(describe(kind, event), event.transition === "cleared" ? "ok" : "error", 15000);
  });

  // Launch: the image pull's progress while the device prepares the container.
  listeners.add((kind, event) => {
    const note = document.querySelector("[data-pull-progress]");
    if (!note || kind !== "command" || !event.progress) return;
    const p = event.progress;
    const amount = p.total ? ` ${Math.round((100 * (p.current || 0)) / p.total)}%` : "";
    note.textContent = `Pulling ${p.image}: ${p.status}${amount}`;
  });
  document.addEventListener("submit", (e) => {
    if (e.target.matches?.("[data-launch-form]")) {
      const note = e.target.querySelector("[data-pull-progress]");
      if (note) note.textContent = "Asking the device to create the container…";
    }
  });

  // --- live logs ------------------------------------------------------------------------------
  function followLogs(pre) {
    const id = pre.dataset.logs;
    const state = document.querySelector("[data-logs-state]");
    const toggle = document.querySelector("[data-logs-toggle]");
    let source = null;
    let paused = false;
    const say = (text) => state && (state.textContent = text);

    function open() {
      if (source) source.close();
      source = new EventSource(`${API}/containers/${encodeURIComponent(id)}/logs?follow=true&tail=200`);
      source.addEventListener("open", () => say("following the log live"));
      source.addEventListener("log", (m) => {
        if (paused) return;
        const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
        pre.append(m.data + "\n");
        if (pre.textContent.length > 400000) pre.textContent = pre.textContent.slice(-300000);
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      });
      source.addEventListener("end", (m) => {
        say(m.data || "the container stopped");
        source.close();
        source = null;
      });
      source.addEventListener("error", (m) => {
        if (m.data) say(m.data);
        else if (source && source.readyState === EventSource.CLOSED) say("the log stream closed");
      });
    }
    open();
    // A container that starts again gets a fresh stream.
    listeners.add((kind, event) => {
      if (kind === "container.status" && event.id === id && event.state === "running" && !source) {
        pre.append("--- started again ---\n");
        open();
      }
    });
    toggle?.addEventListener("click", () => {
      paused = !paused;
      toggle.textContent = paused ? "Resume" : "Pause";
      toggle.setAttribute("aria-pressed", String(!paused));
    });
    document.querySelector("[data-logs-clear]")?.addEventListener("click", () => (pre.textContent = ""));
  }

  // --- resumable uploads ----------------------------------------------------------------------
  const CHUNK = 4 << 20;

  async function apiJson(method, path, body) {
    const response = await fetch(API + path, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new Error(data?.detail || `${response.status} ${response.statusText}`);
    return data;
  }

  async function hashFile(file, onProgress) {
    const hash = sha256.create();
    for (let offset = 0; offset < file.size; offset += CHUNK) {
      hash.update(await file.slice(offset, offset + CHUNK).arrayBuffer());
      onProgress(Math.min(offset + CHUNK, file.size));
    }
    return hash.hex();
  }

  function patchPiece(url, file, start, end, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PATCH", url);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Content-Range", `bytes ${start}-${end - 1}/${file.size}`);
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.upload.onprogress = (e) => onProgress(start + e.loaded);
      xhr.onload = () => {
        if (xhr.status < 300) return resolve();
        let detail = xhr.statusText;
        try {
          detail = JSON.parse(xhr.responseText).detail || detail;
        } catch {}
        const error = new Error(detail);
        error.permanent = xhr.status >= 400 && xhr.status < 500 && xhr.status !== 409;
        reject(error);
      };
      xhr.onerror = () => reject(new Error("the connection dropped"));
      xhr.send(file.slice(start, end));
    });
  }

  // Upload ``file`` as an artifact; ``progress(phase, done, total)``. Resumes after a failure.
  async function upload(file, kind, progress) {
    const sha = await hashFile(file, (done) => progress("Checking", done, file.size));
    const created = await apiJson("POST", "/artifacts", { name: file.name, size: file.size, sha256: sha, kind });
    if (created.state === "complete") return created.id;
    let offset = created.received || 0;
    let failures = 0;
    while (offset < file.size || file.size === 0) {
      const end = Math.min(offset + CHUNK, file.size);
      try {
        await patchPiece(`${API}/artifacts/${created.id}`, file, offset, end, (done) => progress("Uploading", done, file.size));
        offset = end;
        failures = 0;
        if (file.size === 0) break;
      } catch (err) {
        if (err.permanent || ++failures > 5) throw err;
        progress(`Connection trouble (${err.message}); resuming`, offset, file.size);
        await new Promise((r) => setTimeout(r, 500 * 2 ** failures));
        offset = (await apiJson("GET", `/artifacts/${created.id}`)).received; // what arrived
      }
    }
    return created.id;
  }

  function deployForm(form) {
    const bar = form.querySelector("progress");
    const label = form.querySelector("[data-upload-label]");
    const box = form.querySelector(".upload-progress");
    const error = form.querySelector("[data-deploy-error]");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      const archive = form.elements.archive.files[0];
      const script = form.elements.script.files[0];
      if (!archive || !script) {
        error.textContent = "Choose both the application archive and its script.";
        return;
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      box.hidden = false;
      try {
        const show = (what) => (phase, done, total) => {
          label.textContent = `${phase} ${what}: ${Math.round((100 * done) / Math.max(total, 1))}%`;
          bar.value = (100 * done) / Math.max(total, 1);
        };
        const artifact = await upload(archive, "application", show(archive.name));
        const scriptId = await upload(script, "script", show(script.name));
        label.textContent = "Uploaded; deploying…";
        const submit = document.getElementById("deploy-submit");
        submit.elements.artifact.value = artifact;
        submit.elements.script.value = scriptId;
        submit.addEventListener(
          "htmx:afterRequest",
          (done) => (label.textContent = done.detail.xhr.status < 300 ? "Deploying: the steps follow below." : "The deployment was refused: see below."),
          { once: true },
        );
        htmx.trigger(submit, "submit");
        form.reset();
      } catch (err) {
        error.textContent = `The upload failed: ${err.message}`;
      } finally {
        button.disabled = false;
      }
    });
  }

  // --- graphs -----------------------------------------------------------------------------------
  function chartWidth(el) {
    return Math.max(240, el.clientWidth || el.parentElement.clientWidth || 600);
  }

  // ``span()`` is the time window shown, in seconds: the chosen range up to now, so that a
  // few points do not stretch over the whole axis.
  function lineChart(el, label, unit, stroke, range, span) {
    const opts = {
      width: chartWidth(el),
      height: 180,
      scales: { x: { time: true, range: () => span() }, y: range ? { range } : {} },
      series: [{}, { label, stroke, width: 2, value: (u, v) => (v == null ? "–" : `${v.toFixed(1)}${unit}`) }],
      axes: [{}, { size: 50 }],
    };
    const chart = new uPlot(opts, [[], []], el);
    new ResizeObserver(() => chart.setSize({ width: chartWidth(el), height: 180 })).observe(el);
    return chart;
  }

  function rangeSeconds(id, fallback) {
    const select = document.querySelector(`[data-range-for="${id}"]`);
    return Number(select?.value || fallback);
  }

  function windowOf(id) {
    return () => {
      const now = Date.now() / 1000;
      return [now - rangeSeconds(id, 3600), now];
    };
  }

  async function allMetrics(key, since) {
    const items = [];
    let cursor = null;
    do {
      const params = new URLSearchParams({ since: since.toISOString(), limit: "10000" });
      if (cursor) params.set("cursor", cursor);
      const page = await apiJson("GET", `/devices/${encodeURIComponent(key)}/metrics?${params}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && items.length < 100000);
    return items;
  }

  function deviceGraphs(box) {
    const key = box.dataset.deviceGraphs;
    const memoryTotal = Number(box.dataset.memoryTotal) || 1;
    const diskTotal = Number(box.dataset.diskTotal) || 1;
    const note = box.parentElement.querySelector("[data-graph-note]");
    const span = windowOf("device-graphs");
    const chart = (series, label, colour) =>
      lineChart(box.querySelector(`[data-series="${series}"]`), label, "%", colour, [0, 100], span);
    const charts = {
      cpu: chart("cpu", "CPU", "#2563eb"),
      memory: chart("memory", "Memory", "#16a34a"),
      disk: chart("disk", "Disk", "#9333ea"),
    };
    // The history is read once per range; after that only the points since the newest one
    // held (the registry stamps them as they arrive, so none come late), trimmed to the range.
    let points = [];
    function draw() {
      const from = Date.now() - rangeSeconds("device-graphs", 3600) * 1000;
      points = points.filter((p) => p.time >= from);
      const xs = points.map((p) => p.time / 1000);
      charts.cpu.setData([xs, points.map((p) => p.cpu_percent)]);
      charts.memory.setData([xs, points.map((p) => (100 * p.memory_used) / memoryTotal)]);
      charts.disk.setData([xs, points.map((p) => (100 * (diskTotal - p.disk_free)) / diskTotal)]);
      if (note) note.textContent = points.length ? `${points.length} heartbeats shown, updated live` : "No heartbeats in this range.";
    }
    async function refresh(reload = false) {
      try {
        const newest = reload || !points.length ? 0 : points[points.length - 1].time;
        const since = new Date(newest || Date.now() - rangeSeconds("device-graphs", 3600) * 1000);
        const fresh = (await allMetrics(key, since))
          .map((p) => ({ ...p, time: Date.parse(p.at) }))
          .filter((p) => p.time > newest);
        points = reload ? fresh : points.concat(fresh);
        draw();
      } catch (err) {
        if (note) note.textContent = `The history could not be loaded: ${err.message}`;
      }
    }
    refresh(true);
    document.querySelector('[data-range-for="device-graphs"]')?.addEventListener("change", () => refresh(true));
    setInterval(refresh, Math.max(2, Number(box.dataset.interval) || 5) * 1000);
  }

  const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2"];

  function dataGraphs(box) {
    const id = box.dataset.dataGraphs;
    const note = document.querySelector("[data-graph-note]");
    const charts = new Map();
    async function refresh() {
      try {
        const since = new Date(Date.now() - rangeSeconds("data-graphs", 3600) * 1000);
        const params = new URLSearchParams({ since: since.toISOString() });
        const data = await apiJson("GET", `/containers/${encodeURIComponent(id)}/data?${params}`);
        const names = Object.keys(data.series).sort();
        names.forEach((name, i) => {
          if (!charts.has(name)) {
            const figure = document.createElement("figure");
            const caption = document.createElement("figcaption");
            caption.textContent = name;
            const el = document.createElement("div");
            el.className = "chart";
            el.setAttribute("role", "img");
            el.setAttribute("aria-label", `${name} over time`);
            el.dataset.dataSeries = name;
            figure.append(caption, el);
            box.append(figure);
            charts.set(name, lineChart(el, name, "", PALETTE[i % PALETTE.length], null, windowOf("data-graphs")));
          }
          const points = data.series[name];
          charts.get(name).setData([points.map((p) => Date.parse(p[0]) / 1000), points.map((p) => p[1])]);
        });
        if (note) {
          note.textContent = names.length
            ? `${names.length} series, updated live${data.truncated ? " (only part of this range fits: choose a shorter one)" : ""}`
            : "This application has published no data in this range.";
        }
      } catch (err) {
        if (note) note.textContent = `The data could not be loaded: ${err.message}`;
      }
    }
    refresh();
    document.querySelector('[data-range-for="data-graphs"]')?.addEventListener("change", refresh);
    // The whole range each time: points come with the node's own timestamps, and a node back
    // from an outage delivers old ones late. So rarely: every 15 s.
    setInterval(refresh, 15000);
  }

  // --- small things -----------------------------------------------------------------------------
  document.addEventListener("click", (e) => {
    const button = e.target.closest?.("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    navigator.clipboard?.writeText(source.textContent.trim()).then(
      () => toast("Copied.", "ok", 2000),
      () => toast("Copying is not allowed here: select the text instead.", "error"),
    );
  });

  // A choice that applies itself (the tenant, the data's container): no inline handlers,
  // which the pages' Content-Security-Policy refuses.
  document.addEventListener("change", (e) => {
    const field = e.target.closest?.("[data-submit-on-change]");
    field?.form?.requestSubmit();
  });

  // Alert rules: a boundary only for the percentage conditions.
  function ruleForm(form) {
    const metric = form.querySelector('[name="metric"]');
    const boundary = form.querySelector("[data-threshold]");
    const sync = () => {
      // Conditions that hold or not (offline, exited, ...) take no boundary: the page marks them.
      const state = metric.selectedOptions[0]?.hasAttribute("data-state") ?? false;
      boundary.hidden = state;
      boundary.disabled = state;
    };
    metric.addEventListener("change", sync);
    sync();
  }

  function setUp(root) {
    root.querySelectorAll?.("[data-logs]").forEach(followLogs);
    root.querySelectorAll?.("[data-deploy-form]").forEach(deployForm);
    root.querySelectorAll?.("[data-device-graphs]").forEach(deviceGraphs);
    root.querySelectorAll?.("[data-data-graphs]").forEach(dataGraphs);
  }
  document.addEventListener("DOMContentLoaded", () => setUp(document));
  // Forms that htmx swaps in again after each answer (htmx:load also fires for the page).
  document.addEventListener("htmx:load", (e) => {
    const elt = e.detail.elt;
    if (elt.matches?.("[data-rule-form]")) ruleForm(elt);
    elt.querySelectorAll?.("[data-rule-form]").forEach(ruleForm);
  });
})();
