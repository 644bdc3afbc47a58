/**
 * Fault injection: a small HTTP proxy on 127.0.0.1 between the S3 driver and the
 * server answers 503 SlowDown and 500 InternalError, drops connections before and
 * after the server saw the request, delays, and cuts response bodies short, on a fixed
 * schedule. A 64 MiB upload in chunks through the store still completes and verifies
 * (one blob, nothing lost or duplicated); ranged reads still return exactly their
 * bytes, and a body cut short fails with a retryable UNAVAILABLE, never short data.
 *
 * The schedule never faults the same request (method + URL) twice in a row, so the
 * SDK's retries always get through and the test cannot flake on bad luck.
 */
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createS3Driver } from '../drivers/s3/index.js';
import type { Driver } from '../src/driver.js';
import { BlobcoreError } from '../src/errors.js';
import { openStore } from '../src/store.js';
import { openLane } from './fixtures/s3-servers.js';
import { MiB } from './helpers.js';

// Servers share two cores with the rest of the suite: generous limits, no timed assertions.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const lane = await openLane();

type Fault = 'slowdown' | 'internal' | 'drop' | 'lost-response' | 'delay' | 'cut';

class FaultProxy {
  armed = false;
  readonly counts: Record<Fault | 'forwarded', number> = {
    slowdown: 0,
    internal: 0,
    drop: 0,
    'lost-response': 0,
    delay: 0,
    cut: 0,
    forwarded: 0,
  };
  private n = 0;

  /**
   * Restarts the fault schedule. Faults follow the request count, and how many requests
   * an earlier test made varies with retries; without a restart, every GET of a test
   * could land on a slot that never cuts (a flake seen once in CI).
   */
  restartSchedule(): void {
    this.n = 0;
    this.lastFaulted.clear();
  }
  private readonly lastFaulted = new Set<string>();
  private readonly target: URL;
  readonly server = createServer((req, res) => this.handle(req, res));

