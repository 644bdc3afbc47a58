/** `blobcore conformance <store-url> [--json]`: the conformance suite outside vitest. */
import { parseArgs } from 'node:util';

export async function conformance(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { json: { type: 'boolean' } },
    allowPositionals: true,
  });
  const url = positionals[0];
  if (url === undefined) {
    process.stderr.write('usage: blobcore conformance <store-url> [--json]\n');
    return 2;
  }
  const { runConformance } = await import('../../conformance/index.js');
  return runConformance(url, { json: values.json === true });
}
