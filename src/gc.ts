/**
 * Online garbage collection: runs while pushes continue, and never loses a blob.
 *
 * Steps (each timed in the report):
 *   lock        one GC per backend: `gc/lock` created create-only with a lease renewed
 *               while running; a lease left by a dead GC expires and is taken over.
 *   intents     finish what a crashed GC left half-swept (see `sweep`).
 *   uploads     uploads idle longer than `uploadTtlMs` are cancelled (multipart aborted);
 *               the data keys of the others are noted as live for `orphans`. This comes
 *               before any listing of blobs, so an upload that commits while GC runs is
 *               either seen live here or its index is seen by `candidates`.
 *   mark        roots: every tag, every tag-history revision, every manifest revision
 *               (untagged: 'keep', the default) or only the young ones ('delete'),
 *               pins, and anything committed or touched within `graceMs`. Marking
 *               follows manifests to their config, layers and child manifests, and
 *               keeps referrers of live manifests. Any error here aborts the run before
 *               anything is deleted (fail closed).
 *   candidates  every index key is listed (the listing `orphans` reuses); unmarked blobs
 *               whose last liveness (commit or touch) is older than the grace period are
 *               candidates, each with the etag of its touch record at that moment.
 *   tombstone   one intent record per batch of up to INTENT_BATCH candidates
 *               (`gc/intents/<run>-<n>`): what will be swept and the touch etag each was
 *               chosen with. All are written (durably, per the driver) before any index
 *               is deleted. Then the pending records of manifest pushes in flight are
 *               read and the roots marked again; every candidate named or reached is
 *               spared (it stays listed in its batch; recovery finds its index and
 *               leaves it alone).
 *   sweep       batch by batch, candidates in parallel: delete the index, then re-read
 *               the touch record. If it changed, a push referenced the blob since it was
 *               chosen: put the index back. Otherwise delete the bytes and the touch
 *               record. A batch's intent is deleted once all its candidates are done.
 *               Then the repository links, revisions and referrer entries naming swept
 *               blobs go (each re-created if the blob was pushed again meanwhile). The
 *               proof that pushes and this step cannot both miss each other is in
 *               ./liveness.ts.
 *   (recovery)  `intents` replays each surviving batch by the same rule, with one more
 *               check: an index is only ever put back while its bytes still exist (a
 *               candidate swept to the end before the crash stays swept).
 *   orphans     data keys no index names (left by a crash between writing bytes and
 *               index; indexes as listed by `candidates`, read there or here), not held
 *               by a live upload and older than `orphanGraceMs`, are
 *               deleted, and so are touch records of digests that are not stored (a
 *               push touched the blob while a GC swept it). Drivers with
 *               temp files sweep those of crashed writers (`driver.sweepTemp`). A put publishes its index right after its bytes, so this is the
 *               one place that relies on time: only bytes older than the orphan grace
 *               *before this run started* go, so the grace must exceed the longest single
 *               put (default 24 hours), however long the run takes.
 */
import { type BlobIndex, readIndexRecord } from './blob-index.js';
import type { DeleteOptions, Driver, SignalOptions } from './driver.js';
import { blobError, isBlobcoreError, throwIfAborted } from './errors.js';
import {
  CATALOG_MARKER,
  CATALOG_PREFIX,
  dataShardPrefixes,
  digestFromKey,
  digestShardPrefixes,
  GC_INTENTS_PREFIX,
  GC_LOCK_KEY,
  gcIntentKey,
  indexKey,
  PENDING_PREFIX,
  PINS_PREFIX,
  repositoryPrefix,
  touchKey,
  UPLOADS_PREFIX,
} from './layout.js';
import { MediaTypes, parseManifest } from './manifest.js';
import { listAll, readJsonKey, readRecord, swapRecord } from './records.js';
import type { BlobLink, ManifestRevision, TagRecord } from './repository.js';
import type { BlobStore } from './store.js';
import type { UploadRecord } from './upload.js';

