/**
 * Resumable SHA-256 (src/hash): both implementations against node:crypto, the canonical
 * state format, state exchange between the native addon and hash-wasm, corruption, and
 * (in child processes) resuming in another process and the fallback notice.
 *
 * Child processes run the TypeScript sources directly with
 *   node --import ./test/fixtures/ts-loader.mjs test/fixtures/hash-child.ts
 * ts-loader.mjs registers ESM hooks that transpile .ts with the project's `typescript`
 * devDependency (Node 20 cannot strip types; vitest's transform exists only inside
 * vitest). So a child runs exactly the sources under test: no build step, no stale dist/.
 *
 * Random sizes and split points come from a seeded PRNG; the seed is in every failure
 * message, and HASH_TEST_SEED=<n> replays a run.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDigestTap } from '../src/hash/digest-tap.js';
import {
  createResumableSha256,
  hashImplementation,
  hashModeFromEnv,
  type ResumableSha256,
  selectImplementation,
  stateBytesHashed,
} from '../src/hash/index.js';
import { createNativeSha256, nativeCtxToState, stateToNativeCtx } from '../src/hash/native.js';
import { decodeState, type Sha256State } from '../src/hash/state.js';
import { createWasmSha256, stateToWasmSaved, wasmSavedToState } from '../src/hash/wasm.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const IMPLEMENTATIONS = ['native', 'wasm'] as const;
type Impl = (typeof IMPLEMENTATIONS)[number];

const SEED = Number(process.env.HASH_TEST_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
const SEEDED = `seed ${SEED}`;

/** mulberry32: small, fast, good enough to pick sizes, split points and bytes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
const random = prng(SEED);
const randomInt = (min: number, max: number): number => min + Math.floor(random() * (max - min + 1));

function randomBytes(length: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(length / 4));
  for (let i = 0; i < words.length; i++) words[i] = (random() * 2 ** 32) >>> 0;
  return new Uint8Array(words.buffer, 0, length);
}

const sha256 = (data: Uint8Array): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** The error code of a thrown/rejected BlobcoreError, or a marker when nothing was thrown. */
async function codeOf(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return (error as { code?: unknown }).code;
  }
  return 'NOTHING THROWN';
}

/** Appends the canonical checksum (first 8 bytes of SHA-256 of the body), as state.ts documents. */
function seal(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 8);
  out.set(body);
  out.set(createHash('sha256').update(body).digest().subarray(0, 8), body.length);
  return out;
}

const direct: Record<Impl, (state?: Uint8Array) => Promise<ResumableSha256>> = {
  native: async (state) => createNativeSha256(state === undefined ? undefined : decodeState(state)),
  wasm: (state) => createWasmSha256(state === undefined ? undefined : decodeState(state)),
};

const SIZES = [0, 1, 55, 56, 63, 64, 65, 1024 * 1024, randomInt(2, 10_000), randomInt(64 * 1024, 300_000)];

