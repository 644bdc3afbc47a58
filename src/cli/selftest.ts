/**
 * `blobcore selftest [store-url]`: shows the main job end to end on a real backend.
 * Puts a blob (and again, to show dedup), reads it back verified and by range, then
 * uploads a second blob in chunks, hands the upload to a *second process* halfway,
 * which resumes it from the backend alone and commits it.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { collectBody } from '../bytes.js';
import { blobError } from '../errors.js';
import { hashImplementation } from '../hash/index.js';
import { openStore } from '../store.js';
import { patternBytes } from '../stream/pattern.js';

const MiB = 1024 * 1024;
const UPLOAD_SIZE = 24 * MiB + 123;
const CHUNKS = [1, 5 * MiB - 1, 3 * MiB, 777, 7 * MiB];
const SEED = 'blobcore-selftest';

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function say(step: string, detail: string): void {
  process.stdout.write(`  ${step.padEnd(26)} ${detail}\n`);
}

function check(ok: boolean, what: string): void {
  if (!ok) throw blobError('DIGEST_INVALID', `selftest failed: ${what}`);
}

export async function selftest(args: string[]): Promise<number> {
  let url = args[0];
  let tempDir: string | undefined;
  if (url === undefined) {
    tempDir = await mkdtemp(join(tmpdir(), 'blobcore-selftest-'));
    url = pathToFileURL(tempDir).href;
  }
  try {
    process.stdout.write(`blobcore selftest on ${url} (hash: ${await hashImplementation()})\n`);
    const store = await openStore(url);
    const blob = patternBytes(`${SEED}-put`, 0, 4 * MiB);
    const first = await store.put(blob);
    say('put 4 MiB', `${first.digest} deduplicated=${first.deduplicated}`);
    const again = await store.put(blob, { expected: first.digest });
    check(again.deduplicated, 'second put was not deduplicated');
    say('put same bytes again', `deduplicated=${again.deduplicated}`);
    const back = await collectBody(await store.get(first.digest, { verify: true }));
    check(sha256(back) === first.digest, 'verified get returned other bytes');
    say('get (verified)', `${back.length} bytes, digest matches`);
    const range = await collectBody(await store.get(first.digest, { offset: MiB, length: 100 }));
    check(range.equals(blob.subarray(MiB, MiB + 100)), 'ranged get returned other bytes');
    say('get range 1 MiB +100', 'bytes match');

    const expected = sha256(patternBytes(`${SEED}-upload`, 0, UPLOAD_SIZE));
    const upload = await store.uploads.start();
    let offset = 0;
    for (const size of CHUNKS.slice(0, 3)) {
      await upload.append(patternBytes(`${SEED}-upload`, offset, size), { offset });
      offset += size;
    }
    say('upload in chunks', `${upload.id}: ${offset} bytes in 3 chunks, then handing over`);
    const child = await runChild(url, upload.id, offset);
    check(child.code === 0, `second process failed:\n${child.output}`);
    process.stdout.write(`${child.output.trimEnd().replace(/^/gm, '    | ')}\n`);
    const stat = await store.stat(expected);
    check(stat?.size === UPLOAD_SIZE, 'committed blob is missing or has the wrong size');
    const uploaded = await collectBody(await store.get(expected, { verify: true }));
    check(sha256(uploaded) === expected, 'committed blob does not verify');
    say('get uploaded (verified)', `${uploaded.length} bytes, ${expected}`);
    say('bytes re-read to resume', String(store.counters.rehashedBytes));
    await store.close();
    process.stdout.write('selftest passed\n');
    return 0;
  } finally {
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  }
}

function runChild(url: string, id: string, offset: number): Promise<{ code: number | null; output: string }> {
  const bin = fileURLToPath(new URL('../../../bin/blobcore.js', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'selftest-child', url, id, String(offset)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (data: Buffer) => {
      output += data.toString();
    });
    child.stderr.on('data', (data: Buffer) => {
      output += data.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** The second process: resume from the backend alone, append the rest, commit. */
export async function selftestChild(args: string[]): Promise<number> {
  const [url, id, offsetText] = args;
  if (url === undefined || id === undefined || offsetText === undefined) return 2;
  const store = await openStore(url);
  const upload = await store.uploads.resume(id);
  let offset = Number(offsetText);
  const status = await upload.status();
  say(`pid ${process.pid} resumed`, `offset ${status.offset}, hash state ${status.hashState}`);
  for (let at = offset; at < UPLOAD_SIZE; at += 7 * MiB) {
    const size = Math.min(7 * MiB, UPLOAD_SIZE - at);
    await upload.append(patternBytes(`${SEED}-upload`, at, size), { offset });
    offset += size;
  }
  const expected = sha256(patternBytes(`${SEED}-upload`, 0, UPLOAD_SIZE));
  const result = await upload.commit({ digest: expected, size: UPLOAD_SIZE });
  say('committed', `${result.digest} (${result.size} bytes, re-read ${result.rehashedBytes})`);
  await store.close();
  return 0;
}
