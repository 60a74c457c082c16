/**
 * Scenario 4. role 'holder': on 'take', takes the lock, reports when, and hangs until it is SIGKILLed.
 * role 'waiter': on each 'go', sleeps the delay it names (waiters arrive at random times, so a
 * poll period cannot line up with the ttl), waits for the key it names, reports when it got it,
 * releases it.
 * A 'go' with a negative round ends the waiter.
 */
import { createAdapter, type LibName } from './lib/adapters.js';
import { now } from './lib/clock.js';
import { workerSide } from './lib/worker.js';

interface Config {
  lib: LibName;
  url: string;
  ttl: number;
  /** The holder's key (waiters get theirs with each 'go'). */
  key: string;
  role: 'holder' | 'waiter';
  rounds: number;
}

const { config, send, next, finish } = workerSide<Config>();
const adapter = await createAdapter(config.lib, config);

if (config.role === 'holder') {
  send({ type: 'ready' });
  await next('take');
  const sentAt = now();
  await adapter.acquire(config.key);
  const acquiredAt = now();
  send({ type: 'acquired', sentAt, acquiredAt });
  // Hold it until the parent kills this process (bounded: never longer than 60 s).
  await new Promise((resolve) => setTimeout(resolve, 60_000));
  process.exit(1);
}

send({ type: 'ready' });
for (let round = 0; round < config.rounds; round++) {
  const go = await next<{ type: 'go'; round: number; key: string; delayMs: number }>('go');
  if (go.round < 0) break;
  await new Promise((resolve) => setTimeout(resolve, go.delayMs));
  try {
    const held = await adapter.acquire(go.key);
    const acquiredAt = now();
    await held.release();
    send({ type: 'acquired', round: go.round, acquiredAt });
  } catch (error) {
    send({ type: 'acquired', round: go.round, error: (error as Error).message });
  }
}
await adapter.close();
finish({ type: 'bye' });
