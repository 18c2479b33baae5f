/**
 * JSON <-> Cap'n Proto, driven by the schema itself.
 *
 * The Cerializer's generic /v1/rpc path takes a JSON object that mirrors a
 * schema struct (Request) and must turn it into the Cap'n Proto message,
 * then turn the Response back into JSON. Nothing here names a field of
 * piccolo.capnp: the walk follows src/protocol/gen/schema-info.ts, which
 * scripts/codegen.mjs extracts from the compiler's own output, and writes
 * through the accessors capnp-es generated from the same schema. Add a field
 * or an operation to the schema, run `npm run codegen`, and this code knows
 * it.
 *
 * The JSON mapping (documented in docs/cerializer.md):
 *   void              null (true and {} are accepted on input)
 *   Bool              true / false
 *   (U)Int8..32, Float numbers, range-checked
 *   (U)Int64          a number when exact (|n| <= 2^53 - 1), else a decimal string;
 *                     both accepted on input
 *   Text              a string
 *   Data              {"text": "..."} (UTF-8) or {"base64": "..."}; output uses
 *                     text when the bytes are valid UTF-8. A bare string is
 *                     accepted on input as UTF-8 text.
 *   struct            an object; a union takes exactly one of its members
 *   List(T)           an array
 *
 * Every mismatch throws JsonSchemaError naming the field by its path
 * ("put.ttlMs"), so the gateway can answer 400 with exactly what is wrong.
 */
import type * as capnp from "capnp-es";
import { schemaInfo } from "./gen/schema-info.js";
import type { FieldInfo, StructInfo, TypeInfo } from "./schema-types.js";

export class JsonSchemaError extends Error {
  override name = "JsonSchemaError";
  constructor(
    /** The offending field's path, e.g. "put.ttlMs" ("" for the root). */
    readonly path: string,
    detail: string,
  ) {
    super(path === "" ? detail : `${path}: ${detail}`);
  }
}

/** A generated struct seen through its accessors (property names come from the schema). */
type Dyn = Record<string, unknown>;

const INT_RANGE: Record<string, [number, number]> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
};
const INT64_RANGE: Record<string, [bigint, bigint]> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

export function structInfo(name: string): StructInfo {
  const id = schemaInfo.byName[name];
  if (id === undefined) throw new Error(`no struct ${name} in the schema`);
  return schemaInfo.structs[id]!;
}

function structById(id: string): StructInfo {
  const s = schemaInfo.structs[id];
  if (s === undefined) throw new Error(`no struct ${id} in the schema`);
  return s;
}

const cap = (name: string): string => name[0]!.toUpperCase() + name.slice(1);

