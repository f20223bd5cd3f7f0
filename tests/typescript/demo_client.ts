// A client of the demo written against `wsgate typescript --demo`: must compile with tsc --strict.
import { io } from "socket.io-client";
import type {
  AdminSocket,
  Code,
  ErrorReply,
  Message,
  NamespaceSockets,
  RootEvents,
  RootSocket,
  TextBody,
} from "./wsgate-api";

function isError(reply: unknown): reply is ErrorReply {
  return typeof reply === "object" && reply !== null && "error" in reply;
}

export async function chat(url: string, token: string): Promise<string[]> {
  const seen: string[] = [];
  const socket: RootSocket = io(url, { auth: { token } });
  socket.on("message", (m: Message) => seen.push(`${m.room} ${m.from}: ${m.text}`));
  socket.on("announcement", (a) => seen.push(a.text));
  socket.on("exception", (e) => seen.push(e.error.code));
  socket.on("auth:expired", (n) => seen.push(`${n.reason} ${n.grace ?? 0}`));
  socket.on("auth:revoked", (n) => seen.push(n.reason));

  // Acks as callbacks: the reply is the ack type or the error object.
  socket.emit("echo", { text: "hi" }, (reply) => {
    seen.push(isError(reply) ? reply.error.message : reply.text);
  });
  // emitWithAck: the promise resolves to the same union.
  const joined = await socket.emitWithAck("join", { room: "lobby" });
  if (!isError(joined)) seen.push(joined.room);
  const said = await socket.emitWithAck("say", { room: "lobby", text: "hello" });
  const delivered: boolean = isError(said) ? false : said.delivered;
  seen.push(String(delivered));
  // Events without a body take the ack alone; timeouts keep the types.
  const who = await socket.timeout(2000).emitWithAck("whoami");
  if (!isError(who)) seen.push(who.sub, ...who.roles);
  const pong = await socket.emitWithAck("ping");
  if (!isError(pong)) seen.push(pong.toUpperCase());
  const refreshed = await socket.emitWithAck("auth:refresh", { token });
  if (!isError(refreshed)) seen.push(refreshed.expires_at.toFixed(0));

  // Errors carry the contract's codes and statuses.
  const failed = await socket.emitWithAck("echo", { text: "" });
  if (isError(failed)) {
    const code: Code = failed.error.code;
    const status: 400 | 401 | 403 | 404 | 413 | 429 | 500 | 503 = failed.error.status;
    seen.push(`${status} ${code} ${Object.keys(failed.error.fields ?? {}).join()}`);
  }

  const admin: NamespaceSockets["/admin"] = io(`${url}/admin`, { auth: { token } });
  const sameAdmin: AdminSocket = admin;
  const body: TextBody = { text: "news" };
  sameAdmin.emit("admin:broadcast", body, (r) => seen.push(isError(r) ? r.error.code : "ok"));

  // The transport-neutral map, for /ws clients.
  const frame: { event: "echo"; data: RootEvents["echo"]["body"] } = {
    event: "echo",
    data: { text: "over /ws" },
  };
  seen.push(frame.data.text);
  return seen;
}
