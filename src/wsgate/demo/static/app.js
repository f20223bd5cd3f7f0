// The demo client: cookie login, then a Socket.IO connection that the cookie authenticates.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let socket = null;
  let room = null;

  function line(text, cls) {
    const li = document.createElement("li");
    li.textContent = text;  // textContent: chat text is never parsed as HTML
    if (cls) li.className = cls;
    $("messages").appendChild(li);
    li.scrollIntoView({ block: "end" });
  }

  function showChat(who) {
    $("login").hidden = true;
    $("chat").hidden = false;
    $("who").textContent = who.sub + (who.roles.length ? " (" + who.roles.join(", ") + ")" : "");
  }

  function connect() {
    socket = io({ transports: ["websocket", "polling"], withCredentials: true });
    socket.on("connect", () => {
      $("status").textContent = "connected";
      socket.emit("whoami", null, (me) => { if (me && !me.error) showChat(me); });
    });
    socket.on("connect_error", (err) => {
      $("status").textContent = "refused: " + ((err.data && err.data.code) || err.message);
    });
    socket.on("disconnect", (reason) => { $("status").textContent = "disconnected (" + reason + ")"; });
    socket.on("message", (m) => line(m.from + ": " + m.text));
    socket.on("announcement", (m) => line("announcement: " + m.text, "system"));
    socket.on("exception", (e) => line("error: " + e.error.message, "error"));
    // The access cookie is HttpOnly, so the page cannot hand a new token to
    // auth:refresh; it renews the cookie over HTTP and reconnects instead.
    socket.on("auth:expired", async () => {
      const res = await fetch("/auth/refresh", { method: "POST" });
      if (!res.ok) { line("session expired, sign in again", "system"); return; }
      socket.once("disconnect", () => socket.connect());
    });
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const res = await fetch("/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    if (!res.ok) { $("login-error").textContent = "Sign-in failed"; return; }
    $("login-error").textContent = "";
    showChat(await res.json());
    connect();
  });

  $("join").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = new FormData(ev.target).get("room");
    socket.emit("join", { room: name }, (r) => {
      if (r.error) { line("join failed: " + r.error.message, "error"); return; }
      room = r.room;
      line("joined " + room, "system");
    });
  });

  $("say").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!room) { line("join a room first", "error"); return; }
    const input = ev.target.elements.text;
    socket.emit("say", { room: room, text: input.value }, (r) => {
      if (r.error) line("not sent: " + r.error.message, "error");
    });
    input.value = "";
  });

  $("logout").addEventListener("click", async () => {
    await fetch("/auth/logout", { method: "POST" });
    if (socket) socket.disconnect();
    $("chat").hidden = true;
    $("login").hidden = false;
    $("status").textContent = "signed out";
  });

  // Already signed in (cookie still valid)? Try the socket straight away.
  fetch("/auth/refresh", { method: "POST" }).then((res) => {
    if (res.ok) res.json().then((who) => { showChat(who); connect(); });
  });
})();
