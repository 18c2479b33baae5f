/**
 * The shape of src/protocol/gen/schema-info.ts: the schema's structs as
 * plain data, produced by scripts/codegen.mjs from the Cap'n Proto
 * compiler's CodeGeneratorRequest. src/protocol/json.ts walks it.
 */

export type TypeInfo =
  | {
      kind:
        | "void"
        | "bool"
        | "int8"
        | "int16"
        | "int32"
        | "int64"
        | "uint8"
        | "uint16"
        | "uint32"
        | "uint64"
        | "float32"
        | "float64"
        | "text"
        | "data"
        | "interface"
        | "any_pointer";
    }
  | { kind: "list"; element: TypeInfo }
  | { kind: "struct"; struct: string }
  | { kind: "group"; struct: string }
  | { kind: "enum"; enum: string };

export interface FieldInfo {
  name: string;
  /** The field's union discriminant; null when it is not a union member. */
  discriminant: number | null;
  type: TypeInfo;
}

export interface StructInfo {
  name: string;
  /** How many fields form the struct's unnamed union (0: none). */
  unionMembers: number;
  fields: FieldInfo[];
}

export interface SchemaInfo {
  /** By struct id (hex). */
  structs: Record<string, StructInfo>;
  /** Struct id by short name ("Request"). */
  byName: Record<string, string>;
}
