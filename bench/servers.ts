/**
 * Local servers for the benchmark matrix, each started in its own child process (so
 * the pid held is the server's own, and only that pid is stopped) over a fresh temp
 * directory, and stopped when the run ends:
 *
 *   s3rver   `@20minutes/s3rver` through scripts/s3rver/server.mjs (the S3 test lane's
 *            emulator, with its storage fixes); keys S3RVER/S3RVER
 *   Azurite  node_modules/azurite/dist/src/blob/main.js, the development account
 *   radosgw  scripts/ceph-rgw/start.sh (a throw-away single-node Ceph; root, Debian
 *            packages ceph-mon ceph-osd radosgw curl), stopped by stop.sh
 *
 * These exist in a clone of the repository (`npm run bench`, `npm run bench:system`),
 * not in the published package; a server that cannot start fails the run with its
 * output, it is never skipped. The bench runs from dist/ as well as from the sources,
 * so paths are resolved from the repository root (the folder holding package.json),
 * not from this file; that is also why the Azurite launcher is not imported from
 * scripts/azurite/ (a TypeScript file outside the build).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, rmdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Azurite's built-in development account: public and documented, it protects nothing. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

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

/** The blobcore repository root: the nearest folder up from here with blobcore's package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string };
      if (pkg.name === 'blobcore') return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the blobcore repository root (package.json)');
    dir = parent;
  }
}

function packageVersion(root: string, name: string): string {
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '?';
  } catch {
    return '?';
  }
}

const children = new Set<ChildProcess>();
const exitCleanups = new Set<() => void>();
let exitHook = false;

function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const server of children) server.kill('SIGKILL');
    for (const cleanup of exitCleanups) {
      try {
        cleanup();
      } catch {
        // best effort on the way out
      }
    }
  });
}

/**
 * Runs `cleanup` (synchronous) if the process exits before the returned function is
 * called: temp directories and servers are not left behind by an interrupted run.
 */
export function onExitSync(cleanup: () => void): () => void {
  installExitHook();
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

/** Servers are killed if this process exits without stopping them. */
function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
  installExitHook();
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((done) => {
    const timer = setTimeout(() => done(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      done(true);
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (!(await waitForExit(child, 10_000))) {
    child.kill('SIGKILL');
    await waitForExit(child, 10_000);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The S3 emulator over a temp directory (needs --openssl-legacy-provider: see its script). */
export async function startS3rver(): Promise<RunningServer> {
  const root = repoRoot();
  const script = join(root, 'scripts', 's3rver', 'server.mjs');
  if (!existsSync(script)) throw new Error(`s3rver launcher not found at ${script} (run from a clone)`);
  const directory = await mkdtemp(join(tmpdir(), 'blobcore-bench-s3rver-'));
  const forget = onExitSync(() => rmSync(directory, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', script, directory], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  track(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  try {
    const endpoint = await new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      lines.once('line', (line) => {
        try {
          resolve((JSON.parse(line) as { endpoint: string }).endpoint);
        } catch (error) {
          reject(error);
        }
      });
      child.once('exit', (code) =>
        reject(new Error(`s3rver exited (${code}) before it was ready:\n${stderr}`)),
      );
      child.once('error', reject);
    });
    child.stdout?.resume();
    return {
      name: 's3rver',
      version: packageVersion(root, '@20minutes/s3rver'),
      endpoint,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      async stop() {
        await stopChild(child);
        await rm(directory, { recursive: true, force: true });
        forget();
      },
    };
  } catch (error) {
    child.kill('SIGKILL');
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

/** Azurite's blob service on a free port over a temp `--location`. */
export async function startAzurite(): Promise<RunningServer> {
  const root = repoRoot();
  const main = join(root, 'node_modules', 'azurite', 'dist', 'src', 'blob', 'main.js');
  if (!existsSync(main)) throw new Error(`Azurite not found at ${main} (npm ci installs it)`);
  const location = await mkdtemp(join(tmpdir(), 'blobcore-bench-azurite-'));
  const forget = onExitSync(() => rmSync(location, { recursive: true, force: true }));
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        main,
        '--silent',
        '--skipApiVersionCheck',
        '--loose',
        '--disableTelemetry',
        '--blobHost',
        '127.0.0.1',
        '--blobPort',
        String(port),
        '--location',
        location,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    track(child);
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-4000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    try {
      await new Promise<void>((ready, fail) => {
        const timer = setTimeout(() => fail(new Error(`Azurite did not start in 60 s:\n${output}`)), 60_000);
        child.stdout?.on('data', () => {
          if (/successfully listens on/i.test(output)) {
            clearTimeout(timer);
            ready();
          }
        });
        child.once('exit', (code, signal) => {
          clearTimeout(timer);
          fail(new Error(`Azurite exited (${signal ?? code}) before listening:\n${output}`));
        });
      });
      return {
        name: 'Azurite',
        version: packageVersion(root, 'azurite'),
        endpoint: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
        credentials: { accessKeyId: AZURITE_ACCOUNT, secretAccessKey: AZURITE_KEY },
        async stop() {
          await stopChild(child);
          await rm(location, { recursive: true, force: true });
          forget();
        },
      };
    } catch (error) {
      child.kill('SIGKILL');
      lastError = error;
      if (!/EADDRINUSE/.test(String(error))) break;
    }
  }
  await rm(location, { recursive: true, force: true });
  forget();
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
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
