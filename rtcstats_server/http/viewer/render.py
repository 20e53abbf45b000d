"""The viewer page: HTML with server-rendered SVG charts and one tiny inline script.

No front-end build and nothing fetched from elsewhere: the page is complete as sent,
its style and script carry the response's CSP nonce, and the SVG uses presentation
attributes and classes only (inline ``style=`` would need ``'unsafe-inline'``).
Charts of one page share one time axis (same range, same plot width, same margins),
so a moment lines up vertically across all of them; the script draws a cursor across
every chart, zooms on a dragged range, and filters the timelines.

The page is produced in two parts: ``page_head`` needs only the session record (sent
at once, so the header shows while a cold dump is still being read), ``page_body``
the view model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from html import escape
from typing import Any, Final
from urllib.parse import urlencode

from rtcstats_server.analysis.findings import SEVERITIES
from rtcstats_server.analysis.sdp_sections import media_sections
from rtcstats_server.analysis.useragent import parse_user_agent
from rtcstats_server.analysis.viewmodel import MAX_CONNECTIONS, METRICS

WIDTH: Final = 960
HEIGHT: Final = 150
LEFT: Final = 60
RIGHT: Final = 10
TOP: Final = 10
BOTTOM: Final = 22
PLOT_W: Final = WIDTH - LEFT - RIGHT
PLOT_H: Final = HEIGHT - TOP - BOTTOM
#: Lines per chart; the rest are named under it and are in the download.
MAX_LINES: Final = 8
COLOURS: Final = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)
KINDS: Final = ("api", "event", "state", "failure")

_CSS: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fff}
header,main{padding:12px 20px}header{background:#f4f6f8;border-bottom:1px solid #d8dee4}
h1{font-size:18px;margin:0 0 8px}h2{font-size:16px;margin:24px 0 8px}
h3{font-size:14px;margin:14px 0 4px}
dl.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:4px 16px;
margin:0}dl.meta div{display:flex;gap:6px}dt{color:#57606a}dd{margin:0;word-break:break-all}
.findings{list-style:none;padding:0;margin:8px 0 0}.findings li{margin:2px 0}
.sev{display:inline-block;min-width:58px;padding:0 6px;border-radius:3px;color:#fff;
font-size:12px;text-align:center;margin-right:6px}.sev-error{background:#cf222e}
.sev-warning{background:#bf8700}.sev-info{background:#57606a}
svg.chart{width:100%;max-width:1100px;height:auto;display:block;user-select:none}
.axis{stroke:#8c959f;stroke-width:1}.grid{stroke:#eaeef2;stroke-width:1}
.tick{font-size:10px;fill:#57606a}.cursor{stroke:#24292f;stroke-width:1}
.sel{fill:#0969da;fill-opacity:.15}
.line{fill:none;stroke-width:1.5}.band{stroke:none;fill-opacity:.18}
.legend{font-size:12px;color:#57606a;margin:0 0 6px;max-width:1100px}
.legend span.sw{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
table.tl{border-collapse:collapse;width:100%;font-size:12px}
table.tl td{border-top:1px solid #eaeef2;padding:2px 6px;vertical-align:top}
td.t{white-space:nowrap;color:#57606a}td.m{white-space:nowrap;font-family:monospace}
td.x{word-break:break-all}tr.failure td{background:#ffebe9}tr.state td.m{color:#0969da}
pre{white-space:pre-wrap;max-height:420px;overflow:auto;background:#f6f8fa;padding:6px;
margin:4px 0}.filters{position:sticky;top:0;background:#fff;padding:6px 0;
border-bottom:1px solid #d8dee4;z-index:1}.note{color:#57606a}.err{color:#cf222e}
#readout{font-family:monospace;color:#57606a;margin-left:12px}
table.tl{table-layout:fixed}table.tl col.t{width:110px}table.tl col.m{width:260px}
td.m{overflow:hidden;text-overflow:ellipsis}
.card{border:1px solid #d8dee4;border-radius:6px;padding:8px 12px;margin:6px 0 12px;
max-width:1100px}dl.chains{margin:0}dl.chains div{display:flex;gap:8px}
dl.chains dt{min-width:100px}.st small{color:#8c959f}.st-failed,.st-closed{color:#cf222e}
.st-disconnected,.st-checking{color:#9a6700}.st-connected,.st-completed{color:#1a7f37}
.connect{margin:6px 0}table.grid{border-collapse:collapse;font-size:12px;margin-top:4px}
table.grid th,table.grid td{border:1px solid #eaeef2;padding:1px 6px;text-align:right}
table.grid td:nth-child(-n+4),table.grid th{text-align:left}
tr.pair.selected td{background:#dafbe1}.munged{margin-top:8px}.munged b{color:#cf222e}
tr.st-disconnected td,tr.st-checking td{background:#fff8c5}tr.munged td.m{color:#cf222e}
.mark{stroke-width:1.5;stroke-dasharray:4 3}.mk-failure{stroke:#cf222e}
.mk-warn{stroke:#bf8700}.mk-info{stroke:#8250df}
#tip{position:fixed;pointer-events:none;background:#fffffff2;border:1px solid #8c959f;
border-radius:4px;padding:4px 8px;font:12px/1.4 monospace;z-index:5;white-space:nowrap}
#tip .sw{display:inline-block;width:9px;height:9px;margin-right:4px}
#tip .tipmark{color:#cf222e}
.msec{border-collapse:collapse;font-size:12px;margin:4px 0}
.msec td,.msec th{border:1px solid #eaeef2;padding:1px 6px;text-align:left;vertical-align:top}
button.copy{font-size:12px;margin:2px 0}.bandrow{fill-opacity:.35}.bandrow.bn{fill:#d0d7de}
.bandtext{font-size:10px;fill:#1b1f24;pointer-events:none}
.rowname{font-size:10px;fill:#57606a;text-anchor:end;pointer-events:none}
"""

