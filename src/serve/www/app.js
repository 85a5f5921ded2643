// sabio's page: streamed chat over /v1/chat/completions; with the switch on,
// answers come from a knowledge store and list their sources, each openable.
"use strict";
const $ = (id) => document.getElementById(id);
const log = $("log"), q = $("q"), send = $("send"), stopBtn = $("stop"), status = $("status");
const history = [];
let controller = null;

$("key").value = localStorage.getItem("sabio-key") || "";
$("key").addEventListener("change", () => localStorage.setItem("sabio-key", $("key").value));

function headers() {
  const h = { "Content-Type": "application/json" };
  const k = $("key").value.trim();
  if (k) h["Authorization"] = "Bearer " + k;
  return h;
}

function bubble(role, text) {
  const d = document.createElement("div");
  d.className = "msg " + role;
  d.textContent = text;
  log.appendChild(d);
  log.scrollTop = log.scrollHeight;
  return d;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: headers() });
  const j = await r.json();
  if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
  return j;
}

async function init() {
  try {
    const m = await getJSON("/v1/models");
    $("model").textContent = m.data.length ? m.data[0].id : "";
    const s = await getJSON("/v1/rag/stores");
    for (const st of s.data) {
      const o = document.createElement("option");
      o.value = st.name;
      o.textContent = `${st.name} (${st.documents} documents)`;
      $("store").appendChild(o);
    }
    if (!s.data.length) { $("use-store").disabled = true; $("store").hidden = true; }
    else $("use-store").checked = true;
  } catch (e) {
    status.textContent = "Cannot reach the server: " + e.message;
  }
}

function showSources(after, sabio) {
  const ul = document.createElement("ul");
  ul.className = "sources";
  for (const s of sabio.sources) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.className = s.cited ? "cited" : "";
    let where = `${s.path.split("/").pop()}, lines ${s.line_start}-${s.line_end}`;
    if (s.page) where += `, page ${s.page}`;
    if (s.section) where += ` (${s.section})`;
    a.textContent = `[${s.n}] ${where}${s.cited ? "  (cited)" : ""}`;
    a.title = "show the passage";
    a.addEventListener("click", async () => {
      const open = li.querySelector("pre");
      if (open) { open.remove(); return; }
      const pre = document.createElement("pre");
      li.appendChild(pre);
      try {
        const c = await getJSON(`/v1/rag/sources/${s.id}?store=${encodeURIComponent(sabio.store)}`);
        pre.textContent = c.text;
      } catch (e) { pre.textContent = "Cannot open the source: " + e.message; }
    });
    li.appendChild(a);
    ul.appendChild(li);
  }
  after.after(ul);
}

async function ask(text) {
  history.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant", "");
  const body = { messages: history, stream: true, stream_options: { include_usage: true },
                 max_tokens: parseInt($("max-tokens").value, 10) || 256 };
  const useStore = $("use-store").checked && $("store").value;
  if (useStore) body.sabio = { store: $("store").value };
  controller = new AbortController();
  send.disabled = true; stopBtn.disabled = false;
  status.textContent = useStore ? `answering from ${$("store").value}...` : "answering...";
  const t0 = performance.now();
  let first = 0, answer = "", usage = null;
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!r.ok) {
      const j = await r.json().catch(() => ({}));
      throw new Error(j.error ? j.error.message : r.statusText);
    }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        if (!ev.startsWith("data: ")) continue;
        const data = ev.slice(6);
        if (data === "[DONE]") continue;
        const c = JSON.parse(data);
        if (c.error) throw new Error(c.error.message);
        if (c.usage) usage = c.usage;
        const ch = c.choices && c.choices[0];
        if (ch && ch.delta && ch.delta.content) {
          if (!first) first = performance.now();
          answer += ch.delta.content;
          out.textContent = answer;
          log.scrollTop = log.scrollHeight;
        }
        if (c.sabio) showSources(out, c.sabio);
      }
    }
    history.push({ role: "assistant", content: answer });
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    status.textContent = `done in ${secs}s` + (first ? `, first token after ${((first - t0) / 1000).toFixed(2)}s` : "") +
      (usage ? `, ${usage.completion_tokens} tokens` : "");
  } catch (e) {
    if (e.name === "AbortError") { status.textContent = "stopped"; history.push({ role: "assistant", content: answer }); }
    else { out.className = "msg error"; out.textContent = (answer ? answer + "\n\n" : "") + "Error: " + e.message; history.pop(); status.textContent = ""; }
  } finally {
    send.disabled = false; stopBtn.disabled = true; controller = null;
  }
}

$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = q.value.trim();
  if (!text || controller) return;
  q.value = "";
  ask(text);
});
q.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
});
stopBtn.addEventListener("click", () => controller && controller.abort());
init();
