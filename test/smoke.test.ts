import { createHash, randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { collectBody } from '../src/bytes.js';
import { openStore } from '../src/store.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

it('smoke', async () => {
  const store = await openStore('memory://smoke');
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const r = await store.put(data);
  expect(r.digest).toBe(sha(data));
  const back = await collectBody(await store.get(r.digest, { verify: true }));
  expect(sha(back)).toBe(r.digest);
  const up = await store.uploads.start();
  let off = 0;
  const other = await openStore('memory://smoke');
  for (const n of [1, 100, 70000, 5, 1 << 20, 33]) {
    const u = off % 2 ? await other.uploads.resume(up.id) : up;
    await u.append(data.subarray(off, off + n), { offset: off });
    off += n;
  }
  const u2 = await other.uploads.resume(up.id);
  console.log(await u2.status());
  const c = await u2.commit({ digest: sha(data.subarray(0, off)) });
  console.log(c);
  const back2 = await collectBody(await store.get(c.digest, { verify: true }));
  expect(sha(back2)).toBe(c.digest);
});
