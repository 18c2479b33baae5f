/**
 * The system under test: three real members (child processes on loopback,
 * each with its native and Redis ports) and one Cerializer in front of all
 * three (`--cluster true`), started with the defaults users get except what
 * the run asks for (`partitions`).
 *
 * Network partitions between members go through the peer transport's
 * test-only fault hook: each member is started with PICCOLO_TEST_FAULT_FILE
 * pointing at a file of its own, and the harness writes lines
 * "block <member id> out|in|both" there; the member applies the whole file
 * within 50 ms (src/chaos/peer-faults.ts, installed by src/node/main.ts). An empty file heals.
 *
 * With `secure` (`npm run chaos -- --tls`) everything runs as a locked-down
 * deployment would (docs/security.md): certificates from scripts/make-certs.sh,
 * every port TLS only, members speaking mutual TLS and proving the cluster
 * secret, the default user with a password, and every client (native,
 * Redis, HTTP through the gateway over HTTPS) trusting the CA and
 * authenticating.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Supervised, type UnexpectedExit } from "./process.js";
import { freePort } from "../free-port.js";

export { freePort };

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const MAKE_CERTS = fileURLToPath(new URL("../../../scripts/make-certs.sh", import.meta.url));

/** A secure run's credentials, for the clients. */
export interface ChaosSecurity {
  /** The CA every port's certificate is signed by (PEM), and its file. */
  ca: Buffer;
  caFile: string;
  /** The default user's password (also in `passwordFile`). */
  password: string;
  passwordFile: string;
  /** The directory of the certificates (NAME.crt, NAME.key). */
  certDir: string;
}

/** How long a member or the gateway may take to print its "listening" line (WAL replay included). */
export const START_TIMEOUT_MS = 45_000;
/** How long a member may take to stop after SIGTERM before it counts as hung. */
export const STOP_GRACE_MS = 20_000;
/** The member count: a quorum survives one fault at a time. */
export const MEMBERS = 3;

export interface Member {
  /** 1-based, as in the member list ("n1" is 1). */
  id: number;
  name: string;
  clientPort: number;
  respPort: number;
  faultFile: string;
  process: Supervised;
}

export interface ClusterOptions {
  root: string;
  /** Partitions; undefined: the server's default (64). */
  partitions: number | undefined;
  onUnexpectedExit: (e: UnexpectedExit) => void;
  clock: () => number;
  /** TLS on every port, a cluster secret and a password (see the file comment). */
  secure?: boolean;
}

export class ChaosCluster {
  readonly members: Member[];
  readonly gateway: Supervised;
  /** The Cerializer's HTTP port, known once it is up. */
  httpPort = 0;

  private constructor(
    members: Member[],
    gateway: Supervised,
    readonly memberList: string,
    readonly security: ChaosSecurity | null,
  ) {
    this.members = members;
    this.gateway = gateway;
  }

  static async create(o: ClusterOptions): Promise<ChaosCluster> {
    const ports = async () => Promise.all(Array.from({ length: MEMBERS }, freePort));
    const [peer, client, resp] = [await ports(), await ports(), await ports()];
    const list = peer.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
    const security = o.secure === true ? await secure(o.root) : null;
    const memberSecurity = (name: string): string[] =>
      security === null
        ? []
        : [
            "--tls-cert-file",
            join(security.certDir, `${name}.crt`),
            "--tls-key-file",
            join(security.certDir, `${name}.key`),
            "--tls-ca-cert-file",
            security.caFile,
            "--cluster-secret-file",
            join(o.root, "cluster.secret"),
            "--requirepass-file",
            security.passwordFile,
          ];
    const members: Member[] = [];
    for (let i = 0; i < MEMBERS; i++) {
      const name = `n${i + 1}`;
      const faultFile = join(o.root, `${name}.faults`);
      await writeFile(faultFile, "");
      const args = [
        CLI,
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        String(client[i]),
        "--resp-port",
        String(resp[i]),
        "--node-id",
        name,
        "--cluster",
        list,
        "--data-dir",
        join(o.root, name),
        ...(o.partitions === undefined ? [] : ["--partitions", String(o.partitions)]),
        ...memberSecurity(name),
      ];
      members.push({
        id: i + 1,
        name,
        clientPort: client[i]!,
        respPort: resp[i]!,
        faultFile,
        process: new Supervised(
          { name, args, env: { ...process.env, PICCOLO_TEST_FAULT_FILE: faultFile }, ready: /listening on/ },
          o.onUnexpectedExit,
          o.clock,
        ),
      });
    }
    const gateway = new Supervised(
      {
        name: "cerializer",
        args: [
          CLI,
          "cerializer",
          "--host",
          "127.0.0.1",
          "--http-port",
          "0",
          "--cluster",
          "true",
          "--nodes",
          members.map((m) => `127.0.0.1:${m.clientPort}`).join(","),
          ...(security === null
            ? []
            : [
                "--tls-cert-file",
                join(security.certDir, "cerializer.crt"),
                "--tls-key-file",
                join(security.certDir, "cerializer.key"),
                "--node-tls-ca-cert-file",
                security.caFile,
                "--password-file",
                security.passwordFile,
              ]),
        ],
        env: { ...process.env },
        ready: /cerializer listening on https?:\/\/[^:]+:\d+/,
      },
      o.onUnexpectedExit,
      o.clock,
    );
    return new ChaosCluster(members, gateway, list, security);
  }

  /** A native client's options for this run: the CA and the password when secure. */
  clientOptions(): { tls?: { ca: Buffer }; password?: string } {
    const s = this.security;
    return s === null ? {} : { tls: { ca: s.ca }, password: s.password };
  }

  async startAll(): Promise<void> {
    await Promise.all(this.members.map((m) => m.process.start(START_TIMEOUT_MS)));
    const line = await this.gateway.start(START_TIMEOUT_MS);
    this.httpPort = Number(/https?:\/\/[^:]+:(\d+)/.exec(line)![1]);
  }

  /** Cuts `m` off from the others: both ways, or only what `m` sends ("one way"). */
  async partition(m: Member, oneWay: boolean): Promise<void> {
    const others = this.members.filter((x) => x !== m);
    await writeFile(m.faultFile, others.map((x) => `block ${x.id} ${oneWay ? "out" : "both"}`).join("\n"));
    if (!oneWay) for (const x of others) await writeFile(x.faultFile, `block ${m.id} both`);
  }

  async heal(): Promise<void> {
    for (const m of this.members) await writeFile(m.faultFile, "");
  }

  /** Teardown: everything goes, whatever state it is in. */
  async stopAll(): Promise<void> {
    for (const m of this.members) m.process.resume();
    await Promise.all([this.gateway.kill(), ...this.members.map((m) => m.process.kill())]);
  }

  killNow(): void {
    this.gateway.killNow();
    for (const m of this.members) m.process.killNow();
  }
}

/** Certificates for n1..n3 and the gateway, a cluster secret and a password, under `root` (mode 600). */
async function secure(root: string): Promise<ChaosSecurity> {
  const certDir = join(root, "certs");
  const names = Array.from({ length: MEMBERS }, (_, i) => `n${i + 1}`);
  execFileSync("bash", [MAKE_CERTS, certDir, ...names, "cerializer"], { stdio: ["ignore", "ignore", "inherit"] });
  const password = randomBytes(18).toString("base64url");
  const passwordFile = join(root, "default.pass");
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  await writeFile(join(root, "cluster.secret"), `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  const caFile = join(certDir, "ca.crt");
  return { ca: readFileSync(caFile), caFile, password, passwordFile, certDir };
}
