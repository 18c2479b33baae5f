// npm run bench:idle [-- --partitions 64 --seconds 10 --shards 1]
//
// What an idle cluster costs: three members on loopback with no clients,
// each partition a Raft group whose leader heartbeats its followers. Prints
// each member's CPU use (user + system time from /proc, as a share of one
// core) over a window after the cluster settles. This is CPU time, not wall
// time, so it is steady on a shared machine; decision 0187 quotes it.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { freePort } from "./lib/ports.js";

const { values } = parseArgs({
  options: {
    partitions: { type: "string", default: "64" },
    seconds: { type: "string", default: "10" },
    shards: { type: "string", default: "1" },
  },
});
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const TICKS_PER_SECOND = 100; // Linux USER_HZ

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

const root = mkdtempSync(join(tmpdir(), "piccolo-idle-"));
const peers = await Promise.all([freePort(), freePort(), freePort()]);
const list = peers.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
const members = await Promise.all(
  [0, 1, 2].map(async (i) => {
    const args = ["server", "--host", "127.0.0.1", "--port", String(await freePort()), "--resp-port", "0"];
    args.push("--node-id", `n${i + 1}`, "--cluster", list, "--data-dir", join(root, `n${i + 1}`));
    args.push("--partitions", values.partitions!, "--shards", values.shards!);
    return spawn(process.execPath, [CLI, ...args], { stdio: "ignore" });
  }),
);
try {
  await sleep(6000); // elections and rebalancing settle
  const seconds = Number(values.seconds);
  const before = members.map((m) => cpuSeconds(m.pid!));
  await sleep(seconds * 1000);
  const used = members.map((m, i) => (100 * (cpuSeconds(m.pid!) - before[i]!)) / seconds);
  console.log(
    `idle cluster, ${values.partitions} partitions, 3 members, ${seconds} s: ` +
      `${used.map((u, i) => `n${i + 1} ${u.toFixed(1)}%`).join(", ")} of one core`,
  );
} finally {
  for (const m of members) m.kill("SIGTERM");
  await Promise.all(members.map((m) => new Promise((r) => (m.exitCode !== null ? r(null) : m.once("exit", r)))));
  rmSync(root, { recursive: true, force: true });
}
