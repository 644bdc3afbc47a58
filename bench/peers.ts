/**
 * Peer libraries, behind one small shape each, run on the same disk or the same S3
 * server as the blobcore store they are compared with. devDependencies, loaded only
 * here and only when a scenario needs them.
 *
 *   cacache 20          content-addressed cache (npm's): put computes the integrity and,
 *                       given one, checks it; get streams and checks it. sha256 is asked
 *                       for (its default is sha512), so both sides hash the same way.
 *   blockstore-fs 4     IPFS block store: bytes stored under the CID the caller names;
 *                       neither put nor get hashes anything.
 *   @tus/file-store 2   tus resumable uploads on a directory: create, then `write`
 *                       (stream, offset) per PATCH; no hashing.
 *   @tus/s3-store 2     tus on S3: each write spools parts to temp files, uploads them as
 *                       multipart parts, and completes the upload at the last byte
 *                       (needs ListParts, which the s3rver emulator does not implement).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DeleteObjectsCommand } from '@aws-sdk/client-s3';
import { CID } from 'multiformats/cid';
import { create as createMultihash } from 'multiformats/hashes/digest';
import type { S3Access } from './backends.js';
import { repoRoot } from './servers.js';

const require = createRequire(import.meta.url);

export function peerVersion(name: string): string {
  try {
    const path = join(repoRoot(), 'node_modules', name, 'package.json');
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

/** A whole-blob store: put bytes (under their digest), read them back, delete. */
export interface BlobPeer {
  name: string;
  version: string;
  verifies: boolean;
  note: string;
  put(bytes: Uint8Array, digest: string): Promise<void>;
  get(digest: string): Promise<AsyncIterable<Uint8Array>>;
  delete(digest: string): Promise<void>;
}

/** A resumable-upload store: create, write chunks at offsets, read back, delete. */
export interface UploadPeer {
  name: string;
  version: string;
  verifies: boolean;
  note: string;
  create(size: number): Promise<string>;
  write(id: string, chunk: Readable, offset: number): Promise<number>;
  read(id: string): Promise<AsyncIterable<Uint8Array>>;
  delete(id: string): Promise<void>;
}

function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

interface Cacache {
  put(
    cache: string,
    key: string,
    data: Uint8Array,
    opts?: { algorithms?: string[]; integrity?: string },
  ): Promise<string>;
  get: { stream(cache: string, key: string): NodeJS.ReadableStream };
  rm: {
    entry(cache: string, key: string, opts?: { removeFully?: boolean }): Promise<unknown>;
    content(cache: string, integrity: string): Promise<unknown>;
  };
}

export function cacachePeer(dir: string): BlobPeer {
  const cacache = require('cacache') as Cacache;
  const integrity = (digest: string) => `sha256-${Buffer.from(hexOf(digest), 'hex').toString('base64')}`;
  return {
    name: 'cacache',
    version: peerVersion('cacache'),
    verifies: true,
    note: 'sha256 integrity checked on put (given) and on get',
    async put(bytes, digest) {
      await cacache.put(dir, digest, bytes, { algorithms: ['sha256'], integrity: integrity(digest) });
    },
    async get(digest) {
      return cacache.get.stream(dir, digest) as unknown as AsyncIterable<Uint8Array>;
    },
    async delete(digest) {
      await cacache.rm.entry(dir, digest, { removeFully: true });
      await cacache.rm.content(dir, integrity(digest));
    },
  };
}

export async function blockstorePeer(dir: string): Promise<BlobPeer> {
  const { FsBlockstore } = await import('blockstore-fs');
  const store = new FsBlockstore(dir);
  await store.open();
  const cid = (digest: string) =>
    CID.createV1(0x55, createMultihash(0x12, Buffer.from(hexOf(digest), 'hex')));
  return {
    name: 'blockstore-fs',
    version: peerVersion('blockstore-fs'),
    verifies: false,
    note: 'stores under the CID it is given; hashes nothing',
    async put(bytes, digest) {
      await store.put(cid(digest), bytes);
    },
    async get(digest) {
      return store.get(cid(digest));
    },
    async delete(digest) {
      await store.delete(cid(digest));
    },
  };
}

export async function tusFilePeer(dir: string): Promise<UploadPeer> {
  const { FileStore } = await import('@tus/file-store');
  const { Upload } = await import('@tus/utils');
  const store = new FileStore({ directory: dir });
  return {
    name: '@tus/file-store',
    version: peerVersion('@tus/file-store'),
    verifies: false,
    note: 'appends at offsets; hashes nothing',
    async create(size) {
      const id = randomBytes(16).toString('hex');
      await store.create(new Upload({ id, size, offset: 0 }));
      return id;
    },
    write: (id, chunk, offset) => store.write(chunk, id, offset),
    async read(id) {
      return store.read(id) as AsyncIterable<Uint8Array>;
    },
    async delete(id) {
      await store.remove(id);
    },
  };
}

export async function tusS3Peer(access: S3Access, partSize: number): Promise<UploadPeer> {
  const { S3Store } = await import('@tus/s3-store');
  const { Upload } = await import('@tus/utils');
  const store = new S3Store({
    partSize,
    s3ClientConfig: {
      bucket: access.bucket,
      region: access.region,
      forcePathStyle: true,
      ...(access.endpoint ? { endpoint: access.endpoint } : {}),
      ...(access.credentials ? { credentials: access.credentials } : {}),
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    },
  });
  const key = (id: string) => `tus/${id}`;
  return {
    name: '@tus/s3-store',
    version: peerVersion('@tus/s3-store'),
    verifies: false,
    note: 'parts spooled to temp files, multipart upload; hashes nothing',
    async create(size) {
      const id = key(randomBytes(16).toString('hex'));
      await store.create(new Upload({ id, size, offset: 0 }));
      return id;
    },
    write: (id, chunk, offset) => store.write(chunk, id, offset),
    async read(id) {
      return (await store.read(id)) as AsyncIterable<Uint8Array>;
    },
    async delete(id) {
      await access.client.send(
        new DeleteObjectsCommand({
          Bucket: access.bucket,
          Delete: { Objects: [{ Key: id }, { Key: `${id}.info` }, { Key: `${id}.part` }], Quiet: true },
        }),
      );
    },
  };
}

/** A Readable over `bytes` in `chunk`-byte pieces, like an HTTP request body. */
export function chunkStream(bytes: Uint8Array, chunk: number): Readable {
  function* pieces() {
    for (let at = 0; at < bytes.byteLength; at += chunk)
      yield bytes.subarray(at, Math.min(bytes.byteLength, at + chunk));
  }
  return Readable.from(pieces(), { objectMode: false, highWaterMark: chunk });
}
