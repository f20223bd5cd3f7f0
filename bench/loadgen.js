#!/usr/bin/env node
// Load generator for the wsgate benchmark (issue 5).
//
// Why Node: the server under test is one Python process on one core; a Python
// client doing the same protocol work would need about as much CPU as the
// server and would become the limit. socket.io-client on Node is the client
// most real deployments face, and it is cheap per message. Its own CPU use over
// each measured window is reported next to every figure, so a reader can see
// whether it was the limit (near 100% of one core means: suspect the client).
//
// Usage: node loadgen.js CONFIG.json
// The config names the scenario and its bounds (see run.py). Every loop is
// bounded by a count and a deadline, and a hard timer ends the process in any
// case. Output: one JSON object per line on stdout:
//   {"event": "measure_start"} / {"event": "measure_end"}  (the harness samples server CPU there)
//   {"event": "ready", ...}   (idle scenario: connections are up; write a line to stdin to release)
//   {"event": "result", ...}  (last line)
"use strict";

const fs = require("fs");
const { io } = require("socket.io-client");
const WebSocket = require("ws");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const tokens = cfg.tokensFile ? JSON.parse(fs.readFileSync(cfg.tokensFile, "utf8")) : [];

// Hard stop: whatever happens, this process ends by itself.
const hardStop = setTimeout(() => {
  emit({ event: "result", scenario: cfg.scenario, error: "hard timeout" });
  process.exit(2);
}, cfg.hardTimeoutMs || 120000);
hardStop.unref();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function nowMs() {
  return Number(process.hrtime.bigint()) / 1e6;
}

function cpuMark() {
  return { cpu: process.cpuUsage(), t: nowMs() };
}

