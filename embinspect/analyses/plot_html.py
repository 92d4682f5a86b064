"""The interactive view of a ``plot`` (``plot --out view.html``, ``Projection.to_html()``):
one self-contained HTML page, the same PCA coordinates as the PNG, drawn on a canvas by
inline JavaScript: hover a point for its token, id and nearest drawn points, search,
wheel to zoom, drag to pan, a legend of the queries.

Nothing is fetched when the page is viewed (no library, no font, no CDN; its
Content-Security-Policy allows no request at all and runs only its own script, by hash),
so it works from ``file://`` and offline. Tokens are hostile input: the data travels as
JSON inside ``<script type="application/json">``, written ASCII-only by ``json.dumps``
(quotes, backslashes, U+2028 and U+2029 escaped) with ``<``, ``>`` and ``&`` as
``\\u003c``, ``\\u003e``, ``\\u0026``, so no token can close the element or start a comment;
the page's script sets every outside string with ``textContent`` or draws it on the
canvas, never as HTML. The page itself is a fixed template: no token is ever pasted into
its HTML.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any


def embedded_json(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element and a JavaScript string:
    ASCII only, and no ``<``, ``>`` or ``&`` (each only ever inside a JSON string, so its
    ``\\uXXXX`` escape means the same)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict[str, Any]) -> str:
    """The whole page, drawing ``data`` (``analyses.plot.view_data``: what it holds)."""
    parts = {
        "HASH": base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode(),
        "DATA": embedded_json(data),
        "SCRIPT": _SCRIPT,
    }
    # One pass: what is put in is never searched again (a token "@SCRIPT@" stays data).
    return re.sub("@(HASH|DATA|SCRIPT)@", lambda found: parts[found[1]], _PAGE)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
script-src 'sha256-@HASH@'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="embinspect plot">
<title>embinspect plot</title>
<style>
  html, body { margin: 0; height: 100%; font: 14px system-ui, sans-serif; color: #222; }
  body { display: flex; flex-direction: column; }
  header { padding: 8px 12px 4px; }
  h1 { font-size: 17px; margin: 0; }
  #subtitle, #about { margin: 2px 0; color: #555; font-size: 12.5px; }
  #controls { display: flex; gap: 8px; align-items: center; padding: 4px 12px; }
  #search { width: 22em; padding: 3px 6px; font: inherit; }
  #found { color: #555; font-size: 12.5px; }
  #main { flex: 1; display: flex; min-height: 0; border-top: 1px solid #ddd; }
  #plot { flex: 1; min-width: 0; height: 100%; cursor: crosshair; display: block; }
  #plot.dragging { cursor: grabbing; }
  #legend { width: 14em; overflow: auto; padding: 8px; border-left: 1px solid #ddd;
            font-size: 12.5px; }
  #legend h2 { font-size: 13px; margin: 0 0 6px; }
  #legend .entry { display: flex; align-items: center; gap: 6px; margin: 2px 0;
                   white-space: pre; overflow: hidden; text-overflow: ellipsis; }
  #legend .key { color: #555; margin-top: 10px; white-space: normal; }
  #tip { position: fixed; pointer-events: none; background: #fff; border: 1px solid #999;
         border-radius: 4px; padding: 6px 8px; box-shadow: 0 2px 6px rgba(0,0,0,.2);
         font-size: 12.5px; max-width: 26em; white-space: pre-wrap; }
  #tip .token { font-weight: bold; font-size: 14px; }
  #tip .meta { color: #555; }
  #tip ol { margin: 4px 0 0; padding-left: 1.6em; }
</style>
</head>
<body>
<header><h1 id="title"></h1><p id="subtitle"></p><p id="about"></p></header>
<div id="controls">
  <input id="search" type="search" placeholder="find a token: the, ␣the, Ġthe or #42"
         autocomplete="off" spellcheck="false" aria-label="find a token">
  <span id="found"></span>
  <button id="reset" type="button">reset view</button>
</div>
<div id="main"><canvas id="plot" data-drawn="0"></canvas><aside id="legend"></aside></div>
<div id="tip" hidden></div>
<script type="application/json" id="data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""

# The page's one script. It reads the data with JSON.parse and puts every string from it
# into the page with textContent (or on the canvas with fillText): never as HTML.
_SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const points = data.points;
  // A point without coordinates (its row holds NaN or infinity) is listed, not drawn.
  const shown = points.filter(function (p) { return p.x !== null && p.y !== null; });
  const canvas = document.getElementById("plot");
  const ctx = canvas.getContext("2d");
  const tip = document.getElementById("tip");
  const search = document.getElementById("search");
  const found = document.getElementById("found");
  document.title = data.title + " (embinspect plot)";
  document.getElementById("title").textContent = data.title;
  document.getElementById("subtitle").textContent = data.subtitle;
  document.getElementById("about").textContent = data.about;

  function styleOf(p) {
    const g = data.groups[p.g];
    return g ? g : { colour: "#777777", shape: 0 };
  }
  function shapePath(c, shape, x, y, r) {
    c.beginPath();
    switch (shape) {
      case 1: c.rect(x - r * 0.9, y - r * 0.9, r * 1.8, r * 1.8); break;
      case 2: c.moveTo(x, y - r * 1.1); c.lineTo(x + r, y + r * 0.8); c.lineTo(x - r, y + r * 0.8);
        c.closePath(); break;
      case 3: c.moveTo(x, y - r * 1.2); c.lineTo(x + r, y); c.lineTo(x, y + r * 1.2);
        c.lineTo(x - r, y); c.closePath(); break;
      case 4: c.moveTo(x, y + r * 1.1); c.lineTo(x + r, y - r * 0.8); c.lineTo(x - r, y - r * 0.8);
        c.closePath(); break;
      case 5: { const a = r * 0.4; c.moveTo(x - a, y - r); c.lineTo(x + a, y - r);
        const corners = [[a, -a], [r, -a], [r, a], [a, a], [a, r], [-a, r], [-a, a], [-r, a],
          [-r, -a], [-a, -a]];
        corners.forEach(function (d) { c.lineTo(x + d[0], y + d[1]); });
        c.closePath(); break; }
      case 6: { c.save(); c.translate(x, y); c.rotate(Math.PI / 4); shapePath(c, 5, 0, 0, r);
        c.restore(); return; }
      case 7: for (let k = 0; k < 10; k++) {
          const rr = k % 2 ? r * 0.5 : r * 1.2, a = -Math.PI / 2 + k * Math.PI / 5;
          if (k) c.lineTo(x + rr * Math.cos(a), y + rr * Math.sin(a));
          else c.moveTo(x + rr * Math.cos(a), y + rr * Math.sin(a));
        } c.closePath(); break;
      default: c.arc(x, y, r, 0, 2 * Math.PI);
    }
  }

  // The legend: one entry per query, in its colour and shape.
  const legend = document.getElementById("legend");
  const heading = document.createElement("h2");
  heading.textContent = "queries";
  legend.appendChild(heading);
  data.groups.forEach(function (g) {
    const entry = document.createElement("div");
    entry.className = "entry";
    const swatch = document.createElement("canvas");
    swatch.width = 14; swatch.height = 14;
    const s = swatch.getContext("2d");
    shapePath(s, g.shape, 7, 7, 5);
    s.fillStyle = g.colour; s.fill(); s.strokeStyle = "#000"; s.stroke();
    const name = document.createElement("span");
    name.textContent = g.s;
    entry.appendChild(swatch); entry.appendChild(name);
    legend.appendChild(entry);
  });
  const key = document.createElement("p");
  key.className = "key";
  key.textContent = "Large, outlined: a query. Small: its neighbors, in its colour and " +
    "shape, joined to it by a line. Red ring: a search match.";
  legend.appendChild(key);

  // Data to screen: x to the right, y up, around a centre at a scale.
  let width = 0, height = 0, ratio = 1;
  const view = { cx: 0, cy: 0, scale: 1 };
  function fit() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    shown.forEach(function (p) {
      x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x);
      y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
    });
    view.cx = (x0 + x1) / 2; view.cy = (y0 + y1) / 2;
    const spanX = Math.max(x1 - x0, 1e-12), spanY = Math.max(y1 - y0, 1e-12);
    view.scale = Math.min((width - 80) / spanX, (height - 60) / spanY);
    if (!isFinite(view.scale) || view.scale <= 0) view.scale = 1;
  }
  function sx(p) { return width / 2 + (p.x - view.cx) * view.scale; }
  function sy(p) { return height / 2 - (p.y - view.cy) * view.scale; }

  let highlighted = [];
  let hovered = -1;
  let drawn = 0;
  function draw() {
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, height);
    const byQuery = {};
    points.forEach(function (p, i) { if (p.q && !(p.g in byQuery)) byQuery[p.g] = i; });
    ctx.lineWidth = 1;
    ctx.globalAlpha = 0.25;
    points.forEach(function (p) {
      if (p.q || !(p.g in byQuery) || p.x === null || points[byQuery[p.g]].x === null) return;
      const q = points[byQuery[p.g]];
      ctx.strokeStyle = styleOf(p).colour;
      ctx.beginPath(); ctx.moveTo(sx(q), sy(q)); ctx.lineTo(sx(p), sy(p)); ctx.stroke();
    });
    ctx.globalAlpha = 1;
    drawn = 0;
    const order = [];
    points.forEach(function (p, i) { if (!p.q) order.push(i); });
    points.forEach(function (p, i) { if (p.q) order.push(i); });
    order.forEach(function (i) {
      const p = points[i], x = sx(p), y = sy(p);
      if (p.x === null || p.y === null) return;
      if (x < -10 || y < -10 || x > width + 10 || y > height + 10) return;
      const st = styleOf(p);
      shapePath(ctx, st.shape, x, y, p.q ? 7 : 3.5);
      ctx.fillStyle = st.colour;
      ctx.globalAlpha = p.q ? 1 : 0.85;
      ctx.fill();
      ctx.globalAlpha = 1;
      if (p.q) { ctx.strokeStyle = "#000"; ctx.lineWidth = 1.2; ctx.stroke(); }
      drawn += 1;
    });
    // Labels where they fit: queries, search matches and the hovered point first.
    const boxes = [];
    const labelled = highlighted.concat(hovered >= 0 ? [hovered] : [], order.slice().reverse());
    let tried = 0;
    ctx.textBaseline = "bottom";
    const done = new Set();
    labelled.forEach(function (i) {
      const p = points[i], x = sx(p), y = sy(p);
      if (done.has(i) || p.x === null || p.y === null) return;
      if (x < 0 || y < 0 || x > width || y > height) return;
      done.add(i);
      if (!p.q && highlighted.indexOf(i) < 0 && i !== hovered && ++tried > 400) return;
      ctx.font = p.q ? "bold 13px system-ui, sans-serif" : "11px system-ui, sans-serif";
      const w = ctx.measureText(p.s).width, h = p.q ? 15 : 13;
      // Up right, up left, down right, down left of the point: the first that is free.
      const left = x - 5 - w, above = y - 5 - h;
      const places = [[x + 5, above], [left, above], [x + 5, y + 5], [left, y + 5]];
      const box = places.map(function (c) { return [c[0], c[1], c[0] + w, c[1] + h]; })
        .find(function (b) { return !boxes.some(function (o) {
          return o[0] < b[2] && b[0] < o[2] && o[1] < b[3] && b[1] < o[3];
        }); });
      if (!box) return;
      boxes.push(box);
      ctx.fillStyle = p.q ? "#000" : "#333";
      ctx.fillText(p.s, box[0], box[3]);
    });
    highlighted.forEach(function (i) {
      const p = points[i];
      if (p.x === null || p.y === null) return;
      ctx.beginPath(); ctx.arc(sx(p), sy(p), 11, 0, 2 * Math.PI);
      ctx.strokeStyle = "#e00000"; ctx.lineWidth = 2.5; ctx.stroke();
    });
    canvas.dataset.drawn = String(drawn);
    canvas.dataset.highlighted = String(highlighted.length);
  }

  function resize() {
    const r = canvas.getBoundingClientRect();
    const first = width === 0;
    ratio = window.devicePixelRatio || 1;
    width = r.width; height = r.height;
    canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
    if (first) fit();
    draw();
  }

  // Hover: the nearest point within 10 pixels of the mouse.
  function pointAt(mx, my) {
    let best = -1, bestD = 100;
    points.forEach(function (p, i) {
      if (p.x === null || p.y === null) return;
      const dx = sx(p) - mx, dy = sy(p) - my, d = dx * dx + dy * dy;
      if (d <= bestD) { best = i; bestD = d; }
    });
    return best;
  }
  function line(parent, className, text) {
    const el = document.createElement("div");
    if (className) el.className = className;
    el.textContent = text;
    parent.appendChild(el);
    return el;
  }
  function showTip(i, clientX, clientY) {
    const p = points[i];
    tip.replaceChildren();
    line(tip, "token", p.s);
    const ids = (p.i.length === 1 ? "id " : "ids ") + p.i.join(" ");
    line(tip, "meta", ids + " · stored as " + p.t.join(" "));
    if (p.q) line(tip, "meta", "query");
    else if (data.groups[p.g]) line(tip, "meta", "neighbor of " + data.groups[p.g].s);
    if (p.n.length) {
      line(tip, "meta", "nearest drawn points (cosine):");
      const list = document.createElement("ol");
      p.n.forEach(function (pair) {
        const item = document.createElement("li");
        item.textContent = points[pair[0]].s + "  " + pair[1].toFixed(4);
        list.appendChild(item);
      });
      tip.appendChild(list);
    }
    tip.hidden = false;
    const box = tip.getBoundingClientRect();
    let left = clientX + 14, top = clientY + 14;
    if (left + box.width > window.innerWidth) left = clientX - box.width - 14;
    if (top + box.height > window.innerHeight) top = clientY - box.height - 14;
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, top) + "px";
    tip.dataset.point = String(i);
  }
  function hideTip() { tip.hidden = true; tip.dataset.point = ""; }

  let drag = null;
  canvas.addEventListener("mousedown", function (e) {
    drag = { x: e.clientX, y: e.clientY, cx: view.cx, cy: view.cy, moved: false };
  });
  window.addEventListener("mouseup", function () {
    drag = null; canvas.classList.remove("dragging");
  });
  canvas.addEventListener("mousemove", function (e) {
    const r = canvas.getBoundingClientRect();
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) { drag.moved = true; canvas.classList.add("dragging"); }
      view.cx = drag.cx - dx / view.scale; view.cy = drag.cy + dy / view.scale;
      hideTip(); hovered = -1; draw();
      return;
    }
    const i = pointAt(e.clientX - r.left, e.clientY - r.top);
    if (i !== hovered) { hovered = i; draw(); }
    if (i >= 0) showTip(i, e.clientX, e.clientY); else hideTip();
  });
  canvas.addEventListener("mouseleave", function () { hovered = -1; hideTip(); draw(); });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    const mx = e.clientX - r.left, my = e.clientY - r.top;
    const x = view.cx + (mx - width / 2) / view.scale, y = view.cy - (my - height / 2) / view.scale;
    view.scale *= Math.exp(-e.deltaY * 0.0015);
    view.cx = x - (mx - width / 2) / view.scale; view.cy = y + (my - height / 2) / view.scale;
    hideTip(); draw();
  }, { passive: false });
  document.getElementById("reset").addEventListener("click", function () { fit(); draw(); });

  // Search: exact first (as shown, as stored, #id), else the points whose shown form
  // contains the text (case folded).
  function find(text) {
    const t = text.trim();
    if (!t) return [];
    const exact = [];
    points.forEach(function (p, i) {
      if (p.s === t || p.t.join(" ") === t || p.i.length === 1 && "#" + p.i[0] === t) exact.push(i);
    });
    if (exact.length) return exact;
    const folded = t.toLowerCase(), some = [];
    points.forEach(function (p, i) {
      const stored = p.t.join(" ").toLowerCase();
      if (p.s.toLowerCase().indexOf(folded) >= 0 || stored.indexOf(folded) >= 0) some.push(i);
    });
    return some;
  }
  search.addEventListener("input", function () {
    highlighted = find(search.value);
    found.textContent = search.value.trim() ?
      highlighted.length + (highlighted.length === 1 ? " match" : " matches") : "";
    draw();
  });
  search.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || !highlighted.length) return;
    const p = points[highlighted[0]];
    view.cx = p.x; view.cy = p.y; draw();
  });

  window.addEventListener("resize", resize);
  resize();
  // For tests and scripts: the point count, what was drawn, where a point is on the page.
  window.embinspectView = {
    count: points.length,
    drawn: function () { return drawn; },
    highlighted: function () { return highlighted.slice(); },
    find: function (text) { return find(text); },
    pagePosition: function (i) {
      const r = canvas.getBoundingClientRect();
      return [r.left + sx(points[i]), r.top + sy(points[i])];
    }
  };
  document.body.dataset.ready = "1";
})();
"""