describe.each(IMPLEMENTATIONS)('%s implementation (public API)', (impl) => {
  beforeEach(() => {
    vi.stubEnv('BLOBCORE_HASH', impl);
  });
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('is the implementation in use', async () => {
    expect(await hashImplementation()).toBe(impl);
  });

  it.each(SIZES)(
    'agrees with node:crypto on %i bytes at random split points, digest() mid-way',
    async (size) => {
      const data = randomBytes(size);
      const full = sha256(data);
      for (let round = 0; round < 4; round++) {
        const cuts = Array.from({ length: randomInt(0, 8) }, () => randomInt(0, size)).sort((a, b) => a - b);
        const hasher = await createResumableSha256();
        expect(hasher.digest(), SEEDED).toBe(sha256(new Uint8Array()));
        let at = 0;
        for (const cut of [...cuts, size]) {
          hasher.update(data.subarray(at, cut));
          at = cut;
          expect(hasher.bytesHashed, SEEDED).toBe(at);
          expect(hasher.digest(), `${SEEDED}, prefix ${at} of ${size}`).toBe(sha256(data.subarray(0, at)));
        }
        expect(hasher.digest(), SEEDED).toBe(full);
        expect(hasher.digest(), SEEDED).toBe(full);
      }
    },
  );

  it('hashes exactly the bytes of a view into a larger buffer', async () => {
    const backing = randomBytes(1000);
    const view = backing.subarray(13, 913);
    const asBuffer = Buffer.from(backing.buffer, backing.byteOffset + 13, 900);
    const a = await createResumableSha256();
    const b = await createResumableSha256();
    expect(a.update(view).digest()).toBe(sha256(backing.slice(13, 913)));
    expect(b.update(asBuffer).digest()).toBe(sha256(backing.slice(13, 913)));
  });

  it('keeps hashing after digest()', async () => {
    const data = randomBytes(300);
    const hasher = await createResumableSha256();
    hasher.update(data.subarray(0, 100));
    expect(hasher.digest()).toBe(sha256(data.subarray(0, 100)));
    hasher.update(data.subarray(100));
    expect(hasher.digest()).toBe(sha256(data));
    expect(hasher.bytesHashed).toBe(300);
  });

  it('resumes its own exported state at every offset 0..130 and at random ones', async () => {
    const data = randomBytes(70_000);
    const full = sha256(data);
    const offsets = [
      ...Array.from({ length: 131 }, (_, i) => i),
      4096,
      65_536 + 17,
      randomInt(0, data.length),
    ];
    for (const offset of offsets) {
      const first = await createResumableSha256();
      first.update(data.subarray(0, offset));
      const state = first.exportState();
      expect(state.length, `offset ${offset}`).toBe(56 + (offset % 64));
      expect(stateBytesHashed(state), `offset ${offset}`).toBe(offset);
      const resumed = await createResumableSha256(state);
      expect(resumed.bytesHashed).toBe(offset);
      expect(resumed.digest(), `offset ${offset}`).toBe(sha256(data.subarray(0, offset)));
      expect(resumed.exportState(), `offset ${offset}`).toEqual(state);
      resumed.update(data.subarray(offset));
      expect(resumed.digest(), `${SEEDED}, offset ${offset}`).toBe(full);
      expect(resumed.bytesHashed).toBe(data.length);
    }
  });

  describe('rejects a corrupt or unknown state with BLOB_UPLOAD_INVALID', () => {
    const data = randomBytes(100);
    let good: Uint8Array;
    beforeAll(async () => {
      good = (await direct[impl]()).update(data).exportState();
    });

    const rejects = async (state: unknown, why: string): Promise<void> => {
      expect(await codeOf(() => createResumableSha256(state as Uint8Array)), why).toBe('BLOB_UPLOAD_INVALID');
      expect(await codeOf(() => stateBytesHashed(state as Uint8Array)), why).toBe('BLOB_UPLOAD_INVALID');
    };

    it('accepts the untouched state (the control)', async () => {
      expect(good.length).toBe(56 + 36);
      expect(stateBytesHashed(good)).toBe(100);
      expect((await createResumableSha256(good)).digest()).toBe(sha256(data));
      // The test's own seal() reproduces the checksum, so the crafted states below fail on
      // the field named in each case, not on the checksum.
      expect(seal(good.subarray(0, good.length - 8))).toEqual(good);
    });

    it('any single flipped byte', async () => {
      for (let i = 0; i < good.length; i++) {
        for (const mask of [0x01, 0x80]) {
          const bad = good.slice();
          bad[i] = (bad[i] ?? 0) ^ mask;
          await rejects(bad, `byte ${i} ^ ${mask}`);
        }
      }
    });

    it('every truncation and an extra byte', async () => {
      for (let length = 0; length < good.length; length++)
        await rejects(good.slice(0, length), `length ${length}`);
      const longer = new Uint8Array(good.length + 1);
      longer.set(good);
      await rejects(longer, 'one extra byte');
    });

    it('wrong magic, version, algorithm or reserved byte (with a valid checksum)', async () => {
      const body = good.slice(0, good.length - 8);
      const cases: [number, number, string][] = [
        [0, 0x41, 'magic'],
        [4, 2, 'version 2'],
        [4, 0, 'version 0'],
        [5, 2, 'algorithm 2'],
        [7, 1, 'reserved byte'],
      ];
      for (const [offset, value, why] of cases) {
        const bad = body.slice();
        bad[offset] = value;
        await rejects(seal(bad), why);
      }
    });

    it('a partial block of 64 bytes or more, or a byte count that contradicts it', async () => {
      const body = good.slice(0, good.length - 8);
      // n = 64 with 64 buffered bytes, count 64 (count % 64 = 0 ≠ 64)
      const full = new Uint8Array(48 + 64);
      full.set(body.subarray(0, 48));
      full[6] = 64;
      new DataView(full.buffer).setBigUint64(40, 64n);
      await rejects(seal(full), 'n = 64');
      const over = body.slice();
      over[6] = 200;
      await rejects(seal(over), 'n = 200');
      for (const count of [101n, 99n, 36n + 64n * 1000n + 1n]) {
        const bad = body.slice();
        new DataView(bad.buffer).setBigUint64(40, count);
        await rejects(seal(bad), `count ${count} with n = 36`);
      }
      const huge = body.slice();
      new DataView(huge.buffer).setBigUint64(40, 2n ** 53n + 36n);
      await rejects(seal(huge), 'count beyond 2^53');
      // 36 bytes hashed (consistent with n = 36), but chaining words past the first block
      const short = body.slice();
      new DataView(short.buffer).setBigUint64(40, 36n);
      await rejects(seal(short), 'count < 64 with non-initial chaining words');
    });

    it('values that are not a Uint8Array', async () => {
      for (const value of [null, 'QkNTSA==', Array.from(good), good.buffer, new DataView(good.buffer), 42]) {
        await rejects(value, String(value));
      }
    });
  });
});

