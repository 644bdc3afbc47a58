/** blobcore: a verified, content-addressed blob store for container registries. */
export * from './digest.js';
export type * from './driver.js';
export { guardDriver, isValidKey, validateKey, validatePrefix } from './driver.js';
export * from './errors.js';
export { createResumableSha256, hashImplementation, type ResumableSha256 } from './hash/index.js';
export {
  type BlobInfo,
  BlobStore,
  type GetOptions,
  openStore,
  type PutOptions,
  type PutResult,
  type StoreLayout,
  type StoreOptions,
} from './store.js';
export { openDriver, registerDriverScheme } from './store-url.js';
export type {
  AppendOptions,
  CommitOptions,
  CommitResult,
  Upload,
  UploadManager,
  UploadStatus,
} from './upload.js';
