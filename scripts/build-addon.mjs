#!/usr/bin/env node
// Builds the native addons with node-gyp, offline, as the package's `install` script:
// native/sha256.c → build/Release/blobcore_sha256.node (resumable SHA-256) and
// native/buffer-pool.c → build/Release/blobcore_buffers.node (recycled read buffers).
//
// - node-gyp: the one npm bundles (npm sets `npm_config_node_gyp` for lifecycle scripts);
//   when run by hand, npm's bundled copy next to this `node`, else a local node_modules one.
// - headers: npm's `nodedir` setting if any; otherwise, when this `node` has its headers
//   installed beside it (<prefix>/include/node), `--nodedir=<prefix>`, so nothing is downloaded.
// - never fails the install: on any failure it prints one clear notice and exits 0, and
//   blobcore falls back at run time: hash-wasm for hashing (saying so once on stderr),
//   plain Buffers for reads.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addons = ['blobcore_sha256', 'blobcore_buffers'].map((name) =>
  join(root, 'build', 'Release', `${name}.node`),
);
const notice = (why) =>
  console.error(`blobcore: native addons not built (${why}); hashing will use the slower hash-wasm fallback`);

function findNodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm;
  const prefix = dirname(dirname(realpathSync(process.execPath)));
  const candidates = [
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const candidate of candidates) if (existsSync(candidate)) return candidate;
  try {
    return createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return undefined;
  }
}

function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = dirname(dirname(realpathSync(process.execPath)));
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

function main() {
  const nodeGyp = findNodeGyp();
  if (nodeGyp === undefined) return notice('node-gyp not found');
  const args = [nodeGyp, 'rebuild', '--loglevel=warn', ...nodedirArgs()];
  const run = spawnSync(process.execPath, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
  });
  if (run.error || run.status !== 0) {
    const output = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    if (output) console.error(output);
    const why = run.error ? run.error.message : `node-gyp exited with ${run.status ?? run.signal}`;
    return notice(why);
  }
  for (const addon of addons) {
    try {
      // Loading proves the symbols resolve (the SHA-256 addon is linked with -z now).
      createRequire(import.meta.url)(addon);
    } catch (error) {
      return notice(`${addon} failed to load: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  console.error(`blobcore: built native addons ${addons.join(', ')}`);
}

main();
