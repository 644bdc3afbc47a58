/**
 * Repositories: namespaces of links over the one content-addressed store.
 *
 * A blob is visible in a repository only while linked there (a small link record), so
 * guessing another namespace's digest gives BLOB_UNKNOWN. Linking, mounting and naming
 * a blob as a manifest child go through the liveness protocol (./liveness.ts): touch,
 * then check the index, so a concurrent GC can never sweep what was just referenced.
 *
 * Manifests are stored as blobs (exact bytes) plus a revision record in the repository;
 * tags point at revisions and keep a history; referrers are indexed by subject at push.
 * Keys: ./layout.ts.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { referenceBlob } from './blob-index.js';
import { collectBody } from './bytes.js';
import { type Digest, formatDigest, isDigest, parseDigest } from './digest.js';
import type { Driver, SignalOptions } from './driver.js';
import { blobError, isBlobcoreError } from './errors.js';
import {
  blobLinkKey,
  catalogKey,
  manifestKey,
  referrerKey,
  referrersPrefix,
  repositoryPrefix,
  tagHistoryKey,
  tagHistoryPrefix,
  tagKey,
} from './layout.js';
import { announceReferences } from './liveness.js';
import {
  type Descriptor,
  effectiveArtifactType,
  isForeignLayer,
  type ParsedManifest,
  parseManifest,
} from './manifest.js';
import { validateRepositoryName, validateTag } from './names.js';
import { listAll, readJsonKey, writeJson } from './records.js';
import type { BlobInfo, BlobStore, GetOptions, PutOptions, PutResult } from './store.js';
import type { Upload } from './upload.js';

export interface BlobLink {
  digest: string;
  size: number;
  linked: string;
}

export interface ManifestRevision {
  digest: string;
  mediaType: string;
  size: number;
  created: string;
  subject?: string;
  artifactType?: string;
}

export interface TagRecord {
  tag: string;
  digest: string;
  updated: string;
}

export interface TagRevision {
  digest: string;
  at: Date;
}

export interface Manifest extends ManifestInfo {
  bytes: Buffer;
}

export interface ManifestInfo {
  digest: string;
  mediaType: string;
  size: number;
}

export interface ManifestPutOptions extends SignalOptions {
  mediaType: string;
  tag?: string | undefined;
}

export interface PageOptions {
  /** Return names after this one. */
  last?: string | undefined;
  /** At most this many (all when omitted). */
  n?: number | undefined;
}

/** One page of names under a prefix (keys are `prefix + name`), lexical, after `last`. */
async function pageNames(driver: Driver, prefix: string, page: PageOptions): Promise<string[]> {
  if (page.n !== undefined && !(Number.isSafeInteger(page.n) && page.n >= 0)) {
    throw blobError('RANGE_INVALID', `n must be a non-negative integer, got ${page.n}`);
  }
  const names: string[] = [];
  let cursor = page.last === undefined ? undefined : prefix + page.last;
  while (page.n === undefined || names.length < page.n) {
    const limit = page.n === undefined ? undefined : Math.min(1000, page.n - names.length);
    if (limit === 0) break;
    const result = await driver.list(prefix, { startAfter: cursor, limit });
    names.push(...result.keys.map((key) => key.slice(prefix.length)));
    if (result.cursor === undefined) break;
    cursor = result.cursor;
  }
  return names;
}

export class Repository {
  readonly blobs: RepositoryBlobs;
  readonly manifests: RepositoryManifests;
  readonly tags: RepositoryTags;
  readonly uploads: {
    start(options?: SignalOptions): Promise<Upload>;
    resume(id: string, options?: SignalOptions): Promise<Upload>;
  };
  private registered = false;

  constructor(
    readonly store: BlobStore,
    readonly name: string,
  ) {
    validateRepositoryName(name);
    this.blobs = new RepositoryBlobs(this);
    this.manifests = new RepositoryManifests(this);
    this.tags = new RepositoryTags(this);
    this.uploads = {
      start: async (options) => {
        await this.register(options);
        return store.uploads.start({ ...options, repository: name });
      },
      resume: (id, options) => store.uploads.resume(id, { ...options, repository: name }),
    };
  }

  get driver(): Driver {
    return this.store.driver;
  }

  /** Adds the repository to the catalog (once per instance). */
  async register(options: SignalOptions = {}): Promise<void> {
    if (this.registered) return;
    const key = catalogKey(this.name);
    if (!(await this.driver.stat(key, options)))
      await writeJson(this.driver, key, { name: this.name }, options);
    this.registered = true;
  }

