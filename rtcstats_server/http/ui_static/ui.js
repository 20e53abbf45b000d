// The sessions page (rtcstats_server/http/ui.py): search GET /v1/sessions, open a row's
// viewer, upload a dump through POST /v1.0/upload and open it. Runs under a nonce-only
// CSP: no inline handlers, no innerHTML with data (every value goes in as text).
"use strict";
(() => {
  const TOKEN_KEY = "rtcstats.token";
  const PAGE_SIZE = 50;
  const FORM_FIELDS = ["user_id", "conference_id", "from", "to", "finding", "browser"];
  const root = new URL("../", window.location.href); // the page is <root>/ui/
  const $ = (id) => document.getElementById(id);
  const search = $("search");
  const rows = document.querySelector("#sessions tbody");
  let cursor = null;

  class Refused extends Error {}

  function authHeaders() {
    const token = window.sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function say(id, text, bad) {
    const element = $(id);
    element.textContent = text;
    element.classList.toggle("bad", Boolean(bad));
  }

  function askToken(text) {
    $("auth").hidden = false;
    say("auth-status", text, true);
    $("token").focus();
  }

  // fetch one API route relative to the collector's root; JSON body or null
  async function api(path, options) {
    const init = Object.assign({ credentials: "omit" }, options || {});
    init.headers = Object.assign(authHeaders(), init.headers || {});
    const response = await fetch(new URL(path, root), init);
    let body = null;
    try {
      body = await response.json();
    } catch (ignored) {
      body = null;
    }
    if (response.status === 401) {
      const had = Boolean(window.sessionStorage.getItem(TOKEN_KEY));
      window.sessionStorage.removeItem(TOKEN_KEY);
      askToken(had ? "That token was refused." : "A token is needed.");
      throw new Refused("unauthorized");
    }
    if (!response.ok) {
      const detail = body && (body.detail || body.error);
      throw new Refused(detail ? String(detail) : "HTTP " + response.status);
    }
    return body;
  }

  // a viewer link as served here (its stored host may be another name of this server)
  function local(url) {
    const parsed = new URL(url, root);
    return new URL("." + parsed.pathname + parsed.search, root).href;
  }

  function usable(record) {
    if (!record.viewer_url) return false;
    const expires = record.viewer_url_expires_at;
    return !expires || Date.parse(expires) > Date.now() + 60000;
  }

  async function openSession(record) {
    let url = usable(record) ? record.viewer_url : null;
    if (!url) {
      say("status", "Signing a link…");
      const path = "v1/sessions/" + encodeURIComponent(record.id) + "/viewer-url";
      url = (await api(path, { method: "POST" })).viewer_url;
    }
    window.location.assign(local(url));
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text == null ? "" : String(text);
    if (className) td.className = className;
    return td;
  }

  function duration(seconds) {
    if (typeof seconds !== "number") return "";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const whole = Math.round(seconds);
    const minutes = Math.floor(whole / 60);
    const rest = String(whole % 60).padStart(2, "0");
    return minutes < 60 ? minutes + ":" + rest : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function addRow(record) {
    const row = rows.insertRow();
    row.className = "session";
    row.dataset.id = record.id;
    const started = cell(row, "", "t");
    const link = document.createElement("a");
    link.textContent = String(record.started_at || "").replace("T", " ").slice(0, 19) || record.id;
    link.title = record.id;
    link.href = usable(record) ? local(record.viewer_url) : "#";
    started.appendChild(link);
    cell(row, record.user_id);
    cell(row, record.conference_id);
    cell(row, [record.browser, record.os].filter(Boolean).join(" · "));
    cell(row, duration(record.duration_s), "n");
    const findings = cell(row, "");
    for (const name of record.findings || []) {
      const chip = document.createElement("span");
      chip.className = "finding";
      chip.textContent = name;
      findings.appendChild(chip);
    }
    cell(row, record.state);
    row.addEventListener("click", (event) => {
      const anchor = event.target.closest("a");
      if (anchor && anchor.getAttribute("href") !== "#") return; // the browser follows it
      event.preventDefault();
      openSession(record).catch((error) => say("status", error.message, true));
    });
  }

  function formValues() {
    const data = new FormData(search);
    const values = {};
    for (const name of FORM_FIELDS) {
      const value = String(data.get(name) || "").trim();
      if (value) values[name] = value;
    }
    return values;
  }

  function apiQuery(values) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const name of ["user_id", "conference_id", "finding", "browser"]) {
      if (values[name]) query.set(name, values[name]);
    }
    if (values.from) query.set("since", values.from);
    if (values.to) {
      // the whole "to" day: until (exclusive) is the next midnight, UTC
      const next = new Date(Date.parse(values.to + "T00:00:00Z") + 86400000);
      if (!Number.isNaN(next.getTime())) query.set("until", next.toISOString().slice(0, 10));
    }
    return query;
  }

  async function load(more) {
    const query = apiQuery(formValues());
    if (more && cursor) query.set("cursor", cursor);
    say("status", "Searching…");
    const body = await api("v1/sessions?" + query.toString());
    if (!more) rows.replaceChildren();
    for (const record of body.sessions || []) addRow(record);
    cursor = body.next_cursor || null;
    $("more").hidden = !cursor;
    const count = rows.rows.length;
    $("sessions").hidden = count === 0;
    const shown = count + (cursor ? "+" : "") + (count === 1 && !cursor ? " session" : " sessions");
    say("status", count === 0 ? "No session matches." : shown + ", newest first.");
  }

  function run(more) {
    load(more).catch((error) => {
      if (!(error instanceof Refused && error.message === "unauthorized")) say("status", error.message, true);
      else say("status", "");
    });
  }

  function fillForm() {
    const params = new URLSearchParams(window.location.search);
    for (const name of FORM_FIELDS) {
      const field = search.elements.namedItem(name);
      if (field && params.has(name)) field.value = params.get(name);
    }
  }

  search.addEventListener("submit", (event) => {
    event.preventDefault();
    const shown = new URLSearchParams(formValues()).toString();
    window.history.replaceState(null, "", shown ? "?" + shown : window.location.pathname);
    run(false);
  });
  $("clear").addEventListener("click", () => {
    window.setTimeout(() => search.requestSubmit(), 0); // after the reset cleared the fields
  });
  $("more").addEventListener("click", () => run(true));

  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    window.sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("auth").hidden = true;
    run(false);
  });

  async function upload(file) {
    say("upload-status", "Uploading " + file.name + " (" + Math.ceil(file.size / 1024) + " KiB)…");
    const body = await api("v1.0/upload?fileName=" + encodeURIComponent(file.name), {
      method: "POST",
      body: file,
      headers: { "Content-Type": "application/octet-stream" },
    });
    const link = body.embedUrl || null;
    if (!link) {
      say("upload-status", "Stored as session " + body.rtcstatsId + " (the viewer is disabled).");
      return;
    }
    say("upload-status", "Stored; opening…");
    window.location.assign(local(link));
  }

  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (!file) return;
    upload(file).catch((error) => {
      if (!(error instanceof Refused && error.message === "unauthorized")) say("upload-status", error.message, true);
      else say("upload-status", "");
    }).finally(() => {
      $("file").value = "";
    });
  });

  fillForm();
  run(false);
})();
