/**
 * The native SHA-256: build/Release/blobcore_sha256.node (native/sha256.c), a tiny N-API
 * addon over the SHA256_Init/Update/Final that Node's bundled OpenSSL exports.
 *
 * The OpenSSL SHA256_CTX (112 bytes) lives in a JS-owned Uint8Array; its fields, in host
 * byte order, are
 *
 *   word 0..7    h[0..7]    chaining words
 *   word 8, 9    Nl, Nh     message length in BITS, low and high 32 bits
 *   byte 40..103 data       the partial block's bytes, in memory order
 *   word 26      num        bytes in data (< 64)
 *   word 27      md_len     32
 *
 * so converting to and from the canonical state (state.ts) is a field copy. The layout is
 * checked against known vectors when the addon is loaded; a mismatch refuses the addon.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { blobError } from '../errors.js';
import { checkState, encodeState, SHA256_IV, type Sha256State } from './state.js';
import type { ResumableSha256 } from './types.js';

export interface NativeBinding {
  readonly CTX_SIZE: number;
  init(ctx: Uint8Array): void;
  update(ctx: Uint8Array, data: ArrayBufferView): void;
  digest(ctx: Uint8Array): string;
  /** A SHA-256 byte tap (native/byte-tap.h) that blobcore_buffers' readInto can feed. */
  createTap(): object;
  /** Feeds bytes to a tap on this thread, after any reads still feeding it. */
  tapUpdate(tap: object, data: ArrayBufferView): void;
  /** 'sha256:<hex>' of the bytes fed; throws if a read that fed the tap failed. */
  tapDigest(tap: object): string;
}

export const NATIVE_CTX_SIZE = 112;
const W_NL = 8;
const W_NH = 9;
const DATA_OFFSET = 40;
const W_NUM = 26;
const W_MD_LEN = 27;
const ADDON_FILE = join('build', 'Release', 'blobcore_sha256.node');

