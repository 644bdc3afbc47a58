/**
 * The benchmark report: the JSON document (schema in ./README.md), the console tables
 * and a Markdown rendering for the README. Everything here is computed from results
 * already measured; nothing is timed.
 */
import type { TaskResult } from './harness.js';
import type { MachineInfo } from './machine.js';
import { type CheckOutcome, type CheckSpec, sizeLabel, type TaskMeta } from './scenarios/types.js';

export const SCHEMA = 'blobcore-bench/1';

export interface BackendEntry {
  name: string;
  driver: string;
  url: string;
  server?: string;
  durability?: string;
}

export interface ResultEntry extends TaskMeta {
  /** Group the task was measured in (tasks of a group run interleaved, same rounds). */
  group: string;
  samples: number;
  ms: TaskResult['ms'];
  msPerOp: TaskResult['msPerOp'];
  mbps?: TaskResult['mbps'];
  opsPerSec: TaskResult['opsPerSec'];
  peakRssMiB: number;
  peakRssTotalMiB: number;
  metrics?: Record<string, number>;
  /** Median MB/s over the median of the group's sha256 limit (when both exist). */
  vsLimit?: number;
}

export interface CheckEntry extends CheckOutcome {
  id: string;
  label: string;
  kind: CheckSpec['kind'];
  backend: string;
  uses: string[];
}

export interface BenchOptionsEntry {
  quick: boolean;
  rounds: number;
  sizes: number[];
  uploadSize: number;
  concurrency: number[];
  smallOps: number;
  listKeys: number;
  rssSize: number;
  gcSizes: number[];
  gcManifests: number;
  peers: boolean;
  scenarios: string[];
}

export interface BenchReport {
  schema: typeof SCHEMA;
  /** false in the file written after each group while the run goes on. */
  complete: boolean;
  /** ISO time the run started and ended. */
  started: string;
  finished: string;
  blobcore: string;
  argv: string[];
  options: BenchOptionsEntry;
  machine: MachineInfo;
  backends: BackendEntry[];
  results: ResultEntry[];
  checks: CheckEntry[];
  notes: string[];
}

export function evaluateChecks(specs: CheckSpec[], results: ReadonlyMap<string, TaskResult>): CheckEntry[] {
  return specs
    .filter((spec) => spec.uses.every((id) => results.has(id)))
    .map((spec) => ({
      id: spec.id,
      label: spec.label,
      kind: spec.kind,
      backend: spec.backend,
      uses: spec.uses,
      ...spec.evaluate(results),
    }));
}

function fixed(value: number | undefined | null, digits = 0): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return '';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Headline value of a result in its unit, median with min–max. */
export function headline(result: ResultEntry): { value: string; range: string } {
  if (result.unit === 'MB/s' && result.mbps) {
    return {
      value: `${fixed(result.mbps.median)} MB/s`,
      range: `${fixed(result.mbps.min)}–${fixed(result.mbps.max)}`,
    };
  }
  if (result.unit === 'ms') {
    const d = result.msPerOp.median < 10 ? 2 : 1;
    return {
      value: `${fixed(result.msPerOp.median, d)} ms`,
      range: `${fixed(result.msPerOp.min, d)}–${fixed(result.msPerOp.max, d)}`,
    };
  }
  return {
    value: `${fixed(result.opsPerSec.median)} /s`,
    range: `${fixed(result.opsPerSec.min)}–${fixed(result.opsPerSec.max)}`,
  };
}

function verifiesText(result: ResultEntry): string {
  return result.verifies === null ? '' : result.verifies ? 'yes' : 'no';
}

