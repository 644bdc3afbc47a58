/**
 * What every local test server launcher needs: the repository root (from the sources or
 * from dist/), installed package versions, free ports, and child processes that are
 * stopped (SIGTERM, then SIGKILL) by their `stop()` or killed when this process exits,
 * with their temp directories removed.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** The installed version of a package in the repository's node_modules, or '?'. */
export function packageVersion(name: string, root = repoRoot()): string {
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
    for (const child of children) child.kill('SIGKILL');
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

/** Kills `child` if this process exits while it still runs. */
export function track(child: ChildProcess): void {
  installExitHook();
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** Resolves true once `child` has exited, false after `ms`. */
export function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((done) => {
    const timer = setTimeout(() => done(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      done(true);
    });
  });
}

/** SIGTERM, then SIGKILL if it has not exited within `ms`. */
export async function stopChild(child: ChildProcess, ms = 10_000): Promise<void> {
  child.kill('SIGTERM');
  if (!(await waitForExit(child, ms))) {
    child.kill('SIGKILL');
    await waitForExit(child, ms);
  }
}

/** A port nothing listens on right now on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
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

/** Whether `port` on 127.0.0.1 can be listened on right now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Keeps the last `limit` characters a child writes to stdout and stderr. */
export function outputTail(child: ChildProcess, limit = 4000): () => string {
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-limit);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return () => output;
}