_SCRIPT: Final = """
(() => {
  const computing = document.getElementById('computing');
  if (computing) computing.remove();
  const q = document.getElementById('q');
  const count = document.getElementById('count');
  const boxes = Array.from(document.querySelectorAll('input[name=kind]'));
  const rows = Array.from(document.querySelectorAll('tr.ev'));
  function filter() {
    const text = q ? q.value.trim().toLowerCase() : '';
    const kinds = new Set(boxes.filter(b => b.checked).map(b => b.value));
    let shown = 0;
    for (const row of rows) {
      const ok = kinds.has(row.dataset.kind) && (!text || row.dataset.s.includes(text));
      row.hidden = !ok;
      if (ok) shown++;
    }
    if (count) count.textContent = shown + ' of ' + rows.length + ' events';
  }
  for (const button of document.querySelectorAll('button.copy')) {
    button.addEventListener('click', async () => {
      const pre = button.nextElementSibling;
      try {
        await navigator.clipboard.writeText(pre.textContent);
      } catch (e) {  // not a secure context: select it for Ctrl-C
        const range = document.createRange(); range.selectNodeContents(pre);
        const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        document.execCommand('copy');
      }
      button.textContent = 'Copied';
    });
  }
  if (q) q.addEventListener('input', filter);
  boxes.forEach(b => b.addEventListener('change', filter));
  filter();
  const axis = document.getElementById('axis');
  const charts = Array.from(document.querySelectorAll('svg.chart'));
  if (!axis || !charts.length) return;
  const x0 = Number(axis.dataset.x0), x1 = Number(axis.dataset.x1);
  const t0 = Number(axis.dataset.t0);
  const W = Number(axis.dataset.w), L = Number(axis.dataset.l), P = Number(axis.dataset.p);
  const readout = document.getElementById('readout');
  let dragFrom = null;
  function frac(svg, ev) {
    const r = svg.getBoundingClientRect();
    return Math.min(1, Math.max(0, ((ev.clientX - r.left) / r.width * W - L) / P));
  }
  function show(f, from) {
    for (const svg of charts) {
      const c = svg.querySelector('.cursor');
      c.setAttribute('x1', L + f * P); c.setAttribute('x2', L + f * P);
      c.setAttribute('visibility', 'visible');
      const s = svg.querySelector('.sel');
      if (from === null) { s.setAttribute('width', 0); continue; }
      s.setAttribute('x', L + Math.min(f, from) * P);
      s.setAttribute('width', Math.abs(f - from) * P);
    }
    const t = x0 + f * (x1 - x0);
    if (readout) readout.textContent = '+' + ((t - t0) / 1000).toFixed(1) + ' s  '
      + new Date(t).toISOString();
  }
  const tip = document.createElement('div');
  tip.id = 'tip'; tip.hidden = true; document.body.appendChild(tip);
  const parsed = new Map();
  function seriesOf(svg) {
    let found = parsed.get(svg);
    if (found) return found;
    found = [];
    for (const el of svg.querySelectorAll('[data-v]')) {
      const xs = el.tagName === 'circle' ? [Number(el.dataset.x)]
        : el.getAttribute('points').split(' ').map(p => Number(p.split(',')[0]));
      const colour = Array.from(el.classList).find(c => /^c[0-9]+$/.test(c)) || 'c0';
      found.push({label: el.dataset.l, xs, vs: el.dataset.v.split(' '), colour});
    }
    parsed.set(svg, found);
    return found;
  }
  function hover(svg, ev, f) {
    const at = L + f * P, unit = svg.dataset.unit || '';
    if (!seriesOf(svg).length) { tip.hidden = true; return; }
    const best = new Map();
    for (const s of seriesOf(svg)) {
      if (at < s.xs[0] - 6 || at > s.xs[s.xs.length - 1] + 6) continue;
      let lo = 0, hi = s.xs.length - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (s.xs[mid] < at) lo = mid; else hi = mid;
      }
      const i = Math.abs(s.xs[lo] - at) <= Math.abs(s.xs[hi] - at) ? lo : hi;
      const d = Math.abs(s.xs[i] - at), seen = best.get(s.label);
      if (!seen || d < seen.d) best.set(s.label, {d, v: s.vs[i], colour: s.colour});
    }
    tip.textContent = '';
    const head = document.createElement('div');
    head.textContent = (readout ? readout.textContent.trim() : '');
    tip.appendChild(head);
    for (const [label, hit] of best) {
      const row = document.createElement('div');
      const sw = document.createElement('span');
      sw.className = 'sw k' + hit.colour.slice(1);
      row.appendChild(sw);
      row.appendChild(document.createTextNode(label + ': ' + hit.v + ' ' + unit));
      tip.appendChild(row);
    }
    for (const mark of svg.querySelectorAll('.mark')) {
      if (Math.abs(Number(mark.getAttribute('x1')) - at) > 5) continue;
      const row = document.createElement('div');
      row.className = 'tipmark'; row.textContent = '▲ ' + mark.dataset.m;
      tip.appendChild(row);
    }
    if (!best.size) {
      const row = document.createElement('div'); row.textContent = 'no sample here';
      tip.appendChild(row);
    }
    tip.hidden = false;
    const w = tip.offsetWidth;
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - w - 4) + 'px';
    tip.style.top = (ev.clientY + 14) + 'px';
  }
  function attach(svg) {
    svg.addEventListener('mousemove', ev => {
      const f = frac(svg, ev); show(f, dragFrom); hover(svg, ev, f);
    });
    svg.addEventListener('mouseleave', () => { tip.hidden = true; });
    svg.addEventListener('mousedown', ev => { dragFrom = frac(svg, ev); ev.preventDefault(); });
    svg.addEventListener('mouseup', ev => {
      const to = frac(svg, ev), from = dragFrom;
      dragFrom = null;
      if (from === null || Math.abs(to - from) < 0.01) return;
      const url = new URL(window.location.href);
      url.searchParams.set('from', Math.floor(x0 + Math.min(from, to) * (x1 - x0)));
      url.searchParams.set('to', Math.ceil(x0 + Math.max(from, to) * (x1 - x0)));
      window.location.assign(url.toString());
    });
  }
  charts.forEach(attach);
  const NS = 'http://www.w3.org/2000/svg';
  function el(name, attrs) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  for (const form of document.querySelectorAll('form.raw')) {
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      const note = form.querySelector('.note');
      const report = form.elements.report.value, prop = form.elements.property.value.trim();
      const url = form.dataset.href + '&pc=' + encodeURIComponent(form.dataset.pc)
        + '&report=' + encodeURIComponent(report) + '&property=' + encodeURIComponent(prop);
      note.textContent = 'reading…';
      const text = await (await fetch(url)).text();
      const pts = text.split('\\n').filter(Boolean).map(l => JSON.parse(l))
        .filter(p => typeof p.value === 'number' && p.t >= x0 && p.t <= x1);
      note.textContent = pts.length + ' numeric values';
      if (!pts.length) return;
      const top = Math.max(...pts.map(p => p.value), 0) || 1;
      const H = 150, T = 10, PH = 118;
      const svg = el('svg', {'class': 'chart raw', viewBox: '0 0 ' + W + ' ' + H,
        'data-unit': '', role: 'img'});
      svg.appendChild(el('line', {'class': 'axis', x1: L, x2: L + P, y1: T + PH, y2: T + PH}));
      for (const f of [0, 0.5, 1]) {
        const t = el('text', {'class': 'tick', x: L - 4, y: T + PH - f * PH + 3,
          'text-anchor': 'end'});
        t.textContent = String(+(top * f).toPrecision(3));
        svg.appendChild(t);
      }
      const xs = pts.map(p => (L + (p.t - x0) / (x1 - x0) * P).toFixed(1));
      const ys = pts.map(p => (T + PH - Math.max(0, p.value) / top * PH).toFixed(1));
      svg.appendChild(el('polyline', {'class': 'line c0',
        points: xs.map((x, i) => x + ',' + ys[i]).join(' '),
        'data-l': report + ' ' + prop, 'data-v': pts.map(p => p.value).join(' ')}));
      svg.appendChild(el('rect', {'class': 'sel', x: L, y: T, width: 0, height: PH}));
      svg.appendChild(el('line', {'class': 'cursor', x1: L, x2: L, y1: T, y2: T + PH,
        visibility: 'hidden'}));
      const title = document.createElement('h3');
      title.textContent = prop + ' of ' + report;
      form.after(title, svg);
      charts.push(svg);
      attach(svg);
    });
  }
})();
"""


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, str):
        return value
    else:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _relative(t: float, t0: float) -> str:
    seconds = (t - t0) / 1000
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    return f"{sign}{int(seconds // 60):02d}:{seconds % 60:06.3f}"


