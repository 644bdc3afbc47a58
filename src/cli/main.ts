/**
 * `blobcore <command>`: the operator's entry point.
 *
 *   selftest [store-url]          put, get, chunked upload resumed by a second process
 *   conformance <store-url>       run the conformance suite against a backend
 *   bench [store-url…] [--quick]  throughput benchmarks (see bench/)
 *   gc | prune | scrub | du       maintenance (./maintenance.ts)
 *   serve <store-url>             the reference OCI registry endpoint (./serve.ts)
 */
import { isBlobcoreError } from '../errors.js';

const USAGE = `usage: blobcore <command> [options]

commands:
  selftest [store-url]              put, get and a chunked upload resumed by a second process;
                                    default store: a temporary file: directory
  conformance <store-url> [--json]  run the driver and store conformance suites against a backend
  bench [store-url...] [--quick]    measure throughput (default store: a temporary file: directory)
  gc <store-url> [--dry-run] [--grace 1h] [--untagged keep|delete] [--json]
                                    online garbage collection (safe while pushes continue)
  prune <store-url> [--keep-revisions N] [--untagged-older-than 7d] [--dry-run] [--json]
                                    retention: trim tag history and old untagged manifests
  scrub <store-url> [--quarantine] [--json]
                                    re-hash every blob; exit 1 if any is corrupt
  du <store-url> [--json]           physical and logical bytes, dedup ratio
  serve <store-url> [--listen 127.0.0.1:5000] [--tls-cert f --tls-key f] [--htpasswd f [--access f]] [--redirect]
                                    an OCI distribution registry over the store
  help                              this text
`;

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  selftest: async () => (await import('./selftest.js')).selftest,
  'selftest-child': async () => (await import('./selftest.js')).selftestChild,
  conformance: async () => (await import('./conformance.js')).conformance,
  bench: async () => (await import('../../bench/cli.js')).bench,
  gc: async () => (await import('./maintenance.js')).gc,
  prune: async () => (await import('./maintenance.js')).pruneCommand,
  scrub: async () => (await import('./maintenance.js')).scrubCommand,
  du: async () => (await import('./maintenance.js')).du,
  serve: async () => (await import('./serve.js')).serve,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`blobcore: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await (await load())(args);
  } catch (error) {
    const code = isBlobcoreError(error) ? ` [${error.code}]` : '';
    process.stderr.write(
      `blobcore ${name}: ${error instanceof Error ? error.message : String(error)}${code}\n`,
    );
    return 1;
  }
}
