/**
 * One GC run in a process of its own, for the GC scale benchmark (./scenarios/gc.ts):
 * `node gc-child.js <store-url>` opens the store, runs `store.gc()` with default
 * options, and prints one JSON line: the report's counts and phase times, and the
 * process's peak resident memory (VmHWM) — what an operator running GC would see,
 * free of the benchmark's own buffers.
 */
import { readFileSync } from 'node:fs';
import { openStore } from '../src/store.js';

function peakRssMiB(): number | null {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: gc-child <store-url>\n');
  process.exit(2);
}
const store = await openStore(url);
const before = peakRssMiB();
const report = await store.gc();
await store.close();
process.stdout.write(
  `${JSON.stringify({
    durationMs: report.durationMs,
    marked: report.marked,
    swept: report.swept,
    resurrected: report.resurrected,
    orphansRemoved: report.orphansRemoved,
    phases: report.phases,
    peakRssMiB: peakRssMiB(),
    startRssMiB: before,
  })}\n`,
);
