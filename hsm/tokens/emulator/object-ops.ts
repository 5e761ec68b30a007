/**
 * The emulator's object functions, PKCS#11 v2.40 §5.7: create, copy, destroy, get and set
 * attributes, find; over the module's state (state.ts), with the attribute policy of
 * attributes.ts and objects.ts, checked in SoftHSM2's order. A search sees private objects only
 * when the user is logged in, and never matches on secret values.
 */
import * as P from '../../../enclave/api/pkcs11.ts';
import { applyTemplate, getBool, getBytes, matches, readTemplate } from './attributes.ts';
import { checkValue } from './mechanisms.ts';
import { buildObject, extractInfo, MAX_TEMPLATE, requireClass } from './objects.ts';
import { haveRead, haveWrite } from './session-table.ts';
import type { EmulatorState } from './state.ts';

const { CKR } = P;

export class ObjectOps {
  constructor(private readonly m: EmulatorState) {}
  // ---------------------------------------------------------------- objects (§5.7)
  createObject(session: P.Handle, template: P.Template): P.Handle {
    this.m.requireInit();
    const s = this.m.session(session, 'C_CreateObject');
    const info = extractInfo(template, { cls: P.CKO_DATA, keyType: P.CKK_VENDOR_DEFINED, token: false, private: true });
    this.m.check(requireClass(info), 'C_CreateObject');
    this.m.check(haveWrite(this.m.state(s), info.token, info.private), 'C_CreateObject');
    const attrs = this.m.check(buildObject(info, template, 'create', this.m.ctx(s)), 'C_CreateObject');
    if (info.cls === P.CKO_SECRET_KEY && !template.some((a) => a.type === P.CKA_VALUE)) P.fail(CKR.CKR_TEMPLATE_INCOMPLETE, 'C_CreateObject');
    if (info.cls === P.CKO_SECRET_KEY) {
      // The key check value (v3.0 §4.10.2): computed when the template has none, checked when it has one.
      const given = template.find((a) => a.type === P.CKA_CHECK_VALUE);
      const kcv = checkValue(info.keyType, getBytes(attrs, P.CKA_VALUE));
      if (!given) attrs.set(P.CKA_CHECK_VALUE, { t: 'x', v: kcv });
      else if (P.encodeAttributeValue(given.value).length > 0 && !P.encodeAttributeValue(given.value).equals(kcv)) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, 'C_CreateObject');
    }
    if (info.cls === P.CKO_SECRET_KEY || info.cls === P.CKO_PRIVATE_KEY) {
      attrs.set(P.CKA_LOCAL, { t: 'b', v: false });
      attrs.set(P.CKA_ALWAYS_SENSITIVE, { t: 'b', v: false });
      attrs.set(P.CKA_NEVER_EXTRACTABLE, { t: 'b', v: false });
    } else if (info.cls === P.CKO_PUBLIC_KEY) {
      attrs.set(P.CKA_LOCAL, { t: 'b', v: false });
    }
    return P.handleOf(this.m.insertObject(s, attrs));
  }

  copyObject(session: P.Handle, object: P.Handle, template: P.Template): P.Handle {
    this.m.requireInit();
    const s = this.m.session(session, 'C_CopyObject');
    const o = this.m.object(object, CKR.CKR_OBJECT_HANDLE_INVALID, 'C_CopyObject', true);
    const wasToken = getBool(o.attrs, P.CKA_TOKEN, false);
    const wasPrivate = getBool(o.attrs, P.CKA_PRIVATE, true);
    this.m.check(haveRead(this.m.state(s), wasToken, wasPrivate), 'C_CopyObject');
    if (!getBool(o.attrs, P.CKA_COPYABLE, true)) P.fail(CKR.CKR_ACTION_PROHIBITED, 'C_CopyObject');
    const info = extractInfo(template, { cls: 0, keyType: 0, token: wasToken, private: wasPrivate });
    if (wasPrivate && !info.private) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, 'C_CopyObject');
    this.m.check(haveWrite(this.m.state(s), info.token, info.private), 'C_CopyObject');
    if (template.length > MAX_TEMPLATE) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, 'C_CopyObject');
    const attrs = this.m.check(applyTemplate(o.attrs, template, 'copy', this.m.ctx(s)), 'C_CopyObject');
    return P.handleOf(this.m.insertObject(s, attrs));
  }

  destroyObject(session: P.Handle, object: P.Handle): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_DestroyObject');
    const o = this.m.object(object, CKR.CKR_OBJECT_HANDLE_INVALID, 'C_DestroyObject', true);
    this.m.check(haveWrite(this.m.state(s), getBool(o.attrs, P.CKA_TOKEN, false), getBool(o.attrs, P.CKA_PRIVATE, true)), 'C_DestroyObject');
    if (!getBool(o.attrs, P.CKA_DESTROYABLE, true)) P.fail(CKR.CKR_ACTION_PROHIBITED, 'C_DestroyObject');
    this.m.removeObject(o);
  }

  getAttributeValue(session: P.Handle, object: P.Handle, template: P.Template): P.AttributeResult[] {
    this.m.requireInit();
    const s = this.m.session(session, 'C_GetAttributeValue');
    const o = this.m.object(object, CKR.CKR_OBJECT_HANDLE_INVALID, 'C_GetAttributeValue', true);
    this.m.check(haveRead(this.m.state(s), getBool(o.attrs, P.CKA_TOKEN, false), getBool(o.attrs, P.CKA_PRIVATE, true)), 'C_GetAttributeValue');
    return this.m.check(readTemplate(o.attrs, template), 'C_GetAttributeValue');
  }

  setAttributeValue(session: P.Handle, object: P.Handle, template: P.Template): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_SetAttributeValue');
    const o = this.m.object(object, CKR.CKR_OBJECT_HANDLE_INVALID, 'C_SetAttributeValue', true);
    this.m.check(haveWrite(this.m.state(s), getBool(o.attrs, P.CKA_TOKEN, false), getBool(o.attrs, P.CKA_PRIVATE, true)), 'C_SetAttributeValue');
    if (!getBool(o.attrs, P.CKA_MODIFIABLE, true)) P.fail(CKR.CKR_ACTION_PROHIBITED, 'C_SetAttributeValue');
    const attrs = this.m.check(applyTemplate(o.attrs, template, 'set', this.m.ctx(s)), 'C_SetAttributeValue');
    this.m.replaceObject(o, attrs);
  }

  findObjectsInit(session: P.Handle, template: P.Template): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_FindObjectsInit');
    if (s.op) P.fail(CKR.CKR_OPERATION_ACTIVE, 'C_FindObjectsInit');
    const state = this.m.state(s);
    const isPublic = state === P.CKS_RO_PUBLIC_SESSION || state === P.CKS_RW_PUBLIC_SESSION;
    const found = new Set<number>();
    const t = this.m.token(s.serial, true);
    for (const so of t.objects) {
      if (isPublic && so.private) continue;
      const attrs = this.m.decode(s.serial, so);
      if (!attrs || !matches(attrs, template)) continue;
      found.add(this.m.handles.object(s.serial, so.uid, so.private, null));
    }
    for (const o of this.m.sessionObjects.values()) {
      if (o.serial !== s.serial || (isPublic && o.private)) continue;
      if (matches(o.attrs, template)) found.add(this.m.handles.object(o.serial, o.uid, o.private, o.session));
    }
    s.op = { kind: 'find', handles: [...found].sort((a, b) => a - b) };
  }

  findObjects(session: P.Handle): P.Handle | null;
  findObjects(session: P.Handle, maxObjectCount: number): P.Handle[];
  findObjects(session: P.Handle, maxObjectCount?: number): P.Handle | null | P.Handle[] {
    this.m.requireInit();
    if (maxObjectCount !== undefined && !(maxObjectCount >= 1)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_FindObjects');
    const s = this.m.session(session, 'C_FindObjects');
    if (s.op?.kind !== 'find') P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, 'C_FindObjects');
    const n = maxObjectCount ?? 1;
    const out = s.op.handles.splice(0, n).map((h) => P.handleOf(h));
    if (maxObjectCount === undefined) return out[0] ?? null;
    return out;
  }

  findObjectsFinal(session: P.Handle): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_FindObjectsFinal');
    if (s.op?.kind !== 'find') P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, 'C_FindObjectsFinal');
    s.op = null;
  }
}