export type GcPhase =
  | 'lock'
  | 'intents'
  | 'mark'
  | 'candidates'
  | 'tombstone'
  | 'sweep'
  | 'uploads'
  | 'orphans';

export interface GcOptions extends SignalOptions {
  /** Choose candidates and report them; change nothing. */
  dryRun?: boolean | undefined;
  /** Blobs committed or referenced this recently are kept. Default 1 hour. */
  graceMs?: number | undefined;
  /** Uploads idle this long are purged. Default 24 hours. */
  uploadTtlMs?: number | undefined;
  /** Unreferenced data keys this old are deleted. Default 24 hours. */
  orphanGraceMs?: number | undefined;
  /** Untagged manifest revisions: roots ('keep', default) or collected after the grace period. */
  untagged?: 'keep' | 'delete' | undefined;
  /** Lease of the GC lock; renewed every third of it. Default 60 s. */
  leaseMs?: number | undefined;
  /** Parallel backend reads while scanning. Default 16. */
  concurrency?: number | undefined;
  onProgress?: ((progress: { phase: GcPhase; done: number; total?: number }) => void) | undefined;
  /** Test hook: awaited after each phase (e.g. to hold GC between tombstone and sweep). */
  afterPhase?: ((phase: GcPhase) => Promise<void> | void) | undefined;
}

export interface GcReport {
  dryRun: boolean;
  /** Blobs (layers, configs, manifests) reachable from roots. */
  marked: number;
  /** Digests chosen for sweeping. */
  candidates: string[];
  swept: number;
  /** Candidates a concurrent push referenced after they were chosen: kept. */
  resurrected: number;
  bytesFreed: number;
  uploadsPurged: number;
  orphansRemoved: number;
  /** Temp files of crashed writers removed by the driver (fs, pvc). */
  tempRemoved: number;
  durationMs: number;
  phases: { phase: GcPhase; ms: number }[];
}

interface Candidate {
  digest: string;
  record: BlobIndex;
  /** Etag of the touch record when chosen; null if it had none. */
  touchEtag: string | null;
}

/** A batch of candidates, written before any of them is touched (`tombstone`). */
interface IntentBatch {
  run: string;
  candidates: Candidate[];
}

/** An intent batch of this run: its key and candidates. */
interface IntentBatchRef {
  key: string;
  candidates: Candidate[];
}

/** What GCs before batching wrote: one record per candidate. Still replayed on recovery. */
interface SingleIntent extends Candidate {
  run: string;
}

/** Repository sections whose records name roots (see `mark`). */
const ROOT_SECTIONS = ['_manifests/', '_tags/', '_history/'];

/**
 * Candidates per intent record. One durable write then covers this many blobs instead
 * of one each (a write costs a file and a directory fsync on fs), while a record stays
 * small (~250 bytes per candidate) and a crashed run leaves little to replay.
 */
const INTENT_BATCH = 512;

const DEFAULTS = {
  graceMs: 3_600_000,
  uploadTtlMs: 86_400_000,
  orphanGraceMs: 86_400_000,
  leaseMs: 60_000,
  concurrency: 16,
};

