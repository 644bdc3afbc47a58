#!/usr/bin/env node
/**
 * node --openssl-legacy-provider scripts/s3rver/server.mjs DIR [PORT]
 *
 * Runs the S3 emulator `@20minutes/s3rver` (4.0.4) on 127.0.0.1:PORT (0 or absent: any
 * free port) over the directory DIR, keys S3RVER/S3RVER, and prints one JSON line
 * `{"endpoint":"http://127.0.0.1:PORT","pid":N}` when ready. It stops on SIGTERM/SIGINT
 * or when its stdin closes (the parent went away).
 *
 * Why a child process: s3rver encrypts ListObjectsV2 continuation tokens with DES,
 * which Node 17+ (OpenSSL 3) only offers with `--openssl-legacy-provider`, and every
 * truncated listing page carries such a token. The flag cannot be turned on inside a
 * running process, and giving it to the whole test runner would load legacy ciphers
 * into everything else there; so the emulator runs alone, with the flag.
 *
 * What the emulator lacks is left missing, on purpose — that is the weaker server this
 * lane exists for: no conditional writes, no AbortMultipartUpload, ListParts or
 * ListMultipartUploads (the driver runs with `conditionalWrites: false` and
 * `multipartAbort: false`). Five defects of its *storage* that no S3 server has, and
 * that would make the driver contract's cases test the emulator instead of the
 * driver, are patched here, each small and named:
 *
 *   1. atomic object writes — s3rver truncates and rewrites the object file in place,
 *      so a concurrent GET sees a cut-off object (or a reset connection). Patched:
 *      write a temp file, then rename it over the object.
 *   2. listing in key order — s3rver lists in directory-walk order (`a/b` before
 *      `a+b`), so paging by StartAfter repeats and skips keys. Patched: collect the
 *      keys under the prefix's directory, sort them, then apply StartAfter/MaxKeys.
 *   3. long key segments — s3rver appends `._S3rver_metadata.json` to the last
 *      segment as a file name, so a 255-byte segment exceeds NAME_MAX. Patched: a last
 *      segment over 200 bytes is stored as `first200&/rest` (`&` is not a blobcore key
 *      character) and joined back when listed.
 *   4. signatures — s3rver's SigV4 check rejects every request of the current AWS SDK
 *      (even CreateBucket), hence `allowMismatchedSignatures`; but then it accepts any
 *      signature, and signed URLs prove nothing. Patched: presigned (query-string)
 *      requests, whose signature covers only the host, are verified strictly.
 *   5. a GET of one version — s3rver reads an object's length from its metadata file,
 *      then opens the object file by path; a GET racing an overwrite (which renames the
 *      new file in, then writes its metadata) could send the new file cut to the old
 *      length. Patched: the opened file's size must be the metadata's length, or both
 *      are read again.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fs, fstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import S3rver from '@20minutes/s3rver';

const require = createRequire(import.meta.url);
const FilesystemStore = require('@20minutes/s3rver/lib/stores/filesystem.js');
const S3Object = require('@20minutes/s3rver/lib/models/object.js');

const OBJECT_SUFFIX = '._S3rver_object';
const SPLIT_AT = 200;

// 3. long last segments: `first200&/rest`.
FilesystemStore.encodeKeyPath = (key) => {
  const cut = key.lastIndexOf('/') + 1;
  const last = key.slice(cut);
  return last.length > SPLIT_AT
    ? `${key.slice(0, cut)}${last.slice(0, SPLIT_AT)}&/${last.slice(SPLIT_AT)}`
    : key;
};
FilesystemStore.decodeKeyPath = (keyPath) => keyPath.replace(/&\//g, '');

// 1. atomic object writes: temp file, then rename.
FilesystemStore.prototype.putContent = async (filePath, content) => {
  const { createHash } = await import('node:crypto');
  const md5 = createHash('md5');
  let size = 0;
  const temp = `${filePath}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    if (Buffer.isBuffer(content)) {
      md5.update(content);
      size = content.length;
      await fs.writeFile(temp, content);
    } else {
      await pipeline(
        content,
        async function* (source) {
          for await (const chunk of source) {
            md5.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        createWriteStream(temp),
      );
    }
    await fs.rename(temp, filePath);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  return [size, md5.digest('hex')];
};

// 5. a GET of one version: the opened file must have the length the metadata gives.
const getObject = FilesystemStore.prototype.getObject;
FilesystemStore.prototype.getObject = async function (bucket, key, options) {
  for (let attempt = 1; ; attempt++) {
    const object = await getObject.call(this, bucket, key, options);
    const stream = object?.content;
    if (!stream || typeof stream.fd !== 'number') return object;
    const { size } = fstatSync(stream.fd);
    if (size === object.size || attempt >= 50) return object;
    stream.destroy(); // an overwrite is between its rename and its metadata: read both again
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

function* walkFiles(dir) {
  let names;
  try {
    names = readdirSync(dir);
  } catch (error) {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return;
    throw error;
  }
  for (const name of names) {
    const full = path.posix.join(dir, name);
    let stats;
    try {
      stats = statSync(full);
    } catch {
      continue; // removed meanwhile
    }
    if (stats.isDirectory()) yield* walkFiles(full);
    else yield full;
  }
}

// 2. listing in key order.
FilesystemStore.prototype.listObjects = async function listObjects(bucket, options) {
  const { delimiter = '', startAfter = '', prefix = '', maxKeys = Number.POSITIVE_INFINITY } = options;
  const bucketPath = this.getBucketPath(bucket);
  const encodedPrefix = FilesystemStore.encodeKeyPath(prefix);
  const start = path.posix.join(bucketPath, encodedPrefix.slice(0, encodedPrefix.lastIndexOf('/') + 1));
  const keys = [];
  for (const file of walkFiles(start)) {
    if (!file.endsWith(OBJECT_SUFFIX)) continue;
    const key = FilesystemStore.decodeKeyPath(file.slice(bucketPath.length + 1, -OBJECT_SUFFIX.length));
    if (key.startsWith(prefix) && key > startAfter) keys.push(key);
  }
  keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const commonPrefixes = new Set();
  const page = [];
  let isTruncated = false;
  for (const key of keys) {
    if (delimiter) {
      const at = key.indexOf(delimiter, prefix.length);
      if (at !== -1) {
        commonPrefixes.add(key.slice(0, at + delimiter.length));
        continue;
      }
    }
    if (page.length >= maxKeys) {
      isTruncated = true;
      break;
    }
    page.push(key);
  }
  const metadata = await Promise.all(
    page.map((key) =>
      this.getMetadata(bucket, key).catch((error) => {
        if (error.code === 'ENOENT') return undefined;
        throw error;
      }),
    ),
  );
  return {
    objects: page
      .map((key, i) => [key, metadata[i]])
      .filter(([, meta]) => meta !== undefined)
      .map(([key, meta]) => new S3Object(bucket, key, null, meta)),
    commonPrefixes: [...commonPrefixes].sort(),
    isTruncated,
  };
};

const [directory, portArg = '0'] = process.argv.slice(2);
if (!directory) {
  console.error('usage: node --openssl-legacy-provider scripts/s3rver/server.mjs DIR [PORT]');
  process.exit(2);
}
mkdirSync(directory, { recursive: true });

const server = new S3rver({
  address: '127.0.0.1',
  port: Number(portArg),
  directory,
  silent: true,
  allowMismatchedSignatures: true,
  resetOnClose: false,
});

// 4. strict signatures for presigned URLs: this request's view of the app says so.
server.middleware.unshift(async (ctx, next) => {
  if ('X-Amz-Signature' in ctx.query || 'Signature' in ctx.query) {
    ctx.app = Object.create(ctx.app, { allowMismatchedSignatures: { value: false } });
  }
  await next();
});

const address = await server.run();
process.stdout.write(
  `${JSON.stringify({ endpoint: `http://127.0.0.1:${address.port}`, pid: process.pid })}\n`,
);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
