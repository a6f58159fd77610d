// The live page served at GET /: per-partition load of every topic without saltproxy (where the
// client's partitioner, or for HTTP the Java default one, would have put each record) and
// through it, the hot keys and the salt map, refreshed every second from GET /api/overview,
// /hotkeys and /saltmap. One self-contained HTML document: no build step, no files to ship
// beside the binary.
#pragma once

#include <string_view>

namespace saltproxy {

inline constexpr std::string_view kLivePage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>saltproxy</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; }
  h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
  .meta { color: #666; }
  table { border-collapse: collapse; margin: .3em 0 1em; }
  td, th { border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: left; }
  .legend span { display: inline-block; width: .8em; height: .8em; margin: 0 .3em 0 1em; }
  .plain { fill: #d62728; background: #d62728; }
  .through { fill: #2ca02c; background: #2ca02c; }
</style>
</head>
<body>
<h1>saltproxy</h1>
<div class="meta">salt map epoch <span id="epoch">-</span> &middot; updated <span id="updated">never</span></div>
<div class="legend"><span class="plain"></span>without saltproxy (where clients put them)
  <span class="through"></span>through saltproxy</div>
<div id="topics"></div>
<h2>Hot keys</h2>
<table id="hotkeys"><thead><tr><th>topic</th><th>key</th><th>records/s</th><th>share</th><th>hot since</th></tr></thead><tbody></tbody></table>
<h2>Salt map</h2>
<table id="saltmap"><thead><tr><th>topic</th><th>key</th><th>action</th><th>destination</th><th>partitions</th><th>epoch</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
let previous = null;
function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
}
function ratio(values) {
  const sum = values.reduce((a, b) => a + b, 0);
  return sum ? (Math.max(...values) * values.length / sum) : 1;
}
function chart(topic, plain, through) {
  const width = 640, height = 160, n = plain.length, group = width / n;
  const top = Math.max(1, ...plain, ...through);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height + 16);
  svg.dataset.topic = topic;
  plain.forEach((v, p) => {
    [["plain", v, 0], ["through", through[p], 1]].forEach(([cls, value, k]) => {
      const r = document.createElementNS(ns, "rect");
      const h = height * value / top;
      r.setAttribute("x", p * group + k * group * 0.45 + 1);
      r.setAttribute("y", height - h);
      r.setAttribute("width", group * 0.42);
      r.setAttribute("height", h);
      r.setAttribute("class", cls);
      r.dataset.partition = p;
      r.dataset.value = value;
      svg.appendChild(r);
    });
  });
  return svg;
}
async function refresh() {
  try {
    const [overview, hot, map] = await Promise.all(
        ["/api/overview", "/hotkeys", "/saltmap"].map(u => fetch(u).then(r => r.json())));
    document.getElementById("epoch").textContent = overview.epoch;
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    const topics = document.getElementById("topics");
    topics.replaceChildren();
    for (const t of overview.topics) {
      const before = previous && previous[t.topic];
      const delta = (now, then) => now.map((v, i) => v - (then ? then[i] : 0));
      const plain = delta(t.plain, before && before.plain);
      const through = delta(t.through, before && before.through);
      const section = document.createElement("section");
      section.appendChild(text("h2", t.topic));
      section.appendChild(text("div", "max/mean partition load: " + ratio(plain).toFixed(2) +
          " without saltproxy, " + ratio(through).toFixed(2) + " through it", "ratio"));
      section.appendChild(chart(t.topic, plain, through));
      topics.appendChild(section);
    }
    previous = Object.fromEntries(overview.topics.map(t => [t.topic, t]));
    const hotBody = document.querySelector("#hotkeys tbody");
    hotBody.replaceChildren();
    for (const [topic, t] of Object.entries(hot.topics)) {
      for (const k of t.hot_keys) {
        const row = document.createElement("tr");
        row.append(text("td", topic), text("td", k.key ?? k.key_base64, "hot-key"),
                   text("td", Math.round(k.rate_rps)), text("td", (100 * k.share).toFixed(1) + " %"),
                   text("td", k.hot_since));
        hotBody.appendChild(row);
      }
    }
    const mapBody = document.querySelector("#saltmap tbody");
    mapBody.replaceChildren();
    for (const [topic, t] of Object.entries(map.topics)) {
      for (const k of t.keys) {
        const row = document.createElement("tr");
        row.append(text("td", topic), text("td", k.key ?? k.key_base64, "salted-key"),
                   text("td", k.action), text("td", k.destination),
                   text("td", k.partitions.join(" ")), text("td", k.epoch));
        mapBody.appendChild(row);
      }
    }
  } catch (e) {
    document.getElementById("updated").textContent = "error: " + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
)HTML";

}  // namespace saltproxy