describe('native and wasm states are interchangeable', () => {
  const data = randomBytes(200_000);
  const full = sha256(data);
  const offsets = [0, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 4096 + 17, 65_536, randomInt(0, data.length)];

  it.each(offsets)('at offset %i: identical canonical bytes, and each resumes the other', async (offset) => {
    const native = await direct.native();
    const wasm = await direct.wasm();
    native.update(data.subarray(0, offset));
    wasm.update(data.subarray(0, offset));
    const fromNative = native.exportState();
    const fromWasm = wasm.exportState();
    expect(fromNative, SEEDED).toEqual(fromWasm);

    const wasmFromNative = await direct.wasm(fromNative);
    const nativeFromWasm = await direct.native(fromWasm);
    expect(wasmFromNative.bytesHashed).toBe(offset);
    expect(nativeFromWasm.bytesHashed).toBe(offset);
    wasmFromNative.update(data.subarray(offset));
    nativeFromWasm.update(data.subarray(offset));
    expect(wasmFromNative.digest(), SEEDED).toBe(full);
    expect(nativeFromWasm.digest(), SEEDED).toBe(full);
  });
});

describe('native update in prefetched steps (hash_bytes in native/sha256.c)', () => {
  // The addon hashes in 4 KiB steps, asking for the next step's lines first: every
  // length around a step boundary, from unaligned starts, must hash as one call would.
  beforeEach(() => {
    vi.stubEnv('BLOBCORE_HASH', 'native'); // the digest tap below is the native one
  });
  afterEach(() => {
    vi.unstubAllEnvs();
  });
  const STEP = 4096;
  const lengths = [STEP - 1, STEP, STEP + 1, 2 * STEP - 1, 2 * STEP + 1, 3 * STEP, 3 * STEP + 71, 1_000_003];
  const backing = randomBytes(1_000_003 + 64);

  it.each(lengths)('%i bytes at offsets 0, 1 and 13, whole and in odd pieces', async (length) => {
    for (const offset of [0, 1, 13]) {
      const bytes = backing.subarray(offset, offset + length);
      const whole = await direct.native();
      expect(whole.update(bytes).digest(), `offset ${offset}`).toBe(sha256(bytes));
      const pieces = await direct.native();
      for (let at = 0; at < length; at += 5003)
        pieces.update(bytes.subarray(at, Math.min(at + 5003, length)));
      expect(pieces.digest(), `offset ${offset}, 5003-byte pieces`).toBe(sha256(bytes));
      const tap = createDigestTap('sha256');
      expect(tap.native, 'the digest tap is the native one').toBeDefined();
      tap.update(bytes);
      expect(tap.digest(), `offset ${offset}, tap`).toBe(sha256(bytes));
    }
  });
});