  /** Manifests whose `subject` is `digest`, optionally of one artifact type. */
  async referrers(
    digest: string,
    options: { artifactType?: string } & SignalOptions = {},
  ): Promise<Descriptor[]> {
    const subject = parseDigest(digest);
    const prefix = referrersPrefix(this.name, subject);
    const found: Descriptor[] = [];
    for await (const key of listAll(this.driver, prefix, options)) {
      const entry = await readJsonKey<Descriptor>(this.driver, key, options);
      if (!entry) continue;
      if (options.artifactType !== undefined && entry.artifactType !== options.artifactType) continue;
      // Skip referrers whose manifest has since been deleted.
      if (!(await this.manifests.stat(entry.digest, options))) continue;
      found.push(entry);
    }
    return found;
  }
}

export class RepositoryBlobs {
  constructor(private readonly repo: Repository) {}

  /** The link record, if the blob is linked here. */
  async linkRecord(digest: Digest, options: SignalOptions = {}): Promise<BlobLink | null> {
    return readJsonKey<BlobLink>(this.repo.driver, blobLinkKey(this.repo.name, digest), options);
  }

  /** Size of a blob linked here; null when not linked (or no longer stored). */
  async stat(digest: string, options: SignalOptions = {}): Promise<BlobInfo | null> {
    const parsed = parseDigest(digest);
    if (!(await this.linkRecord(parsed, options))) return null;
    return this.repo.store.stat(parsed.value, options);
  }

  async get(digest: string, options: GetOptions = {}): Promise<Readable> {
    const parsed = parseDigest(digest);
    if (!(await this.linkRecord(parsed, options))) {
      throw blobError('BLOB_UNKNOWN', `blob ${digest} is not in repository ${this.repo.name}`);
    }
    return this.repo.store.get(parsed.value, options);
  }

  /** Stores bytes and links them here. */
  async put(source: Parameters<BlobStore['put']>[0], options: PutOptions = {}): Promise<PutResult> {
    const result = await this.repo.store.put(source, options);
    await this.writeLink(parseDigest(result.digest), result.size, options);
    return result;
  }

  /** Makes a stored blob visible here. BLOB_UNKNOWN if it is not stored. */
  async link(digest: string, options: SignalOptions = {}): Promise<BlobInfo> {
    const parsed = parseDigest(digest);
    const index = await referenceBlob(this.repo.driver, parsed.value, options);
    if (!index) throw blobError('BLOB_UNKNOWN', `blob ${digest} is not stored`);
    await this.writeLink(parsed, index.size, options);
    return { digest: parsed.value, size: index.size };
  }

  /** Links a blob from another repository without moving data. BLOB_UNKNOWN if not linked there. */
  async mount(digest: string, from: string, options: SignalOptions = {}): Promise<BlobInfo> {
    const source = new Repository(this.repo.store, from);
    const parsed = parseDigest(digest);
    if (!(await source.blobs.linkRecord(parsed, options))) {
      throw blobError('BLOB_UNKNOWN', `blob ${digest} is not in repository ${from}`);
    }
    return this.link(parsed.value, options);
  }

  async unlink(digest: string, options: SignalOptions = {}): Promise<boolean> {
    return this.repo.driver.delete(blobLinkKey(this.repo.name, parseDigest(digest)), options);
  }

  /** Writes the link record; callers have referenced the blob first. */
  async writeLink(digest: Digest, size: number, options: SignalOptions = {}): Promise<void> {
    await this.repo.register(options);
    const record: BlobLink = { digest: digest.value, size, linked: new Date().toISOString() };
    await writeJson(this.repo.driver, blobLinkKey(this.repo.name, digest), record, options);
  }
}

export class RepositoryManifests {
  constructor(private readonly repo: Repository) {}

  /**
   * Stores a manifest after checking every child is present here: config and layers
   * linked in this repository, child manifests stored in it. Tags it when asked.
   */
  async put(bytes: Uint8Array, options: ManifestPutOptions): Promise<ManifestInfo> {
    const tag = options.tag === undefined ? undefined : validateTag(options.tag);
    const parsed = parseManifest(bytes, options.mediaType);
    const self = formatDigest('sha256', createHash('sha256').update(bytes).digest());
    const children = [...parsed.blobs, ...parsed.manifests].map((d) => d.digest);
    const done = await announceReferences(this.repo.driver, [self, ...children], options);
    try {
      return await this.putChecked(bytes, parsed, tag, options);
    } finally {
      await done();
    }
  }

