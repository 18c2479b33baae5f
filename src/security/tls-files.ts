/**
 * TLS from files, with Node's own node:tls: the options a listener (or a
 * dialer) is built from, read from the certificate, key and CA files the
 * flags name, and re-read on SIGHUP so a renewed certificate is picked up
 * without a restart (docs/security.md, decisions 0260-0261).
 *
 * One set of files serves every port of a node, as in Redis
 * (`tls-cert-file`, `tls-key-file`, `tls-ca-cert-file`): the client ports
 * take the certificate as a server's; the peer port (with --tls-cluster)
 * takes it both as a server's and, when dialing, as a client's, and asks
 * every peer for one signed by the CA (mutual TLS).
 */
import { readFileSync } from "node:fs";
import type { SecureContextOptions, TLSSocket, TlsOptions } from "node:tls";
import { ConfigError } from "../config-error.js";

/** Whether a client must present a certificate signed by the CA (Redis's tls-auth-clients). */
export type ClientCertPolicy = "yes" | "no" | "optional";
export const CLIENT_CERT_POLICIES: readonly ClientCertPolicy[] = ["yes", "no", "optional"];

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** The CA that signs client and peer certificates; null: the system's roots (and no client certificates). */
  caFile: string | null;
  authClients: ClientCertPolicy;
}

/** Longest a TLS handshake may take before the socket is dropped (a stalled handshake holds a socket and a little memory). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** A PEM file's bytes; a missing or unreadable file is a ConfigError naming its flag. */
export function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`--${flag} ${path} cannot be read: ${(err as Error).message}`);
  }
}

/** Reads the files into the context options (readPem's errors). */
export function readContext(files: TlsFiles): SecureContextOptions {
  return {
    cert: readPem(files.certFile, "tls-cert-file"),
    key: readPem(files.keyFile, "tls-key-file"),
    ...(files.caFile === null ? {} : { ca: readPem(files.caFile, "tls-ca-cert-file") }),
    minVersion: "TLSv1.2",
  };
}

/**
 * The listener's TLS files from the four flags' values ("" when not given),
 * checked together, and read now so a missing file is one clear line at
 * start, not a failed handshake later; null when TLS is off.
 */
export function tlsFilesFromFlags(
  certFile: string,
  keyFile: string,
  caFile: string,
  authClients: string,
): TlsFiles | null {
  if (!(CLIENT_CERT_POLICIES as readonly string[]).includes(authClients))
    throw new ConfigError(`--tls-auth-clients must be one of ${CLIENT_CERT_POLICIES.join(", ")}, got "${authClients}"`);
  if ((certFile === "") !== (keyFile === ""))
    throw new ConfigError("--tls-cert-file and --tls-key-file go together: give both, or neither");
  if (certFile === "" && caFile !== "")
    throw new ConfigError("--tls-ca-cert-file needs --tls-cert-file and --tls-key-file (TLS is off without them)");
  if (authClients !== "no" && caFile === "")
    throw new ConfigError(
      `--tls-auth-clients ${authClients} needs --tls-ca-cert-file: the CA client certificates are checked against`,
    );
  if (certFile === "") return null;
  const files: TlsFiles = {
    certFile,
    keyFile,
    caFile: caFile === "" ? null : caFile,
    authClients: authClients as ClientCertPolicy,
  };
  readContext(files);
  return files;
}

/** A client port's listener options: the certificate, and client certificates per the policy. */
export function clientPortOptions(files: TlsFiles): TlsOptions {
  return {
    ...readContext(files),
    requestCert: files.authClients !== "no",
    rejectUnauthorized: files.authClients === "yes",
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
  };
}

/**
 * The peer port's options, both ways: a member presents its certificate
 * and accepts only a peer whose certificate the cluster's CA signed.
 */
export function peerOptions(files: TlsFiles): TlsOptions {
  if (files.caFile === null)
    throw new ConfigError("--tls-cluster needs --tls-ca-cert-file: the CA that signs every member's certificate");
  return {
    ...readContext(files),
    requestCert: true,
    rejectUnauthorized: true,
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
  };
}

/**
 * The names a peer's certificate vouches for: its subject's CN and its DNS
 * subject alternative names. A member's id must be one of them (the member
 * list says who may join; the certificate says who this is).
 */
export function certificateNames(socket: TLSSocket): string[] {
  const cert = socket.getPeerCertificate();
  if (cert === null || Object.keys(cert).length === 0) return [];
  const names: string[] = [];
  const cn = cert.subject?.CN;
  if (typeof cn === "string") names.push(cn);
  else if (Array.isArray(cn)) names.push(...(cn as string[]));
  for (const part of (cert.subjectaltname ?? "").split(",")) {
    const m = /^\s*DNS:(.+)$/.exec(part);
    if (m !== null) names.push(m[1]!.trim());
  }
  return names;
}
