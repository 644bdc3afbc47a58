/**
 * HashTap (src/stream/hashing.ts): chunks are hashed exactly once and in order; a stream's
 * hash trails the consumer by at most the chunk it holds, an in-memory body's starts at
 * once, ahead of the consumer; hashing goes in steps so I/O callbacks run in between (a
 * driver's writes and syncs overlap the hash), and stop() ends it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { HASH_STEP, HashTap, STREAM_SLICE, sliceBytes } from '../src/stream/hashing.js';

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('HashTap', () => {
  it('hashes every chunk handed out exactly once, in order, whatever the chunk sizes', async () => {
    const body = randomBytes(3 * HASH_STEP + 12345);
    const sizes = [1, 7, HASH_STEP - 1, HASH_STEP + 3, 64 * 1024, 0, 5];
    const chunks: Buffer[] = [];
    for (let at = 0, i = 0; at < body.length; i++) {
      const size = Math.min(body.length - at, (sizes[i % sizes.length] as number) || 1);
      chunks.push(body.subarray(at, at + size));
      at += size;
    }
    const hash = createHash('sha256');
    const tap = new HashTap([hash]);
    const seen: Buffer[] = [];
    for await (const chunk of tap.wrap(chunks)) {
      seen.push(Buffer.from(chunk));
      await nextTurn(); // background steps run meanwhile
    }
    expect(tap.finish()).toBe(body.length);
    expect(Buffer.concat(seen).equals(body)).toBe(true);
    expect(hash.digest('hex')).toBe(sha256(body));
  });

  it('trails the consumer by at most the chunk it holds', async () => {
    const body = randomBytes(8 * HASH_STEP);
    const tap = new HashTap([createHash('sha256')]);
    let handedOut = 0;
    for await (const chunk of tap.wrap(sliceBytes(body, 2 * HASH_STEP))) {
      expect(tap.bytes).toBeGreaterThanOrEqual(handedOut); // everything before this chunk
      handedOut += chunk.byteLength;
    }
    expect(tap.finish()).toBe(body.length);
  });

  it('hashes the last chunk in steps between turns of the event loop, and finish() the rest', async () => {
    const body = randomBytes(6 * HASH_STEP);
    const hash = createHash('sha256');
    const tap = new HashTap([hash]);
    for await (const _ of tap.wrap([body])) {
      // the consumer's own I/O would run here
    }
    const progress: number[] = [tap.bytes];
    for (let turn = 0; turn < 3; turn++) {
      await nextTurn();
      progress.push(tap.bytes);
    }
    expect(progress[0]).toBeLessThan(body.length);
    expect(progress[3]).toBeGreaterThan(progress[0] as number); // stepped in the background
    expect(progress[3]).toBeLessThan(body.length); // not in one go
    expect(tap.finish()).toBe(body.length);
    expect(hash.digest('hex')).toBe(sha256(body));
    await nextTurn();
    expect(tap.bytes).toBe(body.length); // a step left over after finish() hashes nothing twice
  });

  it('a consumer that stops early is hashed up to what it took', async () => {
    const body = randomBytes(4 * HASH_STEP);
    const hash = createHash('sha256');
    const tap = new HashTap([hash]);
    let taken = 0;
    for await (const chunk of tap.wrap(sliceBytes(body, HASH_STEP))) {
      taken += chunk.byteLength;
      if (taken === 2 * HASH_STEP) break;
    }
    expect(tap.finish()).toBe(2 * HASH_STEP);
    expect(hash.digest('hex')).toBe(sha256(body.subarray(0, 2 * HASH_STEP)));
  });

  it('an in-memory body is hashed from wrap() on, ahead of a consumer that has not pulled yet', async () => {
    const body = randomBytes(2 * STREAM_SLICE + 4321);
    const hash = createHash('sha256');
    const tap = new HashTap([hash]);
    const chunks = tap.wrap(body);
    for (let turn = 0; turn < 3; turn++) await nextTurn();
    expect(tap.bytes).toBeGreaterThanOrEqual(3 * HASH_STEP - 1); // nothing pulled yet
    expect(tap.bytes).toBeLessThan(body.length); // in steps, not in one go
    const seen: Uint8Array[] = [];
    for await (const chunk of chunks) seen.push(chunk);
    // Views of the body, STREAM_SLICE at a time: no copies.
    expect(seen.map((chunk) => chunk.byteLength)).toEqual([STREAM_SLICE, STREAM_SLICE, 4321]);
    expect(seen.every((chunk) => chunk.buffer === body.buffer)).toBe(true);
    expect(tap.finish()).toBe(body.length);
    expect(hash.digest('hex')).toBe(sha256(body));
    await nextTurn();
    expect(tap.bytes).toBe(body.length); // hashed once
  });

  it('stop() ends the background hashing of a body that will not be used', async () => {
    const body = randomBytes(16 * HASH_STEP);
    const tap = new HashTap([createHash('sha256')]);
    tap.wrap(body);
    await nextTurn();
    tap.stop();
    const at = tap.bytes;
    expect(at).toBeLessThan(body.length);
    for (let turn = 0; turn < 3; turn++) await nextTurn();
    expect(tap.bytes).toBe(at);
    expect(tap.finish()).toBe(at);
  });

  it('finished() lets the background steps end the hash, turning the event loop meanwhile', async () => {
    const body = randomBytes(16 * HASH_STEP);
    const hash = createHash('sha256');
    const tap = new HashTap([hash]);
    tap.wrap(body);
    let turns = 0;
    const count = () => {
      turns++;
      if (tap.bytes < body.length) setImmediate(count);
    };
    setImmediate(count);
    expect(await tap.finished()).toBe(body.length);
    expect(turns).toBeGreaterThan(8); // one long call would have let none through
    expect(hash.digest('hex')).toBe(sha256(body));
    const idle = new HashTap([createHash('sha256')]);
    expect(await idle.finished()).toBe(0); // nothing pending: at once
  });

  it('finished() ends when the tap is stopped, and reports a sink that throws instead of crashing', async () => {
    const body = randomBytes(16 * HASH_STEP);
    const stopped = new HashTap([createHash('sha256')]);
    stopped.wrap(body);
    const waiting = stopped.finished();
    await nextTurn();
    stopped.stop();
    expect(await waiting).toBeLessThan(body.length);

    let calls = 0;
    const broken = new HashTap([
      {
        update: () => {
          if (++calls === 3) throw new Error('sink broke');
        },
      },
    ]);
    broken.wrap(body);
    await expect(broken.finished()).rejects.toThrow('sink broke');
    expect(() => broken.finish()).toThrow('sink broke');
  });

  it('stopOnFailure() stops the tap when the consumer fails, and passes a success through', async () => {
    const body = randomBytes(16 * HASH_STEP);
    const failing = new HashTap([createHash('sha256')]);
    const refused = new Error('driver refused');
    await expect(
      failing.stopOnFailure(async () => {
        failing.wrap(body);
        await nextTurn();
        throw refused;
      }),
    ).rejects.toBe(refused);
    const at = failing.bytes;
    for (let turn = 0; turn < 3; turn++) await nextTurn();
    expect(failing.bytes).toBe(at);
    expect(at).toBeLessThan(body.length);

    const hash = createHash('sha256');
    const passing = new HashTap([hash]);
    const taken = await passing.stopOnFailure(async () => {
      let bytes = 0;
      for await (const chunk of passing.wrap(body)) bytes += chunk.byteLength;
      return bytes;
    });
    expect(taken).toBe(body.length);
    expect(passing.finish()).toBe(body.length);
    expect(hash.digest('hex')).toBe(sha256(body));
  });
});
