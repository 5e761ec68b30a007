/**
 * Where the vault token's PINs live (hsm/tokens/token-pins.ts): never in the data folder. A
 * copy of the data folder alone does not open the token (TokenPinError, and no file of the folder
 * holds a PIN's bytes); a pin file or operator folder inside the data folder is refused; the
 * development-mode operator folder is 0700 with 0600 files; an older data folder whose token.json
 * still holds the PINs is migrated on open (PINs moved out, token.json rewritten durably, one log
 * line) and keeps working; PINs given by the operator (file or values) open the token, and the SO
 * PIN is needed only to create it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Pkcs11Token } from '../../../enclave/token-pkcs11.ts';
import { TOKEN_CONFIG_FILE } from '../../../hsm/tokens/config.ts';
import { EMULATOR_STORE_FILE } from '../../../hsm/tokens/emulator/backend.ts';
import { openVaultToken } from '../../../hsm/tokens/open.ts';
import type { OpenTokenOptions } from '../../../hsm/tokens/open.ts';
import {
  TokenPinError,
  TokenPinErrorCode,
  defaultOperatorDir,
  operatorPinsFile,
  parsePinFile,
  readOperatorPins,
} from '../../../hsm/tokens/token-pins.ts';
import type { TokenPinSource } from '../../../enclave/api/device.ts';
import { VaultHost } from '../../../host/vault/vault-host.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-token-pins-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => path.join(root, `d${n++}`);
const fast = { pinKdfIterations: 1000, revalidateMs: 0 };

function open(dataDir: string, pins?: TokenPinSource, log?: (l: string) => void): Pkcs11Token {
  const opts: OpenTokenOptions = { emulator: fast, ...(pins && { pins }), ...(log && { log }) };
  const o = openVaultToken(dataDir, 'emulator', opts);
  return new Pkcs11Token({ module: o.module, label: o.label, userPin: o.userPin, exclusive: o.exclusive });
}

function pinError(fn: () => unknown): TokenPinError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TokenPinError) return e;
    throw e;
  }
  throw new Error('expected a TokenPinError');
}

/** Every file under `dir` whose bytes contain `needle` (the test's grep). */
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && fs.readFileSync(p).includes(Buffer.from(needle, 'utf8'))) hits.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return hits;
}

const label = (dir: string) => (JSON.parse(fs.readFileSync(path.join(dir, TOKEN_CONFIG_FILE), 'utf8')) as { label: string }).label;

/** Makes `dir` look like a data folder from before: token.json version 1 with the PINs, no operator folder. */
function makeOld(dir: string): { soPin: string; userPin: string } {
  const l = label(dir);
  const pins = readOperatorPins(defaultOperatorDir(dir), l)!;
  fs.writeFileSync(
    path.join(dir, TOKEN_CONFIG_FILE),
    `${JSON.stringify({ format: 'backup-key-vault token', version: 1, kind: 'emulator', label: l, soPin: pins.soPin, userPin: pins.userPin }, null, 2)}\n`,
  );
  fs.rmSync(defaultOperatorDir(dir), { recursive: true });
  return pins;
}

