// Roost admin UI: plain JavaScript, no build step, no dependencies.
// Every action calls the admin API (/api/...), which calls the same library
// functions as the `roost` CLI; this file only shows and sends data.
// The admin token is kept in localStorage and sent as a Bearer token.
"use strict";

const TOKEN_KEY = "roost-admin-token";
const SCREENS = ["login", "setup", "dashboard", "devices", "users", "clients", "events", "conflicts", "backups"];
const $ = (sel) => document.querySelector(sel);

// An API error: the server's {"error": "..."} message and the status.
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The API's base: the page's own origin, or ?api=... (the desktop app).
const API_BASE = new URLSearchParams(location.search).get("api") || "";

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + (localStorage.getItem(TOKEN_KEY) || "") };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API_BASE + path, init);
  } catch (e) {
    throw new ApiError(0, "cannot reach the device: " + e.message);
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try { message = JSON.parse(text).error || text; } catch (_) { /* not JSON */ }
    if (response.status === 401 && path !== "/api/status") signOut(message);
    throw new ApiError(response.status, message);
  }
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? JSON.parse(text) : text;
}

// --- small helpers -------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function flash(message) { $("#flash").textContent = message; }
// A new identity's recovery key comes in one answer only: show it with the flash.
function recoveryNote(user) {
  return user && user.recovery_key
    ? " Recovery key (shown once; keep it offline, it resets the password): " + user.recovery_key : "";
}
function showError(id, err) { $(id).textContent = err ? (err.message || String(err)) : ""; }
function short(id) { return (id || "").slice(0, 10); }
function when(ms) { return ms ? new Date(ms).toLocaleString() : "never"; }
function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
}
function svgImage(img, svg) {
  img.src = "data:image/svg+xml;base64," + btoa(svg);
}
function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, String(v)));
}
function busy(form, on) {
  for (const b of form.querySelectorAll("button")) b.disabled = on;
  form.setAttribute("aria-busy", on ? "true" : "false");
}

// --- navigation ----------------------------------------------------------------

let status = null;

function show(name) {
  for (const s of SCREENS) $("#screen-" + s).hidden = s !== name;
  $("#nav").hidden = name === "login" || (name === "setup" && status !== null && status.needs_setup);
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === "#" + name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const heading = $("#screen-" + name + " h2");
  if (heading) { heading.tabIndex = -1; heading.focus(); }
}

async function route() {
  flash("");
  if (!localStorage.getItem(TOKEN_KEY)) { show("login"); return; }
  try {
    status = await api("GET", "/api/status");
  } catch (err) {
    if (err.status === 401) { signOut(err.message); return; }
    flash(err.message); return;
  }
  $("#device-line").textContent = status.device_name + " · " + short(status.device_id);
  let name = location.hash.slice(1) || "dashboard";
  if (status.needs_setup && name !== "setup") { location.hash = "#setup"; return; }
  if (!SCREENS.includes(name) || name === "login") name = "dashboard";
  show(name);
  const load = LOADERS[name];
  if (load) {
    try { await load(); } catch (err) { flash(err.message); }
  }
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  show("login");
  showError("#login-error", message ? { message } : null);
}

// --- screens -------------------------------------------------------------------

