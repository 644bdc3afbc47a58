/**
 * Runs a local Azurite blob server from a shell until Ctrl-C (servers/azurite.ts starts it:
 * free port, temp location, the development account), printing its connection string:
 *
 *   node --import ./test/fixtures/ts-loader.mjs scripts/azurite/azurite.ts
 */
import { startAzurite } from '../../servers/azurite.js';

const server = await startAzurite();
console.log(`Azurite pid ${server.pid} on ${server.endpoint} (data in ${server.location})`);
console.log(`AZURE_STORAGE_CONNECTION_STRING='${server.connectionString}'`);
const stop = () => {
  void server.stop().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
