/**
 * Read buffers whose memory is recycled once JavaScript lets go of them
 * (build/Release/blobcore_buffers.node, native/buffer-pool.c).
 *
 * A stream read gives each chunk to its consumer in a new Buffer, and fresh memory costs a
 * page fault per 4 KiB, which on a VM that returns freed memory to its host is a trip to
 * the host. `BufferPool.take()` hands out external Buffers over slabs the addon owns; when
 * V8 collects a Buffer (and every view of it), its slab goes back to the pool. A chunk a
 * consumer keeps is simply never reused, so recycling is invisible to JavaScript.
 *
 * Without the addon (not built, or a runtime that refuses external buffers) `take()`
 * returns `Buffer.allocUnsafe`: the same bytes, only without the reuse.
 *
 * What a consumer of such chunks should know (as with Node's own pooled small Buffers):
 * a chunk shorter than the slab is a view, so its `.buffer` spans the whole slab, whose
 * other bytes are earlier reads; and external memory cannot be transferred to a worker
 * (`postMessage(chunk, [chunk.buffer])` throws; copy it instead).
 */
import { type BuffersBinding, loadBuffersBinding } from './buffers-addon.js';

/** Idle slabs are freed after this long without a `take()`, so a quiet process gives the memory back. */
const IDLE_TRIM_MS = 10_000;

export class BufferPool {
  private readonly native: { binding: BuffersBinding; pool: object } | undefined;
  private trimTimer: NodeJS.Timeout | undefined;
  private lastTake = 0;

  /**
   * @param slabBytes every buffer's size (callers take a `subarray` for less)
   * @param maxIdleBytes memory kept for reuse between collections; V8 frees chunk Buffers
   *   in batches, so this should cover the chunks one collection cycle returns
   */
  constructor(
    readonly slabBytes: number,
    maxIdleBytes: number,
    useNative = true,
  ) {
    const found = useNative ? loadBuffersBinding() : null;
    const pool = found?.createPool(slabBytes, Math.floor(maxIdleBytes / slabBytes));
    if (found && pool) this.native = { binding: found, pool };
  }

  /** Whether buffers are recycled (the addon is loaded). */
  get recycling(): boolean {
    return this.native !== undefined;
  }

  /** A buffer of `slabBytes` whose contents are undefined, like `Buffer.allocUnsafe`. */
  take(): Buffer {
    const native = this.native;
    if (native) {
      const buffer = native.binding.take(native.pool);
      if (buffer) {
        this.lastTake = Date.now();
        this.scheduleTrim();
        return buffer;
      }
    }
    return Buffer.allocUnsafe(this.slabBytes);
  }

  /** Idle slabs and slabs lent out (zeros without the addon). */
  stats(): { idle: number; lent: number; recycling: boolean } {
    const counts = this.native ? this.native.binding.stats(this.native.pool) : { idle: 0, lent: 0 };
    return { ...counts, recycling: this.recycling };
  }

  /** Frees every idle slab now; returns how many. */
  trim(): number {
    return this.native ? this.native.binding.trim(this.native.pool) : 0;
  }

  /**
   * Frees idle slabs once no `take()` has happened for IDLE_TRIM_MS, and keeps checking
   * while slabs are still lent: they come back whenever V8 collects them, maybe later.
   */
  private scheduleTrim(): void {
    if (this.trimTimer) return;
    const check = () => {
      const quiet = Date.now() - this.lastTake;
      if (quiet >= IDLE_TRIM_MS) {
        this.trim();
        if (this.stats().lent === 0) {
          this.trimTimer = undefined;
          return;
        }
      }
      this.trimTimer = setTimeout(check, quiet >= IDLE_TRIM_MS ? IDLE_TRIM_MS : IDLE_TRIM_MS - quiet);
      this.trimTimer.unref();
    };
    this.trimTimer = setTimeout(check, IDLE_TRIM_MS);
    this.trimTimer.unref();
  }
}
