export * from './digest.js';
export type * from './driver.js';
export { guardDriver, isValidKey, validateKey, validatePrefix } from './driver.js';
export * from './errors.js';
