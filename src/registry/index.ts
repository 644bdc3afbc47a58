/**
 * `blobcore/registry`: a reference OCI Distribution Spec v1.1 endpoint over a BlobStore.
 *
 *   import { createServer } from 'node:http';
 *   import { openStore } from 'blobcore';
 *   import { createRegistryHandler, staticUsers } from 'blobcore/registry';
 *
 *   const store = await openStore('file:///var/lib/registry');
 *   const authorize = staticUsers({ users: htpasswdText, access: 'alice team/* push' });
 *   createServer(createRegistryHandler(store, { authorize })).listen(5000, '127.0.0.1');
 *
 * Endpoints and streaming: ./handler.ts. Error mapping: ./errors.ts. Access control: ./auth.ts.
 */
export {
  type AccessRule,
  ANONYMOUS,
  AUTHENTICATED,
  type Authorize,
  type AuthorizeDecision,
  type AuthorizeRequest,
  basicCredentials,
  parseAccessRules,
  parseHtpasswd,
  type RegistryAction,
  type Role,
  type StaticUsers,
  type StaticUsersOptions,
  staticUsers,
} from './auth.js';
export { type ErrorContext, errorBody, HttpError, type OciErrorCode, toHttpError } from './errors.js';
export {
  createRegistryHandler,
  type RegistryHandler,
  type RegistryLogEntry,
  type RegistryOptions,
} from './handler.js';
