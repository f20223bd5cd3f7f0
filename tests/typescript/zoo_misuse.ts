// Misuses of the zoo's generated types: exactly the lines marked `expect-error` fail to compile.
import type { Everything, TreeInput, ZooSocket } from "./wsgate-api";

export function misuse(socket: ZooSocket, base: Everything): void {
  const wrongColour: Everything = { ...base, colour: "blue" }; // expect-error
  const wrongMode: Everything = { ...base, mode: "medium" }; // expect-error
  const shortPair: Everything = { ...base, pair: [1] }; // expect-error
  const swappedPair: Everything = { ...base, pair: ["one", 1] }; // expect-error
  const badScore: Everything = { ...base, scores: { a: "high" } }; // expect-error
  const badPet: Everything = { ...base, pet: { kind: "cat", good: true } }; // expect-error
  const missingName: Everything = { ...base, name: undefined }; // expect-error
  const badTree: TreeInput = { label: "x", children: [{ name: "y" }] }; // expect-error
  socket.emit("points", [{ y: 1 }], () => {}); // expect-error
  socket.emit("nothing", {}, () => {}); // expect-error
  socket.emit("feed", { kind: "bird" }, () => {}); // expect-error
  void [wrongColour, wrongMode, shortPair, swappedPair, badScore, badPet, missingName, badTree];
}