  constructor(target: string) {
    this.target = new URL(target);
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Which fault (if any) this request gets. */
  private pick(req: IncomingMessage): Fault | null {
    if (!this.armed) return null;
    const id = `${req.method} ${req.url}`;
    if (this.lastFaulted.delete(id)) return null; // its retry goes through
    this.n += 1;
    const isPart = req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '');
    const isGet = req.method === 'GET' && !/[?&](list-type|uploads|uploadId)=?/.test(req.url ?? '');
    let fault: Fault | null = null;
    switch (this.n % 6) {
      case 1:
        fault = 'slowdown';
        break;
      case 2:
        fault = isPart || isGet ? 'drop' : 'delay';
        break;
      case 3:
        fault = 'internal';
        break;
      case 4:
        fault = isPart ? 'lost-response' : isGet ? 'cut' : null;
        break;
      case 5:
        fault = 'delay';
        break;
    }
    if (fault && fault !== 'delay' && fault !== 'cut') this.lastFaulted.add(id);
    if (fault) this.counts[fault] += 1;
    if (process.env.FAULT_DEBUG) console.error(`[proxy] ${id} -> ${fault}`);
    return fault;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const fault = this.pick(req);
    if (fault === 'slowdown' || fault === 'internal') {
      req.resume();
      await new Promise((resolve) => req.once('end', resolve));
      const [status, code] = fault === 'slowdown' ? [503, 'SlowDown'] : [500, 'InternalError'];
      const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected</Message></Error>`;
      res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (fault === 'drop') {
      req.once('data', () => req.socket.destroy());
      req.once('end', () => req.socket.destroy());
      return;
    }
    if (fault === 'delay') await new Promise((resolve) => setTimeout(resolve, 150));
    this.counts.forwarded += 1;
    const upstream = httpRequest(
      {
        host: this.target.hostname,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (response) => {
        if (fault === 'lost-response') {
          response.resume();
          response.once('end', () => res.socket?.destroy());
          return;
        }
        res.writeHead(response.statusCode ?? 502, response.headers);
        const length = Number(response.headers['content-length'] ?? 0);
        if (fault === 'cut' && length > 1) {
          // Half the body, flushed, then the connection dies.
          const limit = Math.floor(length / 2);
          let sent = 0;
          response.on('data', (chunk: Buffer) => {
            if (sent >= limit) return;
            const piece = chunk.subarray(0, limit - sent);
            sent += piece.length;
            const last = sent >= limit;
            res.write(piece, () => {
              if (last) setTimeout(() => res.socket?.destroy(), 20);
            });
            if (last) response.destroy();
          });
          return;
        }
        response.pipe(res);
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  }
}

const proxy = new FaultProxy(lane.endpoint);
const proxyEndpoint = await proxy.listen();
const buckets: string[] = [];
const drivers: Driver[] = [];
afterAll(async () => {
  for (const driver of drivers) await driver.close?.();
  await proxy.close();
  for (const bucket of buckets) await lane.removeBucket(bucket).catch(() => undefined);
  await lane.stop();
});

async function proxiedDriver(): Promise<Driver> {
  const bucket = await lane.createBucket();
  buckets.push(bucket);
  const driver = createS3Driver({ ...lane.driverOptions(bucket), endpoint: proxyEndpoint, maxAttempts: 5 });
  drivers.push(driver);
  return driver;
}

function content(size: number): Buffer {
  const bytes = Buffer.alloc(size, 0x5a);
  for (let i = 0; i + 4 <= size; i += 4) bytes.writeUInt32LE(Math.imul(i + 1, 2654435761) >>> 0, i);
  return bytes;
}

describe(`s3 under injected faults (${lane.name})`, () => {
  it('a 64 MiB upload in chunks completes and verifies: one blob, nothing lost or duplicated', async () => {
    const driver = await proxiedDriver();
    const store = await openStore(driver);
    const size = 64 * MiB + 4321;
    const bytes = content(size);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    proxy.armed = true;
    try {
      const upload = await store.uploads.start();
      // Chunks of exactly one part are buffered by the driver and retried by the SDK; longer
      // ones stream and cannot be replayed, so their failures reach the client as a retryable
      // UNAVAILABLE and it resumes at the upload's offset, as a registry client does.
      const chunks = [8 * MiB, 8 * MiB + 17, 3 * MiB, 8 * MiB, 12 * MiB + 5];
      let at = 0;
      let resumed = 0;
      for (let i = 0; at < size; i++) {
        const end = Math.min(at + (chunks[i % chunks.length] as number), size);
        try {
          await upload.append(bytes.subarray(at, end), { offset: at });
          at = end;
        } catch (error) {
          expect(error).toBeInstanceOf(BlobcoreError);
          expect((error as BlobcoreError).retryable, String(error)).toBe(true);
          at = (await upload.status()).offset;
          resumed += 1;
          expect(resumed).toBeLessThan(20);
        }
      }
      const result = await upload.commit({ digest, size });
      expect(result.digest).toBe(digest);
      expect(result.size).toBe(size);
    } finally {
      proxy.armed = false;
    }
    const back = createHash('sha256');
    let read = 0;
    for await (const piece of await store.get(digest, { verify: true })) {
      back.update(piece as Buffer);
      read += (piece as Buffer).length;
    }
    expect(read).toBe(size);
    expect(`sha256:${back.digest('hex')}`).toBe(digest);
    const keys: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await driver.list('', { startAfter: cursor });
      keys.push(...page.keys);
      cursor = page.cursor;
    } while (cursor);
    const dataKeys = keys.filter((k) => k.startsWith('data/'));
    expect(dataKeys).toHaveLength(1); // one physical copy, no stray data
    expect(keys.filter((k) => k.startsWith('uploads/'))).toEqual([]); // no upload state or tails left
    expect(proxy.counts.slowdown + proxy.counts.internal + proxy.counts.drop).toBeGreaterThan(5);
    expect(proxy.counts['lost-response']).toBeGreaterThan(0);
    await store.close();
  }, 300_000);

  it('ranged reads return exactly their bytes; a body cut short is a retryable UNAVAILABLE, never short data', async () => {
    const driver = await proxiedDriver();
    const size = 16 * MiB + 99;
    const bytes = content(size);
    await driver.write('ranged', bytes);
    const ranges: [number, number][] = [
      [0, size],
      [1, 1],
      [MiB - 3, 3 * MiB],
      [size - 10, 10],
      [5 * MiB + 7, 7 * MiB],
      [12 * MiB, 100 * MiB],
    ];
    let cut = 0;
    proxy.restartSchedule();
    proxy.armed = true;
    try {
      for (const [offset, length] of ranges) {
        const expected = bytes.subarray(offset, Math.min(size, offset + length));
        // A reader resumes from where a failed stream stopped, as a registry client would.
        const got: Buffer[] = [];
        let at = offset;
        for (let attempt = 0; attempt < 6 && at < offset + expected.length; attempt++) {
          try {
            const stream = await driver.read('ranged', { offset: at, length: offset + expected.length - at });
            for await (const piece of stream) {
              got.push(piece as Buffer);
              at += (piece as Buffer).length;
            }
          } catch (error) {
            expect(error).toBeInstanceOf(BlobcoreError);
            expect((error as BlobcoreError).code).toBe('UNAVAILABLE');
            expect((error as BlobcoreError).retryable).toBe(true);
            cut += 1;
          }
        }
        expect(Buffer.concat(got).equals(expected), `range ${offset}+${length}`).toBe(true);
      }
    } finally {
      proxy.armed = false;
    }
    expect(cut).toBeGreaterThan(0);
  }, 120_000);
});
