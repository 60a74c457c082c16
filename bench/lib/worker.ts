/** The worker side of bench/lib/children.ts. */
import type { Message } from './children.js';

/**
 * In a worker: the JSON config, a `send` to the parent, a typed `next` for messages from it, and
 * exit when the parent goes away (IPC closed), so no worker outlives a killed benchmark.
 */
export function workerSide<C>(): {
  config: C;
  send(message: Message): void;
  next<T extends { type: string }>(type: string): Promise<T>;
  /** Sends the last message, then closes the channel so the process can end. */
  finish(message: Message): void;
} {
  if (!process.send) throw new Error('run this worker through bench/run.ts (it needs an IPC channel)');
  process.on('disconnect', () => process.exit(0));
  const inbox: Message[] = [];
  const waiting: { type: string; resolve: (m: Message) => void }[] = [];
  process.on('message', (raw) => {
    const message = raw as Message;
    const i = waiting.findIndex((w) => w.type === message.type);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(message);
    else inbox.push(message);
  });
  return {
    config: JSON.parse(process.argv[2] ?? '{}') as C,
    send: (message) => void process.send!(message),
    finish: (message) => void process.send!(message, () => process.disconnect()),
    next<T extends { type: string }>(type: string): Promise<T> {
      const i = inbox.findIndex((m) => m.type === type);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0] as T);
      return new Promise<T>((resolve) => waiting.push({ type, resolve: (m) => resolve(m as T) }));
    },
  };
}
