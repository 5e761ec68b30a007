/**
 * The emulator token's PKCS#11 module: a thin dispatcher for the v2.40 §5 functions of the
 * `Pkcs11` interface (enclave/api/pkcs11.ts). Each `C_*` is one call into a function group:
 * general, slots, tokens, PINs, sessions and login (token-ops.ts), objects (object-ops.ts), the
 * cryptographic functions (crypto.ts); all of them work on one state (state.ts: the store,
 * sessions and handles, logins, session objects, key caches, the random pool).
 *
 * It behaves like SoftHSM2 2.6.1 driven through pkcs11js on the subset this project uses: the
 * same checks in the same order, so the same mistake gets the same CKR_ code
 * (test/hsm/tokens/conformance.test.ts). Its deliberate differences are listed in softhsm-config/README.md: PIN
 * lockout, power-on self-tests, zeroization, only P-256 and only this project's mechanisms, no
 * find oracle on secret values, and private objects encrypted at rest under a PIN-wrapped key.
 */
import * as P from '../../../enclave/api/pkcs11.ts';
import { CryptoOps } from './crypto.ts';
import { ObjectOps } from './object-ops.ts';
import type { SelfTestReport } from './kat.ts';
import { EmulatorState } from './state.ts';
import type { EmulatorOptions } from './state.ts';
import { TokenOps } from './token-ops.ts';

export type { EmulatorOptions, LiveObject } from './state.ts';

export class EmulatorModule implements P.Pkcs11 {
  readonly libPath = 'backup-key-vault:emulator';
  private readonly state: EmulatorState;
  private readonly tokens: TokenOps;
  private readonly objects: ObjectOps;
  private readonly crypto: CryptoOps;

  constructor(opts: EmulatorOptions = {}) {
    this.state = new EmulatorState(opts);
    this.tokens = new TokenOps(this.state);
    this.objects = new ObjectOps(this.state);
    this.crypto = new CryptoOps(this.state);
  }

  /** The last power-on self-test report (null before C_Initialize). */
  selfTestReport(): SelfTestReport | null {
    return this.state.selfTestReport();
  }
  /** Device zeroization (state.ts `zeroize`): every token and object destroyed, the store file wiped. */
  zeroize(): void {
    this.state.zeroize();
  }
  /** Entries in the KeyObject cache (tests check it is dropped with its objects). */
  keyObjectCacheSize(): number {
    return this.state.keyObjectCacheSize();
  }
  /** Entries in the decoded-attributes cache (tests check it stays bounded). */
  decodedCacheSize(): number {
    return this.state.decodedCacheSize();
  }

  // ---------------------------------------------------------------- general (§5.4)
  C_Initialize(_options?: P.InitializationOptions): void {
    this.state.initialize();
  }
  C_Finalize(): void {
    this.state.finalize();
  }
  C_GetInfo(): P.ModuleInfo {
    return this.tokens.getInfo();
  }

  // ---------------------------------------------------------------- slots and tokens (§5.5)
  C_GetSlotList(tokenPresent?: boolean): P.Handle[] {
    return this.tokens.getSlotList(tokenPresent);
  }
  C_GetSlotInfo(slot: P.Handle): P.SlotInfo {
    return this.tokens.getSlotInfo(slot);
  }
  C_GetTokenInfo(slot: P.Handle): P.TokenInfo {
    return this.tokens.getTokenInfo(slot);
  }
  C_GetMechanismList(slot: P.Handle): number[] {
    return this.tokens.getMechanismList(slot);
  }
  C_GetMechanismInfo(slot: P.Handle, mech: number): P.MechanismInfo {
    return this.tokens.getMechanismInfo(slot, mech);
  }
  /** Returns the padded label (pkcs11js's declared result, which graphene-pk11 reads). */
  C_InitToken(slot: P.Handle, pin?: string, label?: string): string {
    return this.tokens.initToken(slot, pin, label);
  }
  C_InitPIN(session: P.Handle, pin?: string): void {
    this.tokens.initPin(session, pin);
  }
  C_SetPIN(session: P.Handle, oldPin: string, newPin: string): void {
    this.tokens.setPin(session, oldPin, newPin);
  }

  // ---------------------------------------------------------------- sessions (§5.6)
  C_OpenSession(slot: P.Handle, flags: number): P.Handle {
    return this.tokens.openSession(slot, flags);
  }
  C_CloseSession(session: P.Handle): void {
    this.tokens.closeSession(session);
  }
  C_CloseAllSessions(slot: P.Handle): void {
    this.tokens.closeAllSessions(slot);
  }
  C_GetSessionInfo(session: P.Handle): P.SessionInfo {
    return this.tokens.getSessionInfo(session);
  }
  C_Login(session: P.Handle, userType: number, pin?: string): void {
    this.tokens.login(session, userType, pin);
  }
  C_Logout(session: P.Handle): void {
    this.tokens.logout(session);
  }

