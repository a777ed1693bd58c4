// The fleet dashboard: reads the admin API with the token the operator gives (kept for this
// browser tab only), every few seconds. Everything shown is set as text, never as markup:
// serials, messages and addresses come from devices.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 10000;
const TOKEN_KEY = "sztp-token";
const STATUSES = ["not-seen", "in-progress", "rebooting", "complete", "failed", "stalled"];
const EXPIRY_KINDS = ["voucher", "owner-certificate", "trust-anchor", "tls-certificate", "ldevid"];
let timer = null;
let shownDevice = null;

function $(id) { return document.getElementById(id); }

async function api(path) {
  const response = await fetch(API + path, {
    headers: { "Authorization": "Bearer " + sessionStorage.getItem(TOKEN_KEY), "Accept": "application/json" },
    cache: "no-store",
  });
  if (response.status === 401) { throw new LoginNeeded(); }
  if (!response.ok) { throw new Error(path + ": HTTP " + response.status); }
  return response.json();
}

class LoginNeeded extends Error {}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) { td.className = className; }
  row.appendChild(td);
  return td;
}

function serialButton(row, serial) {
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "serial";
  button.textContent = serial;
  button.addEventListener("click", () => showDevice(serial));
  td.appendChild(button);
  row.appendChild(td);
}

function fill(tableId, items, addRow) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren();
  for (const item of items) {
    const row = document.createElement("tr");
    addRow(row, item);
    body.appendChild(row);
  }
  if (!items.length) {
    const row = document.createElement("tr");
    cell(row, "none").colSpan = 6;
    body.appendChild(row);
  }
}

function showFunnel(counts, devices) {
  const list = $("funnel");
  list.replaceChildren();
  for (const status of STATUSES) {
    const item = document.createElement("li");
    item.className = status + (counts[status] ? " nonzero" : "");
    item.dataset.status = status;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = String(counts[status] || 0);
    item.append(count, document.createTextNode(status));
    list.appendChild(item);
  }
  const total = document.createElement("li");
  total.dataset.status = "total";
  const count = document.createElement("span");
  count.className = "count";
  count.textContent = String(devices);
  total.append(count, document.createTextNode("devices"));
  list.appendChild(total);
}

function showGroups(tableId, field, groups) {
  const table = $(tableId);
  const head = document.createElement("tr");
  for (const title of [field, ...STATUSES]) {
    const th = document.createElement("th");
    th.textContent = title;
    if (title !== field) { th.className = "number"; }
    head.appendChild(th);
  }
  table.querySelector("thead").replaceChildren(head);
  fill(tableId, groups, (row, group) => {
    cell(row, group.value === null ? "(none)" : group.value);
    for (const status of STATUSES) { cell(row, group.counts[status] || 0, "number"); }
  });
}

function elapsed(from, to) {
  const seconds = (Date.parse(to) - Date.parse(from)) / 1000;
  if (seconds < 60) { return seconds.toFixed(1) + " s"; }
  if (seconds < 3600) { return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s"; }
  return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " min";
}

async function showDevice(serial) {
  shownDevice = serial;
  const [status, progress] = await Promise.all([
    api("/devices/" + encodeURIComponent(serial) + "/status"),
    api("/devices/" + encodeURIComponent(serial) + "/progress"),
  ]);
  $("device-title").textContent = "Device " + serial;
  $("device-summary").textContent = status.status + ", " + status.attempts + " attempt(s)";
  const holder = $("device-attempts");
  holder.replaceChildren();
  for (const attempt of progress.attempts) {
    const reports = attempt.reports;
    const title = document.createElement("h3");
    const span = reports.length ? elapsed(reports[0].received_at, reports[reports.length - 1].received_at) : "";
    title.textContent = "Attempt " + attempt.attempt + ", " + span + " from first to last report";
    const table = document.createElement("table");
    table.className = "timeline";
    const head = document.createElement("tr");
    for (const name of ["At", "After", "Step", "Message"]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    }
    table.appendChild(head);
    reports.forEach((report, index) => {
      const row = document.createElement("tr");
      cell(row, report.received_at);
      cell(row, index ? "+" + elapsed(reports[index - 1].received_at, report.received_at) : "");
      cell(row, report.progress_type);
      cell(row, report.message, "message");
      table.appendChild(row);
    });
    holder.append(title, table);
  }
  $("device").hidden = false;
  $("device-close").focus();
}

async function refresh() {
  try {
    const [status, by, refused] = await Promise.all([
      api("/status"),
      api("/status/by?field=profile&field=model&field=site"),
      api("/events?refused=true&limit=50"),
    ]);
    showFunnel(status.counts, status.devices);
    for (const counted of by.by) { showGroups("by-" + counted.field, counted.field, counted.groups); }
    fill("failed", status.recent_errors, (row, report) => {
      serialButton(row, report.serial);
      cell(row, report.progress_type);
      cell(row, report.message, "message");
      cell(row, report.received_at);
    });
    fill("stalled", status.stalled, (row, entry) => {
      serialButton(row, entry.serial);
      cell(row, entry.last_report.progress_type);
      cell(row, entry.last_report.received_at);
    });
    fill("refused", refused.events, (row, event) => {
      cell(row, event.at);
      cell(row, event.rpc);
      cell(row, event.serial === null ? "" : event.serial + (event.authenticated ? "" : " (claimed)"));
      cell(row, event.remote);
      cell(row, event.refusal + (event.detail ? " (" + event.detail + ")" : ""), "message");
    });
    fill("expiring", status.expiring.soonest, (row, expiry) => {
      cell(row, expiry.kind);
      cell(row, expiry.name);
      cell(row, expiry.not_after + (expiry.expired ? " (expired)" : ""));
    });
    const earlier = EXPIRY_KINDS.some((kind) => status.expiring.earlier[kind]);
    const weeks = [
      ...(earlier ? [{ week: "expired before", counts: status.expiring.earlier }] : []),
      ...status.expiring.calendar,
    ];
    fill("calendar", weeks, (row, week) => {
      cell(row, week.week);
      for (const kind of EXPIRY_KINDS) { cell(row, week.counts[kind] || 0, "number"); }
    });
    if (shownDevice !== null && !$("device").hidden) { await showDevice(shownDevice); }
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    if (error instanceof LoginNeeded) { logOut("The token was refused."); return; }
    $("updated").textContent = "not updated: " + error.message;
  }
}

function logIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function logOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    logIn(token);
  });
  $("logout").addEventListener("click", () => logOut(""));
  $("device-close").addEventListener("click", () => { $("device").hidden = true; shownDevice = null; });
  if (sessionStorage.getItem(TOKEN_KEY)) { logIn(sessionStorage.getItem(TOKEN_KEY)); } else { $("token").focus(); }
});
