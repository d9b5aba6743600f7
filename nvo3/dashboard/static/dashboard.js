/* nvo3 dashboard: live pages without reloads.
   One EventSource per page (/events, server-sent events). Each event:
   - refreshes the page's [data-refresh] fragments (debounced; not for the backlog sent
     before the "ready" event, which the page already shows; once after a reconnection),
   - is added to the timeline table when the page has one (newest first),
   - an "annotate" event fills in a logged event's figures (network convergence).
   A row added to the timeline records when it was shown: data-shown-at (ms since epoch). */
(function () {
  "use strict";
  var pending = null, followUps = [];
  /* when each element with an id was first shown (ms since epoch): tests read it */
  var firstSeen = window.nvo3FirstSeen = {};

  function note(root) {
    var now = Date.now();
    root.querySelectorAll("[id]").forEach(function (el) {
      if (!(el.id in firstSeen)) { firstSeen[el.id] = now; }
    });
  }

  function refresh() {
    pending = null;
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      fetch(el.getAttribute("data-refresh"), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            el.innerHTML = html;
            el.setAttribute("data-refreshed-at", Date.now());
            note(el);
          }
        });
    });
  }

  /* An event refreshes at once, then a few times more: the nDirector notifies an attachment
     before the vCenter has recorded where the VM runs (its create or move is finishing). */
  function later() {
    if (pending === null) { pending = setTimeout(refresh, 20); }
    followUps.forEach(clearTimeout);
    followUps = [setTimeout(refresh, 150), setTimeout(refresh, 400), setTimeout(refresh, 1000)];
  }

  function text(v) {
    if (v === undefined || v === null || v === "") { return "-"; }
    if (Array.isArray(v)) { return v.join(", ") || "-"; }
    return String(v);
  }

  var MOVES = {moved: 1, relocated: 1, replicated: 1};

  function cell(tr, value, cls) {
    var td = document.createElement("td");
    td.textContent = value;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
  }

  function addRow(body, e) {
    var tr = document.createElement("tr");
    tr.id = "event-" + e.id;
    tr.className = "kind-" + e.kind + (MOVES[e.kind] ? " move" : "");
    tr.setAttribute("data-kind", e.kind);
    tr.setAttribute("data-mac", e.mac || "");
    tr.setAttribute("data-vm", e.tenant ? e.tenant + "/" + e.name : "");
    var who = e.tenant ? e.tenant + "/" + e.name : (e.vm ? e.vm + " (" + e.mac + ")" : text(e.mac));
    var from = e["previous-nve"] || e["previous-vserver"], to = e.nve || e.vserver;
    if (e.kind === "nve-state") {
      who = "NVE " + e.nve; from = e["previous-state"]; to = e.state + (e.reason ? " (" + e.reason + ")" : "");
    }
    cell(tr, text(e.time).replace("T", " ").replace("Z", ""));
    cell(tr, e.kind);
    cell(tr, who);
    cell(tr, text(e.vni));
    cell(tr, text(from));
    cell(tr, text(to));
    cell(tr, e["duration-ms"] !== undefined && e["duration-ms"] !== null ? e["duration-ms"] + " ms" : "-");
    cell(tr, e["convergence-us"] !== undefined ? (e["convergence-us"] / 1000).toFixed(1) + " ms" : "-", "converged");
    cell(tr, text(e.source));
    tr.setAttribute("data-shown-at", Date.now());
    body.insertBefore(tr, body.firstChild);
    filter();
  }

  function annotate(e) {
    var tr = document.getElementById("event-" + e.ref);
    if (tr && e["convergence-us"] !== undefined) {
      tr.querySelector(".converged").textContent = (e["convergence-us"] / 1000).toFixed(1) + " ms";
    }
  }

  function filter() {
    var box = document.getElementById("moves-only");
    var only = box && box.checked;
    document.querySelectorAll("#timeline-body tr").forEach(function (tr) {
      tr.hidden = only && !tr.classList.contains("move");
    });
  }

  function start() {
    note(document);
    var live = document.getElementById("live");
    if (!live) { return; }              /* not logged in */
    var box = document.getElementById("moves-only");
    if (box) { box.addEventListener("change", filter); }
    var body = document.getElementById("timeline-body");
    /* the timeline wants the backlog; other pages only what happens after they were drawn */
    var since = body ? 0 : (document.body.getAttribute("data-last-event") || 0);
    var source = new EventSource("/events?since=" + since);
    var ready = false, connected = false;
    source.onopen = function () { live.classList.add("on"); };
    source.onerror = function () { live.classList.remove("on"); ready = false; };
    source.addEventListener("ready", function () {
      if (connected && !body) { later(); }     /* a reconnection: catch up once */
      ready = connected = true;
    });
    /* a browser allows 6 connections per server: a page left behind (or kept in the
       back-forward cache) must give its stream back */
    window.addEventListener("pagehide", function () { source.close(); });
    window.addEventListener("pageshow", function (ev) { if (ev.persisted) { location.reload(); } });
    source.onmessage = function (msg) {
      var e = JSON.parse(msg.data);
      if (e.kind === "annotate") { annotate(e); return; }
      if (e.kind === "refresh") { if (!body) { later(); } return; }
      if (body && !document.getElementById("event-" + e.id)) { addRow(body, e); }
      if (!body && ready) { later(); }
    };
  }

  document.addEventListener("DOMContentLoaded", start);
})();
