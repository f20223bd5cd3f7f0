// Misuses of the demo's generated types: every line marked `expect-error` must fail to compile
// (and no other line may).
import { io } from "socket.io-client";
import type { AdminSocket, RootSocket } from "./wsgate-api";

const socket: RootSocket = io("http://127.0.0.1:8000", {});
const admin: AdminSocket = io("http://127.0.0.1:8000/admin", {});

export async function misuse(): Promise<void> {
  socket.emit("echo", { txt: "a field that does not exist" }, () => {}); // expect-error
  socket.emit("echo", { text: 42 }, () => {}); // expect-error
  socket.emit("no-such-event", {}, () => {}); // expect-error
  socket.emit("join", { room: "lobby" }, (reply: { room: number }) => reply); // expect-error
  socket.emit("say", { room: "lobby" }, () => {}); // expect-error
  const who = await socket.emitWithAck("whoami");
  who.sub; // expect-error
  socket.on("message", (m) => m.body); // expect-error
  socket.on("no-such-push", () => {}); // expect-error
  admin.emit("echo", { text: "not served on /admin" }, () => {}); // expect-error
  admin.on("message", () => {}); // expect-error
  const joined = await socket.emitWithAck("join", { room: "x" });
  if (!("error" in joined)) {
    const n: number = joined.room; // expect-error
    void n;
  }
}
