/**
 * An in-process platform for firmware tests: an in-memory token (node:crypto, same semantics as
 * the interface: sensitive keys behind handles) and an in-memory NVRAM whose contents a test can
 * snapshot and restore (to play rollback attacks), plus a controllable clock.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { Nvram, Platform } from '../../enclave/platform.ts';
import type { KeyHandle, Token } from '../../enclave/token.ts';
import { TokenError } from '../../enclave/token.ts';

export class MemoryToken implements Token {
  private objects = new Map<KeyHandle, { label: string; kind: 'aes' | 'hmac'; value: Buffer }>();
  private nextHandle = 1;
  failGcm = false;

  findKey(label: string): KeyHandle | null {
    for (const [h, o] of this.objects) if (o.label === label) return h;
    return null;
  }
  generateAesKey(label: string): KeyHandle {
    const h = this.nextHandle++;
    this.objects.set(h, { label, kind: 'aes', value: randomBytes(32) });
    return h;
  }
  generateHmacKey(label: string, len: number): KeyHandle {
    const h = this.nextHandle++;
    this.objects.set(h, { label, kind: 'hmac', value: randomBytes(len) });
    return h;
  }
  private key(h: KeyHandle, kind: 'aes' | 'hmac'): Buffer {
    const o = this.objects.get(h);
    if (!o) throw new TokenError('CKR_OBJECT_HANDLE_INVALID');
    if (o.kind !== kind) throw new TokenError('CKR_KEY_TYPE_INCONSISTENT');
    return o.value;
  }
  encryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
    const c = createCipheriv('aes-256-gcm', this.key(key, 'aes'), iv);
    c.setAAD(aad);
    const out = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
    if (this.failGcm) out[0]! ^= 1;
    return new Uint8Array(out);
  }
  decryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array {
    if (ct.length < 16) throw new TokenError('CKR_ENCRYPTED_DATA_LEN_RANGE');
    const d = createDecipheriv('aes-256-gcm', this.key(key, 'aes'), iv);
    d.setAAD(aad);
    d.setAuthTag(ct.subarray(ct.length - 16));
    try {
      return new Uint8Array(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]));
    } catch {
      throw new TokenError('CKR_ENCRYPTED_DATA_INVALID');
    }
  }
  hmac(key: KeyHandle, hash: 'SHA-256' | 'SHA-512', data: Uint8Array): Uint8Array {
    return new Uint8Array(createHmac(hash === 'SHA-256' ? 'sha256' : 'sha512', this.key(key, 'hmac')).update(data).digest());
  }
  random(n: number): Uint8Array {
    return new Uint8Array(randomBytes(n));
  }
  destroyAllKeys(): void {
    for (const o of this.objects.values()) o.value.fill(0);
    this.objects.clear();
  }
}

export class MemoryNvram implements Nvram {
  data: Uint8Array = new Uint8Array(0);
  writes = 0;
  failWrites = false;
  constructor(readonly size = 256) {}
  read(): Uint8Array {
    return Uint8Array.from(this.data);
  }
  write(d: Uint8Array): void {
    if (this.failWrites) throw new Error('NVRAM write failed');
    if (d.length > this.size) throw new Error('NVRAM region overflow');
    this.data = Uint8Array.from(d);
    this.writes++;
  }
}

export interface TestPlatform extends Platform {
  token: MemoryToken;
  nvram: MemoryNvram;
  clock: { t: number };
  failpoints: Set<string>;
}

export function testPlatform(opts: { partition?: number; partitions?: number; token?: MemoryToken; nvram?: MemoryNvram; operatorKeyHash?: Uint8Array } = {}): TestPlatform {
  const clock = { t: 1_700_000_000_000 };
  const failpoints = new Set<string>();
  return {
    random: (n) => new Uint8Array(randomBytes(n)),
    now: () => clock.t,
    nvram: opts.nvram ?? new MemoryNvram(),
    token: opts.token ?? new MemoryToken(),
    partition: opts.partition ?? 0,
    partitions: opts.partitions ?? 1,
    operatorKeyHash: opts.operatorKeyHash,
    clock,
    failpoints,
    failpoint(name: string) {
      if (failpoints.has(name)) throw new Error(`failpoint ${name}`);
    },
  };
}
