// A Piccolo node with the Cerializer in front of it, on free loopback ports,
// over HTTP or HTTPS (the node then speaks TLS on its client ports and the
// gateway speaks TLS to it).
import { spawnSync } from "node:child_process";
import type { Procs } from "./procs.js";
import { waitLine } from "./procs.js";

export const CLI = new URL("../../src/cli/main.js", import.meta.url).pathname;

export interface GatewayTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** Whether this build's Cerializer has HTTPS (--tls-cert-file) and TLS toward the nodes (--node-tls-ca-cert-file). */
export function cerializerHasHttps(): boolean {
  const r = spawnSync(process.execPath, [CLI, "cerializer", "--help"], { encoding: "utf8" });
  const help = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  return help.includes("--tls-cert-file") && help.includes("--node-tls-ca-cert-file");
}

/**
 * Starts `piccolo server` (default flags but its ports and `dataDir`, or --in-memory without one) and
 * `piccolo cerializer --nodes` in front of it; answers the gateway's base URL. With `tls`: the node with
 * --tls-cert-file/--tls-key-file/--tls-ca-cert-file, the gateway with the same certificate for HTTPS
 * (--tls-cert-file/--tls-key-file) and --node-tls-ca-cert-file toward the node.
 */
export async function startCerializer(procs: Procs, o: { dataDir?: string; tls?: GatewayTls }): Promise<string> {
  const tls = o.tls;
  const suffix = tls ? " (TLS)" : "";
  const node = procs.child(`piccolo node${suffix}`, process.execPath, [
    CLI,
    "server",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--resp-port",
    "0",
    ...(o.dataDir ? ["--data-dir", o.dataDir] : ["--in-memory"]),
    ...(tls ? ["--tls-cert-file", tls.certFile, "--tls-key-file", tls.keyFile, "--tls-ca-cert-file", tls.caFile] : []),
  ]);
  const port = Number((await waitLine(node, /listening on 127\.0\.0\.1:(\d+)/, `piccolo node${suffix}`))[1]);
  const gw = procs.child(`cerializer${suffix}`, process.execPath, [
    CLI,
    "cerializer",
    "--host",
    "127.0.0.1",
    "--http-port",
    "0",
    "--nodes",
    `127.0.0.1:${port}`,
    ...(tls
      ? ["--tls-cert-file", tls.certFile, "--tls-key-file", tls.keyFile, "--node-tls-ca-cert-file", tls.caFile]
      : []),
  ]);
  const m = await waitLine(gw, /cerializer listening on (https?):\/\/127\.0\.0\.1:(\d+)/, `cerializer${suffix}`);
  return `${m[1]}://127.0.0.1:${m[2]}`;
}
