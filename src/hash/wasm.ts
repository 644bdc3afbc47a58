/**
 * The portable SHA-256: hash-wasm (pinned at 4.13.0), used where the native addon cannot
 * be built or loaded, or when BLOBCORE_HASH=wasm.
 *
 * hash-wasm's createSHA256().save() returns 116 bytes: a 4-byte prefix (the first bytes
 * of the SHA-1 of its WASM binary, which load() insists on, so states from another build
 * of hash-wasm are refused) followed by the WASM module's `struct sha256_ctx` as it sits
 * in (little-endian) linear memory:
 *
 *   offset  size  field
 *   0       4     prefix (taken from a fresh save(), never hard-coded)
 *   4       64    message[16]    the partial block's bytes, in memory order
 *   68      8     length         u64, BYTES hashed so far
 *   76      32    hash[8]        chaining words, u32 each
 *   108     4     digest_length  32 for SHA-256
 *   112     4     struct padding
 *
 * We convert that to and from the canonical state (state.ts) field by field, so a state
 * exported here imports into the native addon and the other way round. The layout is
 * checked against node:crypto the first time the module is used; if a different hash-wasm
 * ever changes it, creating a hasher fails loudly instead of resuming wrong digests.
 */
import { createHash } from 'node:crypto';
import type { IHasher } from 'hash-wasm';
import { blobError } from '../errors.js';
import { checkState, encodeState, SHA256_IV, type Sha256State } from './state.js';
import type { ResumableSha256 } from './types.js';

const SAVED_LENGTH = 116;
const PREFIX_LENGTH = 4;
const MESSAGE_OFFSET = 4;
const LENGTH_OFFSET = 68;
const HASH_OFFSET = 76;
const DIGEST_LENGTH_OFFSET = 108;

interface WasmRuntime {
  createSHA256(): Promise<IHasher>;
  /** hash-wasm's prefix for its SHA-256 states. */
  prefix: Uint8Array;
}

let runtime: Promise<WasmRuntime> | undefined;

function loadRuntime(): Promise<WasmRuntime> {
  runtime ??= (async () => {
    const { createSHA256 } = await import('hash-wasm');
    const probe = await createSHA256();
    const saved = probe.save();
    if (saved.length !== SAVED_LENGTH) {
      throw new Error(`hash-wasm SHA-256 state is ${saved.length} bytes, expected ${SAVED_LENGTH}`);
    }
    const rt: WasmRuntime = { createSHA256, prefix: saved.slice(0, PREFIX_LENGTH) };
    selfCheck(rt, probe);
    return rt;
  })();
  return runtime;
}

/** Reads hash-wasm's saved state into a canonical state; rejects an impossible one. */
export function wasmSavedToState(saved: Uint8Array): Sha256State {
  if (saved.length !== SAVED_LENGTH) {
    throw blobError('BLOB_UPLOAD_INVALID', `invalid hash-wasm state: ${saved.length} bytes`);
  }
  const view = new DataView(saved.buffer, saved.byteOffset, saved.byteLength);
  if (view.getUint32(DIGEST_LENGTH_OFFSET, true) !== 32) {
    throw blobError('BLOB_UPLOAD_INVALID', 'invalid hash-wasm state: digest length');
  }
  const length = view.getBigUint64(LENGTH_OFFSET, true);
  if (length > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw blobError('BLOB_UPLOAD_INVALID', 'invalid hash-wasm state: byte count');
  }
  const bytesHashed = Number(length);
  const h: number[] = [];
  for (let i = 0; i < 8; i++) h.push(view.getUint32(HASH_OFFSET + 4 * i, true));
  const state: Sha256State = {
    h,
    bytesHashed,
    buffer: saved.slice(MESSAGE_OFFSET, MESSAGE_OFFSET + (bytesHashed % 64)),
  };
  checkState(state);
  return state;
}

/** Writes a canonical state in hash-wasm's save() format (with the given prefix). */
export function stateToWasmSaved(state: Sha256State, prefix: Uint8Array): Uint8Array {
  checkState(state);
  const saved = new Uint8Array(SAVED_LENGTH);
  const view = new DataView(saved.buffer);
  saved.set(prefix.subarray(0, PREFIX_LENGTH), 0);
  saved.set(state.buffer, MESSAGE_OFFSET);
  view.setBigUint64(LENGTH_OFFSET, BigInt(state.bytesHashed), true);
  for (let i = 0; i < 8; i++) view.setUint32(HASH_OFFSET + 4 * i, state.h[i] ?? 0, true);
  view.setUint32(DIGEST_LENGTH_OFFSET, 32, true);
  return saved;
}

class WasmSha256 implements ResumableSha256 {
  readonly #hasher: IHasher;
  #bytes: number;

  constructor(hasher: IHasher, bytes: number) {
    this.#hasher = hasher;
    this.#bytes = bytes;
  }

  update(data: Uint8Array): this {
    if (!ArrayBuffer.isView(data)) throw new TypeError('update() expects a Uint8Array');
    this.#hasher.update(data);
    this.#bytes += data.byteLength;
    return this;
  }

  digest(): string {
    // hash-wasm's digest() finalizes; save and restore around it (the state is 116 bytes).
    const saved = this.#hasher.save();
    const hex = this.#hasher.digest('hex');
    this.#hasher.load(saved);
    return `sha256:${hex}`;
  }

  exportState(): Uint8Array {
    return encodeState(wasmSavedToState(this.#hasher.save()));
  }

  get bytesHashed(): number {
    return this.#bytes;
  }
}

/** A hash-wasm hasher, new or continuing from a decoded canonical state. */
export async function createWasmSha256(state?: Sha256State): Promise<ResumableSha256> {
  const rt = await loadRuntime();
  const hasher = await rt.createSHA256();
  if (state !== undefined) hasher.load(stateToWasmSaved(state, rt.prefix));
  return new WasmSha256(hasher, state?.bytesHashed ?? 0);
}

/** Proves our reading of hash-wasm's layout against node:crypto, once per process. */
function selfCheck(rt: WasmRuntime, probe: IHasher): void {
  const fail = (what: string): never => {
    throw new Error(`hash-wasm SHA-256 layout check failed: ${what}`);
  };
  const initial = wasmSavedToState(probe.save());
  if (initial.bytesHashed !== 0 || !SHA256_IV.every((v, i) => initial.h[i] === v)) fail('initial state');
  const data = new Uint8Array(200);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  probe.update(data.subarray(0, 131));
  const mid = wasmSavedToState(probe.save());
  if (mid.bytesHashed !== 131 || mid.buffer[0] !== data[128]) fail('partial block');
  const resumed = stateToWasmSaved(mid, rt.prefix);
  probe.init().load(resumed).update(data.subarray(131));
  if (probe.digest('hex') !== createHash('sha256').update(data).digest('hex')) fail('state round trip');
}