def _field(name: str, value: Any) -> str:
    text = "—" if value is None or value == "" else str(value)
    return f"<div><dt>{escape(name)}</dt><dd>{escape(text)}</dd></div>"


def page_head(record: dict[str, Any], nonce: str) -> str:
    """Everything the record alone says: sent before the dump is read."""
    quality = record.get("quality") or {}
    client = quality.get("client") or {}
    if not client.get("browser"):  # the dump did not say; the socket's handshake may
        client = parse_user_agent(record.get("user_agent")).as_dict()
    browser = " ".join(str(p) for p in (client.get("browser"), client.get("browser_version")) if p)
    system = " ".join(str(p) for p in (client.get("os"), client.get("os_version")) if p)
    duration = record.get("duration_s")
    fields = [
        ("session", record.get("id")),
        ("client session", record.get("client_session_id")),
        ("conference", record.get("conference_id")),
        ("user", record.get("user_id")),
        ("meeting", record.get("meeting_id")),
        ("app", record.get("app")),
        ("dialect", record.get("dialect")),
        *(
            [("uploaded", " ".join(str(p) for p in (upload, record.get("upload_file_name")) if p))]
            if (upload := record.get("upload_layout"))
            else []
        ),
        ("browser", browser or record.get("browser")),
        ("OS", system or record.get("os")),
        ("started", _iso(record.get("started_at"))),
        ("ended", _iso(record.get("ended_at"))),
        ("duration", f"{duration:.1f} s" if isinstance(duration, int | float) else None),
        ("end reason", record.get("end_reason")),
        ("close code", record.get("close_code")),
        ("peer connections", record.get("pc_count")),
        ("url", record.get("url")),
    ]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        '<link rel="icon" href="data:,">',
        f"<title>Session {escape(str(record.get('id', '')))}</title>",
        f'<style nonce="{nonce}">{_CSS}{colour_css()}</style></head><body>',
        "<header><h1>Session ",
        escape(str(record.get("id", ""))),
        "</h1><dl class=meta>",
        *(_field(name, value) for name, value in fields),
        "</dl>",
        _findings(quality, record),
        "</header><main>",
        "<p id=computing class=note>Reading the dump…</p>",
    ]
    return "".join(parts)


