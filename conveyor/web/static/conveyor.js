// The Conveyor dashboard: fills the server-rendered pages from the JSON API and refreshes
// them by polling. Every value that comes from a job (names, arguments, results, errors) is
// put in the page as text (textContent), never parsed as HTML.
(() => {
  "use strict";

  const meta = (name) => {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute("content") || "" : "";
  };
  const ROOT = meta("conveyor-root");
  const CSRF = meta("csrf-token");
  const PAGE = document.body.dataset.page;
  const STATUSES = ["scheduled", "queued", "running", "succeeded", "failed", "cancelled"];
  const $ = (selector) => document.querySelector(selector);

  // -- building the page ------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = String(value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const jobHref = (id) => `${ROOT}/jobs/${encodeURIComponent(id)}`;
  const jobLink = (id) => h("a", { class: "id", href: jobHref(id), text: id });
  const badge = (status) => h("span", { class: `badge s-${status}`, text: status });

  function fill(tbody, rows, columns, emptyText) {
    tbody.replaceChildren(
      ...(rows.length ? rows : [h("tr", {}, h("td", { class: "empty", colspan: columns, text: emptyText }))]),
    );
  }

  // -- formatting -------------------------------------------------------------------------

  function clock(ts) {
    if (ts === null || ts === undefined) return "–";
    const d = new Date(ts * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    const s = Math.abs(seconds);
    if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms`;
    if (s < 60) return s < 10 ? `${s.toFixed(2)} s` : `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
    return `${(s / 86400).toFixed(1)} days`;
  }

  function ago(ts) {
    if (ts === null || ts === undefined) return "–";
    const delta = Date.now() / 1000 - ts;
    if (delta < 0) return `in ${duration(-delta)}`;
    if (delta < 1) return "just now";
    return `${duration(delta)} ago`;
  }

  const timeCell = (ts) => h("td", { title: clock(ts), text: ago(ts) });

  function preview(value, most = 80) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text.length > most ? `${text.slice(0, most - 1)}…` : text;
  }

  function callText(job) {
    const parts = job.args.map((a) => JSON.stringify(a));
    for (const [k, v] of Object.entries(job.kwargs)) parts.push(`${k}=${JSON.stringify(v)}`);
    return parts.join(", ");
  }

  const errorText = (error) => (error ? `${error.type}: ${error.message}` : "");

  // -- the API ----------------------------------------------------------------------------

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (CSRF) headers["X-CSRF-Token"] = CSRF;
    const init = { method: options.method || "GET", headers, credentials: "same-origin" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(ROOT + path, init);
    if (response.status === 401) {
      const here = location.pathname.slice(ROOT.length) + location.search;
      location.assign(`${ROOT}/login?next=${encodeURIComponent(here)}`);
      throw new Error("log in first");
    }
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json() : null;
    if (!response.ok) {
      const error = new Error((data && data.error) || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  const post = (path, body) => api(path, { method: "POST", body });

  function banner(message) {
    const el = $("#banner");
    if (!el) return;
    el.hidden = !message;
    el.textContent = message || "";
  }

  function live(ok) {
    const el = $("#live");
    if (!el) return;
    el.className = `live ${ok ? "ok" : "down"}`;
    el.textContent = ok ? "live" : "offline";
  }

  // Run fn now and every `ms` (not while the tab is hidden); a failure shows in the banner.
  function poll(fn, ms) {
    let timer = null;
    let busy = false;
    async function tick() {
      clearTimeout(timer);
      if (!busy && !document.hidden) {
        busy = true;
        try {
          await fn();
          live(true);
          banner("");
        } catch (error) {
          live(false);
          banner(`Could not refresh: ${error.message}`);
        } finally {
          busy = false;
        }
      }
      timer = setTimeout(tick, ms);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) tick();
    });
    tick();
    return tick;
  }

  // An action button: disabled while it runs, errors in the banner, then `after()`.
  function action(label, run, after, options = {}) {
    const button = h("button", { type: "button", class: options.class || null, text: label });
    let armed = false;
    let disarm = null;
    button.addEventListener("click", async () => {
      if (options.confirm && !armed) {
        armed = true;
        button.textContent = options.confirm;
        button.classList.add("confirm");
        disarm = setTimeout(() => {
          armed = false;
          button.textContent = label;
          button.classList.remove("confirm");
        }, 4000);
        return;
      }
      clearTimeout(disarm);
      armed = false;
      button.disabled = true;
      try {
        await run();
        banner("");
      } catch (error) {
        banner(error.message);
      } finally {
        button.disabled = false;
        button.textContent = label;
        button.classList.remove("confirm");
        if (after) await after();
      }
    });
    return button;
  }

  function fillSelect(select, values, current) {
    const keep = select.value || current || "";
    const first = select.options[0];
    select.replaceChildren(first, ...values.map((v) => h("option", { value: v, text: v })));
    select.value = values.includes(keep) ? keep : "";
  }

  // -- overview ---------------------------------------------------------------------------

  const COLORS = ["#2f7fd8", "#7a62d3", "#1f9d55", "#d88a15", "#d3373b", "#0f9fb0", "#b34fa6", "#6b7a1f"];
  const WINDOW = 60; // seconds over which throughput and failure rate are averaged
  const HOUR = 3600;

  function chartBox(el) {
    return { width: Math.max(260, el.clientWidth), height: 200 };
  }

  const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

  class Chart {
    constructor(el, format, whole = false) {
      this.el = el;
      this.format = format;
      this.whole = whole; // counts of jobs: ticks at whole numbers only
      this.plot = null;
      this.labels = "";
      new ResizeObserver(() => {
        if (this.plot) this.plot.setSize(chartBox(this.el));
      }).observe(el);
    }

    update(times, series) {
      if (!window.uPlot) return;
      if (!times.length) {
        if (this.plot) this.plot.destroy();
        this.plot = null;
        this.labels = "";
        this.el.replaceChildren(h("div", { class: "empty", text: "No samples yet: the server takes one every few seconds." }));
        return;
      }
      const labels = series.map((s) => s.label).join("\u0000");
      const data = [times, ...series.map((s) => s.values)];
      if (this.plot && labels === this.labels) {
        this.plot.setData(data);
        return;
      }
      if (this.plot) this.plot.destroy();
      this.el.replaceChildren();
      this.labels = labels;
      const format = this.format;
      this.plot = new window.uPlot(
        {
          ...chartBox(this.el),
          series: [
            {},
            ...series.map((s) => ({
              label: s.label,
              stroke: s.color,
              width: 2,
              fill: s.fill || undefined,
              spanGaps: false,
              points: { show: false },
              value: (u, v) => (v === null || v === undefined ? "–" : format(v)),
            })),
          ],
          axes: [
            { stroke: "#687086" },
            { stroke: "#687086", size: 56, values: (u, vals) => vals.map(format), incrs: this.whole ? WHOLE : undefined },
          ],
          scales: { y: { range: (u, min, max) => [0, Math.max(max, 1) * 1.1] } },
          cursor: { drag: { x: false, y: false } },
          legend: { live: true },
        },
        data,
        this.el,
      );
    }
  }

  function overviewPage() {
    const state = { samples: [], startedAt: null, fields: [], every: 5 };
    const charts = {
      depth: new Chart($("#chart-depth"), (v) => String(Math.round(v)), true),
      throughput: new Chart($("#chart-throughput"), (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v)))),
      failures: new Chart($("#chart-failures"), (v) => `${v.toFixed(v < 10 ? 1 : 0)}%`),
    };
    const chartQueue = $("#chart-queue");
    chartQueue.addEventListener("change", () => drawCharts());

    async function loadHistory() {
      const since = state.samples.length ? state.samples[state.samples.length - 1][0] : 0;
      const history = await api(`/api/history?since=${since}`);
      if (history.started_at !== state.startedAt) {
        state.samples = [];
        state.startedAt = history.started_at;
        const samples = await api("/api/history?since=0");
        state.samples = samples.samples;
      } else {
        state.samples.push(...history.samples);
      }
      state.fields = history.fields;
      state.every = history.every;
      const cut = Date.now() / 1000 - HOUR;
      while (state.samples.length && state.samples[0][0] < cut) state.samples.shift();
      $("#history-note").textContent =
        `One sample every ${history.every} s, kept in this server's memory since ${clock(history.started_at)}: ` +
        "the charts start empty when the server starts.";
    }

    function numbers(sample, queue) {
      const out = [0, 0, 0, 0, 0, 0];
      for (const [name, values] of Object.entries(sample[1])) {
        if (queue && name !== queue) continue;
        values.forEach((v, i) => {
          out[i] += v;
        });
      }
      return out;
    }

    function drawCharts() {
      const queue = chartQueue.value;
      const samples = state.samples;
      const times = samples.map((s) => s[0]);
      const queues = new Set();
      for (const s of samples) for (const name of Object.keys(s[1])) queues.add(name);
      const shown = queue ? [queue] : [...queues].sort().slice(0, COLORS.length);
      charts.depth.update(
        times,
        shown.map((name, i) => ({
          label: name,
          color: COLORS[i % COLORS.length],
          values: samples.map((s) => (s[1][name] ? s[1][name][0] + s[1][name][1] : 0)),
        })),
      );
      const totals = samples.map((s) => numbers(s, queue));
      const succeeded = [];
      const failed = [];
      const retried = [];
      const rate = [];
      let j = 0;
      for (let i = 0; i < samples.length; i++) {
        while (j < i && times[j] < times[i] - WINDOW) j++;
        const span = times[i] - times[j];
        if (span <= 0) {
          succeeded.push(null);
          failed.push(null);
          retried.push(null);
          rate.push(null);
          continue;
        }
        const d = [3, 4, 5].map((k) => Math.max(0, totals[i][k] - totals[j][k]));
        succeeded.push((d[0] / span) * 60);
        failed.push((d[1] / span) * 60);
        retried.push((d[2] / span) * 60);
        const attempts = d[0] + d[1] + d[2];
        rate.push(attempts ? ((d[1] + d[2]) / attempts) * 100 : 0);
      }
      charts.throughput.update(times, [
        { label: "succeeded", color: "#1f9d55", values: succeeded },
        { label: "retried", color: "#d88a15", values: retried },
        { label: "failed", color: "#d3373b", values: failed },
      ]);
      charts.failures.update(times, [
        { label: "failed attempts", color: "#d3373b", fill: "rgba(211,55,59,0.08)", values: rate },
      ]);
    }

    function card(label, value, sub, cls) {
      return h("div", { class: `card ${cls || ""}` }, h("div", { class: "label", text: label }),
        h("div", { class: "value", text: value }), sub ? h("div", { class: "sub", text: sub }) : null);
    }

    async function refresh() {
      const [stats, queues] = await Promise.all([api("/api/stats"), api("/api/queues"), loadHistory()]);
      const j = stats.jobs;
      $("#cards").replaceChildren(
        card("Scheduled", j.scheduled, "waiting for their time", "s-scheduled"),
        card("Queued", j.queued, "due, waiting for a worker", "s-queued"),
        card("Running", j.running, `${stats.slots} slots`, "s-running"),
        card("Succeeded", j.succeeded, "kept per retention", "s-succeeded"),
        card("Failed", j.failed, "in the dead-letter queue", "s-failed"),
        card("Workers", stats.workers, stats.paused.length ? `${stats.paused.length} queue(s) paused` : "no queue paused"),
      );
      const rows = queues.queues.map((q) =>
        h("tr", { "data-queue": q.name },
          h("td", {}, h("a", { href: `${ROOT}/jobs?queue=${encodeURIComponent(q.name)}`, text: q.name })),
          h("td", {}, q.paused ? h("span", { class: "badge paused", text: "paused" }) : h("span", { class: "badge active", text: "active" })),
          ...STATUSES.map((s) => h("td", { class: "num", text: q.counts[s] })),
          h("td", { class: "num", text: q.workers }),
          h("td", {}, q.paused
            ? action("Resume", () => post(`/api/queues/${encodeURIComponent(q.name)}/resume`), refresh)
            : action("Pause", () => post(`/api/queues/${encodeURIComponent(q.name)}/pause`), refresh)),
        ));
      fill($("#queues tbody"), rows, 10, "No queue has jobs yet.");
      fillSelect(chartQueue, queues.queues.map((q) => q.name));
      drawCharts();
    }

    poll(refresh, 3000);
  }

  // -- jobs -------------------------------------------------------------------------------

  function pager(nav, next, params) {
    const links = [];
    if (params.get("cursor")) {
      const first = new URLSearchParams(params);
      first.delete("cursor");
      links.push(h("a", { href: `?${first}`, text: "← Newest" }));
    }
    if (next) {
      const older = new URLSearchParams(params);
      older.set("cursor", next);
      links.push(h("a", { href: `?${older}`, text: "Older →" }));
    }
    nav.replaceChildren(...links);
  }

  function jobsPage() {
    const params = new URLSearchParams(location.search);
    const status = $("#f-status");
    for (const s of STATUSES) status.append(h("option", { value: s, text: s }));
    status.value = params.get("status") || "";
    $("#f-task").value = params.get("task") || "";
    const queueSelect = $("#f-queue");
    const search = $("#f-search");
    $("#filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      for (const [key, el] of [["status", status], ["queue", queueSelect], ["task", $("#f-task")]]) {
        if (el.value) next.set(key, el.value);
      }
      location.assign(`?${next}`);
    });
    $("#find").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("#find-id").value.trim();
      if (id) location.assign(jobHref(id));
    });
    const applySearch = () => {
      const needle = search.value.trim().toLowerCase();
      for (const row of document.querySelectorAll("#jobs tbody tr[data-text]")) {
        row.classList.toggle("hidden", Boolean(needle) && !row.dataset.text.includes(needle));
      }
    };
    search.addEventListener("input", applySearch);

    const query = new URLSearchParams();
    for (const key of ["status", "queue", "task", "cursor"]) if (params.get(key)) query.set(key, params.get(key));
    query.set("limit", "50");

    async function refresh() {
      const [page, queues] = await Promise.all([api(`/api/jobs?${query}`), api("/api/queues")]);
      fillSelect(queueSelect, queues.queues.map((q) => q.name), params.get("queue"));
      const rows = page.jobs.map((job) => {
        const text = [job.id, job.task, job.queue, job.status, callText(job), errorText(job.error)].join(" ").toLowerCase();
        return h("tr", { "data-id": job.id, "data-text": text },
          h("td", {}, jobLink(job.id)),
          h("td", { class: "clip", text: job.task }),
          h("td", { text: job.queue }),
          h("td", {}, badge(job.status)),
          h("td", { class: "num", text: `${job.attempts}/${job.max_attempts}` }),
          timeCell(job.created_at),
          h("td", { class: "clip mono", title: preview(callText(job), 2000), text: preview(callText(job)) }),
          h("td", { class: "clip", title: preview(errorText(job.error), 2000), text: preview(errorText(job.error)) }),
        );
      });
      fill($("#jobs tbody"), rows, 8, "No jobs match.");
      applySearch();
      pager($("#pager"), page.next, params);
    }

    poll(refresh, 2000);
  }

  // -- one job ----------------------------------------------------------------------------

  function jobPage() {
    const id = document.body.dataset.job;

    function facts(job) {
      const rows = [
        ["Id", job.id],
        ["Task", job.task],
        ["Queue", job.queue],
        ["Priority", job.priority],
        ["Attempts", `${job.attempts} of ${job.max_attempts}`],
        ["Key", job.key || "–"],
        ["Worker", job.worker || "–"],
        ["Created", clock(job.created_at)],
        ["Due", clock(job.eta)],
        ["Started", clock(job.started_at)],
        ["Finished", clock(job.finished_at)],
        ["Timeout", job.timeout ? duration(job.timeout) : "none"],
      ];
      if (job.losses) rows.push(["Losses", `its worker was lost ${job.losses} time(s) while running it (not counted as attempts)`]);
      if (job.lease_until) rows.push(["Lease until", clock(job.lease_until)]);
      if (job.cancel_requested) rows.push(["Cancel", "requested: its worker stops it at the next heartbeat"]);
      $("#job-facts").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
    }

    function timeline(job) {
      const items = [];
      const item = (cls, title, ts, note) =>
        items.push(h("li", { class: cls }, h("div", { text: title }), h("div", { class: "when", text: `${clock(ts)}${note ? ` · ${note}` : ""}` })));
      item("s-queued", "Enqueued", job.created_at);
      if (job.attempts > 1) {
        items.push(h("li", { class: "s-failed" }, h("div", { text: `${job.attempts - 1} earlier attempt(s) raised` }),
          h("div", { class: "when", text: "the broker keeps the last error only (below)" })));
      }
      if (job.status === "scheduled" && job.attempts > 0) {
        item("s-scheduled", `Retry ${job.attempts + 1} of ${job.max_attempts} due`, job.eta, ago(job.eta));
      } else if (job.status === "scheduled") {
        item("s-scheduled", "Due", job.eta, ago(job.eta));
      } else if (job.eta > job.created_at + 0.5 && job.attempts <= 1) {
        item("s-scheduled", "Due", job.eta);
      }
      if (job.started_at && job.status !== "scheduled" && job.status !== "queued") {
        item("s-running", `Attempt ${job.attempts} started`, job.started_at, job.worker ? `on ${job.worker}` : "");
      }
      if (job.finished_at) {
        const took = job.started_at ? `after ${duration(job.finished_at - job.started_at)}` : "";
        item(`s-${job.status}`, job.status[0].toUpperCase() + job.status.slice(1), job.finished_at, took);
      } else if (job.status === "running") {
        item("s-running", "Running", job.started_at, `for ${duration(Date.now() / 1000 - job.started_at)}`);
      }
      $("#job-timeline").replaceChildren(...items);
    }

    function actions(job) {
      const buttons = [];
      const pending = ["scheduled", "queued", "running"].includes(job.status);
      if (pending && !job.cancel_requested) {
        buttons.push(action("Cancel", () => post(`/api/jobs/${encodeURIComponent(job.id)}/cancel`), refresh, { class: "danger" }));
      }
      if (job.status === "failed") {
        buttons.push(action("Retry", () => post(`/api/jobs/${encodeURIComponent(job.id)}/retry`), refresh, { class: "primary" }));
      }
      $("#job-actions").replaceChildren(...buttons);
    }

    async function refresh() {
      let job;
      try {
        job = await api(`/api/jobs/${encodeURIComponent(id)}`);
      } catch (error) {
        if (error.status === 404) {
          $("#job-task").textContent = "No such job";
          $("#job-facts").replaceChildren(h("dt", { text: "Id" }), h("dd", { text: id }));
          return;
        }
        throw error;
      }
      document.title = `${job.task} · Conveyor`;
      $("#job-task").textContent = job.task;
      $("#job-status").replaceChildren(badge(job.status));
      facts(job);
      timeline(job);
      actions(job);
      $("#job-args").textContent = JSON.stringify(job.args, null, 2);
      $("#job-kwargs").textContent = JSON.stringify(job.kwargs, null, 2);
      $("#job-result-panel").hidden = job.status !== "succeeded";
      $("#job-result").textContent = JSON.stringify(job.result, null, 2);
      $("#job-error-panel").hidden = !job.error;
      $("#job-error").textContent = errorText(job.error);
      $("#job-traceback").textContent = job.error ? job.error.traceback || "(no traceback)" : "";
    }

    poll(refresh, 1500);
  }

  // -- failed jobs ------------------------------------------------------------------------

  function failedPage() {
    const params = new URLSearchParams(location.search);
    const queueSelect = $("#failed-queue");
    queueSelect.addEventListener("change", () => {
      const next = new URLSearchParams();
      if (queueSelect.value) next.set("queue", queueSelect.value);
      location.assign(`?${next}`);
    });
    const queue = params.get("queue") || "";
    const scope = () => (queue ? { queue } : { all: true });
    const retryAll = action("Retry all", () => post("/api/failed/retry", scope()), () => refresh(), {
      confirm: "Retry all? Click again",
    });
    const purgeAll = action("Purge all", () => post("/api/failed/purge", scope()), () => refresh(), {
      class: "danger",
      confirm: "Delete them all? Click again",
    });
    $("#retry-all").replaceWith(retryAll);
    $("#purge-all").replaceWith(purgeAll);

    const query = new URLSearchParams({ status: "failed", limit: "50" });
    if (queue) query.set("queue", queue);
    if (params.get("cursor")) query.set("cursor", params.get("cursor"));

    async function refresh() {
      const [page, queues] = await Promise.all([api(`/api/jobs?${query}`), api("/api/queues")]);
      fillSelect(queueSelect, queues.queues.map((q) => q.name), queue);
      const rows = page.jobs.map((job) =>
        h("tr", { "data-id": job.id },
          h("td", {}, jobLink(job.id)),
          h("td", { class: "clip", text: job.task }),
          h("td", { text: job.queue }),
          h("td", { class: "num", text: `${job.attempts}/${job.max_attempts}` }),
          timeCell(job.finished_at),
          h("td", { class: "clip", title: preview(errorText(job.error), 2000), text: preview(errorText(job.error), 120) }),
          h("td", {}, action("Retry", () => post(`/api/jobs/${encodeURIComponent(job.id)}/retry`), refresh)),
        ));
      fill($("#failed tbody"), rows, 7, "No failed jobs.");
      retryAll.disabled = purgeAll.disabled = !page.jobs.length;
      pager($("#pager"), page.next, params);
    }

    poll(refresh, 2500);
  }

  // -- workers ----------------------------------------------------------------------------

  function workersPage() {
    async function refresh() {
      const [workers, queues] = await Promise.all([api("/api/workers"), api("/api/queues")]);
      const rows = workers.workers.map((w) =>
        h("tr", { "data-id": w.id },
          h("td", { class: "id", text: w.id }),
          h("td", { text: w.hostname }),
          h("td", { class: "num", text: w.pid }),
          h("td", { text: w.queues.join(", ") }),
          h("td", {}, `${w.running.length}/${w.concurrency} `, ...w.running.slice(0, 5).flatMap((id) => [jobLink(id), " "]),
            w.running.length > 5 ? `+${w.running.length - 5}` : ""),
          h("td", { class: "num", text: w.succeeded }),
          h("td", { class: "num", text: w.retried }),
          h("td", { class: "num", text: w.failed }),
          timeCell(w.started_at),
          timeCell(w.seen_at),
        ));
      fill($("#workers tbody"), rows, 10, "No live worker. Start one: conveyor worker module:app");
      const paused = queues.queues.filter((q) => q.paused);
      $("#paused").replaceChildren(
        ...(paused.length
          ? paused.map((q) => h("li", {}, h("span", { text: q.name }),
            action("Resume", () => post(`/api/queues/${encodeURIComponent(q.name)}/resume`), refresh)))
          : [h("li", { class: "muted", text: "None." })]),
      );
    }

    poll(refresh, 3000);
  }

  const pages = { overview: overviewPage, jobs: jobsPage, job: jobPage, failed: failedPage, workers: workersPage };
  if (pages[PAGE]) pages[PAGE]();
})();