describe('native SHA256_CTX conversion', () => {
  const data = randomBytes(100);
  let state: Sha256State;
  beforeAll(async () => {
    // from hash-wasm, so these conversions are checked even without the addon
    state = decodeState((await direct.wasm()).update(data).exportState());
  });

  const words = (ctx: Uint8Array): Uint32Array => new Uint32Array(ctx.buffer, ctx.byteOffset, 28);

  it('round-trips a live context field by field', () => {
    const ctx = stateToNativeCtx(state);
    const w = words(ctx);
    expect(w[8]).toBe(800); // Nl: bits
    expect(w[9]).toBe(0); // Nh
    expect(w[26]).toBe(36); // num
    expect(w[27]).toBe(32); // md_len
    expect(ctx.subarray(40, 76)).toEqual(data.subarray(64, 100));
    expect(nativeCtxToState(ctx)).toEqual(state);
  });

  it('rejects a hand-made context with num ≥ 64, md_len ≠ 32, or inconsistent counts', async () => {
    const mutate = (edit: (w: Uint32Array) => void): Uint8Array => {
      const ctx = stateToNativeCtx(state);
      edit(words(ctx));
      return ctx;
    };
    const bad: [string, Uint8Array][] = [
      ['num = 64', mutate((w) => (w[26] = 64))],
      ['num = 1000', mutate((w) => (w[26] = 1000))],
      ['md_len = 28', mutate((w) => (w[27] = 28))],
      ['Nl not whole bytes', mutate((w) => (w[8] = 801))],
      ['Nl inconsistent with num', mutate((w) => (w[8] = 808))],
      ['short context', stateToNativeCtx(state).subarray(0, 108)],
    ];
    for (const [why, ctx] of bad)
      expect(await codeOf(() => nativeCtxToState(ctx)), why).toBe('BLOB_UPLOAD_INVALID');
  });

  it('counts bytes past 2^32 bits through Nh', () => {
    const bytes = 2 ** 32 + 36; // 2^35 + 288 bits: Nh = 8, Nl = 288
    const big = { ...state, bytesHashed: bytes };
    const ctx = stateToNativeCtx(big);
    expect(words(ctx)[9]).toBe(8);
    expect(words(ctx)[8]).toBe(288);
    expect(nativeCtxToState(ctx).bytesHashed).toBe(bytes);
    expect(wasmSavedToState(stateToWasmSaved(big, new Uint8Array(4))).bytesHashed).toBe(bytes);
  });

  it('rejects a hash-wasm state with the wrong digest length or size', async () => {
    const saved = stateToWasmSaved(state, new Uint8Array(4));
    expect(wasmSavedToState(saved)).toEqual(state);
    const sha224 = saved.slice();
    new DataView(sha224.buffer).setUint32(108, 28, true);
    expect(await codeOf(() => wasmSavedToState(sha224))).toBe('BLOB_UPLOAD_INVALID');
    expect(await codeOf(() => wasmSavedToState(saved.subarray(0, 112)))).toBe('BLOB_UPLOAD_INVALID');
  });
});

describe('implementation selection', () => {
  const failing = (): never => {
    throw new Error('addon missing for this test');
  };

  it('falls back to wasm with the reason when the addon cannot load (auto)', () => {
    const selection = selectImplementation('auto', failing);
    expect(selection.implementation).toBe('wasm');
    expect(selection.reason).toContain('addon missing for this test');
  });

  it('makes a missing addon an UNSUPPORTED error when native is forced', async () => {
    expect(await codeOf(() => selectImplementation('native', failing))).toBe('UNSUPPORTED');
  });

  it('does not try the addon when wasm is forced', () => {
    const load = vi.fn(failing);
    expect(selectImplementation('wasm', load)).toEqual({
      implementation: 'wasm',
      reason: 'forced by BLOBCORE_HASH=wasm',
    });
    expect(load).not.toHaveBeenCalled();
  });

  it('reads BLOBCORE_HASH strictly', async () => {
    expect(hashModeFromEnv(undefined)).toBe('auto');
    expect(hashModeFromEnv('')).toBe('auto');
    expect(hashModeFromEnv('auto')).toBe('auto');
    expect(hashModeFromEnv('native')).toBe('native');
    expect(hashModeFromEnv('wasm')).toBe('wasm');
    expect(await codeOf(() => hashModeFromEnv('WASM'))).toBe('UNSUPPORTED');
    expect(await codeOf(() => hashModeFromEnv('openssl'))).toBe('UNSUPPORTED');
  });
});

interface ChildReply {
  implementation?: string;
  digest?: string;
  bytesHashed?: number;
  state?: string;
  error?: { code?: string };
}

interface ChildRun {
  reply: ChildReply;
  stderr: string;
  status: number | null;
}

