// socket.io-client (npm) against a wsgate server: every way a real client connects.
// Usage: node interop.cjs URL TOKEN ADMIN_TOKEN; prints one JSON object of results.
const { io } = require("socket.io-client");

const [url, token, adminToken] = process.argv.slice(2);

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new Error(`connect_error ${err.message}`)));
  });
}

async function scenario(transports, upgrade) {
  const socket = io(url, {
    auth: { token },
    transports,
    upgrade,
    reconnection: false,
    forceNew: true,
  });
  await connected(socket);
  const result = { pong: await socket.timeout(5000).emitWithAck("ping") };
  result.echo = await socket.timeout(5000).emitWithAck("echo", { text: "héllo" });
  const bin = io(`${url}/binary`, { auth: { token }, transports, upgrade, forceNew: true });
  await connected(bin);
  result.binary = await bin.timeout(5000).emitWithAck("bin", Buffer.from([0, 1, 255]));
  if (upgrade) {
    for (let i = 0; i < 100 && socket.io.engine.transport.name !== "websocket"; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  result.transport = socket.io.engine.transport.name;
  socket.close();
  bin.close();
  return result;
}

async function namespaces() {
  // One Manager, one Engine.IO connection, two namespaces.
  const root = io(url, { auth: { token: adminToken }, transports: ["websocket"] });
  const admin = io(`${url}/admin`, { auth: { token: adminToken }, transports: ["websocket"] });
  await Promise.all([connected(root), connected(admin)]);
  const shared = root.io === admin.io;
  const [a, b] = await Promise.all([
    root.timeout(5000).emitWithAck("ping"),
    admin.timeout(5000).emitWithAck("whoami"),
  ]);
  root.close();
  admin.close();
  return { shared, root: a, admin: b };
}

async function reconnect() {
  const socket = io(url, {
    auth: { token },
    transports: ["websocket"],
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
    forceNew: true,
  });
  await connected(socket);
  const again = new Promise((resolve) => socket.io.once("reconnect", resolve));
  socket.io.engine.close(); // the transport drops; the client reconnects by itself
  await again;
  if (!socket.connected) await connected(socket);
  const pong = await socket.timeout(5000).emitWithAck("ping");
  socket.close();
  return { pong };
}

(async () => {
  const results = {
    polling: await scenario(["polling"], false),
    websocket: await scenario(["websocket"], false),
    upgrade: await scenario(["polling", "websocket"], true),
    namespaces: await namespaces(),
    reconnect: await reconnect(),
  };
  console.log(JSON.stringify(results));
  process.exit(0);
})().catch((err) => {
  console.error(err.stack || String(err));
  process.exit(1);
});