describe('token PINs live outside the data folder', () => {
  it('development mode: the PINs go to <data>.operator (0700, file 0600); token.json and no other file of the data folder holds them', () => {
    const dir = freshDir();
    const t = open(dir);
    t.generateAesKey('k');
    t.writeData('nv', Buffer.from('state'));
    const op = defaultOperatorDir(dir);
    expect(op).toBe(`${path.resolve(dir)}.operator`);
    expect(fs.statSync(op).mode & 0o777).toBe(0o700);
    const file = operatorPinsFile(op, label(dir));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const pins = readOperatorPins(op, label(dir))!;
    expect(pins.userPin).toMatch(/^[0-9a-f]{32}$/);
    expect(pins.soPin).toMatch(/^[0-9a-f]{32}$/);
    expect(pins.soPin).not.toBe(pins.userPin);
    expect(filesContaining(dir, pins.userPin)).toEqual([]);
    expect(filesContaining(dir, pins.soPin)).toEqual([]);
    expect(Object.keys(JSON.parse(fs.readFileSync(path.join(dir, TOKEN_CONFIG_FILE), 'utf8')) as object).sort()).toEqual(['format', 'kind', 'label', 'version']);
    // Reopened with the same folder: the same token, the key is there.
    expect(open(dir).findKey('k')).not.toBeNull();
  });

  it('a copy of the data folder alone can not open the token: TokenPinError PinsMissing, and no file of it holds a PIN', () => {
    const dir = freshDir();
    open(dir).generateAesKey('k');
    const pins = readOperatorPins(defaultOperatorDir(dir), label(dir))!;
    const copy = path.join(root, `copy-${n++}`);
    fs.cpSync(dir, copy, { recursive: true });
    for (const pin of [pins.userPin, pins.soPin]) expect(filesContaining(copy, pin)).toEqual([]);
    const e = pinError(() => open(copy));
    expect(e.code).toBe(TokenPinErrorCode.PinsMissing);
    expect(e.message).toMatch(/PINs are not in .*copy-\d+\.operator/);
    // Nothing was created for the copy: no operator folder, token.json as it was.
    expect(fs.existsSync(defaultOperatorDir(copy))).toBe(false);
    expect(fs.readFileSync(path.join(copy, TOKEN_CONFIG_FILE), 'utf8')).toBe(fs.readFileSync(path.join(dir, TOKEN_CONFIG_FILE), 'utf8'));
    // With the PINs the operator holds, the copy opens (the copy is the device; only the PINs were missing).
    expect(open(copy, { userPin: pins.userPin }).findKey('k')).not.toBeNull();
  });

  it('a wrong user PIN is TokenPinError PinIncorrect at the device, not a token error', async () => {
    const dir = freshDir();
    open(dir).generateAesKey('k');
    const copy = path.join(root, `copy-${n++}`);
    fs.cpSync(dir, copy, { recursive: true });
    await expect(VaultHost.open({ dataDir: copy, partitions: 1 })).rejects.toThrow(/TokenPinError: the token .* exists, but its PINs are not in/);
    await expect(VaultHost.open({ dataDir: copy, partitions: 1, tokenPins: { userPin: '0123456789abcdef0123456789abcdef' } })).rejects.toThrow(
      /TokenPinError: the token refused the user PIN .*CKR_PIN_INCORRECT/,
    );
    fs.rmSync(defaultOperatorDir(copy), { recursive: true, force: true });
  }, 60_000);

  it('a pin file or operator folder inside the data folder is refused (InsideDataFolder), a symbolic link to one too', () => {
    const dir = freshDir();
    fs.mkdirSync(dir, { recursive: true });
    const inside = path.join(dir, 'pins.txt');
    fs.writeFileSync(inside, 'user-pin-1234\nso-pin-5678\n', { mode: 0o600 });
    let e = pinError(() => open(dir, { pinFile: inside }));
    expect(e.code).toBe(TokenPinErrorCode.InsideDataFolder);
    expect(e.message).toMatch(/the token pin file .*pins\.txt lies inside the data folder/);
    e = pinError(() => open(dir, { operatorDir: path.join(dir, 'operator') }));
    expect(e.code).toBe(TokenPinErrorCode.InsideDataFolder);
    // A link outside the data folder that points into it.
    const link = path.join(root, `link-${n++}`);
    fs.symlinkSync(inside, link);
    expect(pinError(() => open(dir, { pinFile: link })).code).toBe(TokenPinErrorCode.InsideDataFolder);
    expect(fs.existsSync(path.join(dir, TOKEN_CONFIG_FILE))).toBe(false);
  });

  it('a pin file outside the data folder: line 1 the user PIN, line 2 the SO PIN (needed only to create the token)', () => {
    const dir = freshDir();
    const pinFile = path.join(root, `pins-${n++}.txt`);
    fs.writeFileSync(pinFile, 'operator user pin\n', { mode: 0o600 });
    // A new data folder needs the SO PIN.
    expect(pinError(() => open(dir, { pinFile })).code).toBe(TokenPinErrorCode.SoPinNeeded);
    expect(fs.existsSync(path.join(dir, TOKEN_CONFIG_FILE))).toBe(false);
    fs.writeFileSync(pinFile, 'operator user pin\r\noperator so pin\r\n');
    open(dir, { pinFile }).generateAesKey('k');
    expect(fs.existsSync(defaultOperatorDir(dir))).toBe(false);
    for (const pin of ['operator user pin', 'operator so pin']) expect(filesContaining(dir, pin)).toEqual([]);
    // Afterwards the user PIN alone opens it.
    fs.writeFileSync(pinFile, 'operator user pin\n');
    expect(open(dir, { pinFile }).findKey('k')).not.toBeNull();
    expect(open(dir, { userPin: 'operator user pin' }).findKey('k')).not.toBeNull();
    expect(pinError(() => parsePinFile('', 'f')).code).toBe(TokenPinErrorCode.BadPinFile);
    expect(pinError(() => parsePinFile('abc\n', 'f')).code).toBe(TokenPinErrorCode.BadPinFile); // too short
    expect(pinError(() => parsePinFile('abcd\nefgh\nijkl\n', 'f')).code).toBe(TokenPinErrorCode.BadPinFile);
    expect(parsePinFile('abcd\n\n', 'f')).toEqual({ userPin: 'abcd' });
  });

  it('an operator folder open to other users is refused', () => {
    const dir = freshDir();
    open(dir);
    fs.chmodSync(defaultOperatorDir(dir), 0o755);
    expect(pinError(() => open(dir)).code).toBe(TokenPinErrorCode.OperatorDirOpen);
  });
});

