/**
 * Access control of the registry endpoint: the `authorize` hook (401 with a Basic
 * challenge, 403 DENIED) and the built-in static users with bcrypt hashes and
 * per-repository pull/push roles, over real HTTP.
 */
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MediaTypes } from '../src/manifest.js';
import {
  type AuthorizeRequest,
  parseAccessRules,
  parseHtpasswd,
  type StaticUsers,
  staticUsers,
} from '../src/registry/index.js';
import { openStore } from '../src/store.js';
import { basic, call, startRegistry, type TestRegistry } from './fixtures/registry-harness.js';
import { sha256 } from './helpers.js';
import { blob, imageManifest } from './oci.js';

// Real sockets and a shared 2-core machine: generous limits; the tests wait on events, not on time.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let registry: TestRegistry | undefined;
afterEach(async () => {
  await registry?.close();
  registry = undefined;
});

const hash = (password: string) => bcrypt.hashSync(password, 4);

/** htpasswd as `htpasswd -B` writes it ($2y$). */
const HTPASSWD = [
  `viewer:${hash('view-pw').replace(/^\$2b\$/, '$2y$')}`,
  `editor:${hash('edit-pw')}`,
  `admin:${hash('admin-pw').replace(/^\$2b\$/, '$2a$')}`,
  '# a comment',
  '',
].join('\n');

const ACCESS = `
# subject         repository   role
viewer            team/*       pull
editor            team/*       push
@authenticated    shared       pull
@anonymous        public/*     pull
admin             *            push
`;

const viewer = basic('viewer', 'view-pw');
const editor = basic('editor', 'edit-pw');
const admin = basic('admin', 'admin-pw');

async function serveWith(authorize: StaticUsers | ((input: AuthorizeRequest) => unknown)) {
  const store = await openStore('memory:');
  registry = await startRegistry(store, {
    authorize: authorize as StaticUsers,
    realm: 'test-realm',
  });
  return { url: registry.url, store };
}

async function pushBlob(url: string, name: string, bytes: Buffer, headers: Record<string, string>) {
  return call(url, `/v2/${name}/blobs/uploads/?digest=${sha256(bytes)}`, {
    method: 'POST',
    body: bytes,
    headers,
  });
}

