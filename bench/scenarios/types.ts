/**
 * What a scenario hands the runner: groups of tasks measured together (interleaved in
 * rounds, see ../harness.ts), each task labelled with what it is (blobcore, the hashing
 * limit, a raw baseline, a peer library) so reports can compute ratios, and checks that
 * turn results into a value against a target.
 */
import { randomBytes } from 'node:crypto';
import type { TaskResult, TaskSpec } from '../harness.js';

export type System = 'blobcore' | 'limit' | 'raw' | 'peer';
export type Unit = 'MB/s' | 'ops/s' | 'ms';

export interface TaskMeta {
  /** Unique in a run: `<backend>/<scenario>/<label>` (plus size/concurrency when they vary). */
  id: string;
  /** Backend row (`fs`, `s3 (s3rver)`…). */
  backend: string;
  /** e.g. `put`, `get`, `upload`, `commit`, `stat`, `list`, `gc`. */
  scenario: string;
  /** What ran, e.g. `blobcore put (verified)`, `sha256 node:crypto`, `cacache put`. */
  label: string;
  system: System;
  /** Peer library and version. */
  peer?: string;
  /** Whether the system checks content against its digest (null: not applicable). */
  verifies: boolean | null;
  size?: number;
  chunk?: number;
  concurrency?: number;
  /** Headline unit for tables and charts. */
  unit: Unit;
  /** What is compared within a scenario (e.g. `8 MiB chunks`): blobcore and its peers share one. */
  variant?: string;
  /** Chart series when not the backend (peers, or a second blobcore configuration). */
  series?: string;
}

export interface BenchTask extends TaskSpec {
  meta: TaskMeta;
  /** Asserts the system returns the right bytes; run once before any timing. */
  check?: () => Promise<void>;
}

export interface CheckOutcome {
  value: number | null;
  /** e.g. `≥ 0.85`, `= 0`, `≤ 2`. */
  target: string | null;
  met: boolean | null;
  note?: string;
}

export type CheckKind = 'limit' | 'raw' | 'peer' | 'chunked' | 'commit' | 'resume' | 'rss' | 'gc';

export interface CheckSpec {
  id: string;
  label: string;
  kind: CheckKind;
  backend: string;
  /** Task ids the check reads. */
  uses: string[];
  evaluate(results: ReadonlyMap<string, TaskResult>): CheckOutcome;
}

export interface Group {
  id: string;
  title: string;
  backend: string;
  /** Rounds kept after the warm-up (default: the run's). */
  rounds?: number;
  /** false: no warm-up round (e.g. GC, whose correctness dry run already reads everything). */
  warmup?: boolean;
  setup?: () => Promise<void>;
  teardown?: () => Promise<void>;
  tasks: BenchTask[];
  checks: CheckSpec[];
}

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function sizeLabel(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`;
  return `${bytes} B`;
}

let sequence = 0;
const runTag = randomBytes(4).readUInt32BE(0);

/**
 * Makes every slot of `buffer` (slots of `size` bytes) new content: a run-wide sequence
 * number in its first bytes. No two writes of a run ever dedup against each other.
 */
export function freshen(buffer: Buffer, size: number): void {
  for (let at = 0; at + 12 <= buffer.length && at < buffer.length; at += size) {
    buffer.writeUInt32BE(runTag, at);
    buffer.writeUInt32BE(++sequence, at + 4);
    buffer.writeUInt32BE(process.pid, at + 8);
  }
}

export function nextSequence(): number {
  sequence += 1;
  return sequence;
}

export function ratioOf(
  results: ReadonlyMap<string, TaskResult>,
  numerator: string,
  denominator: string,
  metric: 'mbps' | 'opsPerSec' = 'mbps',
): number | null {
  const x = results.get(numerator);
  const y = results.get(denominator);
  // Results without bytes (listing, operations) compare their operation rates.
  const use = x?.[metric] && y?.[metric] ? metric : 'opsPerSec';
  const a = x?.[use]?.median;
  const b = y?.[use]?.median;
  return a === undefined || b === undefined || b === 0 ? null : a / b;
}

export function atLeast(value: number | null, target: number, note?: string): CheckOutcome {
  const outcome: CheckOutcome = {
    value,
    target: `≥ ${target}`,
    met: value === null ? null : value >= target,
  };
  if (note) outcome.note = note;
  return outcome;
}

export function atMost(value: number | null, target: number, note?: string): CheckOutcome {
  const outcome: CheckOutcome = {
    value,
    target: `≤ ${target}`,
    met: value === null ? null : value <= target,
  };
  if (note) outcome.note = note;
  return outcome;
}

export function info(value: number | null, note?: string): CheckOutcome {
  const outcome: CheckOutcome = { value, target: null, met: null };
  if (note) outcome.note = note;
  return outcome;
}

/** Runs `work` over `count` items with `concurrency` lanes. */
export async function parallel(
  count: number,
  concurrency: number,
  work: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) await work(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, lane));
}