/** Runs test/fixtures/hash-child.ts (under `root`) with BLOBCORE_HASH = mode (undefined: unset). */
function runChild(
  mode: string | undefined,
  request: { state?: Uint8Array; data: Uint8Array },
  root = ROOT,
): Promise<ChildRun> {
  const env = { ...process.env };
  delete env.BLOBCORE_HASH;
  if (mode !== undefined) env.BLOBCORE_HASH = mode;
  const child = spawn(
    process.execPath,
    ['--import', './test/fixtures/ts-loader.mjs', './test/fixtures/hash-child.ts'],
    { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  const body: Record<string, string> = { data: Buffer.from(request.data).toString('base64') };
  if (request.state !== undefined) body.state = Buffer.from(request.state).toString('base64');
  child.stdin.end(JSON.stringify(body));
  return new Promise((done, fail) => {
    child.on('error', fail);
    child.on('close', (status) => {
      try {
        done({ reply: JSON.parse(stdout) as ChildReply, stderr, status });
      } catch {
        fail(new Error(`child printed no JSON (status ${status}): ${stdout}\n${stderr}`));
      }
    });
  });
}

const noticeLines = (stderr: string): string[] =>
  stderr.split('\n').filter((line) => line.includes('hash-wasm'));

describe('child processes', { timeout: 60_000 }, () => {
  const a = randomBytes(100_000 + 37);
  const b = randomBytes(70_001);
  const c = randomBytes(12_345);
  const whole = Buffer.concat([a, b, c]);

  describe.each(IMPLEMENTATIONS)('parent %s', (parent) => {
    it.each(IMPLEMENTATIONS)(
      '→ child %s → parent: state crosses two process boundaries',
      async (childImpl) => {
        const first = (await direct[parent]()).update(a);
        const { reply, status } = await runChild(childImpl, { state: first.exportState(), data: b });
        expect(status).toBe(0);
        expect(reply.implementation).toBe(childImpl);
        expect(reply.bytesHashed).toBe(a.length + b.length);
        expect(reply.digest, SEEDED).toBe(sha256(whole.subarray(0, a.length + b.length)));
        const back = await direct[parent](Buffer.from(reply.state ?? '', 'base64'));
        expect(back.bytesHashed).toBe(a.length + b.length);
        expect(back.update(c).digest(), SEEDED).toBe(sha256(whole));
      },
    );
  });

  it('uses native by default and prints nothing', async () => {
    const { reply, stderr, status } = await runChild(undefined, { data: a });
    expect(status).toBe(0);
    expect(reply.implementation).toBe('native');
    expect(reply.digest).toBe(sha256(a));
    expect(stderr).toBe('');
  });

  it('with BLOBCORE_HASH=wasm uses the fallback and prints the notice exactly once', async () => {
    const { reply, stderr, status } = await runChild('wasm', { data: a });
    expect(status).toBe(0);
    expect(reply.implementation).toBe('wasm');
    expect(reply.digest).toBe(sha256(a));
    expect(noticeLines(stderr)).toHaveLength(1);
    expect(noticeLines(stderr)[0]).toContain('BLOBCORE_HASH=wasm');
    expect(stderr.trim().split('\n')).toHaveLength(1);
  });

  it('rejects an unknown BLOBCORE_HASH value with UNSUPPORTED', async () => {
    const { reply, status } = await runChild('fast', { data: a });
    expect(status).toBe(2);
    expect(reply.error?.code).toBe('UNSUPPORTED');
  });

  describe('in a copy of the package whose addon was never built', () => {
    let copy: string;
    beforeAll(() => {
      copy = mkdtempSync(join(tmpdir(), 'blobcore-hash-'));
      writeFileSync(join(copy, 'package.json'), JSON.stringify({ name: 'blobcore', type: 'module' }));
      cpSync(join(ROOT, 'src', 'errors.ts'), join(copy, 'src', 'errors.ts'));
      cpSync(join(ROOT, 'src', 'hash'), join(copy, 'src', 'hash'), { recursive: true });
      cpSync(join(ROOT, 'test', 'fixtures'), join(copy, 'test', 'fixtures'), { recursive: true });
      symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
    });
    afterAll(() => {
      rmSync(copy, { recursive: true, force: true });
    });

    it('falls back to wasm, says why once, and its state resumes natively here', async () => {
      const { reply, stderr, status } = await runChild(undefined, { data: a }, copy);
      expect(status).toBe(0);
      expect(reply.implementation).toBe('wasm');
      expect(noticeLines(stderr)).toHaveLength(1);
      expect(noticeLines(stderr)[0]).toMatch(/native addon unavailable: .*blobcore_sha256\.node not found/);
      const native = await direct.native(Buffer.from(reply.state ?? '', 'base64'));
      expect(native.update(b).digest()).toBe(sha256(Buffer.concat([a, b])));
    });

    it('fails with UNSUPPORTED when BLOBCORE_HASH=native', async () => {
      const { reply, status } = await runChild('native', { data: a }, copy);
      expect(status).toBe(2);
      expect(reply.error?.code).toBe('UNSUPPORTED');
    });
  });
});