export function resultRows(results: ResultEntry[]): Record<string, string>[] {
  return results.map((r) => {
    const { value, range } = headline(r);
    return {
      backend: r.backend,
      scenario:
        r.size !== undefined && !r.scenario.startsWith('ops') && r.scenario !== 'gc'
          ? `${r.scenario} ${sizeLabel(r.size)}`
          : r.scenario,
      system: r.peer ?? r.system,
      task: r.label,
      'verifies digest': verifiesText(r),
      median: value,
      'min–max': range,
      '× limit': r.vsLimit === undefined ? '' : r.vsLimit.toFixed(2),
      'peak RSS MiB': fixed(r.peakRssMiB, 1),
    };
  });
}

export function checkRows(checks: CheckEntry[]): Record<string, string>[] {
  return checks.map((c) => ({
    check: c.label,
    value: c.value === null ? 'n/a' : c.value.toFixed(c.kind === 'resume' ? 0 : 2),
    target: c.target ?? '',
    met: c.met === null ? '' : c.met ? 'yes' : 'NO',
    note: c.note ?? '',
  }));
}

/**
 * GC scale results: GC's own duration (its report, in its own process), blobs scanned
 * per second, the GC process's peak RSS, and the time of each phase.
 */
export function gcRows(results: ResultEntry[]): Record<string, string>[] {
  return results
    .filter((r) => r.scenario === 'gc')
    .map((r) => {
      const per = (key: string) => (r.metrics?.[key] ?? 0) / Math.max(1, r.samples);
      const durationMs = per('durationMs') || r.ms.median;
      const scanned = (r.opsPerSec.median * r.ms.median) / 1000;
      const row: Record<string, string> = {
        run: r.label.replace(/^GC, /, ''),
        'duration s': fixed(durationMs / 1000, 1),
        'blobs/s': fixed(scanned / (durationMs / 1000)),
        'GC process peak RSS MiB': fixed(per('gcPeakRssMiB'), 0),
        'RSS before GC MiB': fixed(per('gcStartRssMiB'), 0),
      };
      for (const key of Object.keys(r.metrics ?? {})) {
        if (key.endsWith('Ms') && key !== 'durationMs')
          row[`${key.slice(0, -2)} s`] = fixed(per(key) / 1000, 1);
      }
      return row;
    });
}

function markdownTable(rows: Record<string, string>[]): string {
  const first = rows[0];
  if (!first) return '';
  const columns = Object.keys(first);
  const escapeCell = (text: string) => text.replace(/\|/g, '\\|');
  const lines = [
    `| ${columns.join(' | ')} |`,
    `| ${columns.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${columns.map((c) => escapeCell(row[c] ?? '')).join(' | ')} |`),
  ];
  return lines.join('\n');
}

export function machineLine(machine: MachineInfo): string {
  const disk = machine.disk;
  const diskText = [disk.kind ?? disk.device, disk.fsType, disk.model].filter(Boolean).join(', ');
  return (
    `${machine.cpu.model}, ${machine.cpu.cores} cores${machine.cpu.flags.length ? ` (${machine.cpu.flags.join(' ')})` : ''}, ` +
    `${Math.round(machine.memoryMiB / 1024)} GiB RAM, Node ${machine.node}, hash ${machine.hash}, disk ${diskText}, ` +
    `load ${machine.load.start.join(' ')} at start${machine.load.end ? `, ${machine.load.end.join(' ')} at end` : ''}`
  );
}

/** Markdown for the README: machine, results, checks. */
export function toMarkdown(report: BenchReport): string {
  const parts = [
    `Measured ${report.started.slice(0, 10)} (blobcore ${report.blobcore}) on ${machineLine(report.machine)}.`,
    `${report.options.rounds} rounds after a discarded warm-up; median with min–max; MB/s = 10^6 bytes/s.`,
    '',
    markdownTable(resultRows(report.results)),
    '',
    markdownTable(checkRows(report.checks)),
  ];
  const gc = gcRows(report.results);
  if (gc.length > 0) parts.push('', markdownTable(gc));
  if (report.notes.length > 0) parts.push('', ...report.notes.map((note) => `- ${note}`));
  return `${parts.join('\n')}\n`;
}