def _findings(quality: dict[str, Any], record: dict[str, Any]) -> str:
    detailed = quality.get("findings")
    if not isinstance(detailed, list):
        names = record.get("findings") or []
        detailed = [{"name": n, "severity": SEVERITIES.get(n, "info")} for n in names]
    if not detailed:
        note = "no quality summary" if not quality else "no findings"
        return f"<p class=note>Findings: {note}.</p>"
    items = []
    for finding in detailed:
        severity = str(finding.get("severity", "info"))
        where = f" ({finding['pc_id']})" if finding.get("pc_id") else ""
        detail = finding.get("detail") or ""
        items.append(
            f'<li class="finding"><span class="sev sev-{escape(severity)}">{escape(severity)}'
            f"</span><b>{escape(str(finding.get('name')))}</b>{escape(where)} "
            f"{escape(str(detail))}</li>"
        )
    return "<ul class=findings>" + "".join(items) + "</ul>"


def page_body(
    model: dict[str, Any],
    session_id: str,
    query: str,
    nonce: str,
    t0: float | None = None,
    uploaded_as: str | None = None,
) -> str:
    """Charts and timelines of the view model; ``query`` is the signed ``exp&sig``;
    ``uploaded_as``: the layout of the file an upload came in (the record's
    ``upload_layout``), re-encoded into ours before it was stored."""
    return "".join(_body_parts(model, session_id, query, nonce, t0, uploaded_as))


