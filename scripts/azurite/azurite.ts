/**
 * Starts and stops a real Azurite blob server for tests, benchmarks and local runs.
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
 * From a shell (Ctrl-C stops it):
 *   node --import ./test/fixtures/ts-loader.mjs scripts/azurite/azurite.ts
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Azurite's built-in development account. Public and documented; it protects nothing. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const AZURITE_MAIN = join(ROOT, 'node_modules/azurite/dist/src/blob/main.js');
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

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
  /** Stops the server (SIGTERM, then SIGKILL) and removes its temp directory. Idempotent. */
  stop(): Promise<void>;
}

/** A port nothing listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolvePort(port) : reject(new Error('no free port'))));
    });
  });
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** If the test process dies without calling stop(), do not leave servers behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
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

async function startOnce(port: number, location: string, options: AzuriteOptions): Promise<ChildProcess> {
  const args = [
    AZURITE_MAIN,
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
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(
        () => fail(new Error(`Azurite did not start within ${START_TIMEOUT_MS} ms:\n${output}`)),
        START_TIMEOUT_MS,
      );
      const onData = () => {
        if (/successfully listens on/i.test(output)) {
          clearTimeout(timer);
          ready();
        }
      };
      child.stdout?.on('data', onData);
      child.once('error', (error) => {
        clearTimeout(timer);
        fail(error);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`Azurite exited (${signal ?? `code ${code}`}) before listening:\n${output}`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  // Keep draining output so a chatty server never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

/** Starts Azurite on a free port with a fresh temp location. Rejects if it cannot start. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<AzuriteServer> {
  if (options.oauth && !options.tls) throw new Error('Azurite accepts OAuth only over HTTPS: pass tls too');
  installExitHook();
  const location = await mkdtemp(join(tmpdir(), `azurite-${randomBytes(3).toString('hex')}-`));
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
    stop() {
      stopped ??= (async () => {
        server.kill('SIGTERM');
        if (!(await waitForExit(server, STOP_TIMEOUT_MS))) {
          server.kill('SIGKILL');
          await waitForExit(server, STOP_TIMEOUT_MS);
        }
        await rm(location, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const server = await startAzurite();
  console.log(`Azurite pid ${server.pid} on ${server.endpoint} (data in ${server.location})`);
  console.log(`AZURE_STORAGE_CONNECTION_STRING='${server.connectionString}'`);
  const stop = () => {
    void server.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