/** Runs `work` over items with at most `limit` in flight. */
async function forEachLimit<T>(
  items: Iterable<T>,
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failed: unknown;
  const lane = async () => {
    for (let next = iterator.next(); !next.done && failed === undefined; next = iterator.next()) {
      try {
        await work(next.value);
      } catch (error) {
        failed ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, lane));
  if (failed !== undefined) throw failed;
}

/**
 * Visits every key under `prefixes`, listed in parallel: a store-wide scan (blobs/, data/)
 * then costs its slowest shard, not the sum of a serial walk over every directory. Keys
 * are handed over as they come (in no overall order), so a caller keeps only what it needs.
 */
async function forEachKey(
  driver: Driver,
  prefixes: string[],
  concurrency: number,
  options: SignalOptions,
  visit: (key: string, prefix: string) => void,
): Promise<void> {
  await forEachLimit(prefixes, concurrency, async (prefix) => {
    for await (const key of listAll(driver, prefix, options)) visit(key, prefix);
  });
}

/** `<repository>/<section>` prefixes of every repository in the catalog, for `forEachKey`. */
async function repositorySectionPrefixes(
  driver: Driver,
  sections: string[],
  options: SignalOptions,
): Promise<string[]> {
  const names = await repositoryNames(driver, options);
  return names.flatMap((name) => sections.map((section) => repositoryPrefix(name) + section));
}

/** Lists every repository name in the catalog. */
async function repositoryNames(driver: Driver, options: SignalOptions): Promise<string[]> {
  const names: string[] = [];
  for await (const key of listAll(driver, CATALOG_PREFIX, options)) {
    if (key.endsWith(`/${CATALOG_MARKER}`))
      names.push(key.slice(CATALOG_PREFIX.length, -CATALOG_MARKER.length - 1));
  }
  return names;
}

class GcLock {
  private etag: string | null = null;
  private timer: NodeJS.Timeout | undefined;
  lost = false;

  constructor(
    private readonly driver: Driver,
    private readonly owner: string,
    private readonly leaseMs: number,
  ) {}

  private record() {
    return { owner: this.owner, expires: Date.now() + this.leaseMs, pid: process.pid };
  }

  async acquire(): Promise<void> {
    // Without enforced create-only writes the check below is best effort: look first.
    const existing = this.driver.capabilities.conditionalWrite ? null : await this.driver.stat(GC_LOCK_KEY);
    this.etag = existing ? null : await swapRecord(this.driver, GC_LOCK_KEY, this.record(), null);
    if (this.etag === null) {
      const held = await readRecord<{ owner: string; expires: number }>(this.driver, GC_LOCK_KEY);
      if (held && held.value.expires > Date.now()) {
        throw blobError(
          'UNAVAILABLE',
          `a GC is already running on this store (${held.value.owner}, lease until ${new Date(held.value.expires).toISOString()})`,
          { retryable: true },
        );
      }
      this.etag = await swapRecord(this.driver, GC_LOCK_KEY, this.record(), held ? held.etag : null);
      if (this.etag === null)
        throw blobError('UNAVAILABLE', 'another GC took the lock first', { retryable: true });
    }
    this.timer = setInterval(() => void this.renew(), Math.max(10, this.leaseMs / 3));
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.lost || this.etag === null) return;
    try {
      this.etag = await swapRecord(this.driver, GC_LOCK_KEY, this.record(), this.etag);
      if (this.etag === null) this.lost = true;
    } catch {
      // A failed renewal is retried at the next tick; `check` fails closed once the lease runs out.
    }
  }

  /** Throws once the lock is lost, so no deletion happens without it. */
  check(): void {
    if (this.lost) throw blobError('UNAVAILABLE', 'GC lost its lock (lease expired or taken over); stopped');
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    if (this.lost || this.etag === null) return;
    const current = await this.driver.stat(GC_LOCK_KEY).catch(() => null);
    if (current?.etag === this.etag) await this.driver.delete(GC_LOCK_KEY).catch(() => false);
  }
}

export async function collectGarbage(store: BlobStore, options: GcOptions = {}): Promise<GcReport> {
  return new GarbageCollector(store, options).run();
}