def _body_parts(
    model: dict[str, Any],
    session_id: str,
    query: str,
    nonce: str,
    t0: float | None,
    uploaded_as: str | None,
) -> Iterator[str]:
    base = f"/view/{escape(session_id)}"
    if model.get("error"):
        yield f"<p class=err>The dump cannot be shown: {escape(str(model['error']))}</p>"
    for problem in model.get("errors") or []:
        yield f"<p class=err>Damaged dump: {escape(str(problem))}</p>"
    window = model.get("window")
    # The charts' common axis: the zoomed window, else the span of the samples (a close
    # line written long after the last getStats must not squeeze every chart).
    x0: float | None = window[0] if window else model.get("series_first") or model.get("first")
    x1: float | None = window[1] if window else model.get("series_last") or model.get("last")
    origin: float = t0 if t0 is not None else (x0 or 0.0)
    yield "<nav class=note>"
    download = query
    if window and x0 is not None and x1 is not None:
        yield (
            f"Zoomed to {_relative(x0, origin)} … {_relative(x1, origin)} "
            f"(every sample up to {model.get('buckets', 0)} per series). "
            f'<a href="{base}?{escape(query)}">Show the whole session</a> · '
        )
        download += f"&from={int(x0)}&to={math.ceil(x1)}"
    elif any(group.get("series") for group in model.get("groups") or []):
        yield "Drag across a chart to zoom in. "
    yield (
        f'<a href="{base}/samples.jsonl?{escape(download)}" download>'
        "Download every sample (JSON lines)</a>"
        f"<span id=readout></span></nav>"
    )
    info = model.get("info") or {}
    first, last = model.get("session_first"), model.get("last")
    if not window and first is not None and last is not None and last > first:
        # the record's duration is the socket's: a replayed or uploaded call reads 0.0 s
        yield f"<p class=note id=span>The dump spans {(last - first) / 1000:.1f} s.</p>"
    if uploaded_as:
        # the stored dump is our re-encoding: its protocol is ours, not the file's
        source = f"uploaded as a {escape(uploaded_as)} file, stored in our dump format"
    else:
        source = (
            f"dump layout {escape(str(info.get('layout') or '?'))}, client protocol "
            f"{escape(str(info.get('client_protocol') or '?'))}"
        )
    yield (
        f"<p class=note id=source>{model.get('events', 0)} events, "
        f"{model.get('stats_events', 0)} getStats results; {source}.</p>"
    )
    if model.get("backend_stats"):
        yield (
            f"<p class=note>{model['backend_stats']} statistics objects of a backend pusher "
            "(JVB, Jicofo): not charted; download the dump for them.</p>"
        )
    if model.get("series_dropped"):
        yield f"<p class=note>{model['series_dropped']} samples of further tracks not charted.</p>"
    if model.get("connection_events_omitted"):
        yield (
            f"<p class=note>{model['connection_events_omitted']} events of further peer "
            f"connections not shown (the first {MAX_CONNECTIONS} are): download the dump for "
            "them.</p>"
        )
    span = (x0, x1) if x0 is not None and x1 is not None and x1 > x0 else None
    if span is not None:
        yield (
            f'<div id=axis hidden data-x0="{x0}" data-x1="{x1}" data-t0="{origin}" '
            f'data-w="{WIDTH}" data-l="{LEFT}" data-p="{PLOT_W}"></div>'
        )
    yield (
        "<div class=filters><label>Filter events <input id=q type=search "
        'placeholder="text, method, state…"></label> '
        + "".join(
            f'<label><input type=checkbox name=kind value="{k}" checked>{k}</label> ' for k in KINDS
        )
        + "<span id=count class=note></span></div>"
    )
    for group in model.get("groups") or []:
        pc_id = group.get("pc_id")
        title = f"Peer connection {pc_id}" if pc_id is not None else "Session (not per connection)"
        yield f"<section class=pc><h2>{escape(title)}</h2>"
        if group.get("card"):
            yield from _card(group["card"], origin)
        markers = [m for m in model.get("markers") or [] if m[2] in (None, pc_id)]
        if span is not None and group.get("bands"):
            yield _bands_svg(group["bands"], span[0], span[1], origin)
        if span is not None and group.get("series"):
            yield from _charts(group["series"], span[0], span[1], origin, markers)
        elif pc_id is not None and group.get("stats"):
            yield (
                f"<p class=note>{group['stats']} getStats results here, none with media or a "
                "selected candidate pair to chart (see the candidate pairs above).</p>"
            )
        elif pc_id is not None:
            yield "<p class=note>No getStats results in this range.</p>"
        if group.get("reports") and span is not None:
            yield _property_form(group, base, query)
        yield from _timeline(group, base, query, origin)
        yield "</section>"
    yield f'<script nonce="{nonce}">{_SCRIPT}</script></main></body></html>'


# -- connection card ----------------------------------------------------------------

_CHAIN_TITLES: Final = {
    "ice": "ICE",
    "connection": "connection",
    "dtls": "DTLS",
    "signaling": "signaling",
    "gathering": "ICE gathering",
}
_PAIR_FIELDS: Final = (
    ("local", "local_type"),
    ("remote", "remote_type"),
    ("protocol", "protocol"),
    ("relay protocol", "relay_protocol"),
    ("network", "network_type"),
    ("local address", "local_address"),
    ("remote address", "remote_address"),
)
_GRID: Final = (
    ("pair", None),
    ("local", "local"),
    ("remote", "remote"),
    ("state", "state"),
    ("requests sent", "requests_sent"),
    ("responses received", "responses_received"),
    ("requests received", "requests_received"),
    ("responses sent", "responses_sent"),
    ("RTT ms", "rtt_ms"),
    ("bytes sent", "bytes_sent"),
    ("bytes received", "bytes_received"),
)
_BAD_STATES: Final = frozenset({"failed", "disconnected", "closed"})


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return _fmt(value) if not value.is_integer() else f"{int(value):,}"
    return escape(str(value))


def _card(card: dict[str, Any], origin: float) -> Iterator[str]:
    """The connection's summary: state chains, time to connect, the selected pair,
    the candidate grid, and any munged description."""
    yield "<div class=card><dl class=chains>"
    for name, states in (card.get("chains") or {}).items():
        steps = " → ".join(
            f'<span class="st st-{escape(str(state))}" title="{escape(_iso(t))}">'
            f"{escape(str(state))} <small>{_relative(t, origin)[1:-2]}</small></span>"
            for t, state in states
        )
        more = (card.get("chains_omitted") or {}).get(name)
        tail = f" … {more} more" if more else ""
        title = _CHAIN_TITLES.get(name, name)
        yield f"<div data-chain={escape(name)}><dt>{escape(title)}</dt><dd>{steps}{tail}</dd></div>"
    yield "</dl>"
    connect = card.get("time_to_connect_ms")
    connect_text = f"{connect / 1000:.2f} s" if connect is not None else "never connected"
    yield f"<p class=connect>Time to connect: <b>{connect_text}</b></p>"
    pair = card.get("selected_pair")
    if pair:
        yield "<dl class=meta>" + "".join(_field(n, pair.get(k)) for n, k in _PAIR_FIELDS) + "</dl>"
    else:
        yield "<p class=note>No candidate pair was selected.</p>"
    rows = card.get("pairs") or []
    if rows:
        selected = pair["id"] if pair else None
        yield (
            "<details class=pairs" + (" open" if len(rows) <= 12 else "") + ">"
            f"<summary>Candidate pairs ({len(rows)})</summary><table class=grid><thead><tr>"
            + "".join(f"<th>{escape(title)}</th>" for title, _ in _GRID)
            + "</tr></thead><tbody>"
        )
        for row in rows:
            marks = " selected" if row["id"] == selected else ""
            marks += " nominated" if row.get("nominated") else ""
            short = "✔ selected" if row["id"] == selected else ("nominated" if marks else "")
            cells = "".join(f"<td>{_cell(row.get(key)) if key else short}</td>" for _, key in _GRID)
            yield f'<tr class="pair{marks}" title="{escape(row["id"])}">{cells}</tr>'
        yield "</tbody></table></details>"
    for munged in card.get("munged") or []:
        difference = "\n".join(munged.get("difference") or [])
        yield (
            f"<div class=munged><b>SDP munged</b>: the {escape(str(munged.get('type')))} given "
            f"to setLocalDescription at {_relative(munged['t'], origin)} differs from the one "
            f"created.<pre>{escape(difference)}</pre></div>"
        )
    yield "</div>"


