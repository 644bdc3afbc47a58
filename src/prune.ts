/**
 * Retention, like OpenShift's image pruner: keep the newest N revisions of every tag,
 * drop untagged manifests older than T. Prune only removes references (tag history
 * entries and manifest revisions); a GC run afterwards frees the bytes.
 *
 * What stays, per repository: every tag's current manifest and its kept history, every
 * manifest those name (index children), every referrer of a kept manifest, and every
 * manifest younger than T. A removed revision is put back if a concurrent push tagged
 * it meanwhile (see RepositoryTags.set).
 */
import { collectBody } from './bytes.js';
import { parseDigest } from './digest.js';
import type { SignalOptions } from './driver.js';
import { throwIfAborted } from './errors.js';
import { manifestKey } from './layout.js';
import { parseManifest } from './manifest.js';
import { readJsonKey, writeJson } from './records.js';
import type { ManifestRevision, Repository } from './repository.js';
import type { BlobStore } from './store.js';

export interface PruneOptions extends SignalOptions {
  /** Keep this many newest revisions per tag (at least 1). Default: keep all. */
  keepRevisions?: number | undefined;
  /** Remove untagged manifests older than this. Default: keep all. */
  untaggedOlderThanMs?: number | undefined;
  /** Only these repositories. Default: all. */
  repositories?: string[] | undefined;
  dryRun?: boolean | undefined;
}

export interface PruneReport {
  dryRun: boolean;
  repositories: number;
  historyRemoved: number;
  /** `repository@digest` of each manifest revision removed (or that would be). */
  manifestsRemoved: string[];
  durationMs: number;
}

export async function prune(store: BlobStore, options: PruneOptions = {}): Promise<PruneReport> {
  const started = Date.now();
  const report: PruneReport = {
    dryRun: options.dryRun === true,
    repositories: 0,
    historyRemoved: 0,
    manifestsRemoved: [],
    durationMs: 0,
  };
  if (
    options.keepRevisions !== undefined &&
    !(Number.isSafeInteger(options.keepRevisions) && options.keepRevisions >= 1)
  ) {
    throw new RangeError('keepRevisions must be an integer ≥ 1');
  }
  const names = options.repositories ?? (await store.repositories({}, options));
  for (const name of names) {
    throwIfAborted(options.signal);
    await pruneRepository(store.repository(name), options, report);
    report.repositories += 1;
  }
  report.durationMs = Date.now() - started;
  return report;
}

async function pruneRepository(repo: Repository, options: PruneOptions, report: PruneReport): Promise<void> {
  const { driver } = repo;
  const kept = new Set<string>();
  for (const tag of await repo.tags.list({}, options)) {
    const current = await repo.tags.get(tag, options);
    if (current) kept.add(current);
    const keys: string[] = [];
    for await (const key of repo.tags.historyKeys(tag, options)) keys.push(key);
    const drop = options.keepRevisions === undefined ? 0 : Math.max(0, keys.length - options.keepRevisions);
    for (const [i, key] of keys.entries()) {
      if (i < drop) {
        report.historyRemoved += 1;
        if (!report.dryRun) await driver.delete(key, options);
      } else {
        const entry = await readJsonKey<{ digest: string }>(driver, key, options);
        if (entry) kept.add(entry.digest);
      }
    }
  }
  if (options.untaggedOlderThanMs === undefined) return;

  const revisions: ManifestRevision[] = [];
  for await (const revision of repo.manifests.revisions(options)) revisions.push(revision);
  const byDigest = new Map(revisions.map((r) => [r.digest, r]));
  const oldest = Date.now() - options.untaggedOlderThanMs;
  for (const revision of revisions) if (Date.parse(revision.created) > oldest) kept.add(revision.digest);
  // Close over index children and referrers of what is kept.
  const expanded = new Set<string>();
  for (let changed = true; changed; ) {
    changed = false;
    for (const digest of [...kept]) {
      if (expanded.has(digest)) continue;
      expanded.add(digest);
      const revision = byDigest.get(digest);
      if (revision?.mediaType.includes('index') || revision?.mediaType.includes('list')) {
        const bytes = await collectBody(await repo.store.get(digest, { signal: options.signal }));
        for (const child of parseManifest(bytes, revision.mediaType).manifests) kept.add(child.digest);
      }
      changed = true;
    }
    for (const revision of revisions) {
      if (revision.subject && kept.has(revision.subject) && !kept.has(revision.digest)) {
        kept.add(revision.digest);
        changed = true;
      }
    }
  }
  for (const revision of revisions) {
    if (kept.has(revision.digest)) continue;
    report.manifestsRemoved.push(`${repo.name}@${revision.digest}`);
    if (report.dryRun) continue;
    await repo.manifests.delete(revision.digest, options);
    // A push may have tagged it meanwhile: it re-checks after tagging, and so do we.
    for (const tag of await repo.tags.list({}, options)) {
      if ((await repo.tags.get(tag, options)) === revision.digest) {
        await writeJson(driver, manifestKey(repo.name, parseDigest(revision.digest)), revision, options);
        break;
      }
    }
  }
}