const LOADERS = {
  setup: async () => {
    $("#setup-data-dir").textContent = status.data_dir;
    const done = !status.needs_setup;
    $("#setup-form").hidden = done;
    $("#setup-done").hidden = !done || !$("#setup-done-text").textContent;
  },
  dashboard: async () => {
    const s = status.storage;
    facts($("#dash-facts"), [
      ["Device", status.device_name + " (" + short(status.device_id) + ", slot " + status.slot + ")"],
      ["Data directory", status.data_dir],
      ["Users", s.users], ["Mailboxes", s.mailboxes],
      ["Messages", s.entries + " in mailboxes, " + s.messages + " stored"],
      ["Events", s.events],
      ["Storage", bytes(s.db_bytes) + " database, " + bytes(s.blob_bytes) + " blobs"],
    ]);
    const body = $("#dash-peers tbody");
    body.replaceChildren();
    for (const p of status.peers) {
      body.append(el("tr", { "data-peer": p.device_id },
        el("th", { scope: "row" }, p.name + " ", el("span", { class: "muted" }, short(p.device_id))),
        el("td", {}, el("span", { class: p.connected ? "pill ok" : "pill off" }, p.connected ? "connected" : "offline")),
        el("td", {}, ago(p.last_seen_ms)),
        el("td", {}, String(p.events_they_lack)),
        el("td", {}, String(p.events_we_lack)),
        el("td", {}, p.lag_ms === null ? "unknown" : p.lag_ms + " ms"),
        el("td", {}, bytes(p.bytes_sent) + " / " + bytes(p.bytes_received))));
    }
    $("#dash-peers").hidden = status.peers.length === 0;
    $("#dash-no-peers").hidden = status.peers.length !== 0;
    const lag = await api("GET", "/api/lag");
    const plots = $("#dash-plots");
    plots.replaceChildren();
    for (const p of status.peers) plots.append(lagPlot(p, lag.peers[p.device_id] || []));
  },
  devices: async () => {
    const peers = await api("GET", "/api/peers");
    const list = $("#devices-list");
    list.replaceChildren();
    for (const p of peers) {
      const remove = el("button", { type: "button", class: "danger", "aria-label": "Remove " + p.name },
        "Remove");
      remove.addEventListener("click", async () => {
        if (!confirm("Stop trusting " + p.name + " (" + short(p.device_id) + ")? It will be refused from now on.")) return;
        try { await api("DELETE", "/api/peers/" + p.device_id); flash("Removed " + p.name + "."); await LOADERS.devices(); }
        catch (err) { flash(err.message); }
      });
      list.append(el("li", { "data-peer": p.device_id },
        el("strong", {}, p.name), " ",
        el("span", { class: p.connected ? "pill ok" : "pill off" }, p.connected ? "connected" : "offline"),
        el("div", { class: "muted mono" }, p.device_id),
        el("div", { class: "muted" }, "paired " + when(p.paired_ms) + " · slot " + p.slot + " · " + p.addrs.join(", ")),
        remove));
    }
    $("#devices-none").hidden = peers.length !== 0;
  },
  users: async () => {
    const users = await api("GET", "/api/users");
    const list = $("#users-list");
    list.replaceChildren();
    for (const u of users) list.append(userCard(u));
  },
  clients: async () => {
    const users = await api("GET", "/api/users");
    const select = $("#clients-user");
    const current = select.value;
    select.replaceChildren(...users.map((u) => el("option", { value: u.name }, u.name)));
    if (current) select.value = current;
  },
  events: async () => { await loadEvents(); },
  conflicts: async () => {
    const message = $("#conflicts-message");
    const list = $("#conflicts-list");
    list.replaceChildren(); $("#conflicts-detail").replaceChildren();
    try {
      const conflicts = await api("GET", "/api/conflicts");
      message.textContent = conflicts.length ? conflicts.length + " conflicts resolved by the merge." : "No conflicts recorded.";
      for (const c of conflicts) {
        const label = (CONFLICT_KINDS[c.kind] || c.kind) + (c.mailbox ? " in " + c.mailbox : "") + " · " + when(c.time_ms);
        const open = el("button", { type: "button", class: "link" }, label);
        open.addEventListener("click", () => conflictDetail(c));
        list.append(el("li", {}, open, el("div", { class: "muted" }, c.resolution || "")));
      }
    } catch (err) {
      message.textContent = err.status === 501 ? "Not available yet: " + err.message + "." : err.message;
    }
  },
  backups: async () => {
    const message = $("#backups-message");
    const list = $("#backups-list");
    try {
      const b = await api("GET", "/api/backups");
      $("#backup-now").hidden = !(b.dir && b.recipient);
      message.textContent = b.dir && b.recipient
        ? "Backups go to " + b.dir + (b.every ? ", every " + b.every : "") + ", newest " + b.keep + " kept; encrypted to " + b.recipient + "."
        : "Backups are off: set [backup] recipient (roost backup keygen makes the key) and dir in the config.";
      list.replaceChildren(...b.backups.map((f) => el("li", {}, f.file + " (" + f.bytes + " bytes, " + when(f.written_ms) + ")")));
    } catch (err) { message.textContent = err.message; }
  },
};