  private async putChecked(
    bytes: Uint8Array,
    parsed: ParsedManifest,
    tag: string | undefined,
    options: ManifestPutOptions,
  ): Promise<ManifestInfo> {
    await this.checkChildren(parsed, options);
    const { digest, size } = await this.repo.store.put(bytes, { signal: options.signal });
    const parsedDigest = parseDigest(digest);
    const revision: ManifestRevision = {
      digest,
      mediaType: parsed.mediaType,
      size,
      created: new Date().toISOString(),
    };
    if (parsed.subject) revision.subject = parsed.subject.digest;
    const artifactType = effectiveArtifactType(parsed);
    if (artifactType !== undefined) revision.artifactType = artifactType;
    await this.repo.register(options);
    await writeJson(this.repo.driver, manifestKey(this.repo.name, parsedDigest), revision, options);
    if (parsed.subject) {
      const entry: Descriptor = { mediaType: parsed.mediaType, digest, size };
      if (artifactType !== undefined) entry.artifactType = artifactType;
      if (parsed.annotations) entry.annotations = parsed.annotations;
      const key = referrerKey(this.repo.name, parseDigest(parsed.subject.digest), parsedDigest);
      await writeJson(this.repo.driver, key, entry, options);
    }
    if (tag !== undefined) await this.repo.tags.set(tag, digest, options);
    return { digest, mediaType: parsed.mediaType, size };
  }

  private async checkChildren(parsed: ParsedManifest, options: SignalOptions): Promise<void> {
    const missing: string[] = [];
    for (const blob of parsed.blobs) {
      if (isForeignLayer(blob)) continue;
      if (!(await this.repo.blobs.stat(blob.digest, options))) missing.push(blob.digest);
      else if (!(await referenceBlob(this.repo.driver, blob.digest, options))) missing.push(blob.digest);
    }
    for (const child of parsed.manifests) {
      if (!(await this.revision(parseDigest(child.digest), options))) missing.push(child.digest);
      else if (!(await referenceBlob(this.repo.driver, child.digest, options))) missing.push(child.digest);
    }
    if (missing.length > 0) {
      throw blobError(
        'MANIFEST_BLOB_UNKNOWN',
        `manifest references ${missing.length} unknown blob(s): ${missing[0]}`,
        {
          detail: { missing },
        },
      );
    }
  }

  private revision(digest: Digest, options: SignalOptions): Promise<ManifestRevision | null> {
    return readJsonKey<ManifestRevision>(this.repo.driver, manifestKey(this.repo.name, digest), options);
  }

  private async resolve(reference: string, options: SignalOptions): Promise<ManifestRevision | null> {
    if (isDigest(reference)) return this.revision(parseDigest(reference), options);
    const tag = await this.repo.tags.get(validateTag(reference), options);
    return tag === null ? null : this.revision(parseDigest(tag), options);
  }

  async stat(reference: string, options: SignalOptions = {}): Promise<ManifestInfo | null> {
    if (reference.includes(':')) parseDigest(reference); // tags have no ':', so this must be a digest
    const revision = await this.resolve(reference, options);
    if (!revision || !(await this.repo.store.stat(revision.digest, options))) return null;
    return { digest: revision.digest, mediaType: revision.mediaType, size: revision.size };
  }

  /** A manifest by tag or digest, its bytes verified. MANIFEST_UNKNOWN when absent. */
  async get(reference: string, options: SignalOptions = {}): Promise<Manifest> {
    if (reference.includes(':')) parseDigest(reference); // tags have no ':', so this must be a digest
    const revision = await this.resolve(reference, options);
    if (!revision) throw blobError('MANIFEST_UNKNOWN', `manifest ${reference} is not in ${this.repo.name}`);
    try {
      const stream = await this.repo.store.get(revision.digest, { verify: true, signal: options.signal });
      const bytes = await collectBody(stream);
      return { digest: revision.digest, mediaType: revision.mediaType, size: bytes.length, bytes };
    } catch (error) {
      if (isBlobcoreError(error, 'BLOB_UNKNOWN')) {
        throw blobError('MANIFEST_UNKNOWN', `manifest ${reference} is not in ${this.repo.name}`);
      }
      throw error;
    }
  }

