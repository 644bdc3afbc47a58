/**
 * A real Azurite blob server for tests, benchmarks and local runs.
 *
 * `startAzurite()` picks a free 127.0.0.1 port, makes a fresh temp `--location`, and
 * runs `node node_modules/azurite/dist/src/blob/main.js` directly (not through npx or a
 * shell), so the pid it holds is the server's own and `stop()` ends exactly that
 * process, then removes the temp directory. A server that does not come up rejects with
 * its exit status and the tail of its output: callers let that fail the run, never skip.
 *
 * With `tls` it serves HTTPS, and with `oauth: true` also accepts bearer tokens
 * (`--oauth basic`: Azurite checks a token's issuer, audience and lifetime but not its
 * signature), which is what user-delegation SAS needs.
 *
 * From a shell: `node --import ./test/fixtures/ts-loader.mjs scripts/azurite/azurite.ts`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, onExitSync, outputTail, packageVersion, repoRoot, stopChild, track } from './processes.js';

/** Azurite's built-in development account. Public and documented; it protects nothing. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const START_TIMEOUT_MS = 60_000;

export interface AzuriteOptions {
  /** Serve HTTPS with this certificate and key (PEM file paths). */
  tls?: { cert: string; key: string };
  /** Accept OAuth bearer tokens (`--oauth basic`); needs `tls`. */
  oauth?: boolean;
  /** Keep data in memory (`--inMemoryPersistence`) instead of the temp `--location`. */
  inMemory?: boolean;
}

export interface AzuriteServer {
  readonly pid: number;
  readonly port: number;
  /** Blob service endpoint, path-style: `http://127.0.0.1:<port>/devstoreaccount1`. */
  readonly endpoint: string;
  readonly accountName: string;
  readonly accountKey: string;
  /** A connection string for the development account on this server. */
  readonly connectionString: string;
  readonly location: string;
  /** The installed azurite package's version. */
  readonly version: string;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its temp directory. Idempotent. */
  stop(): Promise<void>;
}

function azuriteMain(): string {
  const main = join(repoRoot(), 'node_modules', 'azurite', 'dist', 'src', 'blob', 'main.js');
  if (!existsSync(main)) throw new Error(`Azurite not found at ${main} (npm ci installs it)`);
  return main;
}

async function startOnce(port: number, location: string, options: AzuriteOptions): Promise<ChildProcess> {
  const args = [
    azuriteMain(),
    '--silent',
    '--skipApiVersionCheck',
    '--loose',
    '--disableTelemetry',
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(port),
  ];
  // Azurite refuses --location together with --inMemoryPersistence.
  args.push(...(options.inMemory ? ['--inMemoryPersistence'] : ['--location', location]));
  if (options.tls) args.push('--cert', options.tls.cert, '--key', options.tls.key);
  if (options.oauth) args.push('--oauth', 'basic');
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  const output = outputTail(child);
  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(
        () => fail(new Error(`Azurite did not start within ${START_TIMEOUT_MS} ms:\n${output()}`)),
        START_TIMEOUT_MS,
      );
      child.stdout?.on('data', () => {
        if (/successfully listens on/i.test(output())) {
          clearTimeout(timer);
          ready();
        }
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        fail(error);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`Azurite exited (${signal ?? `code ${code}`}) before listening:\n${output()}`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return child;
}

/** Starts Azurite on a free port with a fresh temp location. Rejects if it cannot start. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<AzuriteServer> {
  if (options.oauth && !options.tls) throw new Error('Azurite accepts OAuth only over HTTPS: pass tls too');
  const location = await mkdtemp(join(tmpdir(), 'blobcore-azurite-'));
  const forget = onExitSync(() => rmSync(location, { recursive: true, force: true }));
  let child: ChildProcess | undefined;
  let port = 0;
  let lastError: unknown;
  // Another process may take the free port between the probe and Azurite's listen: retry.
  for (let attempt = 0; attempt < 3 && !child; attempt++) {
    port = await freePort();
    try {
      child = await startOnce(port, location, options);
    } catch (error) {
      lastError = error;
      if (!/EADDRINUSE/.test(String(error))) break;
    }
  }
  if (!child || child.pid === undefined) {
    await rm(location, { recursive: true, force: true });
    forget();
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }
  const server = child;
  const scheme = options.tls ? 'https' : 'http';
  const endpoint = `${scheme}://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  let stopped: Promise<void> | undefined;
  return {
    pid: server.pid as number,
    port,
    endpoint,
    accountName: AZURITE_ACCOUNT,
    accountKey: AZURITE_KEY,
    connectionString: `DefaultEndpointsProtocol=${scheme};AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`,
    location,
    version: packageVersion('azurite'),
    stop() {
      stopped ??= (async () => {
        await stopChild(server);
        await rm(location, { recursive: true, force: true });
        forget();
      })();
      return stopped;
    },
  };
}
