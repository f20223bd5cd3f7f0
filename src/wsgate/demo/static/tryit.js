// The "try it" panel: each button attempts, from this page, what an attacker
// could, and shows the answer the server gave. Nothing here is checked by the
// page itself: every refusal shown is the server's.

import { $, describe } from "./ui.js";
import { isAdmin } from "./session.js";

const ACK_TIMEOUT_MS = 10000;
const MAX_FLOOD = 2000;  // the page's own bound, whatever the server's rate limit

let limits = null;

async function serverLimits() {
  if (limits === null) {
    const res = await fetch("/demo/limits");
    limits = await res.json();
  }
  return limits;
}

function ask(socket, event, body) {
  return socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, body);
}

// Verdicts: "stopped" (the server refused, as it should), "allowed" (this
// user may do it), "failed" (the attack got through, or the test could not run).
const stopped = (text) => ({ verdict: "stopped", text });
const allowed = (text) => ({ verdict: "allowed", text });
const failed = (text) => ({ verdict: "failed", text });

const attacks = {
  async forge(socket) {
    const ack = await ask(socket, "admin:broadcast", { text: "a forged announcement" });
    if (ack && ack.error) return stopped(describe(ack.error));
    return isAdmin()
      ? allowed("delivered: you hold the admin role, so this one is yours to send")
      : failed("accepted without the admin role");
  },

  async oversize(socket) {
    const { max_message_bytes: max } = await serverLimits();
    const ack = await ask(socket, "echo", { text: "x".repeat(max + 1) });
    if (ack && ack.error) return stopped(describe(ack.error) + " (sent " + (max + 1) + " bytes of text)");
    return failed("accepted a message over the limit");
  },

  async flood(socket) {
    const { rate_limit: rate } = await serverLimits();
    const count = Math.min(MAX_FLOOD, Math.ceil(rate * 2) + 20);
    const replies = await Promise.all(
      Array.from({ length: count }, () => ask(socket, "ping", null).catch(() => null)),
    );
    const accepted = replies.filter((r) => r === "pong").length;
    const limited = replies.filter((r) => r && r.error && r.error.status === 429);
    if (limited.length === 0) return failed("all " + accepted + " of " + count + " events accepted");
    return stopped(
      describe(limited[0].error) + " \u2014 " + accepted + " of " + count + " events accepted, " +
      limited.length + " refused (the burst is " + Math.round(rate * 2) + " events, refilled at " + rate + "/s)",
    );
  },

  async "bad-room"(socket) {
    const ack = await ask(socket, "join", { room: "../admin" });
    if (ack && ack.error) return stopped(describe(ack.error));
    return failed("joined " + JSON.stringify(ack));
  },

  async expired() {
    const res = await fetch("/auth/expired-sample", { method: "POST" });
    const sample = await res.json();
    if (!res.ok) return failed("no sample: " + describe(sample.error));
    // A second socket of its own: the handshake `auth` object is read before the cookie.
    const probe = io({ auth: { token: sample.token }, forceNew: true, reconnection: false, transports: ["websocket"] });
    try {
      return await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(failed("no answer to the connect")), ACK_TIMEOUT_MS);
        probe.on("connect", () => { clearTimeout(timer); resolve(failed("connected with an expired token")); });
        probe.on("connect_error", (err) => {
          clearTimeout(timer);
          const code = err.data && err.data.code;
          if (!code) { resolve(failed("the connection failed: " + err.message)); return; }
          resolve(stopped("connect refused: " + code + ": " + err.message + " (expired at " +
            new Date(sample.expired_at * 1000).toLocaleTimeString([], { hour12: false }) + ")"));
        });
      });
    } finally {
      probe.close();
    }
  },
};

/** Wire the buttons; `getSocket()` is the page's live socket. */
export function setup(getSocket) {
  for (const row of $("tryit").querySelectorAll("li[data-attack]")) {
    const button = row.querySelector("button");
    const output = row.querySelector("output");
    button.addEventListener("click", async () => {
      const socket = getSocket();
      const needsSocket = row.dataset.attack !== "expired";
      button.disabled = true;
      row.dataset.result = "running";
      output.textContent = "trying\u2026";
      let result;
      try {
        result = needsSocket && !(socket && socket.connected)
          ? failed("not connected")
          : await attacks[row.dataset.attack](socket);
      } catch (err) {
        result = failed("no answer: " + err.message);
      } finally {
        button.disabled = false;
      }
      row.dataset.result = result.verdict;
      output.textContent = result.text;
    });
  }
}

/** Forget earlier results (a new sign-in starts with a clean panel). */
export function reset() {
  for (const row of $("tryit").querySelectorAll("li[data-attack]")) {
    delete row.dataset.result;
    row.querySelector("output").textContent = "";
  }
}
