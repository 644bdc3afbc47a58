/**
 * Access control for the registry endpoint.
 *
 * The handler asks one question per request: may this request do `action` on
 * `repository`? `action` is 'pull' (GET/HEAD of blobs, manifests, tags, referrers),
 * 'push' (uploads, manifest PUT) or 'delete' (DELETE of blobs and manifests);
 * `repository` is null for registry-wide requests (`GET /v2/`, `GET /v2/_catalog`).
 * A cross-repository mount asks twice: push on the target, pull on the source.
 *
 * The answer (`Authorize`): `true`/'allow' proceeds; 'unauthenticated' answers 401 with
 * a `WWW-Authenticate` challenge; `false`/'deny' answers 401 to a request without
 * credentials (so the client can log in) and 403 DENIED to one with credentials.
 *
 * Built in (`staticUsers`): users with bcrypt hashes in htpasswd form (`name:$2y$…`, as
 * `htpasswd -B` writes them; `$2a$`/`$2b$`/`$2y$` are accepted, other hash kinds are
 * refused when loading) and access rules `subject repository-pattern role`:
 *   subject   a user name, `@authenticated` (any valid user) or `@anonymous` (no credentials)
 *   pattern   an exact name, or a glob where `*` matches any characters (`team/*`, `*`)
 *   role      `pull` (the viewer role: pull) or `push` (the editor role: pull, push, delete)
 * Without rules every valid user may push everywhere and anonymous requests get nothing
 * (what CNCF Distribution's htpasswd mode does). Wrong credentials are 401 whatever the
 * rules say. Passwords are checked with bcryptjs (pure JS, ~100 ms at cost 10, off the
 * event loop's critical path via its async API); a successful check is remembered for
 * `cacheTtlMs` under a sha256 of user, password and hash, since registry clients send
 * Basic credentials with every request. Unknown users cost one bcrypt comparison too, so
 * response times do not reveal which names exist.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import bcrypt from 'bcryptjs';

export type RegistryAction = 'pull' | 'push' | 'delete';

export interface AuthorizeRequest {
  action: RegistryAction;
  /** The repository acted on; null for registry-wide requests (`GET /v2/`, `GET /v2/_catalog`). */
  repository: string | null;
  request: IncomingMessage;
}

export type AuthorizeDecision = boolean | 'allow' | 'deny' | 'unauthenticated';

export type Authorize = (input: AuthorizeRequest) => AuthorizeDecision | Promise<AuthorizeDecision>;

export type Role = 'pull' | 'push';

export interface AccessRule {
  /** A user name, `@authenticated` or `@anonymous`. */
  subject: string;
  /** Exact repository name or a glob (`*` matches any characters, `/` included). */
  repository: string;
  role: Role;
}

export interface StaticUsersOptions {
  /** htpasswd text (`name:bcrypt-hash` lines) or a map of name → bcrypt hash. */
  users: string | ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** Access rules, as objects or as text (one `subject pattern role` per line, `#` comments). */
  access?: readonly AccessRule[] | string | undefined;
  /** How long a verified password is remembered. Default 5 minutes; 0 disables the cache. */
  cacheTtlMs?: number | undefined;
}

export const ANONYMOUS = '@anonymous';
export const AUTHENTICATED = '@authenticated';

const ROLE_ACTIONS: Record<Role, readonly RegistryAction[]> = {
  pull: ['pull'],
  push: ['pull', 'push', 'delete'],
};

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;
/** bcrypt (cost 10) of a random string: compared against for unknown users. */
const DUMMY_HASH = '$2b$10$4MDVoeN7iiKojDwgYCHY5eg6goQfBJvdSiPz44f4TKHGEPmemI8BO';
const CACHE_LIMIT = 1024;

/** Parses htpasswd text. Only bcrypt hashes are accepted; anything else throws with its line number. */
export function parseHtpasswd(text: string): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`htpasswd line ${i + 1}: expected name:hash`);
    const name = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!BCRYPT.test(hash)) {
      throw new Error(`htpasswd line ${i + 1}: user ${name} has no bcrypt hash (create it with htpasswd -B)`);
    }
    users.set(name, hash);
  });
  return users;
}

