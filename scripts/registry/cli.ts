/**
 * Runs the blobcore CLI from the TypeScript sources, for the registry tests and bench:
 *
 *   node --import ./test/fixtures/ts-loader.mjs scripts/registry/cli.ts serve <store-url> …
 *   node --import ./test/fixtures/ts-loader.mjs scripts/registry/cli.ts gc <store-url> …
 *
 * `serve` goes straight to src/cli/serve.ts, every other command to src/cli/main.ts, so
 * the same sources run with no build step and no stale dist/.
 */
import { main } from '../../src/cli/main.js';
import { serve } from '../../src/cli/serve.js';

const [command, ...rest] = process.argv.slice(2);
try {
  process.exitCode = command === 'serve' ? await serve(rest) : await main(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`blobcore ${command}: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