// Percent of one core this process used between two marks.
function cpuPercent(a, b) {
  const us = b.cpu.user - a.cpu.user + (b.cpu.system - a.cpu.system);
  const wallUs = (b.t - a.t) * 1000;
  return wallUs > 0 ? (100 * us) / wallUs : 0;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function latencySummary(samples, n) {
  const arr = samples.subarray(0, n).slice().sort();
  return {
    p50_ms: percentile(arr, 50),
    p99_ms: percentile(arr, 99),
    max_ms: n ? arr[n - 1] : null,
  };
}

// A growable Float64Array: latencies without per-sample object allocation.
class Samples {
  constructor(cap) {
    this.buf = new Float64Array(cap);
    this.n = 0;
  }
  push(v) {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = v;
  }
}

// Two clients speak the same protocol to the server, chosen by cfg.client:
//
// - "socketio": the npm socket.io-client, as an application would use it.
// - "lean" (default): Socket.IO v5 over Engine.IO v4 on a bare `ws` WebSocket,
//   about 70 lines below. Why: socket.io-client spends ~50 µs of CPU per echo
//   round trip and ~0.8 ms per handshake here, so one Node process would
//   saturate at about 2x the python-socketio baseline and hide any gain past
//   that. The lean client sends the very same frames (same upgrade request,
//   cookie and Origin headers, "40" CONNECT, "42<id>[...]" events, "43<id>"
//   acks, pong on ping), so the servers cannot tell them apart, and costs a
//   fraction of it. run.py --client socketio re-runs any scenario with the
//   npm client to cross-check.
//
// Both give the same small interface: emit(event, data, cb), on(event, fn),
// disconnect(), connected.

class SioAdapter {
  constructor(s) {
    this.s = s;
  }
  get connected() {
    return this.s.connected;
  }
  emit(event, data, cb) {
    if (data === undefined) this.s.emit(event, cb);
    else this.s.emit(event, data, cb);
  }
  on(event, fn) {
    this.s.on(event, fn);
  }
  disconnect() {
    this.s.disconnect();
  }
}

function connectSocketio(token) {
  return new Promise((resolve, reject) => {
    const s = io(cfg.url, {
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
      timeout: cfg.connectTimeoutMs || 10000,
      origin: cfg.origin,
      extraHeaders: { cookie: "access_token=" + token },
      perMessageDeflate: cfg.perMessageDeflate === true ? { threshold: 1024 } : false,
    });
    s.once("connect", () => resolve(new SioAdapter(s)));
    s.once("connect_error", (err) => {
      s.close();
      const code = err && err.data && err.data.code ? err.data.code : err && err.message;
      reject(new Error(String(code || "connect_error")));
    });
  });
}

class LeanSocket {
  constructor(ws) {
    this.ws = ws;
    this.connected = false;
    this.nextId = 0;
    this.acks = new Map();
    this.handlers = new Map();
  }
  emit(event, data, cb) {
    const payload = JSON.stringify(data === undefined ? [event] : [event, data]);
    if (cb) {
      const id = this.nextId++;
      this.acks.set(id, cb);
      this.ws.send("42" + id + payload);
    } else {
      this.ws.send("42" + payload);
    }
  }
  on(event, fn) {
    this.handlers.set(event, fn);
  }
  disconnect() {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send("41");
    this.connected = false;
    this.ws.close();
  }
  // One Engine.IO packet per WebSocket text frame; Socket.IO packets inside "4".
  onFrame(text) {
    const eio = text.charCodeAt(0);
    if (eio === 50 /* "2" ping */) {
      this.ws.send("3");
      return;
    }
    if (eio !== 52 /* "4" message */) return;
    const type = text.charCodeAt(1);
    if (type === 50 /* "2" EVENT */ || type === 51 /* "3" ACK */) {
      let i = 2;
      let id = -1;
      while (i < text.length) {
        const c = text.charCodeAt(i);
        if (c < 48 || c > 57) break;
        id = (id < 0 ? 0 : id * 10) + (c - 48);
        i++;
      }
      const args = JSON.parse(text.slice(i));
      if (type === 51) {
        const cb = this.acks.get(id);
        if (cb) {
          this.acks.delete(id);
          cb(args[0]);
        }
      } else {
        const fn = this.handlers.get(args[0]);
        if (fn) fn(args[1]);
      }
    } else if (type === 49 /* "1" DISCONNECT */) {
      this.connected = false;
    }
  }
}

function connectLean(token) {
  return new Promise((resolve, reject) => {
    const url = cfg.url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
    const ws = new WebSocket(url, {
      origin: cfg.origin,
      headers: { cookie: "access_token=" + token },
      perMessageDeflate: cfg.perMessageDeflate === true,
      handshakeTimeout: cfg.connectTimeoutMs || 10000,
    });
    const sock = new LeanSocket(ws);
    let settled = false;
    const fail = (why) => {
      if (settled) return;
      settled = true;
      ws.terminate();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail("connect timeout"), cfg.connectTimeoutMs || 10000);
    ws.on("unexpected-response", (_req, res) => fail("http " + res.statusCode));
    ws.on("error", (e) => fail(e.code || e.message));
    ws.on("close", () => {
      sock.connected = false;
      fail("closed before connect");
    });
    ws.on("message", (data) => {
      const text = data.toString();
      if (settled) {
        sock.onFrame(text);
        return;
      }
      if (text.charCodeAt(0) === 48 /* "0" OPEN */) {
        ws.send("40");
      } else if (text.startsWith("40")) {
        settled = true;
        clearTimeout(timer);
        sock.connected = true;
        resolve(sock);
      } else if (text.startsWith("44")) {
        let code = "connect_error";
        try {
          const err = JSON.parse(text.slice(2));
          code = (err.data && err.data.code) || err.message || code;
        } catch (_e) {
          // keep the generic code
        }
        fail(String(code));
      } else {
        sock.onFrame(text);
      }
    });
  });
}

const connect = (cfg.client || "lean") === "socketio" ? connectSocketio : connectLean;

function countError(errors, e) {
  const k = String((e && e.message) || e).slice(0, 80);
  errors[k] = (errors[k] || 0) + 1;
}

// Open tokens.length connections with at most `concurrency` in flight; run
// `after(socket, i)` on each (e.g. whoami or join). Bounded by deadlineMs.
async function connectMany(toks, concurrency, deadlineMs, after) {
  const sockets = new Array(toks.length).fill(null);
  const errors = {};
  let next = 0;
  let failed = 0;
  const deadline = nowMs() + deadlineMs;
  async function worker() {
    while (next < toks.length && nowMs() < deadline) {
      const i = next++;
      try {
        const s = await connect(toks[i]);
        if (after) await after(s, i);
        sockets[i] = s;
      } catch (e) {
        failed++;
        countError(errors, e);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, toks.length) }, worker));
  return { sockets, failed, errors };
}

function ackWithTimeout(s, event, data, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("ack timeout: " + event)), ms);
    s.emit(event, data, (res) => {
      clearTimeout(timer);
      resolve(res);
    });
  });
}

function closeAll(sockets) {
  for (const s of sockets) if (s) s.disconnect();
}

