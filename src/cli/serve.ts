/**
 * `blobcore serve <store-url>`: runs the reference OCI registry endpoint (../registry/).
 *
 *   --listen host:port       address to listen on (default 127.0.0.1:5000; port 0 picks one)
 *   --tls-cert F --tls-key F serve HTTPS (node:https) with this PEM certificate and key
 *   --htpasswd F             static users (bcrypt htpasswd); without --access every user may push
 *   --access F               access rules, one `subject repository-pattern pull|push` per line
 *   --realm NAME             realm of the Basic challenge (default blobcore)
 *   --redirect               blob GETs answer 307 to a signed URL when the driver can sign
 *   --redirect-expires S     lifetime of those URLs in seconds (default 300)
 *   --no-delete              refuse DELETE of blobs and manifests (405)
 *   --log                    one line per request on stderr
 *
 * Prints `blobcore serve: listening on <url>` once it accepts connections; stops cleanly
 * on SIGINT or SIGTERM (in-flight requests are cut, uploads stay resumable).
 */
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { type Authorize, staticUsers } from '../registry/auth.js';
import { createRegistryHandler } from '../registry/handler.js';
import { openStore } from '../store.js';

const USAGE =
  'usage: blobcore serve <store-url> [--listen 127.0.0.1:5000] [--tls-cert file --tls-key file] ' +
  '[--htpasswd file [--access file]] [--realm name] [--redirect [--redirect-expires seconds]] [--no-delete] [--log]';

/** `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function parseListen(text: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`--listen needs host:port, got ${JSON.stringify(text)}`);
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

export async function serve(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      listen: { type: 'string', default: '127.0.0.1:5000' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      htpasswd: { type: 'string' },
      access: { type: 'string' },
      realm: { type: 'string' },
      redirect: { type: 'boolean' },
      'redirect-expires': { type: 'string' },
      'no-delete': { type: 'boolean' },
      log: { type: 'boolean' },
    },
  });
  const storeUrl = positionals[0];
  if (storeUrl === undefined || positionals.length > 1) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) {
    throw new Error('--tls-cert and --tls-key go together');
  }
  if (values.access !== undefined && values.htpasswd === undefined) {
    throw new Error('--access needs --htpasswd');
  }
  const { host, port } = parseListen(values.listen);
  let expiresIn: number | undefined;
  if (values['redirect-expires'] !== undefined) {
    expiresIn = Number(values['redirect-expires']);
    if (!Number.isSafeInteger(expiresIn) || expiresIn <= 0)
      throw new Error('--redirect-expires needs seconds > 0');
  }

  let authorize: Authorize | undefined;
  if (values.htpasswd !== undefined) {
    authorize = staticUsers({
      users: await readFile(values.htpasswd, 'utf8'),
      access: values.access === undefined ? undefined : await readFile(values.access, 'utf8'),
    });
  }
  const tls =
    values['tls-cert'] === undefined || values['tls-key'] === undefined
      ? undefined
      : { cert: await readFile(values['tls-cert']), key: await readFile(values['tls-key']) };

  const store = await openStore(storeUrl);
  const handler = createRegistryHandler(store, {
    authorize,
    realm: values.realm,
    redirect: values.redirect === true ? { expiresIn } : false,
    deleteEnabled: values['no-delete'] !== true,
    log:
      values.log === true
        ? (entry) =>
            process.stderr.write(
              `${new Date().toISOString()} ${entry.method} ${entry.url} ${entry.status} ${entry.ms}ms` +
                `${entry.error === undefined ? '' : ` ${entry.error}`}${entry.completed ? '' : ' (cut)'}\n`,
            )
        : undefined,
  });
  const server: Server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
  // Large blobs take as long as they take: no whole-request timeout, but headers must come promptly.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  process.stdout.write(
    `blobcore serve: listening on ${tls ? 'https' : 'http'}://${shown}:${address.port} (store ${storeUrl})\n`,
  );

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const stop = (name: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(name);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  process.stderr.write(`blobcore serve: ${signal}, stopping\n`);
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
  await store.close();
  return 0;
}