function call(obj: Dyn, method: string, ...args: unknown[]): unknown {
  const f = obj[method];
  if (typeof f !== "function") throw new Error(`generated code lacks ${method}`);
  return (f as (...a: unknown[]) => unknown).apply(obj, args);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function kindName(t: TypeInfo): string {
  if (t.kind === "list") return `List(${kindName(t.element)})`;
  if (t.kind === "struct" || t.kind === "group") return structById(t.struct).name;
  return t.kind;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Bytes from the JSON forms of Data. */
export function dataFromJson(v: unknown, path: string): Uint8Array {
  if (typeof v === "string") return Buffer.from(v, "utf8");
  if (isPlainObject(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && typeof v.text === "string") return Buffer.from(v.text, "utf8");
    if (keys.length === 1 && typeof v.base64 === "string") {
      if (!BASE64.test(v.base64)) throw new JsonSchemaError(path, "invalid base64 (standard alphabet, padded)");
      return Buffer.from(v.base64, "base64");
    }
  }
  throw new JsonSchemaError(path, 'expected Data: a string, {"text": "..."} or {"base64": "..."}');
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The JSON form of bytes: text when they are valid UTF-8, base64 otherwise. */
export function dataToJson(b: Uint8Array): { text: string } | { base64: string } {
  try {
    return { text: utf8.decode(b) };
  } catch {
    return { base64: Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64") };
  }
}

function intFromJson(t: string, v: unknown, path: string): number {
  const [lo, hi] = INT_RANGE[t]!;
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi)
    throw new JsonSchemaError(path, `expected ${t}: an integer in [${lo}, ${hi}]`);
  return v;
}

function int64FromJson(t: string, v: unknown, path: string): bigint {
  const [lo, hi] = INT64_RANGE[t]!;
  let n: bigint | null = null;
  if (typeof v === "number" && Number.isSafeInteger(v)) n = BigInt(v);
  else if (typeof v === "string" && /^-?\d{1,20}$/.test(v)) n = BigInt(v);
  if (n === null || n < lo || n > hi)
    throw new JsonSchemaError(path, `expected ${t}: an integer in [${lo}, ${hi}] (a number, or a decimal string)`);
  return n;
}

/** A scalar (non-pointer) value, checked against its type. */
function scalarFromJson(t: TypeInfo, v: unknown, path: string): unknown {
  switch (t.kind) {
    case "bool":
      if (typeof v !== "boolean") throw new JsonSchemaError(path, "expected a boolean");
      return v;
    case "int8":
    case "int16":
    case "int32":
    case "uint8":
    case "uint16":
    case "uint32":
      return intFromJson(t.kind, v, path);
    case "int64":
    case "uint64":
      return int64FromJson(t.kind, v, path);
    case "float32":
    case "float64":
      if (typeof v !== "number" || !Number.isFinite(v)) throw new JsonSchemaError(path, "expected a finite number");
      return v;
    case "enum":
      return intFromJson("uint16", v, path);
    case "text":
      if (typeof v !== "string") throw new JsonSchemaError(path, "expected a string");
      return v;
    default:
      throw new JsonSchemaError(path, `${kindName(t)} is not supported by the JSON bridge`);
  }
}

function setField(obj: Dyn, f: FieldInfo, v: unknown, path: string): void {
  const t = f.type;
  switch (t.kind) {
    case "void":
      if (!(v === null || v === true || (isPlainObject(v) && Object.keys(v).length === 0)))
        throw new JsonSchemaError(path, "expected null (a Void member)");
      obj[f.name] = true;
      return;
    case "data": {
      const bytes = dataFromJson(v, path);
      if (bytes.length > 0) (call(obj, `_init${cap(f.name)}`, bytes.length) as capnp.Data).copyBuffer(bytes);
      else call(obj, `_init${cap(f.name)}`, 0);
      return;
    }
    case "struct":
    case "group": {
      const child = call(obj, `_init${cap(f.name)}`) as Dyn;
      fillStruct(structById(t.struct), child, v, path);
      return;
    }
    case "list": {
      if (!Array.isArray(v)) throw new JsonSchemaError(path, `expected an array (${kindName(t)})`);
      const list = call(obj, `_init${cap(f.name)}`, v.length) as Dyn;
      const el = t.element;
      v.forEach((item, i) => {
        const p = `${path}[${i}]`;
        if (el.kind === "struct") fillStruct(structById(el.struct), call(list, "get", i) as Dyn, item, p);
        else if (el.kind === "data" || el.kind === "list")
          throw new JsonSchemaError(p, `${kindName(el)} elements are not supported`);
        else call(list, "set", i, scalarFromJson(el, item, p));
      });
      return;
    }
    default:
      obj[f.name] = scalarFromJson(t, v, path);
  }
}

/**
 * Fills a generated struct from JSON, checking every field against the
 * schema. `skip` names root fields the caller sets itself (Request.id).
 */
export function fillStruct(info: StructInfo, obj: Dyn, json: unknown, path = "", skip: readonly string[] = []): void {
  if (!isPlainObject(json)) throw new JsonSchemaError(path, `expected an object (${info.name})`);
  const join = (name: string) => (path === "" ? name : `${path}.${name}`);
  const members: string[] = [];
  for (const key of Object.keys(json)) {
    const f = info.fields.find((x) => x.name === key);
    if (f === undefined)
      throw new JsonSchemaError(
        join(key),
        `no such field in ${info.name} (fields: ${info.fields.map((x) => x.name).join(", ")})`,
      );
    if (skip.includes(key)) continue;
    if (f.discriminant !== null) members.push(key);
  }
  if (info.unionMembers > 0) {
    const names = info.fields.filter((x) => x.discriminant !== null).map((x) => x.name);
    if (members.length !== 1)
      throw new JsonSchemaError(
        members.length > 1 ? join(members[1]!) : path,
        members.length > 1
          ? `only one of ${info.name}'s union members may be set, got ${members.join(" and ")}`
          : `${info.name} needs exactly one of: ${names.join(", ")}`,
      );
  }
  for (const f of info.fields) {
    if (!(f.name in json) || skip.includes(f.name)) continue;
    setField(obj, f, json[f.name], join(f.name));
  }
}

function readValue(t: TypeInfo, v: unknown): unknown {
  switch (t.kind) {
    case "void":
      return null;
    case "int64":
    case "uint64": {
      const n = v as bigint;
      return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(n) : n.toString();
    }
    case "data":
      return dataToJson((v as capnp.Data).toUint8Array());
    case "struct":
    case "group":
      return structToJson(structById(t.struct), v as Dyn);
    case "list":
      return Array.from(v as Iterable<unknown>, (item) => readValue(t.element, item));
    default:
      return v;
  }
}

/** A generated struct as JSON: every plain field, and the one union member that is set. */
export function structToJson(info: StructInfo, obj: Dyn): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const which = info.unionMembers > 0 ? (call(obj, "which") as number) : -1;
  for (const f of info.fields) {
    if (f.discriminant !== null && f.discriminant !== which) continue;
    out[f.name] = readValue(f.type, f.type.kind === "void" ? null : obj[f.name]);
  }
  return out;
}
