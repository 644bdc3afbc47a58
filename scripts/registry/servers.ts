/**
 * Starts and stops the registries the registry tests and benchmark talk to, and runs
 * skopeo against them. Everything listens on 127.0.0.1 only.
 *
 *   startBlobcore(storeUrl, args)  `blobcore serve` in a child process (from the TypeScript
 *                                  sources through test/fixtures/ts-loader.mjs, or the built
 *                                  CLI bin/blobcore.js when asked and available)
 *   startDistribution(root)        Debian's `docker-registry` (CNCF Distribution 2.8) with its
 *                                  filesystem driver over `root`
 *   skopeo(args)                   runs skopeo, timed; never throws on a non-zero exit
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort } from '../../servers/processes.js';

export { freePort } from '../../servers/processes.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TS_LOADER = pathToFileURL(join(REPO_ROOT, 'test', 'fixtures', 'ts-loader.mjs')).href;
const CLI_SOURCE = join(REPO_ROOT, 'scripts', 'registry', 'cli.ts');
const CLI_BUILT = join(REPO_ROOT, 'bin', 'blobcore.js');

export interface RunningRegistry {
  /** `127.0.0.1:PORT`, as skopeo wants it. */
  host: string;
  url: string;
  pid: number;
  /** stderr (and stdout) of the server so far. */
  output(): string;
  stop(): Promise<void>;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion, capturing its output. */
export function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

/** skopeo with a policy that accepts anything (the default one may not exist) and no retries. */
export function skopeo(args: string[]): Promise<RunResult> {
  const [command, ...rest] = args;
  return run('skopeo', ['--insecure-policy', command as string, '--retry-times', '0', ...rest]);
}

/** True when the built CLI includes `serve` (bin/blobcore.js runs dist/). */
export function builtCliHasServe(): boolean {
  const main = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
  return (
    existsSync(join(REPO_ROOT, 'dist', 'src', 'cli', 'serve.js')) &&
    existsSync(main) &&
    readFileSync(main, 'utf8').includes("'./serve.js'")
  );
}

/** argv for running the blobcore CLI: from the sources (default) or the build. */
export function blobcoreCommand(args: string[], cli: 'source' | 'built' = 'source'): string[] {
  return cli === 'built' ? [CLI_BUILT, ...args] : ['--import', TS_LOADER, CLI_SOURCE, ...args];
}

function collect(child: ChildProcess): () => string {
  let text = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  return () => text;
}

function stopper(child: ChildProcess): () => Promise<void> {
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  };
}

/** `blobcore serve <storeUrl> --listen 127.0.0.1:0 …args`; resolves once it listens. */
export async function startBlobcore(
  storeUrl: string,
  args: string[] = [],
  options: { cli?: 'source' | 'built'; env?: NodeJS.ProcessEnv } = {},
): Promise<RunningRegistry> {
  const argv = blobcoreCommand(['serve', storeUrl, '--listen', '127.0.0.1:0', ...args], options.cli);
  const child = spawn(process.execPath, argv, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const match = /listening on (\S+)/.exec(line);
      if (match) {
        lines.close();
        resolve(match[1] as string);
      }
    });
    child.once('exit', (code) => reject(new Error(`blobcore serve exited with ${code}: ${stderr}`)));
    child.once('error', reject);
  });
  const stop = stopper(child);
  return {
    host: new URL(url).host,
    url,
    pid: child.pid as number,
    output: () => stderr,
    stop,
  };
}

async function waitReady(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`registry exited with ${child.exitCode}: ${output()}`);
    try {
      const response = await fetch(`${url}/v2/`);
      await response.arrayBuffer();
      if (response.status === 200 || response.status === 401) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`registry at ${url} did not come up: ${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The configuration CNCF Distribution runs with: filesystem driver, deletes on, no caches. */
export function distributionConfig(root: string, port: number, htpasswd?: string): string {
  return [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${root}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ...(htpasswd ? ['auth:', '  htpasswd:', '    realm: distribution', `    path: ${htpasswd}`] : []),
    '',
  ].join('\n');
}

/** Debian's docker-registry (CNCF Distribution) over `root`; its config is written beside it. */
export async function startDistribution(
  root: string,
  configPath: string,
): Promise<RunningRegistry & { config: string }> {
  const port = await freePort();
  await writeFile(configPath, distributionConfig(root, port));
  const child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = collect(child);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child, output);
  return {
    host: `127.0.0.1:${port}`,
    url,
    pid: child.pid as number,
    output,
    stop: stopper(child),
    config: configPath,
  };
}
