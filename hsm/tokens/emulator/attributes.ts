/**
 * Object attributes and their policy, PKCS#11 v2.40 §4 (Tables 4.4 footnotes 1-12 and v2.40
 * base §4.1.2 "Object modifiability") for the object classes the emulator keeps: CKO_DATA,
 * CKO_SECRET_KEY (CKK_AES, CKK_GENERIC_SECRET), CKO_PUBLIC_KEY and CKO_PRIVATE_KEY (CKK_EC).
 *
 * The policy follows SoftHSM2 2.6.1 attribute by attribute, so that the same template gives the
 * same CKR_ code on both tokens: a template is applied in order inside a transaction and the
 * first failure wins (nothing of the template is kept). The footnote checks:
 *   NOT_ON_CREATE (2), NOT_ON_GENERATE (4), NOT_ON_UNWRAP (6): CKR_ATTRIBUTE_READ_ONLY there;
 *   SENSITIVE_VALUE (7): never revealed when the object is sensitive or not extractable;
 *   MODIFIABLE (8): may change with C_SetAttributeValue / C_CopyObject; ON_COPY (17): with
 *   C_CopyObject only; every other attribute is read-only after creation (CKR_ATTRIBUTE_READ_ONLY).
 * CKA_SENSITIVE only ever goes false to true and CKA_EXTRACTABLE true to false (then
 * CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE record the history): the Tookan attacks that flip
 * them back are refused with CKR_ATTRIBUTE_READ_ONLY.
 */
import * as P from '../../../enclave/api/pkcs11.ts';

export type AttrValue = { t: 'b'; v: boolean } | { t: 'u'; v: bigint } | { t: 'x'; v: Buffer };
export type Attrs = Map<number, AttrValue>;
export type Op = 'create' | 'generate' | 'derive' | 'unwrap' | 'set' | 'copy';

const NOT_ON_CREATE = 1 << 1;
const NOT_ON_GENERATE = 1 << 2;
const NOT_ON_UNWRAP = 1 << 3;
const SENSITIVE_VALUE = 1 << 4;
const MODIFIABLE = 1 << 5;
/** Footnote 17 (v3.0): may change in C_CopyObject only. */
const ON_COPY = 1 << 6;

/** What the policy needs to know about the caller. */
export interface PolicyContext {
  soLoggedIn: boolean;
}

type Update = (a: Attrs, raw: Buffer, op: Op, ctx: PolicyContext) => number;

interface Spec {
  kind: 'b' | 'u' | 'x';
  checks: number;
  def: () => AttrValue;
  update?: Update;
}

const b = (v: boolean): AttrValue => ({ t: 'b', v });
const u = (v: number | bigint): AttrValue => ({ t: 'u', v: BigInt(v) });
const x = (v: Buffer | string = Buffer.alloc(0)): AttrValue => ({ t: 'x', v: typeof v === 'string' ? Buffer.from(v) : v });

const CREATE_OPS: readonly Op[] = ['generate', 'derive', 'create', 'copy', 'unwrap'];

/** Plain boolean: any one-byte value, non-zero is true. */
const setBool: Update = (a, raw, _op) => {
  if (raw.length !== 1) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
  return 0;
};

function flagOnCreate(type: number, extra?: (a: Attrs, v: boolean) => number): Update {
  return (a, raw, op) => {
    if (!CREATE_OPS.includes(op)) return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
    if (raw.length !== 1) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
    const v = raw[0] !== 0;
    if (extra) {
      const rv = extra(a, v);
      if (rv) return rv;
    }
    a.set(type, b(v));
    return -1; // stored here
  };
}

/** CKA_CLASS / CKA_KEY_TYPE: fixed by the object kind; the template may only repeat it. */
function fixedUlong(type: number): Update {
  return (a, raw, op) => {
    if (op === 'set') return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
    if (raw.length !== 8) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
    const cur = a.get(type);
    if (!cur || cur.t !== 'u' || cur.v !== raw.readBigUInt64LE(0)) return P.CKR.CKR_TEMPLATE_INCONSISTENT;
    return -1;
  };
}

