// Certificates for the TLS tests, made by the same script docs/security.md
// tells users to run (scripts/make-certs.sh), so the documented commands are
// exercised by every run. openssl is on every machine the tests run on (.ci/run).
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../../scripts/make-certs.sh", import.meta.url));

export interface Certs {
  dir: string;
  /** The CA's certificate (PEM path). */
  ca: string;
  /** name -> its certificate and key paths. */
  cert(name: string): { cert: string; key: string };
}

/**
 * A fresh CA in a temporary directory, with a certificate for each name
 * (CN=name, alternative names name, localhost and 127.0.0.1).
 */
export function makeCerts(...names: string[]): Certs {
  const dir = mkdtempSync(join(tmpdir(), "piccolo-certs-"));
  execFileSync("bash", [SCRIPT, dir, ...names], { stdio: ["ignore", "ignore", "inherit"] });
  return {
    dir,
    ca: join(dir, "ca.crt"),
    cert: (name) => ({ cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }),
  };
}

/** The server flags for TLS with `name`'s certificate from `certs`. */
export function tlsFlags(certs: Certs, name: string, extra: string[] = []): string[] {
  const c = certs.cert(name);
  return ["--tls-cert-file", c.cert, "--tls-key-file", c.key, "--tls-ca-cert-file", certs.ca, ...extra];
}