// Scenario 1: each worker connects (new token each time), sends one whoami,
// waits for its ack, disconnects, and starts over. Counted: handshakes whose
// whoami ack arrived inside the measured window.
async function handshakes() {
  const errors = {};
  const lat = new Samples(1 << 16);
  let next = 0;
  let ok = 0;
  let failed = 0;
  let measured = 0;
  const t0 = nowMs();
  const warmEnd = t0 + cfg.warmupMs;
  const end = warmEnd + cfg.durationMs;
  let startMark = null;
  let endMark = null;
  const startTimer = setTimeout(() => {
    startMark = cpuMark();
    emit({ event: "measure_start" });
  }, cfg.warmupMs);
  const endTimer = setTimeout(() => {
    endMark = cpuMark();
    emit({ event: "measure_end" });
  }, cfg.warmupMs + cfg.durationMs);
  async function worker() {
    while (nowMs() < end && next < tokens.length) {
      const tok = tokens[next++];
      const t = nowMs();
      try {
        const s = await connect(tok);
        let who;
        try {
          who = await ackWithTimeout(s, "whoami", undefined, 10000);
        } finally {
          s.disconnect();
        }
        if (!who || typeof who.sub !== "string") throw new Error("bad whoami ack");
        ok++;
        const done = nowMs();
        if (done >= warmEnd && done < end) {
          measured++;
          lat.push(done - t);
        }
      } catch (e) {
        failed++;
        countError(errors, e);
      }
    }
  }
  await Promise.all(Array.from({ length: cfg.concurrency }, worker));
  clearTimeout(startTimer);
  clearTimeout(endTimer);
  if (!startMark || !endMark) {
    return { error: "ran out of tokens or time before the window closed", ok, failed, errors };
  }
  return {
    handshakes_per_s: measured / ((endMark.t - startMark.t) / 1000),
    measured,
    ok,
    failed,
    errors,
    tokens_used: next,
    ...latencySummary(lat.buf, lat.n),
    client_cpu_pct: cpuPercent(startMark, endMark),
  };
}

// Scenario 2: N connected clients, each in a closed loop: send echo, wait for
// the ack, check it, send the next. Acks and latencies counted in the window.
async function echo() {
  const { sockets, failed, errors } = await connectMany(
    tokens.slice(0, cfg.clients),
    cfg.connectConcurrency || 50,
    cfg.connectDeadlineMs || 30000,
    null,
  );
  const live = sockets.filter(Boolean);
  const text = "x".repeat(cfg.textLength || 32);
  const body = { text };
  const lat = new Samples(1 << 20);
  let measured = 0;
  let total = 0;
  let badAcks = 0;
  let inFlight = 0;
  let measuring = false;
  let stopping = false;
  const ackErrors = {};
  function loop(s) {
    const t = nowMs();
    inFlight++;
    s.emit("echo", body, (res) => {
      inFlight--;
      const done = nowMs();
      total++;
      if (!res || res.text !== text) {
        badAcks++;
        const k = res && res.error ? res.error.code : "bad ack";
        ackErrors[k] = (ackErrors[k] || 0) + 1;
      } else if (measuring) {
        measured++;
        lat.push(done - t);
      }
      if (!stopping) loop(s);
    });
  }
  for (const s of live) loop(s);
  await sleep(cfg.warmupMs);
  measuring = true;
  const startMark = cpuMark();
  emit({ event: "measure_start" });
  await sleep(cfg.durationMs);
  measuring = false;
  const endMark = cpuMark();
  emit({ event: "measure_end" });
  stopping = true;
  const drainEnd = nowMs() + 3000;
  while (inFlight > 0 && nowMs() < drainEnd) await sleep(20);
  closeAll(live);
  return {
    acks_per_s: measured / ((endMark.t - startMark.t) / 1000),
    measured,
    total_acks: total,
    clients: live.length,
    connect_failed: failed,
    connect_errors: errors,
    bad_acks: badAcks,
    ack_errors: ackErrors,
    stalled: inFlight,
    ...latencySummary(lat.buf, lat.n),
    client_cpu_pct: cpuPercent(startMark, endMark),
  };
}

// Scenario 3: first open and close `warmup` connections (so that lazy imports
// and first-use allocations land in the "before" figure), report "warm" and
// wait for a line on stdin (the harness reads the server's RSS); then open N
// authenticated connections (one whoami each, so the session is surely set
// up), report "ready", hold them idle until the next stdin line or holdMs
// passes, then close.
function stdinLine(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      process.stdin.pause();
      resolve(false);
    }, ms);
    process.stdin.once("data", () => {
      clearTimeout(timer);
      process.stdin.pause();
      resolve(true);
    });
    process.stdin.resume();
  });
}

async function whoamiCheck(s) {
  const who = await ackWithTimeout(s, "whoami", undefined, 10000);
  if (!who || typeof who.sub !== "string") {
    s.disconnect();
    throw new Error("bad whoami ack");
  }
}