const sensitiveUpdate: Update = (a, raw, op) => {
  if ((op === 'set' || op === 'copy') && getBool(a, P.CKA_SENSITIVE, false)) return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
  if (raw.length !== 1) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
  if (raw[0] === 0) {
    a.set(P.CKA_SENSITIVE, b(false));
    a.set(P.CKA_ALWAYS_SENSITIVE, b(false));
  } else {
    a.set(P.CKA_SENSITIVE, b(true));
    if (op === 'generate' || op === 'derive') a.set(P.CKA_ALWAYS_SENSITIVE, b(true));
  }
  return -1;
};

const extractableUpdate: Update = (a, raw, op) => {
  if ((op === 'set' || op === 'copy') && !getBool(a, P.CKA_EXTRACTABLE, false)) return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
  if (raw.length !== 1) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
  if (raw[0] === 0) a.set(P.CKA_EXTRACTABLE, b(false));
  else {
    a.set(P.CKA_EXTRACTABLE, b(true));
    a.set(P.CKA_NEVER_EXTRACTABLE, b(false));
  }
  return -1;
};

const trustedUpdate: Update = (a, raw, _op, ctx) => {
  if (raw.length !== 1) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
  if (raw[0] !== 0 && !ctx.soLoggedIn) return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
  a.set(P.CKA_TRUSTED, b(raw[0] !== 0));
  return -1;
};

const dateUpdate: Update = (_a, raw) => (raw.length === 0 || raw.length === 8 ? 0 : P.CKR.CKR_ATTRIBUTE_VALUE_INVALID);

/** CKA_VALUE: on C_CreateObject it also sets CKA_VALUE_LEN where the class has one. */
const valueUpdate: Update = (a, raw, op) => {
  a.set(P.CKA_VALUE, x(Buffer.from(raw)));
  if (op === 'create' && a.has(P.CKA_VALUE_LEN)) a.set(P.CKA_VALUE_LEN, u(raw.length));
  return -1;
};

const ulongUpdate: Update = (_a, raw) => (raw.length === 8 ? 0 : P.CKR.CKR_ATTRIBUTE_VALUE_INVALID);

const spec = (kind: Spec['kind'], checks: number, def: () => AttrValue, update?: Update): Spec => ({ kind, checks, def, ...(update && { update }) });
const flag = (def: boolean, checks = MODIFIABLE): Spec => spec('b', checks, () => b(def), setBool);
/** Usage flags (CKA_ENCRYPT, CKA_SIGN, ...) a key kind has: modifiable, true unless the template says no. */
const usages = (...types: number[]): Record<number, Spec> => Object.fromEntries(types.map((t) => [t, flag(true)]));

const COMMON: Record<number, Spec> = {
  [P.CKA_CLASS]: spec('u', 0, () => u(P.CKO_VENDOR_DEFINED), fixedUlong(P.CKA_CLASS)),
  [P.CKA_TOKEN]: spec('b', ON_COPY, () => b(false), flagOnCreate(P.CKA_TOKEN)),
  [P.CKA_PRIVATE]: spec('b', ON_COPY, () => b(true), flagOnCreate(P.CKA_PRIVATE)),
  [P.CKA_MODIFIABLE]: spec('b', ON_COPY, () => b(true), flagOnCreate(P.CKA_MODIFIABLE)),
  [P.CKA_LABEL]: spec('x', MODIFIABLE, () => x()),
  [P.CKA_COPYABLE]: spec('b', ON_COPY, () => b(true), flagOnCreate(P.CKA_COPYABLE, (a, v) => (v && !getBool(a, P.CKA_COPYABLE, true) ? P.CKR.CKR_ATTRIBUTE_READ_ONLY : 0))),
  [P.CKA_DESTROYABLE]: spec('b', ON_COPY, () => b(true), flagOnCreate(P.CKA_DESTROYABLE)),
};

