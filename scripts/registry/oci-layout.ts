/**
 * Builds OCI image layouts on disk for the registry tests and the registry benchmark:
 * `oci-layout`, `index.json` and `blobs/sha256/<hex>`, one image manifest per tag, its
 * layers random bytes (uncompressed `tar` media type, so a client has nothing to
 * recompress and `--preserve-digests` copies them as they are).
 *
 * Layers are written streaming (a 64 MiB layer is never held whole) and hashed while
 * written. Bytes come from a seeded xorshift generator, so a layer is reproducible from
 * its seed and two layers with different seeds never collide.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

export const MediaTypes = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface LayerSpec {
  size: number;
  /** Same seed, same bytes: lets two images share a layer. */
  seed: number;
}

export interface BuiltImage {
  tag: string;
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
}

const CHUNK = 1024 * 1024;

/** Deterministic pseudo-random bytes, `size` of them, in chunks of up to 1 MiB. */
export function* randomChunks(size: number, seed: number): Generator<Buffer> {
  let x = seed >>> 0 || 0x9e3779b9;
  let y = (seed * 2654435761) >>> 0 || 1;
  for (let at = 0; at < size; at += CHUNK) {
    const length = Math.min(CHUNK, size - at);
    const words = new Uint32Array(Math.ceil(length / 4));
    for (let i = 0; i < words.length; i++) {
      // xorshift64-ish on two 32-bit halves: fast, and plenty for test data
      let t = x ^ (x << 11);
      x = y;
      y = y ^ (y >>> 19) ^ (t ^ (t >>> 8));
      t = y >>> 0;
      words[i] = t;
    }
    yield Buffer.from(words.buffer, 0, length);
  }
}

async function writeBlob(
  dir: string,
  chunks: Iterable<Buffer> | Buffer,
): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const tmp = join(dir, 'blobs', 'sha256', `.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`);
  const source = Buffer.isBuffer(chunks) ? [chunks] : chunks;
  await pipeline(
    (function* () {
      for (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    })(),
    createWriteStream(tmp),
  );
  const hex = hash.digest('hex');
  await rename(tmp, join(dir, 'blobs', 'sha256', hex));
  return { digest: `sha256:${hex}`, size };
}

/** Writes one image (config, layers, manifest) into the layout at `dir` and tags it. */
export async function addImage(dir: string, tag: string, layers: LayerSpec[]): Promise<BuiltImage> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const layerDescriptors: Descriptor[] = [];
  for (const layer of layers) {
    const { digest, size } = await writeBlob(dir, randomChunks(layer.size, layer.seed));
    layerDescriptors.push({ mediaType: MediaTypes.layer, digest, size });
  }
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Labels: { 'org.example.tag': tag } },
      rootfs: { type: 'layers', diff_ids: layerDescriptors.map((l) => l.digest) },
    }),
  );
  const config = { mediaType: MediaTypes.config, ...(await writeBlob(dir, configBytes)) };
  const manifestBytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.manifest, config, layers: layerDescriptors }),
  );
  const manifest: Descriptor = { mediaType: MediaTypes.manifest, ...(await writeBlob(dir, manifestBytes)) };
  const indexPath = join(dir, 'index.json');
  let index: { schemaVersion: 2; mediaType?: string; manifests: Descriptor[] };
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch {
    index = { schemaVersion: 2, mediaType: MediaTypes.index, manifests: [] };
  }
  index.manifests = index.manifests.filter(
    (m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag,
  );
  index.manifests.push({ ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } });
  await writeFile(indexPath, JSON.stringify(index));
  return { tag, manifest, config, layers: layerDescriptors };
}

/** Every blob a layout's tag needs (manifest, config, layers), read from its index.json. */
export async function imageOf(dir: string, tag: string): Promise<BuiltImage> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const manifest = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!manifest) throw new Error(`no tag ${tag} in ${dir}`);
  const body = JSON.parse(await readFile(blobPath(dir, manifest.digest), 'utf8')) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  return { tag, manifest, config: body.config, layers: body.layers };
}

export function blobPath(dir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':') as [string, string];
  return join(dir, 'blobs', algorithm, hex);
}

/** sha256 of a file, streamed. */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return `sha256:${hash.digest('hex')}`;
}

/** Re-hashes every blob of `tag` in a layout; throws on the first that is missing or wrong. */
export async function verifyImage(dir: string, tag: string): Promise<BuiltImage> {
  const image = await imageOf(dir, tag);
  for (const blob of [image.manifest, image.config, ...image.layers]) {
    const actual = await fileDigest(blobPath(dir, blob.digest));
    if (actual !== blob.digest) throw new Error(`${dir}: blob ${blob.digest} hashes to ${actual}`);
  }
  return image;
}
