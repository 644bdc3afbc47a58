/**
 * Block staging: deterministic block ids, cutting a body into blocks, and staging them
 * in parallel with bounded memory.
 *
 * Block ids are base64 of the 28 ASCII bytes `<nonce: 16 hex>-<part: 6 digits>-<index: 4 digits>`.
 * Azure wants every block id of one blob to have the same length (at most 64 bytes
 * before encoding); ours always do. The nonce is random per plain write and per
 * multipart handle, so two writers never name each other's blocks; within a handle the
 * id depends only on (part number, block index), so re-staging a part after a timeout
 * replaces its blocks instead of adding new ones (Put Block with an existing id
 * overwrites that uncommitted block): retries cannot duplicate data.
 *
 * Memory: a body is read one block at a time, and a block is read only when fewer than
 * `concurrency` blocks are in flight, so at most `concurrency` blocks (of `blockSize`
 * bytes) are held per write or part, whatever the body's length.
 */
import { randomBytes } from 'node:crypto';
import { toBuffer } from '../../src/bytes.js';
import { abortedError } from '../../src/errors.js';

export const BLOCK_ID_BYTES = 28;
/** Blocks that reach this size while being read get a buffer of their own (see BlockReader.read). */
const JOIN_LIMIT = 256 * 1024;

export function newNonce(): string {
  return randomBytes(8).toString('hex');
}

export function blockId(nonce: string, part: number, index: number): string {
  const raw = `${nonce}-${String(part).padStart(6, '0')}-${String(index).padStart(4, '0')}`;
  return Buffer.from(raw, 'ascii').toString('base64');
}

/** The nonce of one of our block ids, or undefined for anyone else's. */
export function nonceOfBlockId(id: string): string | undefined {
  const raw = Buffer.from(id, 'base64').toString('latin1');
  return /^[0-9a-f]{16}-\d{6}-\d{4}$/.test(raw) ? raw.slice(0, 16) : undefined;
}

/** Reads a body in blocks; a stalled source still gives way to an AbortSignal. */
export class BlockReader {
  readonly #iterator: AsyncIterator<Uint8Array>;
  readonly #signal: AbortSignal | undefined;
  #pending: Uint8Array | undefined;
  #done = false;
  #aborted: Promise<never> | undefined;
  #onAbort: (() => void) | undefined;

  constructor(body: AsyncIterable<Uint8Array>, signal?: AbortSignal) {
    this.#iterator = body[Symbol.asyncIterator]();
    this.#signal = signal;
    if (signal) {
      this.#aborted = new Promise<never>((_, reject) => {
        this.#onAbort = () => reject(abortedError(signal));
        signal.addEventListener('abort', this.#onAbort, { once: true });
      });
      this.#aborted.catch(() => {});
    }
  }

  async #pull(): Promise<Uint8Array | undefined> {
    if (this.#pending) {
      const chunk = this.#pending;
      this.#pending = undefined;
      return chunk;
    }
    while (!this.#done) {
      if (this.#signal?.aborted) throw abortedError(this.#signal);
      const next = this.#iterator.next();
      next.catch(() => {}); // when the abort wins the race, a late rejection is expected
      const result = this.#aborted ? await Promise.race([next, this.#aborted]) : await next;
      if (result.done) {
        this.#done = true;
        return undefined;
      }
      if (result.value.byteLength > 0) return result.value;
    }
    return undefined;
  }

  /** The next `size` bytes (fewer only at the end), or null when the body is exhausted. */
  async read(size: number): Promise<Buffer | null> {
    // Small bodies are joined at the end; once a block is clearly big, it gets its own
    // buffer and chunks are copied in as they arrive, so a block is never held twice.
    let chunks: Buffer[] = [];
    let block: Buffer | undefined;
    let filled = 0;
    while (filled < size) {
      const chunk = await this.#pull();
      if (!chunk) break;
      const take = Math.min(size - filled, chunk.byteLength);
      const piece = toBuffer(take === chunk.byteLength ? chunk : chunk.subarray(0, take));
      if (take < chunk.byteLength) this.#pending = chunk.subarray(take);
      if (filled === 0 && take === size) return piece; // one chunk covers the block: no copy
      if (!block && filled + take >= JOIN_LIMIT) {
        block = Buffer.allocUnsafe(size);
        let at = 0;
        for (const held of chunks) at += held.copy(block, at);
        chunks = [];
      }
      if (block) piece.copy(block, filled);
      else chunks.push(piece);
      filled += take;
    }
    if (filled === 0) return null;
    if (block) return block.subarray(0, filled);
    return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, filled);
  }

  /** True when no bytes are left (reads one chunk ahead if needed). */
  async ended(): Promise<boolean> {
    if (this.#pending) return false;
    const chunk = await this.#pull();
    if (!chunk) return true;
    this.#pending = chunk;
    return false;
  }

  /** Stops reading: lets the source clean up (without waiting for a stalled one). */
  close(): void {
    if (this.#onAbort) this.#signal?.removeEventListener('abort', this.#onAbort);
    if (!this.#done) {
      this.#done = true;
      this.#iterator.return?.()?.catch(() => {});
    }
  }
}

/** Block-sized views of bytes already in memory (no copies). */
export function blocksOf(bytes: Uint8Array, blockSize: number): () => Promise<Buffer | null> {
  const buffer = toBuffer(bytes);
  let at = 0;
  return async () => {
    if (at >= buffer.byteLength) return null;
    const block = buffer.subarray(at, at + blockSize);
    at += block.byteLength;
    return block;
  };
}

/**
 * Runs `work` on the items `next` produces, at most `concurrency` at a time, asking for
 * the next item only when a slot is free. On the first failure (of `next` or `work`) it
 * stops asking, aborts the work in flight, waits for it, and throws that failure.
 */
export async function runBounded<T>(
  next: () => Promise<T | null>,
  work: (item: T, signal: AbortSignal) => Promise<unknown>,
  concurrency: number,
  signal?: AbortSignal,
): Promise<void> {
  const stop = new AbortController();
  const combined = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown) => {
    failure ??= { error };
    stop.abort();
  };
  try {
    while (!failure) {
      while (inFlight.size >= concurrency && !failure) await Promise.race(inFlight);
      if (failure) break;
      let item: T | null;
      try {
        item = await next();
      } catch (error) {
        fail(error);
        break;
      }
      if (item === null) break;
      const task: Promise<void> = work(item, combined).then(
        () => {
          inFlight.delete(task);
        },
        (error: unknown) => {
          inFlight.delete(task);
          fail(error);
        },
      );
      inFlight.add(task);
    }
  } finally {
    await Promise.all(inFlight);
  }
  if (failure) throw failure.error;
}
