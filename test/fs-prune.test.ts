/**
 * Directories emptied by deletes are pruned later, off the delete's path (drivers/fs/pruner.ts).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFsDriver } from '../drivers/fs/index.js';
import { DirPruner } from '../drivers/fs/pruner.js';
import { readText } from './fixtures/fs-harness/helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'blobcore-fs-prune-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('fs driver: pruning emptied directories', () => {
  it('a delete leaves its directory for the next write; close() prunes what stayed empty', async () => {
    const root = join(scratch, 'close');
    const driver = createFsDriver({ root, durability: 'none' });
    await driver.write('a/b/c/one', Buffer.from('1'));
    await driver.write('a/x/two', Buffer.from('2'));
    const dir = join(root, 'v1/objects/a,/b,/c,');
    expect(await driver.delete('a/b/c/one')).toBe(true);
    expect(existsSync(dir)).toBe(true); // not pruned on the delete's path
    await driver.write('a/b/c/three', Buffer.from('3')); // reuses it, no mkdir
    expect(await driver.delete('a/b/c/three')).toBe(true);
    await driver.close?.();
    expect(existsSync(join(root, 'v1/objects/a,/b,'))).toBe(false); // emptied chain removed
    expect(await readText(driver, 'a/x/two')).toBe('2'); // the non-empty sibling stays
    expect(existsSync(join(root, 'v1/objects'))).toBe(true);
  });

  it('the pruner removes noted directories after its delay, deepest first, and skips non-empty ones', async () => {
    const base = join(scratch, 'delay');
    mkdirSync(join(base, 'p/q'), { recursive: true });
    mkdirSync(join(base, 'full'), { recursive: true });
    const { writeFileSync, rmdirSync } = await import('node:fs');
    writeFileSync(join(base, 'full/file'), 'x');
    const tried: string[] = [];
    const pruner = new DirPruner(async (dir) => {
      tried.push(dir);
      try {
        rmdirSync(dir);
      } catch {
        // not empty: stays
      }
    }, 20);
    pruner.note(join(base, 'p'));
    pruner.note(join(base, 'p/q'));
    pruner.note(join(base, 'full'));
    expect(tried).toEqual([]);
    await sleep(80);
    expect(tried[0]).toBe(join(base, 'p/q'));
    expect(existsSync(join(base, 'p'))).toBe(false);
    expect(existsSync(join(base, 'full/file'))).toBe(true);
  });
});
