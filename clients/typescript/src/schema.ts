// Schemas as the server announces them in WELCOME, and the values of their fields.

export type FieldType = 'bool' | 'i64' | 'f64' | 'string' | 'bytes';

/** The wire numbers of the field types (docs/protocol.md, WELCOME). */
export const fieldTypes: readonly FieldType[] = ['bool', 'i64', 'f64', 'string', 'bytes'];

export const TYPE_BOOL = 0;
export const TYPE_I64 = 1;
export const TYPE_F64 = 2;
export const TYPE_STRING = 3;
export const TYPE_BYTES = 4;

/**
 * A field's value: bool → boolean, i64 → bigint (a safe-integer number is accepted
 * when writing), f64 → number, string → string, bytes → Uint8Array.
 */
export type Value = boolean | bigint | number | string | Uint8Array;

/** Some fields of a record, by field name. A field that is absent (or undefined) is not present. */
export type Values = { [field: string]: Value };

/** An entity id: a string when its bytes are valid UTF-8 (always, for ids this client wrote from strings), else the bytes. */
export type Id = string | Uint8Array;

export interface Field {
  readonly name: string;
  readonly type: FieldType;
}

export class Schema {
  readonly id: bigint;
  readonly name: string;
  readonly fields: readonly Field[];
  /** Field type numbers, by field index. */
  readonly typeCodes: Uint8Array;
  readonly fieldNames: readonly string[];
  private readonly indexByName: Map<string, number>;
  private readonly namesByMask = new Map<bigint, readonly string[]>();

  constructor(id: bigint, name: string, fields: readonly Field[]) {
    this.id = id;
    this.name = name;
    this.fields = fields;
    this.typeCodes = Uint8Array.from(fields, (f) => fieldTypes.indexOf(f.type));
    this.fieldNames = fields.map((f) => f.name);
    this.indexByName = new Map(fields.map((f, i) => [f.name, i]));
  }

  /** The index of field `name`, or -1. */
  fieldIndex(name: string): number {
    return this.indexByName.get(name) ?? -1;
  }

  /** The mask of the named fields; throws RangeError naming an unknown field. */
  maskOf(names: readonly string[]): bigint {
    let mask = 0n;
    for (const name of names) {
      const i = this.fieldIndex(name);
      if (i < 0) throw new RangeError(`schema '${this.name}' has no field '${name}'`);
      mask |= 1n << BigInt(i);
    }
    return mask;
  }

  /** The names of the fields in `mask`, in field order (cached per mask). */
  namesOf(mask: bigint): readonly string[] {
    let names = this.namesByMask.get(mask);
    if (names === undefined) {
      names = this.fieldNames.filter((_, i) => ((mask >> BigInt(i)) & 1n) === 1n);
      // Masks repeat; keep the cache bounded for schemas with many fields.
      if (this.namesByMask.size < 4096) this.namesByMask.set(mask, names);
    }
    return names;
  }
}
