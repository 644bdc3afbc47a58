/**
 * Manifest parsing: just enough to find a manifest's children, subject and artifact type.
 *
 * Accepted media types: OCI image manifest and index, Docker schema 2 manifest and
 * manifest list, and the OCI 1.1 artifact manifest. The declared media type (the
 * HTTP Content-Type on a push) must name one of them and must agree with a `mediaType`
 * field in the body, if there is one. Anything else is MANIFEST_INVALID. The bytes are
 * never re-serialised: the manifest's digest is the digest of exactly what was sent.
 */
import { isDigest } from './digest.js';
import { blobError } from './errors.js';

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociArtifact: 'application/vnd.oci.artifact.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

type Kind = 'image' | 'index' | 'artifact';

const KINDS: Record<string, Kind> = {
  [MediaTypes.ociManifest]: 'image',
  [MediaTypes.dockerManifest]: 'image',
  [MediaTypes.ociIndex]: 'index',
  [MediaTypes.dockerList]: 'index',
  [MediaTypes.ociArtifact]: 'artifact',
};

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface ParsedManifest {
  mediaType: string;
  /** Config and layers (or an artifact's blobs): must be blobs linked in the repository. */
  blobs: Descriptor[];
  /** Child manifests of an index or list: must be manifests in the repository. */
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(why: string): never {
  throw blobError('MANIFEST_INVALID', `invalid manifest: ${why}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    invalid(`${where} must map strings to strings`);
  }
  return value as Record<string, string>;
}

function descriptor(value: unknown, where: string): Descriptor {
  if (!isRecord(value)) invalid(`${where} is not a descriptor object`);
  const { mediaType, digest, size, artifactType, annotations, urls } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0) invalid(`${where}.mediaType is missing`);
  if (!isDigest(digest)) invalid(`${where}.digest is not a valid digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
    invalid(`${where}.size is invalid`);
  if (artifactType !== undefined && typeof artifactType !== 'string')
    invalid(`${where}.artifactType is invalid`);
  if (urls !== undefined && (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string'))) {
    invalid(`${where}.urls is invalid`);
  }
  const result: Descriptor = { mediaType, digest, size };
  if (artifactType !== undefined) result.artifactType = artifactType;
  const map = stringMap(annotations, `${where}.annotations`);
  if (map) result.annotations = map;
  if (urls !== undefined) result.urls = urls as string[];
  return result;
}

function descriptors(value: unknown, where: string, required: boolean): Descriptor[] {
  if (value === undefined && !required) return [];
  if (!Array.isArray(value)) invalid(`${where} must be an array`);
  return value.map((item, i) => descriptor(item, `${where}[${i}]`));
}

/**
 * Layers that registries do not hold (Windows base layers): they carry `urls` and a
 * foreign/non-distributable media type, so their absence is not an error.
 */
export function isForeignLayer(layer: Descriptor): boolean {
  return (
    layer.urls !== undefined &&
    (layer.mediaType.includes('foreign') || layer.mediaType.includes('nondistributable'))
  );
}

export function parseManifest(bytes: Uint8Array, mediaType: string): ParsedManifest {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    invalid(`${bytes.byteLength} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`);
  }
  const kind = KINDS[mediaType];
  if (!kind) invalid(`unsupported media type ${JSON.stringify(mediaType)}`);
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    invalid('not valid JSON');
  }
  if (!isRecord(body)) invalid('not a JSON object');
  if (body.mediaType !== undefined && body.mediaType !== mediaType) {
    invalid(`body says mediaType ${JSON.stringify(body.mediaType)}, pushed as ${mediaType}`);
  }
  if (kind !== 'artifact' && body.schemaVersion !== 2) invalid('schemaVersion must be 2');
  if (mediaType.includes('docker') && body.mediaType !== mediaType)
    invalid('Docker manifests must carry mediaType');

  const parsed: ParsedManifest = { mediaType, blobs: [], manifests: [] };
  if (kind === 'image') {
    parsed.blobs = [descriptor(body.config, 'config'), ...descriptors(body.layers, 'layers', true)];
  } else if (kind === 'index') {
    parsed.manifests = descriptors(body.manifests, 'manifests', true);
  } else {
    parsed.blobs = descriptors(body.blobs, 'blobs', false);
  }
  if (body.subject !== undefined) parsed.subject = descriptor(body.subject, 'subject');
  if (body.artifactType !== undefined) {
    if (typeof body.artifactType !== 'string') invalid('artifactType must be a string');
    parsed.artifactType = body.artifactType;
  } else if (kind === 'artifact') {
    invalid('an artifact manifest needs artifactType');
  }
  const annotations = stringMap(body.annotations, 'annotations');
  if (annotations) parsed.annotations = annotations;
  return parsed;
}

/** The artifact type a referrers response reports: artifactType, else the config's media type. */
export function effectiveArtifactType(parsed: ParsedManifest): string | undefined {
  if (parsed.artifactType !== undefined) return parsed.artifactType;
  return parsed.mediaType === MediaTypes.ociManifest ? parsed.blobs[0]?.mediaType : undefined;
}