class GarbageCollector {
  private readonly driver: Driver;
  private readonly graceMs: number;
  private readonly uploadTtlMs: number;
  private readonly concurrency: number;
  private readonly started = Date.now();
  private readonly run_id =
    `${process.pid}-${this.started.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly phases: { phase: GcPhase; ms: number }[] = [];
  private readonly marked = new Set<string>();
  private readonly swept = new Set<string>();
  /** Every digest indexed when `candidates` listed them, for `orphans`. */
  private readonly indexed = new Set<string>();
  /** Data keys of index records already read by `candidates`. */
  private readonly dataKeys = new Map<string, string>();
  private lock: GcLock;
  private report: GcReport;

  constructor(
    store: BlobStore,
    private readonly options: GcOptions,
  ) {
    this.driver = store.driver;
    this.graceMs = options.graceMs ?? DEFAULTS.graceMs;
    this.uploadTtlMs = options.uploadTtlMs ?? DEFAULTS.uploadTtlMs;
    this.concurrency = options.concurrency ?? DEFAULTS.concurrency;
    this.lock = new GcLock(this.driver, this.run_id, options.leaseMs ?? DEFAULTS.leaseMs);
    this.report = {
      dryRun: options.dryRun === true,
      marked: 0,
      candidates: [],
      swept: 0,
      resurrected: 0,
      bytesFreed: 0,
      uploadsPurged: 0,
      orphansRemoved: 0,
      tempRemoved: 0,
      durationMs: 0,
      phases: this.phases,
    };
  }

  private get signal(): SignalOptions {
    return { signal: this.options.signal };
  }

  /** For deletes a crash may undo harmlessly: what they remove is found again as an orphan. */
  private get lazy(): DeleteOptions {
    return { signal: this.options.signal, lazy: true };
  }

  private progress(phase: GcPhase, done: number, total?: number): void {
    this.options.onProgress?.(total === undefined ? { phase, done } : { phase, done, total });
  }

  private async phase<T>(phase: GcPhase, work: () => Promise<T>): Promise<T> {
    throwIfAborted(this.options.signal);
    const begin = performance.now();
    const result = await work();
    this.phases.push({ phase, ms: Math.round(performance.now() - begin) });
    await this.options.afterPhase?.(phase);
    return result;
  }

  /** Before each deletion: the run must still hold the lock and not be aborted. */
  private guard(): void {
    throwIfAborted(this.options.signal);
    this.lock.check();
  }

  async run(): Promise<GcReport> {
    await this.phase('lock', () => this.lock.acquire());
    try {
      if (!this.report.dryRun) await this.phase('intents', () => this.finishIntents());
      const live = await this.phase('uploads', () => this.purgeUploads());
      await this.phase('mark', () => this.mark());
      this.report.marked = this.marked.size;
      let candidates = await this.phase('candidates', () => this.chooseCandidates());
      if (this.report.dryRun) candidates = (await this.stillGarbage(candidates)).sweep;
      this.report.candidates = candidates.map((c) => c.digest).sort();
      if (!this.report.dryRun) {
        const batches = await this.phase('tombstone', () => this.tombstone(candidates));
        await this.phase('sweep', () => this.sweep(batches));
      }
      await this.phase('orphans', () => this.removeOrphans(live));
    } finally {
      await this.lock.release();
    }
    this.report.durationMs = Date.now() - this.started;
    return this.report;
  }

  // ── mark ──────────────────────────────────────────────────────────────────────────

  /**
   * Marks from every root. Run once before choosing candidates and again just before
   * sweeping, so references written while GC ran (a tag pushed after the first pass)
   * are seen; marking again is cheap for what is already marked.
   */
  private async mark(): Promise<void> {
    const now = Date.now();
    const roots = new Map<string, string | undefined>(); // digest → media type when known
    const revisions: ManifestRevision[] = [];
    // Revisions, tags and tag history of every repository, listed and read in parallel.
    // The outcome does not depend on the order: a revision sets its media type over a
    // tag's `undefined`, and a tag never overwrites a known one.
    const prefixes = await repositorySectionPrefixes(this.driver, ROOT_SECTIONS, this.signal);
    const records: { key: string; revision: boolean }[] = [];
    await forEachKey(this.driver, prefixes, this.concurrency, this.signal, (key, prefix) => {
      records.push({ key, revision: prefix.endsWith('/_manifests/') });
    });
    await forEachLimit(records, this.concurrency, async ({ key, revision: isRevision }) => {
      if (isRevision) {
        const revision = await readJsonKey<ManifestRevision>(this.driver, key, this.signal);
        if (!revision) return;
        revisions.push(revision);
        const young = now - Date.parse(revision.created) < this.graceMs;
        if (this.options.untagged !== 'delete' || young) roots.set(revision.digest, revision.mediaType);
      } else {
        // A tag (`_tags/`) or one of its past revisions (`_history/`): both name a digest.
        const entry = await readJsonKey<TagRecord | { digest: string }>(this.driver, key, this.signal);
        if (entry && !roots.has(entry.digest)) roots.set(entry.digest, undefined);
      }
    });
    for await (const key of listAll(this.driver, PINS_PREFIX, this.signal)) {
      const pin = await readJsonKey<{ digest: string; until: string }>(this.driver, key, this.signal);
      if (pin && Date.parse(pin.until) > now) this.marked.add(pin.digest);
    }
    const mediaTypes = new Map(revisions.map((r) => [r.digest, r.mediaType]));
    // Roots in parallel; two lanes reaching one shared child both read it, harmlessly.
    await forEachLimit(roots, this.concurrency, ([digest, mediaType]) =>
      this.markManifest(digest, mediaType ?? mediaTypes.get(digest)),
    );
    // Referrers of live manifests stay live, and so do theirs.
    for (let changed = true; changed; ) {
      changed = false;
      for (const revision of revisions) {
        if (revision.subject && this.marked.has(revision.subject) && !this.marked.has(revision.digest)) {
          await this.markManifest(revision.digest, revision.mediaType);
          changed = true;
        }
      }
    }
  }

  /**
   * Candidates still safe to sweep: not named by a manifest push in flight (read first)
   * and not reachable from a root written since the first mark (marked again after).
   * A push that finished before the pending read wrote its tag before the second mark;
   * one still running is in the pending read. See ./liveness.ts.
   */
  private async stillGarbage(chosen: Candidate[]): Promise<{ sweep: Candidate[]; spared: Candidate[] }> {
    const pending = await this.pendingReferences();
    await this.mark();
    const sweep: Candidate[] = [];
    const spared: Candidate[] = [];
    for (const candidate of chosen) {
      (pending.has(candidate.digest) || this.marked.has(candidate.digest) ? spared : sweep).push(candidate);
    }
    return { sweep, spared };
  }

  /** Marks a manifest and everything it names. Fails closed on anything unreadable. */
  private async markManifest(digest: string, mediaType: string | undefined): Promise<void> {
    if (this.marked.has(digest)) return;
    const index = await readIndexRecord(this.driver, digest, this.signal);
    if (!index)
      throw blobError('BLOB_UNKNOWN', `GC stopped before sweeping: root manifest ${digest} is not stored`);
    const chunks: Buffer[] = [];
    for await (const chunk of await this.driver.read(index.data, this.signal)) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    const type = mediaType ?? sniffMediaType(bytes);
    const parsed = parseManifest(bytes, type);
    this.marked.add(digest);
    this.progress('mark', this.marked.size);
    for (const blob of parsed.blobs) this.marked.add(blob.digest);
    for (const child of parsed.manifests) await this.markManifest(child.digest, child.mediaType);
  }

  // ── candidates, tombstones, sweep ─────────────────────────────────────────────────

  private async chooseCandidates(): Promise<Candidate[]> {
    const unmarked: string[] = [];
    await forEachKey(this.driver, digestShardPrefixes('blobs/'), this.concurrency, this.signal, (key) => {
      const digest = digestFromKey(key);
      this.indexed.add(digest);
      if (!this.marked.has(digest)) unmarked.push(digest);
    });
    const candidates: Candidate[] = [];
    const oldest = Date.now() - this.graceMs;
    let done = 0;
    await forEachLimit(unmarked, this.concurrency, async (digest) => {
      const touch = await this.driver.stat(touchKey(digest), this.signal);
      const record = await readIndexRecord(this.driver, digest, this.signal);
      this.progress('candidates', ++done, unmarked.length);
      if (!record) return;
      this.dataKeys.set(digest, record.data);
      const lastLive = Math.max(Date.parse(record.created), touch ? touch.modified.getTime() : 0);
      if (lastLive > oldest) return;
      candidates.push({ digest, record, touchEtag: touch?.etag ?? null });
    });
    return candidates;
  }

  /**
   * Writes the intent records: every candidate is in a batch on the backend before any
   * index is deleted, so a crash at any later point can be finished (`finishIntents`).
   */
  private async tombstone(candidates: Candidate[]): Promise<IntentBatchRef[]> {
    const batches: IntentBatchRef[] = [];
    for (let from = 0; from < candidates.length; from += INTENT_BATCH) {
      const key = gcIntentKey(this.run_id, batches.length);
      batches.push({ key, candidates: candidates.slice(from, from + INTENT_BATCH) });
    }
    let done = 0;
    await forEachLimit(batches, this.concurrency, async (batch) => {
      this.guard();
      const intent: IntentBatch = { run: this.run_id, candidates: batch.candidates };
      await this.driver.write(batch.key, Buffer.from(JSON.stringify(intent)), this.signal);
      done += batch.candidates.length;
      this.progress('tombstone', done, candidates.length);
    });
    return batches;
  }

  /** Digests named by manifest pushes in flight (./liveness.ts); stale records are dropped. */
  private async pendingReferences(): Promise<Set<string>> {
    const named = new Set<string>();
    const oldest = Date.now() - this.uploadTtlMs;
    for await (const key of listAll(this.driver, PENDING_PREFIX, this.signal)) {
      const pending = await readJsonKey<{ digests: string[]; at: number }>(this.driver, key, this.signal);
      if (!pending) continue;
      if (pending.at < oldest) {
        if (!this.report.dryRun) await this.driver.delete(key, this.signal);
        continue;
      }
      for (const digest of pending.digests) named.add(digest);
    }
    return named;
  }

  /**
   * Sweeps every candidate still garbage, all batches through one bounded pool; a batch's
   * intent is deleted as soon as its last candidate is done (spared ones need nothing).
   */
  private async sweep(batches: IntentBatchRef[]): Promise<void> {
    const { sweep, spared } = await this.stillGarbage(batches.flatMap((batch) => batch.candidates));
    this.report.resurrected += spared.length;
    const toSweep = new Set(sweep);
    const left = new Map<IntentBatchRef, number>();
    const work: { batch: IntentBatchRef; candidate: Candidate }[] = [];
    for (const batch of batches) {
      const mine = batch.candidates.filter((candidate) => toSweep.has(candidate));
      left.set(batch, mine.length);
      for (const candidate of mine) work.push({ batch, candidate });
    }
    for (const batch of batches) if (left.get(batch) === 0) await this.driver.delete(batch.key, this.signal);
    let done = 0;
    await forEachLimit(work, this.concurrency, async ({ batch, candidate }) => {
      this.guard();
      await this.sweepOne(candidate);
      this.progress('sweep', ++done, work.length);
      const remaining = (left.get(batch) as number) - 1;
      left.set(batch, remaining);
      if (remaining === 0) await this.driver.delete(batch.key, this.signal);
    });
    if (this.swept.size > 0) await this.removeReferences();
  }

  /**
   * Deletes one blob unless a push touched it since it was chosen (then restores it).
   * `indexGone`: replaying an intent whose index a crashed run already deleted.
   */
  private async sweepOne(candidate: Candidate, indexGone = false): Promise<void> {
    const { digest, record } = candidate;
    if (!indexGone) await this.driver.delete(indexKey(digest), this.signal);
    const touch = await this.driver.stat(touchKey(digest), this.signal);
    const referenced = (touch?.etag ?? null) !== candidate.touchEtag;
    // On replay the bytes may be gone already: the crashed run swept this blob to the end
    // and a later touch (a pusher finding no index) must not bring back an index to nothing.
    const bytesGone = indexGone && (await this.driver.stat(record.data, this.signal)) === null;
    if (referenced && !bytesGone) {
      await this.restore(candidate);
      this.report.resurrected += 1;
      return;
    }
    // The index is gone durably; bytes whose delete a crash undoes are an orphan for later.
    if (await this.driver.delete(record.data, this.lazy)) this.report.bytesFreed += record.size;
    // Most blobs were never touched (a plain push): no record, nothing to delete.
    if (touch && !referenced) await this.driver.delete(touchKey(digest), this.lazy);
    this.swept.add(digest);
    this.report.swept += 1;
  }

  /** Puts a resurrected blob's index back; if a fresh copy was published meanwhile, drops ours. */
  private async restore(candidate: Candidate): Promise<void> {
    try {
      await this.driver.write(indexKey(candidate.digest), Buffer.from(JSON.stringify(candidate.record)), {
        ifNoneMatch: '*',
        signal: this.options.signal,
      });
    } catch (error) {
      if (!isBlobcoreError(error, 'PRECONDITION_FAILED')) throw error;
      const current = await readIndexRecord(this.driver, candidate.digest, this.signal);
      if (current && current.data !== candidate.record.data)
        await this.driver.delete(candidate.record.data, this.lazy);
    }
  }

  /**
   * Removes links, revisions and referrer entries naming swept digests. Each is deleted,
   * then the index is checked: if the digest was pushed again meanwhile, the entry is
   * written back (a push writes its link after publishing the index). A blob link holds
   * nothing the index does not (digest, size) but its date, so it is not read first: one
   * put back is dated now, when the push that needs it happened.
   */
  private async removeReferences(): Promise<void> {
    const sections = ['_blobs/', '_manifests/', '_referrers/'];
    const prefixes = await repositorySectionPrefixes(this.driver, sections, this.signal);
    const stale: { key: string; digest: string; link: boolean }[] = [];
    await forEachKey(this.driver, prefixes, this.concurrency, this.signal, (key, prefix) => {
      const last = key.slice(key.lastIndexOf('/') + 1);
      const digest = prefix.endsWith('/_referrers/') ? last.replace('-', ':') : digestFromKey(key);
      if (this.swept.has(digest)) stale.push({ key, digest, link: prefix.endsWith('/_blobs/') });
    });
    await forEachLimit(stale, this.concurrency, async ({ key, digest, link }) => {
      this.guard();
      const entry = link ? null : await readJsonKey<unknown>(this.driver, key, this.signal);
      // Durable, links too: one a crash brought back would show this repository a blob
      // pushed again elsewhere later.
      const deleted = await this.driver.delete(key, this.signal);
      if (!deleted || (!link && entry === null)) return;
      const index = await readIndexRecord(this.driver, digest, this.signal);
      if (index === null) return;
      const restored = link
        ? ({ digest, size: index.size, linked: new Date().toISOString() } satisfies BlobLink)
        : entry;
      await this.driver.write(key, Buffer.from(JSON.stringify(restored)), this.signal);
    });
  }

  /**
   * A crashed GC's intents: each candidate of each batch is swept or restored by the same
   * rule as `sweepOne`, then the batch's record is deleted.
   */
  private async finishIntents(): Promise<void> {
    for await (const key of listAll(this.driver, GC_INTENTS_PREFIX, this.signal)) {
      this.guard();
      const intent = await readJsonKey<IntentBatch | SingleIntent>(this.driver, key, this.signal);
      if (!intent) continue;
      const entries = 'candidates' in intent ? intent.candidates : [intent];
      await forEachLimit(entries, this.concurrency, (entry) => this.finishIntent(entry));
      await this.driver.delete(key, this.signal);
    }
    if (this.swept.size > 0) await this.removeReferences();
  }

  private async finishIntent(entry: Candidate): Promise<void> {
    this.guard();
    const current = await readIndexRecord(this.driver, entry.digest, this.signal);
    if (!current) {
      await this.sweepOne(entry, true);
    } else if (current.data !== entry.record.data) {
      // Restored after a fresh copy was published: our bytes are the stray ones. (Same
      // data: never deleted, restored, or spared; nothing to finish.)
      await this.driver.delete(entry.record.data, this.lazy);
    }
  }

  // ── uploads and orphans ───────────────────────────────────────────────────────────

  /** Purges idle uploads; returns the data keys live uploads may still assemble into. */
  private async purgeUploads(): Promise<Set<string>> {
    const live = new Set<string>();
    const oldest = Date.now() - this.uploadTtlMs;
    for await (const key of listAll(this.driver, UPLOADS_PREFIX, this.signal)) {
      if (!key.endsWith('/state')) continue;
      const record = await readJsonKey<UploadRecord>(this.driver, key, this.signal);
      if (!record) continue;
      if (Date.parse(record.updated) > oldest || this.report.dryRun) {
        live.add(record.dataKey);
        continue;
      }
      this.guard();
      await this.driver.delete(key, this.signal);
      if (record.multipart) await this.driver.abortMultipart(record.multipart, this.signal).catch(() => {});
      for await (const tail of listAll(this.driver, key.slice(0, -'state'.length), this.signal)) {
        await this.driver.delete(tail, this.signal);
      }
      this.report.uploadsPurged += 1;
    }
    return live;
  }

  /**
   * Deletes bytes nothing names: data keys without an index, touches without a blob.
   * Indexes come from the `candidates` listing. One published since has bytes younger
   * than the orphan grace: a put writes them just before, and an upload's are either
   * live (noted by `uploads`, which ran before that listing) or were started after it.
   */
  private async removeOrphans(liveUploads: Set<string>): Promise<void> {
    const referenced = new Set<string>(this.dataKeys.values());
    const stored = this.indexed;
    const unread = [...stored].filter((digest) => !this.dataKeys.has(digest));
    // The data and touch keys are listed while the remaining indexes are read.
    const dataKeys: string[] = [];
    const touchKeys: string[] = [];
    await Promise.all([
      forEachLimit(unread, this.concurrency, async (digest) => {
        const record = await readIndexRecord(this.driver, digest, this.signal);
        if (record) referenced.add(record.data);
      }),
      forEachKey(this.driver, dataShardPrefixes(), this.concurrency, this.signal, (key) =>
        dataKeys.push(key),
      ),
      forEachKey(this.driver, digestShardPrefixes('touches/'), this.concurrency, this.signal, (key) =>
        touchKeys.push(key),
      ),
    ]);
    // Measured from the run's start, not from now: bytes published after the index
    // listing are missing from `referenced`, and must be young at any sweep length.
    const oldest = this.started - (this.options.orphanGraceMs ?? DEFAULTS.orphanGraceMs);
    const orphans = dataKeys.filter((key) => !referenced.has(key) && !liveUploads.has(key));
    // Touches of digests that are not stored (a push touched the blob as a GC swept it).
    // Its blob may have been published since the listing: checked again before deleting.
    const strayTouches = new Set(touchKeys.filter((key) => !stored.has(digestFromKey(key))));
    orphans.push(...strayTouches);
    if (this.driver.sweepTemp && !this.report.dryRun) {
      this.guard();
      const olderThan = this.options.orphanGraceMs ?? DEFAULTS.orphanGraceMs;
      this.report.tempRemoved = (
        await this.driver.sweepTemp({ olderThan, signal: this.options.signal })
      ).removed;
    }
    await forEachLimit(orphans, this.concurrency, async (key) => {
      const stat = await this.driver.stat(key, this.signal);
      // Younger bytes may belong to a put that has not published its index yet.
      if (!stat || stat.modified.getTime() > oldest || this.report.dryRun) return;
      if (strayTouches.has(key) && (await this.driver.stat(indexKey(digestFromKey(key)), this.signal)))
        return;
      this.guard();
      this.report.orphansRemoved += 1;
      await this.driver.delete(key, this.lazy);
    });
  }
}

/** Media type of a manifest reached through a tag only: its `mediaType` field, else OCI image. */
function sniffMediaType(bytes: Buffer): string {
  try {
    const body = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown };
    if (typeof body.mediaType === 'string') return body.mediaType;
    return Array.isArray(body.manifests) ? MediaTypes.ociIndex : MediaTypes.ociManifest;
  } catch {
    throw blobError('MANIFEST_INVALID', 'GC stopped before sweeping: a root manifest is not valid JSON');
  }
}
