// Small DOM helpers shared by the page's modules. Every server-provided text
// goes through textContent: chat text and error messages are never parsed as HTML.

export const $ = (id) => document.getElementById(id);

/** The page's connection states; exactly one holds at a time (shown in the header). */
export const State = Object.freeze({
  SIGNED_OUT: "signed-out",
  CONNECTING: "connecting",
  CONNECTED: "connected",
  EXPIRED: "expired",
  REVOKED: "revoked",
  REFUSED: "refused",
  DISCONNECTED: "disconnected",
});

let current = State.SIGNED_OUT;

/** Show `state`, with a detail such as the transport or the server's reason code. */
export function setState(state, detail) {
  current = state;
  $("conn").dataset.state = state;
  $("conn-text").textContent = detail ? state + " \u00b7 " + detail : state;
}

export function state() {
  return current;
}

/** One line in the chat log; `kind` is "system", "error" or "announcement". */
export function line(text, kind, from) {
  const li = document.createElement("li");
  if (kind) li.className = kind;
  const time = document.createElement("time");
  time.textContent = clock(Date.now() / 1000);
  li.appendChild(time);
  if (from) {
    const who = document.createElement("b");
    who.textContent = from;
    li.appendChild(who);
  }
  li.appendChild(document.createTextNode(text));
  const list = $("messages");
  list.appendChild(li);
  while (list.children.length > 200) list.firstElementChild.remove();  // bounded, like the server's queues
  li.scrollIntoView({ block: "nearest" });
}

/** "HH:MM:SS" of an epoch time in seconds, in the reader's time zone. */
export function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

/** "m:ss" of a duration in seconds (never negative). */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

/** The contract's error object as one line: status, code, message, then each failing field. */
export function describe(error) {
  let text = error.status + " " + error.code + ": " + error.message;
  for (const [field, reason] of Object.entries(error.fields || {})) {
    text += " \u2014 " + field + ": " + reason;
  }
  return text;
}
