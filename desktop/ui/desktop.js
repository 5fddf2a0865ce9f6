// Device list of the Roost desktop app. Every action is a Tauri command
// (thin wrappers over the roost_desktop library); opening a device loads
// that device's own web UI in this window.
"use strict";

const invoke = window.__TAURI__.core.invoke;
const $ = (sel) => document.querySelector(sel);

function say(message) { $("#message").textContent = message || ""; $("#error").textContent = ""; }
function fail(err) { $("#message").textContent = ""; $("#error").textContent = String(err); }

async function refresh() {
  const devices = await invoke("list_devices");
  const list = $("#devices");
  list.replaceChildren();
  for (const d of devices) {
    const li = document.createElement("li");
    li.dataset.address = d.address;
    const name = document.createElement("strong");
    name.textContent = d.name + " (" + d.address + ") ";
    const open = document.createElement("button");
    open.type = "button"; open.textContent = "Open " + d.name;
    open.addEventListener("click", async () => {
      try { window.location.href = await invoke("device_url", { address: d.address }); } catch (e) { fail(e); }
    });
    const forget = document.createElement("button");
    forget.type = "button"; forget.textContent = "Forget";
    forget.setAttribute("aria-label", "Forget " + d.name);
    forget.addEventListener("click", async () => {
      try { await invoke("remove_device", { address: d.address }); say("Forgot " + d.name + "."); await refresh(); }
      catch (e) { fail(e); }
    });
    li.append(name, open, forget);
    list.append(li);
  }
  $("#no-devices").hidden = devices.length !== 0;
}

$("#add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  say("Checking…");
  try {
    const d = await invoke("add_device", { address: $("#address").value, token: $("#token").value });
    $("#token").value = "";
    say("Added " + d.name + ".");
    await refresh();
  } catch (e) { fail(e); }
});

$("#local-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const d = await invoke("add_local_device", { dataDir: $("#data-dir").value || null });
    say("Added " + d.name + " (this computer).");
    await refresh();
  } catch (e) { fail(e); }
});

$("#local-setup").addEventListener("click", async () => {
  try { say(await invoke("setup_local", { dataDir: $("#data-dir").value })); } catch (e) { fail(e); }
});

refresh().catch(fail);
