/**
 * Building objects from templates, PKCS#11 v2.40 §4.1.1 (creating objects: the five error
 * rules), in the order SoftHSM2 applies them so that the first error is the same one:
 *   1. the class, key type, CKA_TOKEN and CKA_PRIVATE are read from the template first (a
 *      CKA_CLASS missing is CKR_TEMPLATE_INCOMPLETE where the call needs one, and so is a
 *      CKA_KEY_TYPE for a key);
 *   2. more than 32 attributes is CKR_TEMPLATE_INCONSISTENT;
 *   3. the object starts at its class's defaults and the template is applied in order, with
 *      CKA_CHECK_VALUE last (attributes.ts applyTemplate).
 */
import * as P from '../../../enclave/api/pkcs11.ts';
import { applyTemplate, defaults } from './attributes.ts';
import type { Attrs, Op, PolicyContext } from './attributes.ts';

export const MAX_TEMPLATE = 32;

export interface TemplateInfo {
  cls: number;
  keyType: number;
  token: boolean;
  private: boolean;
  hasClass: boolean;
  hasKeyType: boolean;
}

/** Reads class, key type, CKA_TOKEN and CKA_PRIVATE (values of the wrong size are ignored). */
export function extractInfo(template: readonly P.Attribute[], dflt: { cls: number; keyType: number; token: boolean; private: boolean }): TemplateInfo {
  const info: TemplateInfo = { ...dflt, hasClass: false, hasKeyType: false };
  for (const a of template) {
    const raw = P.encodeAttributeValue(a.value);
    switch (a.type) {
      case P.CKA_CLASS:
        if (raw.length === 8) {
          info.cls = Number(raw.readBigUInt64LE(0));
          info.hasClass = true;
        }
        break;
      case P.CKA_KEY_TYPE:
        if (raw.length === 8) {
          info.keyType = Number(raw.readBigUInt64LE(0));
          info.hasKeyType = true;
        }
        break;
      case P.CKA_TOKEN:
        if (raw.length === 1) info.token = raw[0] !== 0;
        break;
      case P.CKA_PRIVATE:
        if (raw.length === 1) info.private = raw[0] !== 0;
        break;
    }
  }
  return info;
}

/** Rule 1 for calls that take an explicit template (C_CreateObject, C_UnwrapKey, C_DeriveKey). */
export function requireClass(info: TemplateInfo): number {
  if (!info.hasClass) return P.CKR.CKR_TEMPLATE_INCOMPLETE;
  const isKey = info.cls === P.CKO_PUBLIC_KEY || info.cls === P.CKO_PRIVATE_KEY || info.cls === P.CKO_SECRET_KEY;
  if (isKey && !info.hasKeyType) return P.CKR.CKR_TEMPLATE_INCOMPLETE;
  return 0;
}

/** The header a generating call puts before the caller's attributes (which lose theirs). */
export function withHeader(info: TemplateInfo, template: readonly P.Attribute[], drop: readonly number[]): P.Attribute[] | number {
  if (template.length > MAX_TEMPLATE - 4) return P.CKR.CKR_TEMPLATE_INCONSISTENT;
  const out: P.Attribute[] = [
    { type: P.CKA_CLASS, value: info.cls },
    { type: P.CKA_TOKEN, value: info.token },
    { type: P.CKA_PRIVATE, value: info.private },
    { type: P.CKA_KEY_TYPE, value: info.keyType },
  ];
  for (const a of template) if (![P.CKA_CLASS, P.CKA_TOKEN, P.CKA_PRIVATE, P.CKA_KEY_TYPE, ...drop].includes(a.type)) out.push(a);
  return out;
}

/** A new object's attributes, or the CKR_ code of the first failing rule. */
export function buildObject(info: TemplateInfo, template: readonly P.Attribute[], op: Op, ctx: PolicyContext): Attrs | number {
  if (template.length > MAX_TEMPLATE) return P.CKR.CKR_TEMPLATE_INCONSISTENT;
  const base = defaults(info.cls, info.keyType);
  if (!base) return P.CKR.CKR_ATTRIBUTE_VALUE_INVALID;
  const ordered = [...template.filter((a) => a.type !== P.CKA_CHECK_VALUE), ...template.filter((a) => a.type === P.CKA_CHECK_VALUE)];
  return applyTemplate(base, ordered, op, ctx);
}
