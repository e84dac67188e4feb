// lmstack web chat: one page, no build step. Talks to this server's OpenAI-compatible API,
// streams replies over server-sent events, keeps conversations in the browser's localStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = "lmstack.chats";
const state = { chats: [], current: null, controller: null, pending: [], vision: {} };  // pending: image data URLs

function load() {
  try { state.chats = JSON.parse(localStorage.getItem(STORE) || "[]"); } catch { state.chats = []; }
}
function save() {
  try { localStorage.setItem(STORE, JSON.stringify(state.chats.slice(0, 50))); }
  catch { bubble("error", "the browser's storage is full: this chat is kept until the page is closed"); }
}
function newChat() {
  const chat = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: "New chat",
                 system: $("system").value, messages: [] };
  state.chats.unshift(chat);
  state.current = chat;
  renderHistory();
  renderMessages();
  return chat;
}

function renderHistory() {
  const ul = $("history");
  ul.replaceChildren();
  for (const chat of state.chats) {
    const li = document.createElement("li");
    li.className = chat === state.current ? "active" : "";
    const title = document.createElement("span");
    title.textContent = chat.title;
    const del = document.createElement("button");
    del.textContent = "×";
    del.title = "delete";
    del.onclick = (e) => {
      e.stopPropagation();
      state.chats = state.chats.filter((c) => c !== chat);
      if (state.current === chat) state.current = state.chats[0] || null;
      save(); renderHistory(); renderMessages();
    };
    li.onclick = () => { if (!state.controller) { state.current = chat; $("system").value = chat.system || ""; renderHistory(); renderMessages(); } };
    li.append(title, del);
    ul.append(li);
  }
}

function bubble(role, text, images) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  if (images && images.length) {  // thumbnails above the text
    const row = document.createElement("div");
    row.className = "thumbs";
    for (const url of images) row.append(thumb(url));
    div.prepend(row);
  }
  $("messages").append(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

function renderMessages() {
  $("messages").replaceChildren();
  if (!state.current) return;
  for (const m of state.current.messages) {
    if (m.role === "tool-block") { toolBlock(m); continue; }
    const div = bubble(m.role, m.content, m.images);
    if (m.note) addNote(div, m.note);
  }
}

// A tool call and its result: the call's name and arguments as the title of a collapsible block
// holding the result; images the tool drew are shown below it, always visible.
function toolBlock(block) {
  const box = document.createElement("div");
  box.className = "msg tool" + (block.error ? " error" : "");
  const details = document.createElement("details");
  const title = document.createElement("summary");
  title.textContent = `${block.name}(${block.arguments})`;
  const out = document.createElement("pre");
  out.textContent = block.result === undefined ? "running…" : block.result;
  details.append(title, out);
  details.open = block.result === undefined;
  box.append(details);
  for (const png of block.images || []) {
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + png;
    img.alt = `image from ${block.name}`;
    box.append(img);
  }
  $("messages").append(box);
  $("messages").scrollTop = $("messages").scrollHeight;
  block.div = box;
  return box;
}

function thumb(url) {
  const img = document.createElement("img");
  img.className = "thumb";
  img.src = url;
  img.alt = "attached image";
  return img;
}

// Images for the next message: from the Image button's file picker or pasted into the message box,
// read as data URLs, which is how they are sent (OpenAI's image_url content parts) and kept.
function attach(files) {
  const read = (file) => new Promise((done, fail) => {
    const reader = new FileReader();
    reader.onload = () => done(reader.result);
    reader.onerror = () => fail(reader.error);
    reader.readAsDataURL(file);
  });
  const images = [...files].filter((f) => f.type.startsWith("image/"));
  Promise.all(images.map(read))  // in the order chosen, whichever file is read first
    .then((urls) => { state.pending.push(...urls); renderAttachments(); })
    .catch((e) => bubble("error", "could not read the image: " + e));
}

function renderAttachments() {
  const box = $("attachments");
  box.replaceChildren();
  state.pending.forEach((url, i) => {
    const item = document.createElement("div");
    item.className = "thumb-box";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.title = "remove";
    remove.onclick = () => { state.pending.splice(i, 1); renderAttachments(); };
    item.append(thumb(url), remove);
    box.append(item);
  });
}

function showAttach() {  // the Image button only for models that take images
  const vision = !!state.vision[$("model").value];
  $("attach").hidden = !vision;
  if (!vision && state.pending.length) { state.pending = []; renderAttachments(); }
}

// A message as the API takes it: with images, content parts (the images first, then the text).
function apiMessage({ role, content, images }) {
  if (!images || !images.length) return { role, content };
  const parts = images.map((url) => ({ type: "image_url", image_url: { url } }));
  return { role, content: content ? parts.concat([{ type: "text", text: content }]) : parts };
}

function addNote(div, text) {
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = text;
  div.append(note);
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").hidden = !busy;
  $("status").textContent = busy ? "generating…" : "";
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models");
    const body = await r.json();
    const sel = $("model");
    sel.replaceChildren();
    for (const m of body.data) {
      const opt = document.createElement("option");
      opt.value = m.id;
      opt.textContent = `${m.id} (${m.context_length} ctx${m.vision ? ", images" : ""})`;
      state.vision[m.id] = !!m.vision;
      sel.append(opt);
    }
    const tools = (body.data[0] && body.data[0].tools) || [];
    $("tools-switch").hidden = !tools.length;
    $("tool-names").textContent = tools.length ? "(" + tools.join(", ") + ")" : "";
    const saved = localStorage.getItem("lmstack.model");
    if (saved && body.data.some((m) => m.id === saved)) sel.value = saved;
    showAttach();
  } catch (e) {
    bubble("error", "could not list models: " + e);
  }
}

