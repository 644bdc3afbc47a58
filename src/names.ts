/** Repository and tag names, validated by the OCI distribution grammar. */
import { blobError } from './errors.js';

const REPOSITORY = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
export const MAX_REPOSITORY_NAME = 255;

export function validateRepositoryName(name: string): string {
  if (typeof name !== 'string' || name.length > MAX_REPOSITORY_NAME || !REPOSITORY.test(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 300)) : typeof name;
    throw blobError('NAME_INVALID', `invalid repository name ${shown}`);
  }
  return name;
}

export function validateTag(tag: string): string {
  if (typeof tag !== 'string' || !TAG.test(tag)) {
    const shown = typeof tag === 'string' ? JSON.stringify(tag.slice(0, 200)) : typeof tag;
    throw blobError('TAG_INVALID', `invalid tag ${shown}`);
  }
  return tag;
}

export function isTag(value: string): boolean {
  return TAG.test(value);
}