describe('registry auth: htpasswd and access rules', () => {
  it('parses htpasswd with bcrypt hashes only, and access rules', () => {
    const users = parseHtpasswd(HTPASSWD);
    expect([...users.keys()]).toEqual(['viewer', 'editor', 'admin']);
    expect(() => parseHtpasswd('md5user:$apr1$abc$def')).toThrow(/line 1.*bcrypt/);
    expect(() => parseHtpasswd('sha:{SHA}abcdef=')).toThrow(/bcrypt/);
    expect(() => parseHtpasswd('plain:secret')).toThrow(/bcrypt/);
    expect(() => parseHtpasswd('nocolon')).toThrow(/name:hash/);
    expect(parseAccessRules(ACCESS)).toContainEqual({
      subject: '@anonymous',
      repository: 'public/*',
      role: 'pull',
    });
    expect(() => parseAccessRules('alice team/* admin')).toThrow(/role must be pull or push/);
    expect(() => parseAccessRules('alice team/*')).toThrow(/subject repository-pattern role/);
  });

  it('GET /v2/: 401 with a Basic challenge without or with wrong credentials, 200 with good ones', async () => {
    const { url } = await serveWith(staticUsers({ users: HTPASSWD, access: ACCESS }));
    for (const headers of [
      {},
      basic('viewer', 'wrong'),
      basic('nobody', 'x'),
      { authorization: 'Bearer abc' },
      { authorization: 'Basic !!!' },
    ]) {
      const reply = await call(url, '/v2/', { headers });
      expect(reply.status, JSON.stringify(headers)).toBe(headers.authorization === undefined ? 200 : 401);
    }
    // anonymous may reach /v2/ here only because @anonymous has a rule; without one it is 401
    await registry?.close();
    const closed = await serveWith(staticUsers({ users: HTPASSWD }));
    const anonymous = await call(closed.url, '/v2/');
    expect(anonymous.status).toBe(401);
    expect(anonymous.code).toBe('UNAUTHORIZED');
    expect(anonymous.headers['www-authenticate']).toBe('Basic realm="test-realm", charset="UTF-8"');
    expect((await call(closed.url, '/v2/', { headers: viewer })).status).toBe(200);
    expect((await call(closed.url, '/v2/', { headers: basic('viewer', 'view-pw!') })).status).toBe(401);
  });

  it('pull role reads, push role writes and deletes; others get 403 DENIED, anonymous 401', async () => {
    const { url } = await serveWith(staticUsers({ users: HTPASSWD, access: ACCESS }));
    const config = blob('{"c":1}');
    // viewer cannot push: 403 on every push endpoint
    const denied = await pushBlob(url, 'team/app', config.bytes, viewer);
    expect(denied.status).toBe(403);
    expect(denied.code).toBe('DENIED');
    expect((await call(url, '/v2/team/app/blobs/uploads/', { method: 'POST', headers: viewer })).status).toBe(
      403,
    );
    // anonymous cannot push: 401 with the challenge
    const anonymous = await pushBlob(url, 'team/app', config.bytes, {});
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toContain('Basic realm=');
    // wrong password: 401 even though the user exists and could push
    expect((await pushBlob(url, 'team/app', config.bytes, basic('editor', 'nope'))).status).toBe(401);
    // editor pushes a blob and a manifest
    expect((await pushBlob(url, 'team/app', config.bytes, editor)).status).toBe(201);
    const manifest = imageManifest(config, []);
    const put = await call(url, '/v2/team/app/manifests/v1', {
      method: 'PUT',
      headers: { ...editor, 'content-type': MediaTypes.ociManifest },
      body: manifest,
    });
    expect(put.status).toBe(201);
    // viewer pulls; editor pulls; a user without a rule for the repository does not
    for (const headers of [viewer, editor]) {
      expect((await call(url, '/v2/team/app/manifests/v1', { headers })).status).toBe(200);
      expect((await call(url, `/v2/team/app/blobs/${config.digest}`, { headers })).status).toBe(200);
      expect((await call(url, '/v2/team/app/tags/list', { headers })).status).toBe(200);
    }
    expect((await call(url, '/v2/team/app/manifests/v1')).status).toBe(401);
    expect((await call(url, '/v2/other/manifests/v1', { headers: editor })).status).toBe(403);
    // delete needs the push role
    const viewerDelete = await call(url, '/v2/team/app/manifests/v1', { method: 'DELETE', headers: viewer });
    expect([viewerDelete.status, viewerDelete.code]).toEqual([403, 'DENIED']);
    expect(
      (await call(url, `/v2/team/app/blobs/${config.digest}`, { method: 'DELETE', headers: viewer })).status,
    ).toBe(403);
    expect((await call(url, '/v2/team/app/manifests/v1', { method: 'DELETE', headers: editor })).status).toBe(
      202,
    );
  });

  it('@anonymous and @authenticated rules; globs match nested names; the catalog lists only pullable repositories', async () => {
    const { url } = await serveWith(staticUsers({ users: HTPASSWD, access: ACCESS }));
    for (const name of ['public/site', 'public/deep/nested', 'shared', 'team/app', 'secret']) {
      expect((await pushBlob(url, name, Buffer.from(name), admin)).status, name).toBe(201);
    }
    const digest = (name: string) => sha256(Buffer.from(name));
    expect((await call(url, `/v2/public/deep/nested/blobs/${digest('public/deep/nested')}`)).status).toBe(
      200,
    );
    expect((await call(url, `/v2/public/site/blobs/${digest('public/site')}`)).status).toBe(200);
    expect((await pushBlob(url, 'public/site', Buffer.from('more'), {})).status).toBe(401);
    expect((await call(url, `/v2/shared/blobs/${digest('shared')}`)).status).toBe(401);
    expect((await call(url, `/v2/shared/blobs/${digest('shared')}`, { headers: viewer })).status).toBe(200);
    expect((await pushBlob(url, 'shared', Buffer.from('more'), editor)).status).toBe(403);
    const catalog = async (headers: Record<string, string>, query = '') =>
      (await call(url, `/v2/_catalog${query}`, { headers })).json as { repositories: string[] };
    expect((await catalog(admin)).repositories).toEqual([
      'public/deep/nested',
      'public/site',
      'secret',
      'shared',
      'team/app',
    ]);
    expect((await catalog(viewer)).repositories).toEqual(['shared', 'team/app']);
    expect((await catalog({})).repositories).toEqual(['public/deep/nested', 'public/site']);
    const page = await call(url, '/v2/_catalog?n=1', { headers: viewer });
    expect((page.json as { repositories: string[] }).repositories).toEqual(['shared']);
    expect(page.headers.link).toBe('</v2/_catalog?n=1&last=shared>; rel="next"');
    expect((await catalog(viewer, '?n=1&last=shared')).repositories).toEqual(['team/app']);
  });

  it('cross-repository mount needs pull on the source and push on the target', async () => {
    const rules = `${ACCESS}\neditor other/* push\n`;
    const { url } = await serveWith(staticUsers({ users: HTPASSWD, access: rules }));
    const bytes = Buffer.from('layer in secret');
    const digest = sha256(bytes);
    expect((await pushBlob(url, 'secret', bytes, admin)).status).toBe(201);
    expect((await pushBlob(url, 'team/base', bytes, admin)).status).toBe(201);
    const mount = (target: string, from: string, headers: Record<string, string>) =>
      call(url, `/v2/${target}/blobs/uploads/?mount=${digest}&from=${from}`, { method: 'POST', headers });
    // editor may push to team/* but not pull `secret`: no mount, a plain session instead
    const refused = await mount('team/app', 'secret', editor);
    expect(refused.status).toBe(202);
    expect(
      (await call(url, `/v2/team/app/blobs/${digest}`, { method: 'HEAD', headers: editor })).status,
    ).toBe(404);
    // from a source it may pull: mounted
    const mounted = await mount('team/app', 'team/base', editor);
    expect(mounted.status).toBe(201);
    expect((await call(url, `/v2/team/app/blobs/${digest}`, { headers: editor })).body.equals(bytes)).toBe(
      true,
    );
    // viewer may pull team/base but not push to team/app: 403 before anything happens
    expect((await mount('team/app', 'team/base', viewer)).status).toBe(403);
    expect((await mount('other/x', 'team/base', editor)).status).toBe(201);
  });

  it('a custom hook sees action and repository; unauthenticated → 401, false with credentials → 403', async () => {
    const seen: string[] = [];
    const { url } = await serveWith(async ({ action, repository, request }) => {
      seen.push(`${action} ${repository ?? '(registry)'}`);
      if (request.headers['x-token'] === 'good') return 'allow';
      if (request.headers['x-token'] === undefined) return 'unauthenticated';
      return false;
    });
    expect((await call(url, '/v2/')).status).toBe(401);
    expect((await call(url, '/v2/', { headers: { 'x-token': 'good' } })).status).toBe(200);
    expect((await call(url, '/v2/app/tags/list', { headers: { 'x-token': 'bad', ...viewer } })).status).toBe(
      403,
    );
    const bytes = Buffer.from('x');
    expect((await pushBlob(url, 'app', bytes, { 'x-token': 'good' })).status).toBe(201);
    await call(url, `/v2/app/blobs/${sha256(bytes)}`, { method: 'DELETE', headers: { 'x-token': 'good' } });
    await call(url, `/v2/b/blobs/uploads/?mount=${sha256(bytes)}&from=app`, {
      method: 'POST',
      headers: { 'x-token': 'good' },
    });
    expect(seen).toEqual([
      'pull (registry)',
      'pull (registry)',
      'pull app',
      'push app',
      'delete app',
      'push b',
      'pull app',
    ]);
  });

  it('remembers a verified password (one bcrypt check for many requests) and forgets it when the cache is off', async () => {
    const compare = vi.spyOn(bcrypt, 'compare');
    try {
      const count = async (policy: StaticUsers, password = 'pw') => {
        const { url } = await serveWith(policy);
        compare.mockClear();
        for (let i = 0; i < 5; i++) await call(url, '/v2/', { headers: basic('u', password) });
        await registry?.close();
        registry = undefined;
        return compare.mock.calls.length;
      };
      const users = { u: hash('pw') };
      expect(await count(staticUsers({ users }))).toBe(1);
      expect(await count(staticUsers({ users, cacheTtlMs: 0 }))).toBe(5);
      expect(await count(staticUsers({ users }), 'wrong')).toBe(5); // failures are never remembered
      // unknown users cost a comparison too (no timing oracle for user names)
      const policy = staticUsers({ users });
      const request = (headers: Record<string, string>) =>
        ({ headers }) as unknown as Parameters<StaticUsers['authenticate']>[0];
      compare.mockClear();
      expect(await policy.authenticate(request(basic('ghost', 'pw')))).toBeUndefined();
      expect(compare).toHaveBeenCalledTimes(1);
      expect(await policy.authenticate(request(basic('u', 'pw')))).toBe('u');
      expect(await policy.authenticate(request({}))).toBeNull();
      expect(await policy.authenticate(request(basic('u', 'no')))).toBeUndefined();
    } finally {
      compare.mockRestore();
    }
  });
});