const DATA: Record<number, Spec> = {
  ...COMMON,
  [P.CKA_APPLICATION]: spec('x', 0, () => x()),
  [P.CKA_OBJECT_ID]: spec('x', 0, () => x()),
  [P.CKA_VALUE]: spec('x', 0, () => x(), valueUpdate),
};

const KEY: Record<number, Spec> = {
  ...COMMON,
  [P.CKA_KEY_TYPE]: spec('u', 0, () => u(P.CKK_VENDOR_DEFINED), fixedUlong(P.CKA_KEY_TYPE)),
  [P.CKA_ID]: spec('x', MODIFIABLE, () => x()),
  [P.CKA_START_DATE]: spec('x', MODIFIABLE, () => x(), dateUpdate),
  [P.CKA_END_DATE]: spec('x', MODIFIABLE, () => x(), dateUpdate),
  [P.CKA_DERIVE]: flag(false),
  [P.CKA_LOCAL]: spec('b', NOT_ON_CREATE | NOT_ON_GENERATE | NOT_ON_UNWRAP, () => b(false), setBool),
  [P.CKA_KEY_GEN_MECHANISM]: spec('u', NOT_ON_CREATE | NOT_ON_GENERATE | NOT_ON_UNWRAP, () => u(P.CK_UNAVAILABLE_INFORMATION), ulongUpdate),
};

const HISTORY = NOT_ON_CREATE | NOT_ON_GENERATE | NOT_ON_UNWRAP;

/** What secret and private keys share: sensitivity, extractability and their history (v2.40 §4.9, §4.10). */
const SENSITIVE_KEY: Record<number, Spec> = {
  [P.CKA_SENSITIVE]: spec('b', MODIFIABLE, () => b(false), sensitiveUpdate),
  [P.CKA_EXTRACTABLE]: spec('b', MODIFIABLE, () => b(false), extractableUpdate),
  [P.CKA_ALWAYS_SENSITIVE]: spec('b', HISTORY, () => b(false), setBool),
  [P.CKA_NEVER_EXTRACTABLE]: spec('b', HISTORY, () => b(true), setBool),
  [P.CKA_WRAP_WITH_TRUSTED]: spec('b', 0, () => b(false), setBool),
};

const SECRET: Record<number, Spec> = {
  ...KEY,
  ...SENSITIVE_KEY,
  ...usages(P.CKA_ENCRYPT, P.CKA_DECRYPT, P.CKA_SIGN, P.CKA_VERIFY, P.CKA_WRAP, P.CKA_UNWRAP),
  [P.CKA_CHECK_VALUE]: spec('x', 0, () => x()),
  [P.CKA_TRUSTED]: spec('b', 0, () => b(false), trustedUpdate),
  [P.CKA_VALUE]: spec('x', NOT_ON_GENERATE | NOT_ON_UNWRAP | SENSITIVE_VALUE, () => x(), valueUpdate),
  [P.CKA_VALUE_LEN]: spec('u', NOT_ON_CREATE, () => u(0), ulongUpdate),
};

/** What EC public and private keys share: the subject (v2.40 §4.8, §4.9) and the curve. */
const EC_KEY: Record<number, Spec> = {
  ...KEY,
  [P.CKA_SUBJECT]: spec('x', MODIFIABLE, () => x()),
  [P.CKA_EC_PARAMS]: spec('x', 0, () => x()),
};

const EC_PUBLIC: Record<number, Spec> = {
  ...EC_KEY,
  ...usages(P.CKA_ENCRYPT, P.CKA_VERIFY, P.CKA_VERIFY_RECOVER, P.CKA_WRAP),
  [P.CKA_TRUSTED]: spec('b', 0, () => b(false), trustedUpdate),
  [P.CKA_EC_POINT]: spec('x', NOT_ON_GENERATE, () => x()),
};

const EC_PRIVATE: Record<number, Spec> = {
  ...EC_KEY,
  ...SENSITIVE_KEY,
  ...usages(P.CKA_DECRYPT, P.CKA_SIGN, P.CKA_SIGN_RECOVER, P.CKA_UNWRAP),
  [P.CKA_ALWAYS_AUTHENTICATE]: spec('b', 0, () => b(false), setBool),
  [P.CKA_VALUE]: spec('x', NOT_ON_GENERATE | NOT_ON_UNWRAP | SENSITIVE_VALUE, () => x(), valueUpdate),
};