# -- charts -------------------------------------------------------------------------


def _nice_ceiling(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def _time_ticks(x0: float, x1: float, origin: float) -> list[float]:
    span_s = (x1 - x0) / 1000
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span_s / step <= 8:
            break
    step_ms = step * 1000
    first = origin + math.ceil((x0 - origin) / step_ms) * step_ms
    ticks: list[float] = []
    t = first
    while t <= x1 and len(ticks) < 20:
        ticks.append(t)
        t += step_ms
    return ticks


def _fmt(value: float) -> str:
    """A short label that never rounds a non-zero value to 0 (an axis of 0.0001
    read "0 0 0")."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


def _segments(points: list[list[float]], width_ms: float) -> list[list[list[float]]]:
    """Split where samples stop (a muted track, a gap in the dump): no line across it."""
    if not points:
        return []
    steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points))
    typical = steps[len(steps) // 2] if steps else width_ms
    gap = max(4 * typical, 2 * width_ms)
    segments = [[points[0]]]
    for before, point in itertools.pairwise(points):
        if point[0] - before[0] > gap:
            segments.append([])
        segments[-1].append(point)
    return segments


#: Axes with a fixed range (the value's own scale), whatever the samples reach.
FIXED_TOP: Final = {"audio_level": 1.0}


def _value(value: float) -> str:
    return f"{value:.4g}"


def _chart_svg(
    metric: str,
    lines: list[dict[str, Any]],
    x0: float,
    x1: float,
    origin: float,
    markers: list[list[Any]] = [],  # noqa: B006 (read only)
) -> str:
    title, unit = METRICS[metric]
    top = _nice_ceiling(max((p[2] for line in lines for p in line["points"]), default=1.0))
    if metric in FIXED_TOP:
        top = max(top, FIXED_TOP[metric])
    scale_x = PLOT_W / (x1 - x0)

    def x(t: float) -> str:
        return f"{LEFT + (t - x0) * scale_x:.1f}"

    def y(v: float) -> str:
        return f"{TOP + PLOT_H - max(0.0, min(v, top)) / top * PLOT_H:.1f}"

    out = [
        f'<svg class=chart viewBox="0 0 {WIDTH} {HEIGHT}" role=img '
        f'aria-label="{escape(title)}" data-metric="{metric}" data-unit="{escape(unit)}">',
        f"<title>{escape(title)} ({escape(unit)})</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        level = TOP + PLOT_H - fraction * PLOT_H
        out.append(f'<line class=grid x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{level}" y2="{level}"/>')
        out.append(
            f'<text class=tick x="{LEFT - 4}" y="{level + 3}" text-anchor=end>'
            f"{_fmt(top * fraction)}</text>"
        )
    ticks = _time_ticks(x0, x1, origin)
    # sub-second steps keep their tenths ("+00:01 +00:01" said nothing)
    cut = -4 if all(round(t - origin) % 1000 == 0 for t in ticks) else -2
    for tick in ticks:
        anchor = "end" if x1 - tick < (x1 - x0) * 0.03 else "middle"
        out.append(
            f'<line class=grid x1="{x(tick)}" x2="{x(tick)}" y1="{TOP}" y2="{TOP + PLOT_H}"/>'
            f'<text class="tick tt" x="{x(tick)}" y="{HEIGHT - 6}" text-anchor={anchor}>'
            f"{escape(_relative(tick, origin)[:cut])}</text>"
        )
    out.append(
        f'<line class=axis x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{TOP + PLOT_H}" '
        f'y2="{TOP + PLOT_H}"/>'
    )
    for index, line in enumerate(lines):
        colour = f"c{index % len(COLOURS)}"
        for segment in _segments(line["points"], line["width_ms"]):
            if any(p[1] != p[2] for p in segment):
                upper = " ".join(f"{x(p[0])},{y(p[2])}" for p in segment)
                lower = " ".join(f"{x(p[0])},{y(p[1])}" for p in reversed(segment))
                out.append(f'<polygon class="band {colour}" points="{upper} {lower}"/>')
            values = " ".join(_value(p[3]) for p in segment)
            label = escape(line["label"])
            if len(segment) == 1:
                p = segment[0]
                out.append(
                    f'<circle class="{colour}" cx="{x(p[0])}" cy="{y(p[3])}" r="2" '
                    f'data-l="{label}" data-x="{x(p[0])}" data-v="{values}"/>'
                )
            else:
                path = " ".join(f"{x(p[0])},{y(p[3])}" for p in segment)
                out.append(
                    f'<polyline class="line {colour}" points="{path}" data-l="{label}" '
                    f'data-v="{values}"><title>{label}</title></polyline>'
                )
    for t, label, _ in markers:
        if not x0 <= t <= x1:
            continue
        kind = "failure" if "fail" in label.lower() else ("info" if "restart" in label else "warn")
        out.append(
            f'<line class="mark mk-{kind}" x1="{x(t)}" x2="{x(t)}" y1="{TOP}" '
            f'y2="{TOP + PLOT_H}" data-m="{escape(label)}"><title>{escape(label)} '
            f"{escape(_relative(t, origin))}</title></line>"
        )
    out.append(
        f'<rect class=sel x="{LEFT}" y="{TOP}" width="0" height="{PLOT_H}"/>'
        f'<line class=cursor x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + PLOT_H}" '
        'visibility="hidden"/></svg>'
    )
    return "".join(out)


def _property_form(group: dict[str, Any], base: str, query: str) -> str:
    """Chart any raw property of any report: the page fetches its series on demand."""
    options = "".join(
        f'<option value="{escape(rid)}">{escape(rid)} ({escape(kind or "?")})</option>'
        for rid, kind in sorted(group["reports"].items(), key=lambda item: (item[1], item[0]))
    )
    return (
        f'<form class=raw data-href="{base}/property.jsonl?{escape(query)}" '
        f'data-pc="{escape(str(group["pc_id"]))}"><label>Chart a raw getStats property: '
        f"<select name=report>{options}</select></label> "
        '<input name=property placeholder="e.g. bytesReceived" required> '
        "<button type=submit>Chart</button> <span class=note></span></form>"
    )


_BAND_ROW: Final = 16
_BAND_ORDER: Final = {"quality limitation": 0, "codec": 1, "encoder": 2, "decoder": 3}


def _band_colour(text: str) -> str:
    if text in ("none", "unknown"):
        return "bn"
    return f"b{sum(map(ord, text)) % len(COLOURS)}"


def _bands_svg(bands: list[dict[str, Any]], x0: float, x1: float, origin: float) -> str:
    """One row per track and property (quality limitation reason, codec, encoder,
    decoder): a coloured span per value, on the charts' time axis."""
    rows = sorted(bands, key=lambda b: (b["label"], _BAND_ORDER.get(b["band"], 9)))
    height = TOP + len(rows) * _BAND_ROW + 4
    scale = PLOT_W / (x1 - x0)

    def x(t: float) -> float:
        return LEFT + (min(max(t, x0), x1) - x0) * scale

    out = [
        f"<h3>Quality limitation, codecs, encoders, decoders <span class=note>(per track)"
        f'</span></h3><svg class="chart strip" viewBox="0 0 {WIDTH} {height}" role=img '
        'aria-label="bands">'
    ]
    for row, band in enumerate(rows):
        top = TOP + row * _BAND_ROW
        changes = band["changes"]
        for index, (t, text) in enumerate(changes):
            end = changes[index + 1][0] if index + 1 < len(changes) else x1
            if end < x0 or t > x1:
                continue
            left, right = x(t), x(end)
            colour = _band_colour(str(text))
            tip = f"{band['label']} {band['band']}: {text} from {_relative(t, origin)}"
            out.append(
                f'<rect class="bandrow {colour}" x="{left:.1f}" y="{top}" '
                f'width="{max(right - left, 1.0):.1f}" height="{_BAND_ROW - 2}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            if right - left > 50:
                out.append(
                    f'<text class=bandtext x="{left + 3:.1f}" y="{top + 11}">{escape(str(text))}'
                    "</text>"
                )
        out.append(
            f'<text class=rowname x="{LEFT + PLOT_W - 3}" y="{top + 11}">'
            f"{escape(band['label'])} · {escape(band['band'])}</text>"
        )
    out.append(
        f'<rect class=sel x="{LEFT}" y="{TOP}" width="0" height="{height - TOP}"/>'
        f'<line class=cursor x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{height - 4}" '
        'visibility="hidden"/></svg>'
    )
    return "".join(out)


def _charts(
    series: list[dict[str, Any]],
    x0: float,
    x1: float,
    origin: float,
    markers: list[list[Any]],
) -> Iterator[str]:
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for item in series:
        by_metric.setdefault(item["metric"], []).append(item)
    for metric in METRICS:
        lines = by_metric.get(metric)
        if not lines:
            continue
        lines.sort(key=lambda line: (-line["samples"], line["label"]))
        shown, rest = lines[:MAX_LINES], lines[MAX_LINES:]
        title, unit = METRICS[metric]
        yield f"<h3>{escape(title)} <span class=note>({escape(unit)})</span></h3>"
        yield _chart_svg(metric, shown, x0, x1, origin, markers)
        legend = "".join(
            f'<span class="sw k{i % len(COLOURS)}"></span>{escape(line["label"])}'
            for i, line in enumerate(shown)
        )
        more = f" · and {len(rest)} more series (in the download)" if rest else ""
        yield f"<div class=legend>{legend}{escape(more)}</div>"


def colour_css() -> str:
    return "".join(
        f".line.c{i}{{stroke:{c}}}.band.c{i},circle.c{i}{{fill:{c}}}.k{i}{{background:{c}}}"
        f".bandrow.b{i}{{fill:{c}}}"
        for i, c in enumerate(COLOURS)
    )


# -- timeline -----------------------------------------------------------------------


def _sdp_detail(sdp: str, munged: dict[str, Any] | None) -> str:
    """A description: its m-sections as a table, what munging changed, a copy button
    and the full text."""
    rows = "".join(
        f"<tr><td>{escape(section.mid or '—')}</td><td>{escape(section.kind)}</td>"
        f"<td>{escape(section.direction or '')}</td><td>{escape(', '.join(section.codecs))}"
        "</td></tr>"
        for section in media_sections(sdp)
    )
    table = (
        "<table class=msec><thead><tr><th>mid</th><th>kind</th><th>direction</th>"
        f"<th>codecs</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    change = ""
    if munged is not None:
        difference = "\n".join(munged.get("difference") or [])
        change = (
            "<p class=err>Munged: the lines below differ from what create"
            f"{'Offer' if munged.get('type') == 'offer' else 'Answer'} produced.</p>"
            f"<pre class=diff>{escape(difference)}</pre>"
        )
    return (
        f"<details><summary>SDP</summary>{table}{change}"
        "<button type=button class=copy>Copy SDP</button>"
        f"<pre class=sdp>{escape(sdp)}</pre></details>"
    )


#: State rows the timeline marks beside failures (a failed state is a failure row).
_MARKED_STATES: Final = frozenset({"disconnected", "checking"})


def _timeline(group: dict[str, Any], base: str, query: str, origin: float) -> Iterator[str]:
    entries = group.get("timeline") or []
    if not entries:
        yield "<p class=note>No events in this range.</p>"
        return
    yield (
        "<h3>Events</h3><table class=tl><colgroup><col class=t><col class=m><col></colgroup><tbody>"
    )
    munged_at = {m["t"]: m for m in (group.get("card") or {}).get("munged") or []}
    for t, method, kind, text, detail, index, detail_kind in entries:
        search = escape(f"{method} {text}".lower())
        when = _relative(t, origin) if t else "—"
        cell = ""
        if detail_kind == "inline" and detail is not None and "SDP lines" in text:
            cell = _sdp_detail(
                detail, munged_at.get(t) if method == "setLocalDescription" else None
            )
        elif detail_kind == "inline" and detail is not None:
            cell = f"<details><summary>details</summary><pre>{escape(detail)}</pre></details>"
        elif detail_kind == "remote":
            cell = f'<a href="{base}/events/{index}?{escape(query)}" target=_blank>details</a>'
        marked = f" st-{text}" if kind == "state" and text in _MARKED_STATES else ""
        if method == "setLocalDescription" and t in munged_at:
            marked += " munged"
            text += " — munged (differs from the created description)"
        yield (
            f'<tr class="ev {kind}{marked}" data-kind="{kind}" data-s="{search}">'
            f'<td class=t title="{escape(_iso(t))}">{when}</td>'
            f"<td class=m>{escape(method)}</td><td class=x>{escape(text)}{cell}</td></tr>"
        )
    yield "</tbody></table>"
    if group.get("omitted"):
        yield (
            f"<p class=note>{group['omitted']} more events not listed (only failures and state "
            "changes are kept past the first entries): zoom in to see them.</p>"
        )


def denied_page(reason: str, nonce: str) -> str:
    text = {
        "expired": "This viewer link has expired. Ask for a fresh link.",
        "missing": "This viewer link is incomplete.",
        "malformed": "This viewer link is damaged.",
        "bad_signature": "This viewer link is not valid for this session.",
    }.get(reason, "This viewer link is not valid.")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Access denied</title>"
        f'<style nonce="{nonce}">body{{font:15px system-ui,sans-serif;margin:40px;'
        "color:#1b1f24}</style></head><body><h1>Access denied</h1>"
        f"<p>{escape(text)}</p></body></html>"
    )


def no_dump_body(text: str, nonce: str) -> str:
    """The end of a page whose dump cannot be shown."""
    return (
        f"<p class=err>{escape(text)}</p>"
        f'<script nonce="{nonce}">document.getElementById("computing").remove()</script>'
        "</main></body></html>"
    )


def error_page(text: str, nonce: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Bad request</title>"
        f'<style nonce="{nonce}">body{{font:15px system-ui,sans-serif;margin:40px}}</style>'
        f"</head><body><h1>Bad request</h1><p>{escape(text)}</p></body></html>"
    )


def not_found_page(nonce: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Not found</title>"
        f'<style nonce="{nonce}">body{{font:15px system-ui,sans-serif;margin:40px}}</style>'
        "</head><body><h1>Session not found</h1><p>It may have been deleted.</p></body></html>"
    )


def link_query(exp: str, sig: str) -> str:
    return urlencode({"exp": exp, "sig": sig})