function userCard(u) {
  const form = el("form", { class: "inline-form", novalidate: "" });
  const id = "pw-" + u.name.replace(/[^a-zA-Z0-9]/g, "_");
  const current = el("input", { id: id + "-current", type: "password", autocomplete: "current-password" });
  const input = el("input", { id, type: "password", autocomplete: "new-password", required: "" });
  const error = el("p", { class: "error", role: "alert" });
  // The current password unwraps the key the user's mail is encrypted with.
  form.append(el("label", { for: id + "-current" }, "Current password of " + u.name), current,
    el("label", { for: id }, "New password for " + u.name), input,
    el("button", { type: "submit" }, "Change password"), error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault(); showError(error);
    try {
      const body = { password: input.value };
      if (current.value) body.current = current.value;
      const done = await api("PUT", "/api/users/" + encodeURIComponent(u.name) + "/password", body);
      input.value = ""; current.value = "";
      flash("Changed the password of " + u.name + "." + recoveryNote(done));
    } catch (err) { error.textContent = err.message; }
  });
  const remove = el("button", { type: "button", class: "danger" }, "Remove " + u.name);
  remove.addEventListener("click", async () => {
    if (!confirm("Remove " + u.name + " and all their mail on every device?")) return;
    try { await api("DELETE", "/api/users/" + encodeURIComponent(u.name)); flash("Removed " + u.name + "."); await LOADERS.users(); }
    catch (err) { flash(err.message); }
  });
  const boxes = el("button", { type: "button", class: "link", "aria-expanded": "false" }, "Mailboxes");
  const boxList = el("ul", { class: "mailboxes", hidden: "" });
  boxes.addEventListener("click", async () => {
    const open = boxList.hidden;
    boxes.setAttribute("aria-expanded", String(open));
    boxList.hidden = !open;
    if (!open) return;
    try {
      const mailboxes = await api("GET", "/api/users/" + encodeURIComponent(u.name) + "/mailboxes");
      boxList.replaceChildren(...mailboxes.map((m) =>
        el("li", {}, m.name + ": " + m.messages + " messages, " + m.unseen + " unseen")));
    } catch (err) { boxList.replaceChildren(el("li", { class: "error" }, err.message)); }
  });
  return el("li", { "data-user": u.name },
    el("strong", {}, u.name), el("span", { class: "muted" }, " · " + u.mailboxes + " mailboxes · " + u.messages + " messages"),
    el("div", {}, boxes), boxList, form, remove);
}