/** The attribute set of an object kind, or null when the emulator keeps no such objects. */
export function specsFor(cls: number, keyType: number): Record<number, Spec> | null {
  if (cls === P.CKO_DATA) return DATA;
  if (cls === P.CKO_SECRET_KEY && (keyType === P.CKK_AES || keyType === P.CKK_GENERIC_SECRET)) return SECRET;
  if (cls === P.CKO_PUBLIC_KEY && keyType === P.CKK_EC) return EC_PUBLIC;
  if (cls === P.CKO_PRIVATE_KEY && keyType === P.CKK_EC) return EC_PRIVATE;
  return null;
}

/** A new object's attributes: every attribute of its kind at its default. */
export function defaults(cls: number, keyType: number): Attrs | null {
  const specs = specsFor(cls, keyType);
  if (!specs) return null;
  const a: Attrs = new Map();
  for (const [t, s] of Object.entries(specs)) a.set(Number(t), s.def());
  a.set(P.CKA_CLASS, u(cls));
  if (a.has(P.CKA_KEY_TYPE)) a.set(P.CKA_KEY_TYPE, u(keyType));
  return a;
}

export function getBool(a: Attrs, type: number, dflt: boolean): boolean {
  const v = a.get(type);
  return v && v.t === 'b' ? v.v : dflt;
}

export function getUlong(a: Attrs, type: number, dflt: number): number {
  const v = a.get(type);
  return v && v.t === 'u' ? Number(v.v) : dflt;
}

export function getBytes(a: Attrs, type: number): Buffer {
  const v = a.get(type);
  return v && v.t === 'x' ? v.v : Buffer.alloc(0);
}

function specOf(a: Attrs, type: number): Spec | undefined {
  const specs = specsFor(getUlong(a, P.CKA_CLASS, -1), getUlong(a, P.CKA_KEY_TYPE, -1));
  return specs?.[type];
}

/**
 * Applies `template` to a copy of `attrs` for `op` (v2.40 §4.1.1 / §4.1.3): returns the new
 * attribute map, or the CKR_ code of the first attribute that fails (the object is unchanged).
 */
export function applyTemplate(attrs: Attrs, template: readonly P.Attribute[], op: Op, ctx: PolicyContext): Attrs | number {
  const a: Attrs = new Map(attrs);
  for (const item of template) {
    const s = specOf(a, item.type);
    if (!s) return P.CKR.CKR_ATTRIBUTE_TYPE_INVALID;
    const raw = P.encodeAttributeValue(item.value);
    if (s.kind === 'b' && raw.length !== 1) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
    if (s.kind === 'u' && raw.length !== 8) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
    if (!getBool(a, P.CKA_MODIFIABLE, true)) return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
    if (s.checks & NOT_ON_CREATE && op === 'create') return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
    if (s.checks & NOT_ON_GENERATE && op === 'generate') return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
    if (s.checks & NOT_ON_UNWRAP && op === 'unwrap') return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
    const allowed = (s.checks & MODIFIABLE && (op === 'set' || op === 'copy')) || (s.checks & ON_COPY && op === 'copy') || (op !== 'set' && op !== 'copy');
    if (!allowed) return P.CKR.CKR_ATTRIBUTE_READ_ONLY;
    const rv = s.update ? s.update(a, raw, op, ctx) : 0;
    if (rv > 0) return rv;
    if (rv === 0) a.set(item.type, s.kind === 'b' ? b(raw[0] !== 0) : s.kind === 'u' ? u(raw.readBigUInt64LE(0)) : x(Buffer.from(raw)));
  }
  return a;
}

/** Encodes one attribute as C_GetAttributeValue returns it. */
export function encodeValue(v: AttrValue): Buffer {
  if (v.t === 'b') return Buffer.from([v.v ? 1 : 0]);
  if (v.t === 'u') {
    const out = Buffer.alloc(8);
    out.writeBigUInt64LE(v.v);
    return out;
  }
  return Buffer.from(v.v);
}

