// The session panel: who is signed in, the access token's remaining life, and
// the in-band refresh that renews it before it runs out.
//
// The access token sits in an HttpOnly cookie this script cannot read. Before
// it expires the page asks POST /auth/refresh (the refresh cookie, Path=/auth,
// goes along), which sets a new cookie and also returns the new access token;
// the page hands that token to the live socket with `auth:refresh`, so the
// connection moves to it without reconnecting. The token is not kept.

import { $, clock, describe, duration } from "./ui.js";

const REFRESH_LEAD_MAX = 60;  // seconds before expiry; a third of the life for short tokens
const ACK_TIMEOUT_MS = 5000;
const RETRY_S = 3;  // after a refusal that says "later" (429, 503) or no answer

let who = null;           // {sub, roles, expires_at}
let life = 1;             // seconds the current token had when the page learnt of it
let refreshAt = null;     // epoch seconds of the next in-band refresh
let refreshing = false;
let ticker = null;
let refreshTimer = null;
let socketOf = () => null;

/** Start showing `signedIn` and keep its token fresh on the socket `getSocket()` returns. */
export function start(signedIn, getSocket) {
  stop();
  who = { sub: signedIn.sub, roles: signedIn.roles, expires_at: signedIn.expires_at };  // never a token
  socketOf = getSocket;
  $("who").textContent = who.sub;
  $("roles").textContent = who.roles.length ? who.roles.join(", ") : "none";
  $("refresh-log").replaceChildren();
  setExpiry(who.expires_at);
  ticker = setInterval(render, 500);
}

export function stop() {
  clearInterval(ticker);
  clearTimeout(refreshTimer);
  ticker = refreshTimer = refreshAt = null;
  who = null;
}

export function user() {
  return who;
}

export function isAdmin() {
  return who !== null && who.roles.includes("admin");
}

/**
 * POST /auth/refresh: a new access cookie from the refresh cookie.
 * Resolves to the new session (with `access_token`) or null when refused.
 */
export async function renew() {
  // One refresh at a time across this origin's tabs: a refresh token is good for one use,
  // and two tabs presenting the same cookie at once would look like a stolen token
  // (the server then ends the session). The second tab waits and sends the new cookie.
  const post = () => fetch("/auth/refresh", { method: "POST" });
  const res = navigator.locks ? await navigator.locks.request("wsgate-refresh", post) : await post();
  const body = await res.json().catch(() => null);
  if (!res.ok || !body || body.error) {
    note("renewal refused: " + (body && body.error ? describe(body.error) : "HTTP " + res.status), "error");
    return null;
  }
  return body;
}

/** Renew over HTTP, then move the live socket to the new token with `auth:refresh`. */
export async function refreshInBand() {
  if (refreshing || who === null) return false;
  refreshing = true;
  render();
  try {
    const renewed = await renew();
    if (renewed === null) return false;
    const socket = socketOf();
    if (!socket || !socket.connected) {
      setExpiry(renewed.expires_at);  // the cookie is new; the next connection uses it
      note("renewed the cookie (no live socket to move)");
      return true;
    }
    let ack;
    try {
      ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("auth:refresh", { token: renewed.access_token });
    } catch {
      note("auth:refresh got no answer", "error");
      retrySoon();
      return false;
    }
    if (ack && ack.error) {
      note("auth:refresh refused: " + describe(ack.error), "error");
      if (ack.error.status === 429 || ack.error.status === 503) retrySoon();  // limited or unavailable: later
      return false;
    }
    setExpiry(ack.expires_at);
    note("in-band refresh: the live socket now runs on a new token, valid until " + clock(ack.expires_at));
    return true;
  } finally {
    refreshing = false;
    render();
  }
}

/** Try again in a few seconds while the token still has that long to live. */
function retrySoon() {
  if (who === null || who.expires_at - Date.now() / 1000 <= RETRY_S) return;
  refreshAt = Date.now() / 1000 + RETRY_S;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshInBand, RETRY_S * 1000);
}

function setExpiry(expiresAt) {
  who.expires_at = expiresAt;
  const remaining = expiresAt - Date.now() / 1000;
  life = Math.max(1, remaining);
  refreshAt = expiresAt - Math.min(REFRESH_LEAD_MAX, life / 3);
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshInBand, Math.max(0, (refreshAt - Date.now() / 1000) * 1000));
  render();
}

function render() {
  if (who === null) return;
  const now = Date.now() / 1000;
  const remaining = who.expires_at - now;
  const meter = $("life-meter");
  meter.max = life;
  meter.low = life / 3;
  meter.high = (life * 2) / 3;
  meter.optimum = life;
  meter.value = Math.max(0, remaining);
  $("life").textContent = remaining > 0
    ? "expires in " + duration(remaining) + " (at " + clock(who.expires_at) + ")"
    : "expired at " + clock(who.expires_at);
  $("next-refresh").textContent = refreshing
    ? "renewing now\u2026"
    : refreshAt === null ? "none planned" : refreshAt > now ? "in " + duration(refreshAt - now) : "due";
}

function note(text, kind) {
  const li = document.createElement("li");
  if (kind) li.className = kind;
  const time = document.createElement("time");
  time.textContent = clock(Date.now() / 1000);
  li.append(time, document.createTextNode(text));
  const log = $("refresh-log");
  log.prepend(li);
  while (log.children.length > 5) log.lastElementChild.remove();
}
