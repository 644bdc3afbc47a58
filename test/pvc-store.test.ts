/**
 * The store over the pvc driver with real processes and a real full volume: uploads resumed
 * across processes (native and fallback hasher), 4 replicas with alternating chunks,
 * replicas SIGKILLed at several points of an upload, ENOSPC through uploads.
 * See fixtures/fs-harness/store-scenarios.ts.
 */
import { registerStoreScenarios } from './fixtures/fs-harness/store-scenarios.js';

registerStoreScenarios('pvc');