describe('an older data folder (token.json holding the PINs) is migrated on open', () => {
  it('development mode: the PINs move to the operator folder, token.json is rewritten without them, one log line; the same token opens', () => {
    const dir = freshDir();
    open(dir).generateAesKey('k');
    const pins = makeOld(dir);
    expect(filesContaining(dir, pins.userPin)).toEqual([TOKEN_CONFIG_FILE]);
    const lines: string[] = [];
    const t = open(dir, undefined, (l) => lines.push(l));
    expect(t.findKey('k')).not.toBeNull();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/token PINs moved out of the data folder: from .*token\.json to .*\.operator\/token-bkv-[0-9a-f]{12}\.json/);
    expect(lines[0]).not.toContain(pins.userPin);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, TOKEN_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
    expect(cfg.version).toBe(2);
    expect(cfg).not.toHaveProperty('userPin');
    expect(cfg).not.toHaveProperty('soPin');
    for (const pin of [pins.userPin, pins.soPin]) expect(filesContaining(dir, pin)).toEqual([]);
    expect(readOperatorPins(defaultOperatorDir(dir), label(dir))).toEqual(pins);
    expect(fs.statSync(defaultOperatorDir(dir)).mode & 0o777).toBe(0o700);
    // Once only: the next open says nothing.
    open(dir, undefined, (l) => lines.push(l));
    expect(lines).toHaveLength(1);
  });

  it('with the operator\'s PINs: they must be the ones token.json holds (both), then token.json loses them', () => {
    const dir = freshDir();
    open(dir).generateAesKey('k');
    const pins = makeOld(dir);
    const before = fs.readFileSync(path.join(dir, TOKEN_CONFIG_FILE), 'utf8');
    const pinFile = path.join(root, `pins-${n++}.txt`);
    fs.writeFileSync(pinFile, 'some other pin\n', { mode: 0o600 });
    expect(pinError(() => open(dir, { pinFile })).code).toBe(TokenPinErrorCode.PinMismatch);
    fs.writeFileSync(pinFile, `${pins.userPin}\n`);
    const noSo = pinError(() => open(dir, { pinFile }));
    expect(noSo.code).toBe(TokenPinErrorCode.SoPinNeeded);
    expect(noSo.message).toMatch(/so that it is not lost/);
    expect(fs.readFileSync(path.join(dir, TOKEN_CONFIG_FILE), 'utf8')).toBe(before); // nothing changed
    fs.writeFileSync(pinFile, `${pins.userPin}\n${pins.soPin}\n`);
    const lines: string[] = [];
    expect(open(dir, { pinFile }, (l) => lines.push(l)).findKey('k')).not.toBeNull();
    expect(lines).toEqual([expect.stringMatching(/token PINs removed from .*token\.json: the token now opens only with the PINs from the pin file/)]);
    for (const pin of [pins.userPin, pins.soPin]) expect(filesContaining(dir, pin)).toEqual([]);
    expect(fs.existsSync(defaultOperatorDir(dir))).toBe(false);
  });

  it('a whole vault: an older data folder opens through the devices, keeps its keys, and loses the PINs from token.json', async () => {
    const dir = freshDir();
    const a = await VaultHost.open({ dataDir: dir, partitions: 2 });
    const key = Buffer.from(a.info.enclavePublicKey).toString('hex');
    await a.close();
    const pins = makeOld(dir);
    const b = await VaultHost.open({ dataDir: dir, partitions: 2 });
    try {
      expect(Buffer.from(b.info.enclavePublicKey).toString('hex')).toBe(key); // the same token keys
    } finally {
      await b.close();
    }
    for (const pin of [pins.userPin, pins.soPin]) expect(filesContaining(dir, pin)).toEqual([]);
    expect(readOperatorPins(defaultOperatorDir(dir), label(dir))).toEqual(pins);
    expect(fs.existsSync(path.join(dir, EMULATOR_STORE_FILE))).toBe(true);
  }, 60_000);
});