async function send(text, images) {
  const chat = state.current || newChat();
  chat.system = $("system").value;
  chat.messages.push(images.length ? { role: "user", content: text, images } : { role: "user", content: text });
  if (chat.title === "New chat") chat.title = text.slice(0, 40) || "(image)";
  bubble("user", text, images);
  const reply = { role: "assistant", content: "" };
  renderHistory();

  const messages = (chat.system.trim() ? [{ role: "system", content: chat.system }] : [])
    .concat(chat.messages.filter((m) => m.role === "user" || m.role === "assistant")
      .map(apiMessage));
  const body = { model: $("model").value, messages, stream: true, stream_options: { include_usage: true },
                 temperature: Number($("temperature").value || 0.7) };
  const maxTokens = parseInt($("max-tokens").value, 10);
  if (maxTokens > 0) body.max_tokens = maxTokens;
  if (!$("tools-switch").hidden && !$("tools").checked) body.tool_choice = "none";
  const blocks = {};
  let div = null;
  const assistant = () => {  // text after a tool block goes into a new bubble below it
    if (!div) { div = bubble("assistant", reply.content); div.classList.add("streaming"); }
    return div;
  };

  state.controller = new AbortController();
  setBusy(true);
  assistant();
  let finish = null, usage = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: state.controller.signal,
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({ error: { message: r.statusText } }));
      throw new Error(err.error ? err.error.message : r.statusText);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.usage) usage = chunk.usage;
          for (const c of chunk.choices || []) {
            const d = c.delta || {};
            if (d.content) { reply.content += d.content; assistant().textContent = reply.content; }
            for (const call of d.tool_calls || []) {
              if (div) {  // the text so far, if any, is one finished assistant message
                div.classList.remove("streaming");
                if (reply.content) chat.messages.push({ role: "assistant", content: reply.content });
                else div.remove();
                div = null;
                reply.content = "";
              }
              const block = { role: "tool-block", name: call.function.name, arguments: call.function.arguments };
              blocks[call.id] = block;
              chat.messages.push(block);
              toolBlock(block);
            }
            if (d.tool_result && blocks[d.tool_result.tool_call_id]) {
              const block = blocks[d.tool_result.tool_call_id];
              Object.assign(block, { result: d.tool_result.content, error: d.tool_result.is_error,
                                     images: d.tool_result.images || [] });
              const old = block.div;
              old.replaceWith(toolBlock(block));  // the filled-in block takes the running one's place
            }
            if (c.finish_reason) finish = c.finish_reason;
          }
          $("messages").scrollTop = $("messages").scrollHeight;
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") {
      finish = "stopped";
    } else {
      if (div) div.remove();
      div = null;
      chat.messages.push({ role: "error", content: String(e.message || e) });
      bubble("error", String(e.message || e));
    }
  } finally {
    if (div) div.classList.remove("streaming");
    state.controller = null;
    setBusy(false);
  }
  if (div && div.isConnected) {
    reply.note = finish === "stopped" ? "stopped" : finish === "length" ? "cut at the token limit" : "";
    if (usage) reply.note = (reply.note ? reply.note + " · " : "") + `${usage.completion_tokens} tokens`;
    if (reply.note) addNote(div, reply.note);
    div.dataset.finish = finish || "";
    chat.messages.push(reply);
  }
  for (const block of Object.values(blocks)) delete block.div;
  save();
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if ((!text && !state.pending.length) || state.controller) return;
  $("input").value = "";
  const images = state.pending;
  state.pending = [];
  renderAttachments();
  send(text, images);
});
$("attach").addEventListener("click", () => $("image-file").click());
$("image-file").addEventListener("change", (e) => { attach(e.target.files); e.target.value = ""; });
$("input").addEventListener("paste", (e) => {
  if (!state.vision[$("model").value]) return;
  const files = [...(e.clipboardData ? e.clipboardData.files : [])].filter((f) => f.type.startsWith("image/"));
  if (files.length) { e.preventDefault(); attach(files); }
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
$("new-chat").addEventListener("click", () => { if (!state.controller) { newChat(); save(); } });
$("model").addEventListener("change", () => { localStorage.setItem("lmstack.model", $("model").value); showAttach(); });

load();
state.current = state.chats[0] || null;
if (state.current) $("system").value = state.current.system || "";
renderHistory();
renderMessages();
loadModels();
