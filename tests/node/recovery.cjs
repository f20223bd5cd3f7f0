// A socket.io-client (npm) driven line by line, for the connection-state recovery tests.
// Usage: node recovery.cjs URL. Reads one JSON command per line on stdin, answers one JSON
// line per command on stdout:
//   {"cmd": "connect", "token": T, "namespace"?: N}
//                                       -> {"connected", "recovered", "id", "pid"} or {"error", "code"}
//   {"cmd": "join", "room": R}          -> {"ack": ...}
//   {"cmd": "drop"}                     -> {"disconnected": reason}  (the transport just closes)
//   {"cmd": "reconnect", "token": T}    -> as connect, with the pid and offset the client kept
//   {"cmd": "reconnect", "token": T, "url": U}  -> the same, through another node (as a load
//                                          balancer would send it): a new Manager to U that
//                                          carries the kept pid and offset
//   {"cmd": "messages"}                 -> {"messages": [[data, offset?], ...]} received so far
//   {"cmd": "quit"}
const readline = require("node:readline");
const { io } = require("socket.io-client");

const [url] = process.argv.slice(2);
let socket = null;
let base = url;
const messages = [];

function listen() {
  for (const event of ["message", "announcement"]) {
    socket.on(event, (...args) => messages.push(args));
  }
}

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function outcome() {
  return new Promise((resolve) => {
    const ok = () => {
      socket.off("connect_error", bad);
      resolve({
        connected: true,
        recovered: socket.recovered === true,
        id: socket.id,
        pid: socket._pid, // private to socket.io-client; the tests check no log line holds it
      });
    };
    const bad = (err) => {
      socket.off("connect", ok);
      resolve({ error: err.message, code: err.data && err.data.code });
    };
    socket.once("connect", ok);
    socket.once("connect_error", bad);
  });
}

async function run(command) {
  switch (command.cmd) {
    case "connect": {
      base = url + (command.namespace || "");
      socket = io(base, {
        auth: { token: command.token },
        transports: ["websocket"],
        reconnection: false,
        forceNew: true,
      });
      listen();
      return outcome();
    }
    case "join":
      return { ack: await socket.timeout(5000).emitWithAck("join", { room: command.room }) };
    case "drop": {
      const gone = new Promise((resolve) => socket.once("disconnect", resolve));
      socket.io.engine.close(); // no CLOSE packet on a websocket: the network just went away
      return { disconnected: await gone };
    }
    case "reconnect": {
      if (command.url) {
        const old = socket;
        socket = io(command.url + (command.namespace || ""), {
          auth: { token: command.token },
          transports: ["websocket"],
          reconnection: false,
          forceNew: true,
          autoConnect: false,
        });
        // What socket.io-client keeps across its own reconnects (private fields).
        socket._pid = old._pid;
        socket._lastOffset = old._lastOffset;
        listen();
        const result = outcome();
        socket.connect();
        return result;
      }
      socket.auth = { token: command.token };
      const result = outcome();
      socket.connect();
      return result;
    }
    case "messages":
      return { messages };
    case "quit":
      if (socket) socket.close();
      process.exit(0);
  }
  return { error: `unknown command ${command.cmd}` };
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    try {
      reply(await run(JSON.parse(line)));
    } catch (err) {
      reply({ error: String(err && err.message ? err.message : err) });
    }
  });
});
lines.on("close", () => process.exit(0));