/** Parses access rules, one `subject repository-pattern role` per line. */
export function parseAccessRules(text: string): AccessRule[] {
  const rules: AccessRule[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const fields = line.split(/\s+/);
    const [subject, repository, role] = fields;
    if (fields.length !== 3 || subject === undefined || repository === undefined || role === undefined) {
      throw new Error(`access line ${i + 1}: expected "subject repository-pattern role"`);
    }
    if (role !== 'pull' && role !== 'push') {
      throw new Error(`access line ${i + 1}: role must be pull or push, got ${role}`);
    }
    rules.push({ subject, repository, role });
  });
  return rules;
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

/** `Authorization: Basic …` → [user, password]; null when absent; 'invalid' when malformed. */
export function basicCredentials(request: IncomingMessage): [string, string] | null | 'invalid' {
  const header = request.headers.authorization;
  if (header === undefined) return null;
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!match) return 'invalid';
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'invalid';
  return [decoded.slice(0, colon), decoded.slice(colon + 1)];
}

export interface StaticUsers extends Authorize {
  /** The user a request authenticates as: a name, null for no credentials, undefined for wrong ones. */
  authenticate(request: IncomingMessage): Promise<string | null | undefined>;
}

/** The built-in policy: static users with bcrypt hashes and per-repository pull/push roles. */
export function staticUsers(options: StaticUsersOptions): StaticUsers {
  const users =
    typeof options.users === 'string'
      ? parseHtpasswd(options.users)
      : options.users instanceof Map
        ? new Map(options.users)
        : new Map(Object.entries(options.users));
  for (const [name, hash] of users) {
    if (!BCRYPT.test(hash)) throw new Error(`user ${name} has no bcrypt hash`);
  }
  const ruleList =
    options.access === undefined
      ? [{ subject: AUTHENTICATED, repository: '*', role: 'push' as const }]
      : typeof options.access === 'string'
        ? parseAccessRules(options.access)
        : [...options.access];
  const rules = ruleList.map((rule) => ({ ...rule, pattern: globToRegExp(rule.repository) }));
  const ttl = options.cacheTtlMs ?? 5 * 60_000;
  const verified = new Map<string, number>();

  async function checkPassword(name: string, password: string): Promise<boolean> {
    const hash = users.get(name);
    if (hash === undefined) {
      await bcrypt.compare(password, DUMMY_HASH);
      return false;
    }
    const key = createHash('sha256').update(`${name}\0${password}\0${hash}`).digest('base64');
    const until = verified.get(key);
    if (until !== undefined && until > Date.now()) return true;
    // bcryptjs reads $2y$ as $2b$ (same algorithm, different label).
    const ok = await bcrypt.compare(password, hash.replace(/^\$2y\$/, '$2b$'));
    if (ok && ttl > 0) {
      verified.delete(key);
      verified.set(key, Date.now() + ttl);
      if (verified.size > CACHE_LIMIT) verified.delete(verified.keys().next().value as string);
    }
    return ok;
  }

  async function authenticate(request: IncomingMessage): Promise<string | null | undefined> {
    const credentials = basicCredentials(request);
    if (credentials === null) return null;
    if (credentials === 'invalid') return undefined;
    const [name, password] = credentials;
    return (await checkPassword(name, password)) ? name : undefined;
  }

  function subjectsOf(user: string | null): string[] {
    return user === null ? [ANONYMOUS] : [user, AUTHENTICATED];
  }

  const authorize = async (input: AuthorizeRequest): Promise<AuthorizeDecision> => {
    const user = await authenticate(input.request);
    if (user === undefined) return 'unauthenticated';
    const subjects = subjectsOf(user);
    const mine = rules.filter((rule) => subjects.includes(rule.subject));
    if (input.repository === null) {
      // Registry-wide: any valid user may reach the API root; anonymous only if granted something.
      return user !== null || mine.length > 0 ? 'allow' : 'deny';
    }
    const repository = input.repository;
    const granted = mine.some(
      (rule) => rule.pattern.test(repository) && ROLE_ACTIONS[rule.role].includes(input.action),
    );
    return granted ? 'allow' : 'deny';
  };
  return Object.assign(authorize, { authenticate });
}
