/**
 * Local servers for the benchmark matrix, each in its own child process over a fresh temp
 * directory, stopped when the run ends:
 *
 *   s3rver   servers/s3rver.ts (the S3 test lane's emulator, with its storage fixes);
 *            keys S3RVER/S3RVER
 *   Azurite  servers/azurite.ts, the development account
 *   radosgw  scripts/ceph-rgw/start.sh (a throw-away single-node Ceph; root, Debian
 *            packages ceph-mon ceph-osd radosgw curl), stopped by stop.sh
 *
 * These exist in a clone of the repository (`npm run bench`, `npm run bench:system`),
 * not in the published package; a server that cannot start fails the run with its
 * output, it is never skipped. Paths are resolved from the repository root (the folder
 * holding package.json), so the bench runs from dist/ as well as from the sources.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite as startAzuriteServer } from '../servers/azurite.js';
import { freePort, onExitSync, portFree, repoRoot } from '../servers/processes.js';
import { startS3rver as startS3rverServer } from '../servers/s3rver.js';

export { onExitSync, repoRoot } from '../servers/processes.js';

const run = promisify(execFile);

export interface RunningServer {
  name: string;
  version: string;
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /**
   * Frees space the server holds for deleted objects (radosgw keeps them until its
   * garbage collector runs; the memstore OSD would fill up in minutes of 256 MiB writes).
   */
  reclaim?(): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3rver(): Promise<RunningServer> {
  const server = await startS3rverServer();
  return {
    name: 's3rver',
    version: server.version,
    endpoint: server.endpoint,
    credentials: server.credentials,
    stop: () => server.stop(),
  };
}

export async function startAzurite(): Promise<RunningServer> {
  const server = await startAzuriteServer();
  return {
    name: 'Azurite',
    version: server.version,
    endpoint: server.endpoint,
    credentials: { accessKeyId: AZURITE_ACCOUNT, secretAccessKey: AZURITE_KEY },
    stop: () => server.stop(),
  };
}

/** A throw-away Ceph RADOS Gateway (scripts/ceph-rgw/start.sh; root and the ceph packages). */
export async function startRadosgw(): Promise<RunningServer> {
  const scripts = join(repoRoot(), 'scripts', 'ceph-rgw');
  // start.sh wants a missing or empty directory with a short path (admin sockets live under it).
  const dir = await mkdtemp('/tmp/bc-rgw-bench-');
  await rmdir(dir);
  let port = 0;
  for (let attempt = 0; attempt < 20 && port === 0; attempt++) {
    const candidate = await freePort();
    if (candidate >= 1024 && candidate <= 65533 && (await portFree(candidate + 1))) port = candidate;
  }
  if (port === 0) throw new Error('no two consecutive free ports on 127.0.0.1 for radosgw');
  let stdout: string;
  const forget = onExitSync(() => {
    execFileSync('bash', [join(scripts, 'stop.sh'), dir], { stdio: 'ignore', timeout: 60_000 });
  });
  try {
    ({ stdout } = await run('bash', [join(scripts, 'start.sh'), dir, String(port)], { timeout: 180_000 }));
  } catch (error) {
    await run('bash', [join(scripts, 'stop.sh'), dir]).catch(() => undefined);
    forget();
    const { stderr } = error as { stderr?: string };
    throw new Error(`radosgw did not start (scripts/ceph-rgw/start.sh):\n${stderr ?? String(error)}`);
  }
  const env = Object.fromEntries(
    stdout
      .split('\n')
      .filter((line) => line.includes('='))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
  let version = '?';
  try {
    version = ((await run('radosgw', ['--version'])).stdout.match(/ceph version (\S+)/)?.[1] ?? '?').trim();
  } catch {
    // version is informational
  }
  return {
    name: 'radosgw',
    version,
    endpoint: env.S3_ENDPOINT ?? `http://127.0.0.1:${port}`,
    credentials: { accessKeyId: env.S3_ACCESS_KEY ?? '', secretAccessKey: env.S3_SECRET_KEY ?? '' },
    async reclaim() {
      await run('radosgw-admin', ['-c', join(dir, 'ceph.conf'), 'gc', 'process', '--include-all'], {
        timeout: 120_000,
      });
    },
    async stop() {
      await run('bash', [join(scripts, 'stop.sh'), dir], { timeout: 60_000 });
      forget();
    },
  };
}
