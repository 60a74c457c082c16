/**
 * The event contract on the in-memory store (test/lock-events.e2e-spec.ts runs it on Redis): labels
 * checked, one outcome per acquisition, stats() following waits and locks.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LockArgumentError, LockShutdownError, LockTimeoutError } from './errors.js';
import { LOCK_CHANNELS } from './channels.js';
import { LockClient, type LockEvents } from './lock-client.js';
import { MemoryLockStore } from './store/memory/memory-store.js';
import { MAX_LABEL_LENGTH, validateLabel } from './validate.js';

const client = (store = new MemoryLockStore(), ownsStore = true) =>
  new LockClient({ store, ownsStore, ttl: 5000, wait: 0, autoExtend: false, onLockLost: 'continue', connectTimeout: 500 });

type Seen = [keyof LockEvents, Record<string, unknown>];
const record = (target: LockClient): Seen[] => {
  const seen: Seen[] = [];
  for (const event of Object.keys(LOCK_CHANNELS) as (keyof LockEvents)[]) {
    target.on(event, ((payload: Record<string, unknown>) => void seen.push([event, payload])) as never);
  }
  return seen;
};

describe('validateLabel', () => {
  it('takes 1 to 200 characters, refuses anything else naming the call, the option and the value', () => {
    expect(validateLabel('acquire()', undefined)).toBeUndefined();
    expect(validateLabel('acquire()', 'x')).toBe('x');
    expect(validateLabel('acquire()', 'x'.repeat(MAX_LABEL_LENGTH))).toHaveLength(200);
    for (const bad of ['', 'x'.repeat(201), 7, null, ['a'], {}]) {
      expect(() => validateLabel('acquire()', bad)).toThrow(LockArgumentError);
    }
    expect(() => validateLabel('using()', '')).toThrow('using(): label must be a string of 1 to 200 characters, got "".');
  });
});

describe('lock events on the memory store', () => {
  it('acquiring then exactly one outcome per token; stats() counts the waiter and the holder', async () => {
    const store = new MemoryLockStore();
    const locks = client(store);
    const seen = record(locks);
    const holder = await locks.acquire('k', { label: 'holder' });
    const waiting = locks.acquire('k', { wait: 5000, label: 'waiter' });
    const impatient = locks.acquire('k', { wait: 20, label: 'impatient' }).catch((e: unknown) => e);
    expect(locks.stats()).toEqual({ held: 1, acquiring: 2 });
    expect(await impatient).toBeInstanceOf(LockTimeoutError);
    await sleep(10);
    await holder.release();
    const lock = await waiting;
    expect(locks.stats()).toEqual({ held: 1, acquiring: 0 });
    const last = locks.acquire('k', { wait: 5000, label: 'closing' }).catch((e: unknown) => e);
    await locks.close();
    expect(await last).toBeInstanceOf(LockShutdownError);

    const outcomes = new Map<string, string[]>();
    for (const [event, payload] of seen) {
      if (!['acquiring', 'acquired', 'timeout', 'failed'].includes(event)) continue;
      const list = outcomes.get(payload.label as string) ?? [];
      list.push(event);
      outcomes.set(payload.label as string, list);
    }
    expect(Object.fromEntries(outcomes)).toEqual({
      holder: ['acquiring', 'acquired'],
      waiter: ['acquiring', 'acquired'],
      impatient: ['acquiring', 'timeout'],
      closing: ['acquiring', 'failed'],
    });
    // The waiter's lock, given up on shutdown: lost, then released.
    expect(seen.filter(([, p]) => p.token === lock.token).map(([e]) => e)).toEqual(['acquiring', 'acquired', 'lost', 'released']);
  });

  it('no listener: emit() is never called (no payload is built)', async () => {
    const locks = client();
    let emits = 0;
    const original = locks.emit;
    locks.emit = function (this: LockClient, ...args: Parameters<LockClient['emit']>) {
      emits++;
      return original.apply(this, args);
    } as LockClient['emit'];
    const lock = await locks.acquire('k', { label: 'quiet' });
    await lock.extend();
    expect(await locks.tryAcquire('k')).toBeNull();
    await lock.release();
    expect(emits).toBe(0);
    // The control: one listener, and the same calls emit.
    locks.on('acquired', () => undefined);
    await (await locks.acquire('k')).release();
    expect(emits).toBe(1);
    await locks.close();
  });
});

describe('a listener that throws', () => {
  it('does not fail the acquisition or the release, leaves no handle behind, and is reported to warn', async () => {
    const warnings: string[] = [];
    const locks = new LockClient({
      store: new MemoryLockStore(),
      ownsStore: true,
      ttl: 5000,
      wait: 0,
      autoExtend: false,
      onLockLost: 'continue',
      connectTimeout: 500,
      warn: (message) => warnings.push(message),
    });
    const boom = () => {
      throw new Error('listener bug');
    };
    locks.on('acquired', boom);
    locks.on('released', boom);
    const lock = await locks.acquire('k');
    expect(lock.isHeld).toBe(true);
    await expect(lock.release()).resolves.toBe(true);
    expect(locks.stats()).toEqual({ held: 0, acquiring: 0 });
    expect(warnings).toEqual([
      expect.stringContaining('"acquired" threw (listener bug)'),
      expect.stringContaining('"released" threw (listener bug)'),
    ]);
    await locks.close();
  });
});
