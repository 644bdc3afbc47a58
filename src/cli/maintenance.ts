/**
 * `blobcore gc | prune | scrub | du <store-url>`: the store's maintenance jobs.
 * A progress line on a TTY (stderr), a human summary or `--json` on stdout.
 */
import { parseArgs } from 'node:util';
import type { BlobStore } from '../store.js';
import { openStore } from '../store.js';

/** Parses `90s`, `15m`, `1h`, `7d`, `250ms` or plain milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new Error(`bad duration "${text}" (use e.g. 30s, 15m, 1h, 7d)`);
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[
    (match[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h' | 'd'
  ];
  return Math.round(Number(match[1]) * unit);
}

function progressLine(enabled: boolean) {
  let last = 0;
  return {
    update(text: string) {
      if (!enabled || Date.now() - last < 100) return;
      last = Date.now();
      process.stderr.write(`\r\x1b[2K${text}`);
    },
    done() {
      if (enabled) process.stderr.write('\r\x1b[2K');
    },
  };
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

async function withStore(url: string | undefined, usage: string, work: (store: BlobStore) => Promise<void>) {
  if (url === undefined) {
    process.stderr.write(`usage: ${usage}\n`);
    return 2;
  }
  const store = await openStore(url);
  try {
    await work(store);
  } finally {
    await store.close();
  }
  return 0;
}

function print(json: boolean, value: unknown, human: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human}\n`);
}

export async function gc(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'dry-run': { type: 'boolean' },
      grace: { type: 'string' },
      'upload-ttl': { type: 'string' },
      untagged: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const json = values.json === true;
  const untagged = values.untagged ?? 'keep';
  if (untagged !== 'keep' && untagged !== 'delete') throw new Error('--untagged must be keep or delete');
  return withStore(
    positionals[0],
    'blobcore gc <store-url> [--dry-run] [--grace 1h] [--untagged keep|delete] [--json]',
    async (store) => {
      const line = progressLine(process.stderr.isTTY && !json);
      const report = await store.gc({
        dryRun: values['dry-run'] === true,
        graceMs: values.grace === undefined ? undefined : parseDuration(values.grace),
        uploadTtlMs: values['upload-ttl'] === undefined ? undefined : parseDuration(values['upload-ttl']),
        untagged,
        onProgress: ({ phase, done, total }) =>
          line.update(`gc ${phase}: ${done}${total ? `/${total}` : ''}`),
      });
      line.done();
      print(
        json,
        report,
        `gc${report.dryRun ? ' (dry run)' : ''}: marked ${report.marked}, ` +
          `${report.dryRun ? 'would sweep' : 'swept'} ${report.dryRun ? report.candidates.length : report.swept} ` +
          `(${bytes(report.bytesFreed)} freed), kept ${report.resurrected} re-referenced, ` +
          `purged ${report.uploadsPurged} uploads, ${report.orphansRemoved} orphans, ${report.tempRemoved} temp files, in ${report.durationMs} ms`,
      );
    },
  );
}

export async function pruneCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'keep-revisions': { type: 'string' },
      'untagged-older-than': { type: 'string' },
      repository: { type: 'string', multiple: true },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const usage =
    'blobcore prune <store-url> [--keep-revisions N] [--untagged-older-than 7d] [--repository name]… [--dry-run] [--json]';
  return withStore(positionals[0], usage, async (store) => {
    const report = await store.prune({
      keepRevisions: values['keep-revisions'] === undefined ? undefined : Number(values['keep-revisions']),
      untaggedOlderThanMs:
        values['untagged-older-than'] === undefined
          ? undefined
          : parseDuration(values['untagged-older-than']),
      repositories: values.repository,
      dryRun: values['dry-run'] === true,
    });
    print(
      values.json === true,
      report,
      `prune${report.dryRun ? ' (dry run)' : ''}: ${report.repositories} repositories, ` +
        `${report.historyRemoved} tag revisions and ${report.manifestsRemoved.length} untagged manifests removed; ` +
        'run `blobcore gc` to free their bytes',
    );
  });
}

export async function scrubCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { quarantine: { type: 'boolean' }, json: { type: 'boolean' } },
  });
  let corrupt = 0;
  const status = await withStore(
    positionals[0],
    'blobcore scrub <store-url> [--quarantine] [--json]',
    async (store) => {
      const line = progressLine(process.stderr.isTTY && values.json !== true);
      const report = await store.scrub({
        quarantine: values.quarantine === true,
        onProgress: ({ checked, bytes: read }) => line.update(`scrub: ${checked} blobs, ${bytes(read)}`),
      });
      line.done();
      corrupt = report.corrupt.length;
      print(
        values.json === true,
        report,
        `scrub: ${report.checked} blobs (${bytes(report.bytes)}) re-hashed in ${report.durationMs} ms; ` +
          `${report.corrupt.length} corrupt${report.corrupt.length ? `:\n  ${report.corrupt.join('\n  ')}` : ''}` +
          `${report.quarantined ? `\n${report.quarantined} quarantined` : ''}`,
      );
    },
  );
  return status === 0 && corrupt > 0 ? 1 : status;
}

export async function du(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: 'boolean' } },
  });
  return withStore(positionals[0], 'blobcore du <store-url> [--json]', async (store) => {
    const usage = await store.usage();
    print(
      values.json === true,
      usage,
      `${usage.blobs} blobs, ${bytes(usage.physicalBytes)} stored, ${bytes(usage.logicalBytes)} across ` +
        `${usage.repositories} repositories, dedup ratio ${usage.dedupRatio.toFixed(2)}`,
    );
  });
}
