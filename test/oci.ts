/** Builders for OCI manifests used by tests. */
import { MediaTypes } from '../src/manifest.js';
import { sha256 } from './helpers.js';

export interface Blob {
  bytes: Buffer;
  digest: string;
}

export function blob(text: string): Blob {
  const bytes = Buffer.from(text);
  return { bytes, digest: sha256(bytes) };
}

export function imageManifest(config: Blob, layers: Blob[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: config.digest,
        size: config.bytes.length,
      },
      layers: layers.map((layer) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: layer.digest,
        size: layer.bytes.length,
      })),
      ...extra,
    }),
  );
}

export function indexManifest(children: { digest: string; size: number }[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociIndex,
      manifests: children.map((child) => ({ mediaType: MediaTypes.ociManifest, ...child })),
    }),
  );
}