/**
 * C_GetAttributeValue (v2.40 §5.7): the values in template order; the first attribute that the
 * object lacks (CKR_ATTRIBUTE_TYPE_INVALID) or may not reveal (CKR_ATTRIBUTE_SENSITIVE) fails
 * the whole call, as in SoftHSM2.
 */
export function readTemplate(a: Attrs, template: readonly P.Attribute[]): P.AttributeResult[] | number {
  const out: P.AttributeResult[] = [];
  for (const item of template) {
    const s = specOf(a, item.type);
    const v = a.get(item.type);
    if (!s || !v) return P.CKR.CKR_ATTRIBUTE_TYPE_INVALID;
    if (s.checks & SENSITIVE_VALUE && (getBool(a, P.CKA_SENSITIVE, false) || !getBool(a, P.CKA_EXTRACTABLE, true))) {
      return P.CKR.CKR_ATTRIBUTE_SENSITIVE;
    }
    out.push({ type: item.type, value: encodeValue(v) });
  }
  return out;
}

/** True if the attribute may never be revealed for this object (never matched by C_FindObjects). */
export function isHidden(a: Attrs, type: number): boolean {
  const s = specOf(a, type);
  return !!s && !!(s.checks & SENSITIVE_VALUE) && (getBool(a, P.CKA_SENSITIVE, false) || !getBool(a, P.CKA_EXTRACTABLE, true));
}

/**
 * C_FindObjects matching (v2.40 §5.7): every template attribute present with an equal value;
 * a boolean template value counts as true only when it is exactly CK_TRUE (1), as in SoftHSM2.
 * Unlike SoftHSM2, a secret the object will not reveal never matches (no find oracle).
 */
export function matches(a: Attrs, template: readonly P.Attribute[]): boolean {
  for (const item of template) {
    const v = a.get(item.type);
    if (!v) return false;
    const raw = P.encodeAttributeValue(item.value);
    if (v.t === 'b') {
      if (raw.length !== 1 || (raw[0] === 1) !== v.v) return false;
    } else if (v.t === 'u') {
      if (raw.length !== 8 || raw.readBigUInt64LE(0) !== v.v) return false;
    } else {
      if (isHidden(a, item.type)) return false;
      if (!raw.equals(v.v)) return false;
    }
  }
  return true;
}

// ---- serialization of an attribute map (persistence) ----
export function encodeAttrs(a: Attrs): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(2);
  head.writeUInt16BE(a.size);
  parts.push(head);
  for (const [type, v] of a) {
    const body = encodeValue(v);
    const h = Buffer.alloc(9);
    h.writeUInt32BE(type, 0);
    h[4] = v.t === 'b' ? 1 : v.t === 'u' ? 2 : 3;
    h.writeUInt32BE(body.length, 5);
    parts.push(h, body);
  }
  return Buffer.concat(parts);
}

export function decodeAttrs(buf: Buffer): Attrs {
  const a: Attrs = new Map();
  let off = 0;
  const need = (n: number) => {
    if (off + n > buf.length) throw new Error('truncated attribute list');
  };
  need(2);
  const n = buf.readUInt16BE(0);
  off = 2;
  for (let i = 0; i < n; i++) {
    need(9);
    const type = buf.readUInt32BE(off);
    const kind = buf[off + 4];
    const len = buf.readUInt32BE(off + 5);
    off += 9;
    need(len);
    const body = Buffer.from(buf.subarray(off, off + len));
    off += len;
    if (kind === 1 && len === 1) a.set(type, b(body[0] !== 0));
    else if (kind === 2 && len === 8) a.set(type, u(body.readBigUInt64LE(0)));
    else if (kind === 3) a.set(type, x(body));
    else throw new Error(`bad attribute ${type}`);
  }
  if (off !== buf.length) throw new Error('trailing bytes in attribute list');
  return a;
}
