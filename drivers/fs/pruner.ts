/**
 * Removes the directories that deletes leave empty, shortly afterwards and off the
 * delete's path.
 *
 * Pruning inside `delete` cost every delete up to four `rmdir` calls, and the next write
 * into the same shard a `mkdir` again (measured on ext4: a 4 KiB put + delete cycle took
 * 2.1 ms, 0.9 ms without). Here a delete only notes its directory; after `delayMs` the
 * noted directories are removed upward while they are empty. A writer racing a removal
 * recreates what it needs (`withParent` retries on ENOENT), exactly as when another
 * process prunes on a shared volume. Empty directories left by a process that exits
 * first are harmless: listings skip them, and the next delete there prunes them.
 */
export const PRUNE_DELAY_MS = 2_000;

export class DirPruner {
  private readonly noted = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  /** `removeUpward(dir)` removes `dir` and its empty parents; it must not throw. */
  constructor(
    private readonly removeUpward: (dir: string) => Promise<void>,
    private readonly delayMs = PRUNE_DELAY_MS,
  ) {}

  /** Notes a directory that a delete may have emptied. */
  note(dir: string): void {
    this.noted.add(dir);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.drain(), this.delayMs);
      this.timer.unref(); // never keeps a process alive
    }
  }

  /** Prunes everything noted so far, now (driver close, tests). */
  async flush(): Promise<void> {
    await this.drain();
  }

  private drain(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const dirs = [...this.noted];
    this.noted.clear();
    // One pass at a time, deepest first, so a parent is tried after its children.
    const depth = (dir: string) => dir.split('/').length;
    dirs.sort((a, b) => depth(b) - depth(a));
    this.running = this.running.then(async () => {
      for (const dir of dirs) await this.removeUpward(dir);
    });
    return this.running;
  }
}