  /** Deletes a manifest revision, the tags pointing at it and its referrer entry. */
  async delete(digest: string, options: SignalOptions = {}): Promise<boolean> {
    const parsed = parseDigest(digest);
    const revision = await this.revision(parsed, options);
    if (!revision) return false;
    for (const tag of await this.repo.tags.list({}, options)) {
      if ((await this.repo.tags.get(tag, options)) === parsed.value)
        await this.repo.tags.delete(tag, options);
    }
    if (revision.subject !== undefined) {
      await this.repo.driver.delete(
        referrerKey(this.repo.name, parseDigest(revision.subject), parsed),
        options,
      );
    }
    return this.repo.driver.delete(manifestKey(this.repo.name, parsed), options);
  }

  /** Every manifest revision in the repository. */
  async *revisions(options: SignalOptions = {}): AsyncGenerator<ManifestRevision> {
    for await (const key of listAll(
      this.repo.driver,
      `${repositoryPrefix(this.repo.name)}_manifests/`,
      options,
    )) {
      const revision = await readJsonKey<ManifestRevision>(this.repo.driver, key, options);
      if (revision) yield revision;
    }
  }
}

export class RepositoryTags {
  constructor(private readonly repo: Repository) {}

  private prefix(): string {
    return `${repositoryPrefix(this.repo.name)}_tags/`;
  }

  /** Tag names, lexical, paged with `last` and `n`. */
  async list(page: PageOptions = {}, _options: SignalOptions = {}): Promise<string[]> {
    return pageNames(this.repo.driver, this.prefix(), page);
  }

  /** The digest a tag points at, or null. */
  async get(tag: string, options: SignalOptions = {}): Promise<string | null> {
    const record = await readJsonKey<TagRecord>(
      this.repo.driver,
      tagKey(this.repo.name, validateTag(tag)),
      options,
    );
    return record?.digest ?? null;
  }

  /**
   * Points a tag at a manifest already in this repository and records the revision.
   * The manifest is referenced first (liveness), and its revision record is re-read
   * after the tag is written: if a concurrent prune removed it meanwhile, it is put
   * back (prune re-reads the tags after removing a revision, so one of the two sees
   * the other).
   */
  async set(tag: string, digest: string, options: SignalOptions = {}): Promise<void> {
    validateTag(tag);
    const parsed = parseDigest(digest);
    const done = await announceReferences(this.repo.driver, [parsed.value], options);
    try {
      await this.point(tag, parsed, options);
    } finally {
      await done();
    }
  }

  private async point(tag: string, parsed: Digest, options: SignalOptions): Promise<void> {
    const digest = parsed.value;
    const key = manifestKey(this.repo.name, parsed);
    const revision = await readJsonKey<ManifestRevision>(this.repo.driver, key, options);
    if (!revision || !(await referenceBlob(this.repo.driver, parsed.value, options))) {
      throw blobError('MANIFEST_UNKNOWN', `manifest ${digest} is not in ${this.repo.name}`);
    }
    const now = Date.now();
    await writeJson(
      this.repo.driver,
      tagHistoryKey(this.repo.name, tag, now),
      { digest: parsed.value, at: now },
      options,
    );
    const record: TagRecord = { tag, digest: parsed.value, updated: new Date(now).toISOString() };
    await writeJson(this.repo.driver, tagKey(this.repo.name, tag), record, options);
    if (!(await this.repo.driver.stat(key, options)))
      await writeJson(this.repo.driver, key, revision, options);
  }

  /** Removes a tag and its history; the manifests stay (untagged). */
  async delete(tag: string, options: SignalOptions = {}): Promise<boolean> {
    validateTag(tag);
    const removed = await this.repo.driver.delete(tagKey(this.repo.name, tag), options);
    for await (const key of listAll(this.repo.driver, tagHistoryPrefix(this.repo.name, tag), options)) {
      await this.repo.driver.delete(key, options);
    }
    return removed;
  }

  /** The digests a tag has pointed at, newest first. */
  async history(tag: string, options: SignalOptions = {}): Promise<TagRevision[]> {
    validateTag(tag);
    const revisions: TagRevision[] = [];
    for await (const key of listAll(this.repo.driver, tagHistoryPrefix(this.repo.name, tag), options)) {
      const entry = await readJsonKey<{ digest: string; at: number }>(this.repo.driver, key, options);
      if (entry) revisions.push({ digest: entry.digest, at: new Date(entry.at) });
    }
    return revisions.reverse();
  }

  /** History entry keys, oldest first (for prune). */
  historyKeys(tag: string, options: SignalOptions = {}): AsyncGenerator<string> {
    return listAll(this.repo.driver, tagHistoryPrefix(this.repo.name, tag), options);
  }
}
