// Every mapped JSON-schema shape, used as a client would: must compile with tsc --strict.
import type {
  Cat,
  Colour,
  Everything,
  KeepersSocket,
  Point,
  Summary,
  Tick,
  TreeInput,
  ZooEvents,
  ZooSocket,
} from "./wsgate-api";

export async function zoo(socket: ZooSocket, keepers: KeepersSocket): Promise<number> {
  const colour: Colour = "green";
  const cat: Cat = { kind: "cat", lives: 9 };
  const tree: TreeInput = { label: "root", children: [{ label: "leaf" }] };
  const everything: Everything = {
    name: "n",
    nickname: null,
    colour,
    mode: "slow",
    tags: ["a"],
    scores: { a: 1.5 },
    pair: [1, "one"],
    numbers: [1, 2, 3],
    point: { x: 1 },
    pet: { kind: "dog", good: true },
    tree,
    anything: { whatever: [1, "x"] },
    "with space": 2,
  };
  const summary = await socket.emitWithAck("everything", everything);
  const total: number = "error" in summary ? 0 : (summary as Summary).total;
  const points: Point[] = [{ x: 1, y: 2 }];
  socket.emit("points", points, (reply) => void reply);
  const fed = await socket.emitWithAck("feed", cat);
  if (!("error" in fed) && fed.kind === "cat") {
    const lives: number = fed.lives; // narrowed by the literal `kind`
    void lives;
  }
  const nothing = await socket.emitWithAck("nothing");
  const isNull: boolean = nothing === null;
  const untyped: ZooEvents["untyped"]["ack"] = await socket.emitWithAck("untyped", 3);
  socket.on("tick", (t: Tick) => void t.from);
  socket.on("bare", () => {});
  const count = await keepers.emitWithAck("count", 41);
  const next: number = typeof count === "number" ? count : count.error.status;
  return total + next + (isNull ? 1 : 0) + (typeof untyped === "number" ? untyped : 0);
}