  // ---------------------------------------------------------------- objects (§5.7)
  C_CreateObject(session: P.Handle, template: P.Template): P.Handle {
    return this.objects.createObject(session, template);
  }
  C_CopyObject(session: P.Handle, object: P.Handle, template: P.Template): P.Handle {
    return this.objects.copyObject(session, object, template);
  }
  C_DestroyObject(session: P.Handle, object: P.Handle): void {
    this.objects.destroyObject(session, object);
  }
  C_GetAttributeValue(session: P.Handle, object: P.Handle, template: P.Template): P.AttributeResult[] {
    return this.objects.getAttributeValue(session, object, template);
  }
  C_SetAttributeValue(session: P.Handle, object: P.Handle, template: P.Template): void {
    this.objects.setAttributeValue(session, object, template);
  }
  C_FindObjectsInit(session: P.Handle, template: P.Template): void {
    this.objects.findObjectsInit(session, template);
  }
  C_FindObjects(session: P.Handle): P.Handle | null;
  C_FindObjects(session: P.Handle, maxObjectCount: number): P.Handle[];
  C_FindObjects(session: P.Handle, maxObjectCount?: number): P.Handle | null | P.Handle[] {
    return maxObjectCount === undefined ? this.objects.findObjects(session) : this.objects.findObjects(session, maxObjectCount);
  }
  C_FindObjectsFinal(session: P.Handle): void {
    this.objects.findObjectsFinal(session);
  }

  // ---------------------------------------------------------------- cryptography (§5.8-5.14)
  C_EncryptInit(session: P.Handle, mechanism: P.Mechanism, key: P.Handle): void {
    this.crypto.encryptInit(session, mechanism, key);
  }
  C_Encrypt(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.encrypt(session, inData, outData);
  }
  C_EncryptUpdate(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.encryptUpdate(session, inData, outData);
  }
  C_EncryptFinal(session: P.Handle, outData: Buffer): Buffer {
    return this.crypto.encryptFinal(session, outData);
  }
  C_DecryptInit(session: P.Handle, mechanism: P.Mechanism, key: P.Handle): void {
    this.crypto.decryptInit(session, mechanism, key);
  }
  C_Decrypt(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.decrypt(session, inData, outData);
  }
  C_DecryptUpdate(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.decryptUpdate(session, inData, outData);
  }
  C_DecryptFinal(session: P.Handle, outData: Buffer): Buffer {
    return this.crypto.decryptFinal(session, outData);
  }
  C_SignInit(session: P.Handle, mechanism: P.Mechanism, key: P.Handle): void {
    this.crypto.signInit('sign', session, mechanism, key);
  }
  C_Sign(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.sign(session, inData, outData);
  }
  C_SignUpdate(session: P.Handle, inData: Buffer): void {
    this.crypto.macUpdate('sign', session, inData);
  }
  C_SignFinal(session: P.Handle, outData: Buffer): Buffer {
    return this.crypto.signFinal(session, outData);
  }
  C_VerifyInit(session: P.Handle, mechanism: P.Mechanism, key: P.Handle): void {
    this.crypto.signInit('verify', session, mechanism, key);
  }
  C_Verify(session: P.Handle, inData: Buffer, signature: Buffer): boolean {
    return this.crypto.verify(session, inData, signature);
  }
  C_VerifyUpdate(session: P.Handle, inData: Buffer): void {
    this.crypto.macUpdate('verify', session, inData);
  }
  C_VerifyFinal(session: P.Handle, signature: Buffer): boolean {
    return this.crypto.verifyFinal(session, signature);
  }
  C_GenerateKey(session: P.Handle, mechanism: P.Mechanism, template: P.Template): P.Handle {
    return this.crypto.generateKey(session, mechanism, template);
  }
  C_GenerateKeyPair(session: P.Handle, mechanism: P.Mechanism, publicKeyTemplate: P.Template, privateKeyTemplate: P.Template): P.KeyPair {
    return this.crypto.generateKeyPair(session, mechanism, publicKeyTemplate, privateKeyTemplate);
  }
  C_WrapKey(session: P.Handle, mechanism: P.Mechanism, wrappingKey: P.Handle, key: P.Handle, wrappedKey: Buffer): Buffer {
    return this.crypto.wrapKey(session, mechanism, wrappingKey, key, wrappedKey);
  }
  C_UnwrapKey(session: P.Handle, mechanism: P.Mechanism, unwrappingKey: P.Handle, wrappedKey: Buffer, template: P.Template): P.Handle {
    return this.crypto.unwrapKey(session, mechanism, unwrappingKey, wrappedKey, template);
  }
  C_DeriveKey(session: P.Handle, mechanism: P.Mechanism, key: P.Handle, template: P.Template): P.Handle {
    return this.crypto.deriveKey(session, mechanism, key, template);
  }
  C_GenerateRandom(session: P.Handle, buf: Buffer): Buffer {
    return this.state.generateRandom(session, buf);
  }
}
