// berth dashboard: renders the scheduler's view, pushed over Server-Sent
// Events from api/stream (polling api/state where EventSource is missing).
// No framework and no innerHTML with data: every value goes in as text.
"use strict";

(function () {
  const HISTORY = 60; // samples kept per chart
  const traffic = new Map(); // "ns/name" -> [{rps, latencyMs}]
  let seenEvents = null; // event keys of the previous render

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, String(v));
      else node[k] = v;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function cpu(millis) {
    return millis >= 1000 && millis % 1000 === 0 ? `${millis / 1000}` : `${millis}m`;
  }

  function memory(bytes) {
    const units = ["B", "Ki", "Mi", "Gi", "Ti"];
    let n = bytes, i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${Math.round(n * 10) / 10}${units[i]}`;
  }

  function age(iso, now) {
    if (!iso) return "";
    const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
    if (s < 120) return `${s}s`;
    if (s < 7200) return `${Math.round(s / 60)}m`;
    if (s < 172800) return `${Math.round(s / 3600)}h`;
    return `${Math.round(s / 86400)}d`;
  }

  // A bar of `used` out of `total`: capacity turns amber then red as it
  // fills; progress (`rollout`) turns green when complete.
  function meter(label, used, total, format, rollout) {
    const ratio = total > 0 ? Math.min(1, used / total) : rollout ? 1 : 0;
    const level = rollout ? (ratio >= 1 ? " done" : "")
      : ratio >= 1 ? " full" : ratio >= 0.8 ? " high" : "";
    const fill = el("div", { class: "fill" + level });
    fill.style.width = `${Math.round(ratio * 100)}%`;
    return el("div", { class: "meter" },
      el("div", { class: "label" }, el("span", {}, label),
        el("span", {}, `${format(used)} / ${format(total)} (${Math.round(ratio * 100)}%)`)),
      el("div", { class: "track" }, fill));
  }

  function replace(container, children, emptyText) {
    container.replaceChildren(...(children.length ? children : [el("p", { class: "empty" }, emptyText)]));
  }

  function renderNodes(nodes) {
    const cards = nodes.map((n) => {
      const state = !n.ready ? ["NotReady", "bad"] : n.unschedulable ? ["Cordoned", "warn"] : ["Ready", "ok"];
      const instances = el("ul", { class: "instances" },
        ...n.instances.map((i) => el("li", { "data-phase": i.phase, title: `${i.namespace}/${i.name} ${i.phase}` },
          i.name)));
      const count = n.maxInstances > 0
        ? meter("instances", n.instances.length, n.maxInstances, String)
        : null;
      return el("div", { class: "card", "data-node": n.name },
        el("h3", {}, el("span", {}, n.name), el("span", { class: `badge ${state[1]}` }, state[0])),
        el("div", { class: "muted" }, (n.runtimes || []).join(", ")),
        meter("cpu requested", n.allocated.cpuMillis, n.allocatable.cpuMillis, cpu),
        meter("memory requested", n.allocated.memoryBytes, n.allocatable.memoryBytes, memory),
        el("div", { class: "usage muted" }, n.used
          ? `using ${cpu(n.used.cpuMillis)} cpu, ${memory(n.used.memoryBytes)} memory`
          : "usage: no recent report"),
        count,
        n.instances.length ? instances : el("p", { class: "empty" }, "No instances."));
    });
    replace(document.getElementById("nodes"), cards, "No nodes.");
  }

  function chart(title, values, unit, missing) {
    const known = values.filter((v) => v !== null && v !== undefined);
    if (!known.length) {
      return el("div", { class: "chart" }, `${title}: ${missing}`);
    }
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${HISTORY - 1} 40`);
    svg.setAttribute("preserveAspectRatio", "none");
    const max = Math.max(...known, 1e-9);
    const points = [];
    values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const x = HISTORY - values.length + i;
      points.push(`${x},${(38 - (v / max) * 36).toFixed(2)}`);
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
    const last = known[known.length - 1];
    return el("div", { class: "chart" }, `${title}: ${Math.round(last * 10) / 10} ${unit}`, svg);
  }

  function renderDeployments(deployments) {
    const cards = deployments.map((d) => {
      const key = `${d.namespace}/${d.name}`;
      const history = traffic.get(key) || [];
      history.push({ rps: d.requestsPerSecond, latencyMs: d.latencyMs });
      while (history.length > HISTORY) history.shift();
      traffic.set(key, history);
      const done = d.updated >= d.desired && d.available >= d.desired && d.replicas === d.desired;
      const state = d.paused ? ["Paused", "warn"] : done ? ["Available", "ok"] : ["Rolling out", "warn"];
      const failing = (d.conditions || []).find((c) => c.status === "False");
      return el("div", {
        class: "card", "data-deployment": key, "data-desired": d.desired,
        "data-ready": d.ready, "data-available": d.available, "data-updated": d.updated,
      },
        el("h3", {}, el("span", {}, key), el("span", { class: `badge ${failing ? "bad" : state[1]}` },
          failing ? failing.reason || "Failing" : state[0])),
        el("div", { class: "replicas" }, `${d.ready}/${d.desired} ready, ${d.updated} updated, ${d.available} available`,
          el("span", { class: "muted" }, ` (revision ${d.revision})`)),
        meter("updated", d.updated, d.desired, String, true),
        meter("ready", d.ready, d.desired, String, true),
        el("div", { class: "conditions" }, ...(d.conditions || []).map((c) =>
          el("div", { title: c.message }, `${c.type}=${c.status}${c.reason ? ` (${c.reason})` : ""}`))),
        el("div", { class: "charts" },
          chart("requests/s", history.map((h) => h.rps), "req/s", "no report yet"),
          chart("latency", history.map((h) => h.latencyMs), "ms", "no requests yet")));
    });
    replace(document.getElementById("deployments"), cards, "No deployments.");
  }

  function renderPending(pending, now) {
    const rows = pending.map((p) => el("tr", { "data-instance": `${p.namespace}/${p.name}` },
      el("td", {}, `${p.namespace}/${p.name}`), el("td", {}, p.owner || ""),
      el("td", {}, p.reason || "Waiting"), el("td", {}, p.message || ""), el("td", {}, age(p.created, now))));
    document.getElementById("pending").replaceChildren(...rows);
    document.getElementById("pending").parentElement.hidden = rows.length === 0;
    document.getElementById("pending-empty").hidden = rows.length !== 0;
  }

  function renderEvents(events, now) {
    const keys = new Set();
    const rows = events.map((e) => {
      const key = `${e.lastSeen}|${e.object}|${e.reason}|${e.count}`;
      keys.add(key);
      const fresh = seenEvents !== null && !seenEvents.has(key);
      return el("tr", { class: `${e.type}${fresh ? " fresh" : ""}` },
        el("td", {}, age(e.lastSeen, now)), el("td", {}, e.type), el("td", {}, e.reason),
        el("td", {}, e.namespace ? `${e.namespace}/${e.object}` : e.object),
        el("td", {}, e.count > 1 ? `${e.message} (x${e.count})` : e.message));
    });
    seenEvents = keys;
    document.getElementById("events").replaceChildren(...rows);
    document.getElementById("events").parentElement.hidden = rows.length === 0;
    document.getElementById("events-empty").hidden = rows.length !== 0;
  }

  function render(view) {
    const now = Date.now();
    renderDeployments(view.deployments);
    renderNodes(view.nodes);
    renderPending(view.pending, now);
    renderEvents(view.events, now);
    document.getElementById("revision").textContent = `revision ${view.revision}`;
    document.body.dataset.revision = String(view.revision);
  }

  function connection(state, text) {
    const badge = document.getElementById("connection");
    badge.dataset.state = state;
    badge.textContent = text;
  }

  function poll() {
    fetch("api/state", { credentials: "same-origin", cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((view) => { render(view); connection("live", "live (polling)"); })
      .catch((e) => connection("lost", `lost: ${e.message}`))
      .finally(() => setTimeout(poll, 1000));
  }

  function stream() {
    const source = new EventSource("api/stream");
    source.addEventListener("state", (e) => {
      render(JSON.parse(e.data));
      connection("live", "live");
    });
    source.addEventListener("problem", (e) => connection("lost", `scheduler: ${e.data}`));
    source.onerror = () => connection("lost", "reconnecting");
  }

  if (typeof EventSource === "function") stream(); else poll();
})();