/** The blobcore package root: the nearest package.json named blobcore above this file. */
export function packageRoot(from: string = fileURLToPath(import.meta.url)): string {
  let dir = dirname(from);
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const { name } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown };
      if (name === 'blobcore') return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no blobcore package.json above ${from}`);
    dir = parent;
  }
}

export function nativeAddonPath(): string {
  return join(packageRoot(), ADDON_FILE);
}

let cached: { binding: NativeBinding } | { error: Error } | undefined;

/**
 * Loads and self-checks the addon once per module instance; throws (the same Error each
 * time) when it is missing, fails to load, or does not behave like OpenSSL's SHA-256.
 */
export function loadNativeBinding(): NativeBinding {
  if (cached === undefined) {
    try {
      const path = nativeAddonPath();
      if (!existsSync(path)) throw new Error(`${path} not found (build it with: npm rebuild blobcore)`);
      const binding = createRequire(import.meta.url)(path) as NativeBinding;
      selfCheck(binding);
      cached = { binding };
    } catch (error) {
      cached = { error: error instanceof Error ? error : new Error(String(error)) };
    }
  }
  if ('error' in cached) throw cached.error;
  return cached.binding;
}

function words(ctx: Uint8Array): Uint32Array {
  return new Uint32Array(ctx.buffer, ctx.byteOffset, NATIVE_CTX_SIZE / 4);
}

/** Reads a native SHA256_CTX into a canonical state; rejects an impossible context. */
export function nativeCtxToState(ctx: Uint8Array): Sha256State {
  if (ctx.byteLength !== NATIVE_CTX_SIZE || ctx.byteOffset % 4 !== 0) {
    throw blobError('BLOB_UPLOAD_INVALID', `invalid native hash context: ${ctx.byteLength} bytes`);
  }
  const w = words(ctx);
  const num = w[W_NUM] ?? 0;
  const mdLen = w[W_MD_LEN] ?? 0;
  const nl = w[W_NL] ?? 0;
  const nh = w[W_NH] ?? 0;
  if (num >= 64) throw blobError('BLOB_UPLOAD_INVALID', `invalid native hash context: num ${num} ≥ 64`);
  if (mdLen !== 32) throw blobError('BLOB_UPLOAD_INVALID', `invalid native hash context: md_len ${mdLen}`);
  if (nl % 8 !== 0) throw blobError('BLOB_UPLOAD_INVALID', 'invalid native hash context: bit count');
  const state: Sha256State = {
    h: Array.from(w.subarray(0, 8)),
    bytesHashed: nh * 2 ** 29 + nl / 8,
    buffer: ctx.slice(DATA_OFFSET, DATA_OFFSET + num),
  };
  checkState(state);
  return state;
}

/** Writes a canonical state into a fresh native SHA256_CTX. */
export function stateToNativeCtx(state: Sha256State): Uint8Array {
  checkState(state);
  const ctx = new Uint8Array(NATIVE_CTX_SIZE);
  const w = words(ctx);
  w.set(state.h, 0);
  const bits = BigInt(state.bytesHashed) * 8n;
  w[W_NL] = Number(bits & 0xffffffffn);
  w[W_NH] = Number(bits >> 32n);
  ctx.set(state.buffer, DATA_OFFSET);
  w[W_NUM] = state.buffer.length;
  w[W_MD_LEN] = 32;
  return ctx;
}

class NativeSha256 implements ResumableSha256 {
  readonly #binding: NativeBinding;
  readonly #ctx: Uint8Array;
  readonly #words: Uint32Array;

  constructor(binding: NativeBinding, ctx: Uint8Array) {
    this.#binding = binding;
    this.#ctx = ctx;
    this.#words = words(ctx);
  }

  update(data: Uint8Array): this {
    this.#binding.update(this.#ctx, data);
    return this;
  }

  digest(): string {
    return this.#binding.digest(this.#ctx);
  }

  exportState(): Uint8Array {
    return encodeState(nativeCtxToState(this.#ctx));
  }

  get bytesHashed(): number {
    return (this.#words[W_NH] ?? 0) * 2 ** 29 + (this.#words[W_NL] ?? 0) / 8;
  }
}

/** A native hasher, new or continuing from a decoded canonical state. */
export function createNativeSha256(
  state?: Sha256State,
  binding: NativeBinding = loadNativeBinding(),
): ResumableSha256 {
  let ctx: Uint8Array;
  if (state === undefined) {
    ctx = new Uint8Array(binding.CTX_SIZE);
    binding.init(ctx);
  } else {
    ctx = stateToNativeCtx(state);
  }
  return new NativeSha256(binding, ctx);
}

/** Proves the addon and our view of SHA256_CTX agree with OpenSSL's behaviour. */
function selfCheck(binding: NativeBinding): void {
  const fail = (what: string): never => {
    throw new Error(`native SHA-256 self-check failed: ${what}`);
  };
  if (binding.CTX_SIZE !== NATIVE_CTX_SIZE) fail(`CTX_SIZE ${binding.CTX_SIZE}`);
  const ctx = new Uint8Array(NATIVE_CTX_SIZE);
  binding.init(ctx);
  const w = words(ctx);
  if (!SHA256_IV.every((v, i) => w[i] === v) || w[W_NL] !== 0 || w[W_NH] !== 0 || w[W_NUM] !== 0) {
    fail('initial context');
  }
  if (w[W_MD_LEN] !== 32) fail('md_len');
  const data = new Uint8Array(200);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  binding.update(ctx, data.subarray(0, 3));
  if (w[W_NUM] !== 3 || w[W_NL] !== 24 || ctx[DATA_OFFSET + 2] !== data[2]) fail('partial block');
  binding.update(ctx, data.subarray(3, 131));
  if (w[W_NUM] !== 3 || w[W_NL] !== 131 * 8 || ctx[DATA_OFFSET] !== data[128]) fail('block boundary');
  const expected = `sha256:${createHash('sha256').update(data.subarray(0, 131)).digest('hex')}`;
  if (binding.digest(ctx) !== expected) fail('digest');
  // The context survives a conversion to the canonical fields and back.
  const copy = stateToNativeCtx(nativeCtxToState(ctx));
  binding.update(copy, data.subarray(131));
  if (binding.digest(copy) !== `sha256:${createHash('sha256').update(data).digest('hex')}`) {
    fail('state round trip');
  }
}
