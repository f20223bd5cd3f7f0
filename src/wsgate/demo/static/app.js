// The demo page: cookie sign-in, then one Socket.IO connection that the
// cookie authenticates, a chat on it, the session panel and the "try it" panel.
// Only the standard socket.io-client API is used.

import { $, State, setState, state, line, describe } from "./ui.js";
import * as session from "./session.js";
import * as tryit from "./tryit.js";

const ACK_TIMEOUT_MS = 10000;

let socket = null;
let room = null;
let signingOut = false;
let lastDrop = null;  // the reason of the last unplanned disconnect, until connected again

function showLogin(notice) {
  $("app").hidden = true;
  $("login-card").hidden = false;
  $("ended").hidden = !notice;
  $("ended").textContent = notice || "";
}

function start(who) {
  $("login-card").hidden = true;
  $("app").hidden = false;
  $("messages").replaceChildren();
  $("broadcast").hidden = !who.roles.includes("admin");
  tryit.reset();
  room = null;
  $("room-now").textContent = "";
  session.start(who, () => socket);
  connect();
}

/** The session is over (expired or revoked and not renewable): back to the sign-in form. */
function end(reason) {
  if (socket) socket.close();
  socket = null;
  session.stop();
  showLogin("Your session ended (" + reason + "). Sign in again.");
}

function connect() {
  setState(State.CONNECTING);
  // A reconnection waits 1 to 3 s, so the reason of a drop stays readable a moment.
  socket = io({ transports: ["websocket", "polling"], withCredentials: true, reconnectionDelay: 2000 });

  socket.on("connect", () => {
    lastDrop = null;
    setState(State.CONNECTED, socket.io.engine.transport.name);
    line("connected as " + session.user().sub, "system");
    if (room) join(room);  // a new connection starts in no room
  });

  socket.on("connect_error", async (err) => {
    const code = err.data && err.data.code;
    if (!code) {  // the transport failed; the client retries by itself
      setState(State.CONNECTING, "retrying after " + (lastDrop || err.message));
      return;
    }
    setState(State.REFUSED, code);
    line("connection refused: " + code + " (" + err.message + ")", "error");
    if (code === "token_expired" && (await session.renew())) {
      socket.connect();  // the renewed cookie goes with the new handshake
      return;
    }
    if (code === "unavailable") {  // the server cannot check the session now: retry later
      setTimeout(() => socket && socket.connect(), 2000);
      return;
    }
    end(code);
  });

  socket.on("auth:expired", (data) => {
    setState(State.EXPIRED, data.reason || "token_expired");
    line("the server says the token expired", "error");
    if (data.grace > 0) session.refreshInBand().then((ok) => ok && reconnected());
  });

  socket.on("auth:revoked", (data) => {
    setState(State.REVOKED, data.reason || "token_revoked");
    line("the server says the token was revoked", "error");
  });

  socket.on("disconnect", async (reason) => {
    if (signingOut) return;
    const now = state();
    if (now === State.EXPIRED || now === State.REVOKED) {
      line("disconnected by the server (" + reason + ")", "error");
      if (now === State.REVOKED) { end("token_revoked"); return; }
      if (await session.renew()) {
        line("renewed the token over HTTP; reconnecting", "system");
        setState(State.CONNECTING, "with a renewed token");
        socket.connect();
      } else {
        end("token_expired");
      }
      return;
    }
    lastDrop = reason;
    setState(State.DISCONNECTED, reason);
    line("disconnected: " + reason, "error");
  });

  socket.io.on("reconnect_attempt", (attempt) =>
    setState(State.CONNECTING, "attempt " + attempt + (lastDrop ? " after " + lastDrop : "")));
  socket.on("message", (m) => line(m.text, null, m.from + " in " + m.room));
  socket.on("announcement", (m) => line(m.text, "announcement", "announcement"));
  socket.on("exception", (e) => line(describe(e.error), "error"));
}

function reconnected() {
  if (socket && socket.connected) setState(State.CONNECTED, socket.io.engine.transport.name);
}

/** An error object's fields under the form that sent them, and the whole error in the log. */
function showFieldError(input, error, where) {
  const reason = error.fields && error.fields[input.name];
  input.setAttribute("aria-invalid", reason ? "true" : "false");
  where.textContent = reason ? input.name + ": " + reason : describe(error);
}

async function join(name) {
  const input = $("room");
  let reply;
  try {
    reply = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("join", { room: name });
  } catch {
    line("join: no answer", "error");
    return;
  }
  if (reply.error) {
    showFieldError(input, reply.error, $("join-error"));
    line("join refused: " + describe(reply.error), "error");
    return;
  }
  input.removeAttribute("aria-invalid");
  $("join-error").textContent = "";
  if (room && room !== reply.room) socket.emit("leave", { room });
  room = reply.room;
  $("room-now").textContent = "in " + room;
  line("joined " + room, "system");
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const res = await fetch("/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    $("login-error").textContent = body && body.error ? body.error.message : "Sign-in failed";
    return;
  }
  $("login-error").textContent = "";
  ev.target.reset();
  signingOut = false;
  start(body);
});

// The browser's constraint validation (the room field's pattern) runs before
// this handler: a name the server would refuse is not even sent from the form.
$("join").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (socket && socket.connected) join(new FormData(ev.target).get("room"));
});

$("say").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!room) { line("join a room first", "error"); return; }
  const input = ev.target.elements.text;
  const text = input.value;
  input.value = "";
  try {
    const reply = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("say", { room, text });
    if (reply.error) line("not sent: " + describe(reply.error), "error");
  } catch {
    line("not sent: no answer", "error");
  }
});

$("broadcast").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.text;
  const text = input.value;
  input.value = "";
  try {
    const reply = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("admin:broadcast", { text });
    if (reply.error) line("broadcast refused: " + describe(reply.error), "error");
  } catch {
    line("broadcast: no answer", "error");
  }
});

$("logout").addEventListener("click", async () => {
  signingOut = true;
  if (socket) socket.disconnect();
  socket = null;
  session.stop();
  await fetch("/auth/logout", { method: "POST" });
  setState(State.SIGNED_OUT);
  showLogin();
});

tryit.setup(() => socket);

// Already signed in? GET /auth/session answers 200 either way, so a signed-out
// visitor's page load leaves no 401 in the console.
(async () => {
  const res = await fetch("/auth/session");
  const who = res.ok ? await res.json() : { signed_in: false };
  if (who.signed_in) { start(who); return; }
  if (who.refreshable) {
    const renewed = await session.renew();
    if (renewed) { start(renewed); return; }
  }
  showLogin();
})();
