/**
 * The S3 emulator `@20minutes/s3rver` in a child process (scripts/s3rver/server.mjs, which
 * needs `--openssl-legacy-provider` and patches four storage defects: see that script),
 * over a fresh temp directory, on a free 127.0.0.1 port. The pid held is the server's own;
 * `stop()` ends it (SIGTERM, then SIGKILL) and removes the directory. A server that does
 * not come up rejects with its exit status and the tail of its output.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { onExitSync, outputTail, packageVersion, repoRoot, stopChild, track } from './processes.js';

/** s3rver's fixed keys. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3rverServer {
  readonly endpoint: string;
  /** Where its buckets live (one directory each). */
  readonly directory: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** The installed @20minutes/s3rver version. */
  readonly version: string;
  /** Stops the server and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

export async function startS3rver(): Promise<S3rverServer> {
  const script = join(repoRoot(), 'scripts', 's3rver', 'server.mjs');
  if (!existsSync(script)) throw new Error(`s3rver launcher not found at ${script} (run from a clone)`);
  const directory = await mkdtemp(join(tmpdir(), 'blobcore-s3rver-'));
  const forget = onExitSync(() => rmSync(directory, { recursive: true, force: true }));
  // stdin is a pipe the server watches: it stops if this process goes away.
  const child = spawn(process.execPath, ['--openssl-legacy-provider', script, directory], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  track(child);
  const output = outputTail(child);
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
        reject(new Error(`s3rver exited (${code}) before it was ready:\n${output()}`)),
      );
      child.once('error', reject);
    });
    let stopped: Promise<void> | undefined;
    return {
      endpoint,
      directory,
      credentials: S3RVER_CREDENTIALS,
      version: packageVersion('@20minutes/s3rver'),
      stop() {
        stopped ??= (async () => {
          await stopChild(child, 5000);
          await rm(directory, { recursive: true, force: true });
          forget();
        })();
        return stopped;
      },
    };
  } catch (error) {
    child.kill('SIGKILL');
    await rm(directory, { recursive: true, force: true });
    forget();
    throw error;
  }
}