async function idle() {
  const n = cfg.connections;
  const warmupN = cfg.warmup || 0;
  if (warmupN > 0) {
    const warm = await connectMany(tokens.slice(n, n + warmupN), 50, 30000, whoamiCheck);
    closeAll(warm.sockets);
    await sleep(500);
  }
  emit({ event: "warm" });
  await stdinLine(cfg.holdMs || 30000);
  const t = nowMs();
  const { sockets, failed, errors } = await connectMany(
    tokens.slice(0, n),
    cfg.connectConcurrency || 100,
    cfg.connectDeadlineMs || 60000,
    whoamiCheck,
  );
  const live = sockets.filter(Boolean);
  emit({
    event: "ready",
    connected: live.length,
    failed,
    errors,
    connect_s: (nowMs() - t) / 1000,
  });
  await stdinLine(cfg.holdMs || 30000);
  // Count connections the server dropped while idle (e.g. a timeout).
  const stillConnected = live.filter((s) => s.connected).length;
  closeAll(live);
  return {
    connected: live.length,
    still_connected: stillConnected,
    failed,
    errors,
    connect_s: (nowMs() - t) / 1000,
  };
}

// Scenario 4: `members` listeners and one sender join the same room; the
// sender says `messages` times (at most `window` unacked at once); every
// listener counts the `message` events it gets. Deliveries/s is counted from
// the first say to the last delivery; lost = expected - delivered.
async function fanout() {
  const room = cfg.room || "bench";
  const members = cfg.members;
  const messages = cfg.messages;
  const expected = members * messages;
  const counts = new Int32Array(members);
  let delivered = 0;
  let foreign = 0;
  let lastAt = 0;
  let resolveAll;
  const allIn = new Promise((r) => (resolveAll = r));
  const joinErrors = {};
  const t = nowMs();
  const { sockets, failed, errors } = await connectMany(
    tokens.slice(0, members + 1),
    cfg.connectConcurrency || 100,
    cfg.connectDeadlineMs || 60000,
    async (s, i) => {
      if (i < members) {
        s.on("message", (m) => {
          if (!m || m.room !== room) {
            foreign++;
            return;
          }
          counts[i]++;
          delivered++;
          lastAt = nowMs();
          if (delivered === expected) resolveAll();
        });
      }
      const res = await ackWithTimeout(s, "join", { room }, 10000);
      if (!res || res.room !== room) {
        s.disconnect();
        const k = res && res.error ? res.error.code : "bad join ack";
        joinErrors[k] = (joinErrors[k] || 0) + 1;
        throw new Error("join refused: " + k);
      }
    },
  );
  const connectS = (nowMs() - t) / 1000;
  const sender = sockets[members];
  const listeners = sockets.slice(0, members).filter(Boolean).length;
  if (!sender) {
    closeAll(sockets);
    return { error: "sender could not connect", failed, errors };
  }
  const sayErrors = {};
  let sayOk = 0;
  const window = cfg.window || 10;
  const startMark = cpuMark();
  emit({ event: "measure_start" });
  let sent = 0;
  async function sendLoop() {
    while (sent < messages) {
      const n = sent++;
      try {
        const res = await ackWithTimeout(sender, "say", { room, text: "m-" + n }, 15000);
        if (res && res.delivered === true) sayOk++;
        else {
          const k = res && res.error ? res.error.code : "bad say ack";
          sayErrors[k] = (sayErrors[k] || 0) + 1;
        }
      } catch (e) {
        countError(sayErrors, e);
      }
    }
  }
  const senders = Promise.all(Array.from({ length: Math.min(window, messages) }, sendLoop));
  await Promise.race([allIn, sleep(cfg.deliveryTimeoutMs || 60000)]);
  const endMark = cpuMark();
  emit({ event: "measure_end" });
  await Promise.race([senders, sleep(2000)]);
  await sleep(200); // late duplicates, if any, would show up here
  let short = 0;
  let extra = 0;
  for (let i = 0; i < members; i++) {
    if (!sockets[i]) continue;
    if (counts[i] < messages) short++;
    if (counts[i] > messages) extra++;
  }
  closeAll(sockets);
  const span = ((delivered === expected ? lastAt : endMark.t) - startMark.t) / 1000;
  return {
    deliveries_per_s: span > 0 ? delivered / span : 0,
    delivered,
    expected,
    lost: expected - delivered,
    listeners,
    listeners_short: short,
    listeners_with_duplicates: extra,
    foreign_messages: foreign,
    says_acked: sayOk,
    say_errors: sayErrors,
    join_errors: joinErrors,
    connect_failed: failed,
    connect_errors: errors,
    connect_s: connectS,
    span_s: span,
    client_cpu_pct: cpuPercent(startMark, endMark),
  };
}

const scenarios = { handshakes, echo, idle, fanout };

(async () => {
  const fn = scenarios[cfg.scenario];
  if (!fn) {
    emit({ event: "result", error: "unknown scenario " + cfg.scenario });
    process.exit(2);
  }
  let result;
  try {
    result = await fn();
  } catch (e) {
    result = { error: String((e && e.stack) || e) };
  }
  emit({ event: "result", scenario: cfg.scenario, ...result });
  // Sockets closed; let pending close frames go out, then leave.
  setTimeout(() => process.exit(0), 300);
})();