// A small SVG line plot of one peer's lag samples.
function lagPlot(peer, samples) {
  const figure = el("figure", { class: "plot", "data-peer": peer.device_id });
  const caption = el("figcaption", {}, peer.name + " (" + short(peer.device_id) + ")");
  const points = samples.filter((s) => s.lag_ms !== null);
  if (points.length === 0) {
    figure.append(caption, el("p", { class: "muted" }, "No lag measured yet (" + samples.length + " samples)."));
    return figure;
  }
  const W = 600, H = 160, PAD = 30;
  const t0 = points[0].t_ms, t1 = Math.max(points[points.length - 1].t_ms, t0 + 1);
  const maxLag = Math.max(1, ...points.map((s) => s.lag_ms));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Lag of ${peer.name}: ${points.length} samples, at most ${maxLag} ms, latest ${points[points.length - 1].lag_ms} ms`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  line.setAttribute("stroke-width", "2");
  line.setAttribute("points", points.map((s) =>
    `${PAD + (W - 2 * PAD) * (s.t_ms - t0) / (t1 - t0)},${H - PAD - (H - 2 * PAD) * s.lag_ms / maxLag}`).join(" "));
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("d", `M${PAD} ${PAD} V${H - PAD} H${W - PAD}`);
  axis.setAttribute("stroke", "#888"); axis.setAttribute("fill", "none");
  const label = (x, y, text) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "12"); t.textContent = text;
    return t;
  };
  svg.append(axis, line, label(2, PAD - 8, maxLag + " ms"), label(PAD, H - 8, new Date(t0).toLocaleTimeString()),
    label(W - PAD - 60, H - 8, new Date(t1).toLocaleTimeString()));
  figure.append(caption, svg);
  return figure;
}

// What each conflict kind of /api/conflicts means, for the list.
const CONFLICT_KINDS = {
  uid_rekey: "Message given a new UID",
  name_clash: "Two mailboxes with one name",
  delete_vs_arrival: "Mailbox deleted while mail arrived",
  concurrent_move: "Message moved to two mailboxes",
  duplicate_merged: "Duplicate delivery merged",
  keyring_split: "User has an identity from another device",
};

function conflictDetail(c) {
  const detail = $("#conflicts-detail");
  detail.replaceChildren();
  for (const side of c.sides || []) {
    detail.append(el("div", { class: "side" },
      el("h3", {}, (side.device_name || short(side.device)) + " · " + when(side.time_ms)),
      el("ul", {}, ...(side.events || []).map((e) => el("li", {}, e.summary || JSON.stringify(e))))));
  }
  detail.append(el("p", {}, "What the merge did: " + (c.resolution || "unknown")));
}

async function loadEvents() {
  const form = $("#events-form");
  const params = new URLSearchParams();
  for (const key of ["device", "user", "mailbox"]) {
    const v = form.elements[key].value.trim();
    if (v) params.set(key, v);
  }
  for (const [key, name] of [["since", "since_ms"], ["until", "until_ms"]]) {
    const v = form.elements[key].value;
    if (v) params.set(name, String(new Date(v).getTime()));
  }
  params.set("limit", "300");
  showError("#events-error");
  try {
    const events = await api("GET", "/api/events?" + params.toString());
    const body = $("#events-table tbody");
    body.replaceChildren(...events.map((e) => el("tr", {},
      el("td", {}, when(e.time_ms)), el("td", { class: "mono" }, short(e.origin) + ":" + e.seq),
      el("td", {}, e.summary), el("td", {}, e.user || ""), el("td", {}, e.mailbox || ""))));
  } catch (err) { showError("#events-error", err); }
}

async function download(path, fileName) {
  try {
    const text = await api("GET", path);
    const url = URL.createObjectURL(new Blob([text]));
    const a = el("a", { href: url, download: fileName });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (err) { showError("#clients-error", err); }
}

// --- forms ---------------------------------------------------------------------

function wire() {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("#login-token").value.trim();
    if (!token) { showError("#login-error", { message: "Enter the admin token." }); return; }
    localStorage.setItem(TOKEN_KEY, token);
    try {
      await api("GET", "/api/status");
      $("#login-token").value = ""; showError("#login-error");
      await route();
    } catch (err) {
      signOut(err.status === 401 ? "That token is not right: " + err.message : err.message);
    }
  });
  $("#logout").addEventListener("click", () => signOut());

  for (const radio of document.querySelectorAll("input[name=tls]")) {
    radio.addEventListener("change", () => { $("#setup-own").hidden = radio.value !== "own" || !radio.checked; });
  }
  $("#setup-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    showError("#setup-error");
    if (!f.user.value.trim()) { showError("#setup-error", { message: "Enter a login name." }); f.user.focus(); return; }
    if (f.password.value !== f.password2.value) {
      showError("#setup-error", { message: "The passwords do not match." }); f.password2.focus(); return;
    }
    const mode = f.querySelector("input[name=tls]:checked").value;
    const tls = mode === "own" ? { mode, cert_path: f.cert_path.value.trim(), key_path: f.key_path.value.trim() } : { mode };
    busy(f, true);
    try {
      const done = await api("POST", "/api/setup", { user: f.user.value.trim(), password: f.password.value, tls });
      f.reset();
      f.hidden = true;
      $("#setup-intro").hidden = true;
      $("#setup-done-text").textContent = "Set up: user " + done.user.name + " created with " + done.user.mailboxes + " mailboxes." + recoveryNote(done.user);
      $("#setup-snippet").textContent = done.config_snippet;
      $("#setup-snippet-box").hidden = !done.config_snippet;
      $("#setup-done").hidden = false;
      status.needs_setup = false;
      $("#nav").hidden = false;
    } catch (err) { showError("#setup-error", err); }
    busy(f, false);
  });

  $("#invite-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("#invite-error");
    const minutes = Number($("#invite-minutes").value);
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > 10080) {
      showError("#invite-error", { message: "Enter a whole number of minutes from 1 to 10080." }); return;
    }
    busy(ev.target, true);
    try {
      const invite = await api("POST", "/api/pair/invite", { expires_minutes: minutes });
      $("#invite-ticket").value = invite.ticket;
      $("#invite-expiry").textContent = "Expires " + when(invite.expires_ms) + ". It works once.";
      svgImage($("#invite-qr"), invite.qr_svg);
      $("#invite-result").hidden = false;
      $("#invite-ticket").focus();
      $("#invite-ticket").select();
    } catch (err) { showError("#invite-error", err); }
    busy(ev.target, false);
  });

  $("#join-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("#join-error"); $("#join-ok").textContent = "";
    const ticket = $("#join-ticket").value.trim();
    if (!ticket) { showError("#join-error", { message: "Paste the ticket from the other device." }); return; }
    busy(ev.target, true);
    $("#join-ok").textContent = "Contacting the other device…";
    try {
      const paired = await api("POST", "/api/pair/join", { ticket });
      $("#join-ok").textContent = "Paired with " + paired.name + " (" + short(paired.device_id) + ").";
      $("#join-ticket").value = "";
      await LOADERS.devices();
    } catch (err) { $("#join-ok").textContent = ""; showError("#join-error", err); }
    busy(ev.target, false);
  });

  $("#user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    showError("#user-error");
    busy(f, true);
    try {
      const user = await api("POST", "/api/users", { name: f.elements["name"].value.trim(), password: f.elements["password"].value });
      f.reset(); flash("Added " + user.name + "." + recoveryNote(user));
      await LOADERS.users();
    } catch (err) { showError("#user-error", err); }
    busy(f, false);
  });

  $("#backup-now").addEventListener("click", async (ev) => {
    const button = ev.target;
    button.disabled = true;
    try {
      const made = await api("POST", "/api/backups");
      flash("Wrote backup " + made.file + ".");
      await LOADERS.backups();
    } catch (err) { $("#backups-message").textContent = err.message; }
    button.disabled = false;
  });

  $("#clients-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("#clients-error");
    const user = $("#clients-user").value;
    if (!user) { showError("#clients-error", { message: "Add a user first." }); return; }
    try {
      const s = await api("GET", "/api/client-setup?user=" + encodeURIComponent(user));
      facts($("#clients-facts"), [
        ["Server", s.host], ["User name", s.user],
        ["IMAP over TLS", s.imaps_port ? "port " + s.imaps_port + " (SSL/TLS)" : "off"],
        ["IMAP with STARTTLS", s.imap_port ? "port " + s.imap_port + " (STARTTLS)" : "off"],
        ["Password", "the user's password"],
      ]);
      svgImage($("#clients-qr"), s.qr_svg);
      $("#clients-result").hidden = false;
    } catch (err) { showError("#clients-error", err); }
  });
  const q = () => "?user=" + encodeURIComponent($("#clients-user").value);
  $("#clients-autoconfig").addEventListener("click", () => download("/api/client-setup/autoconfig.xml" + q(), "config-v1.1.xml"));
  $("#clients-mobileconfig").addEventListener("click", () => download("/api/client-setup/roost.mobileconfig" + q(), "roost.mobileconfig"));

  $("#events-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadEvents(); });
  window.addEventListener("hashchange", route);
}

// The desktop app opens the UI at #token=...: keep the token, drop it from the address.
if (location.hash.startsWith("#token=")) {
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice("#token=".length)));
  history.replaceState(null, "", location.pathname + location.search + "#dashboard");
}
wire();
route();
