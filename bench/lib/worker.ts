/** The worker side of bench/lib/children.ts. */
import { Mailbox, type Message } from './mailbox.js';

/**
 * In a worker: the JSON config, a `send` to the parent, a typed `next` for messages from it, and
 * exit when the parent goes away (IPC closed), so no worker outlives a killed benchmark.
 */
export function workerSide<C>(): {
  config: C;
  send: (message: Message) => void;
  next: <T extends { type: string }>(type: string) => Promise<T>;
  /** Sends the last message, then closes the channel so the process can end. */
  finish: (message: Message) => void;
} {
  if (!process.send) throw new Error('run this worker through bench/run.ts (it needs an IPC channel)');
  process.on('disconnect', () => process.exit(0));
  const mailbox = new Mailbox();
  process.on('message', (raw) => mailbox.deliver(raw as Message));
  return {
    config: JSON.parse(process.argv[2] ?? '{}') as C,
    send: (message) => void process.send!(message),
    finish: (message) => void process.send!(message, () => process.disconnect()),
    next: <T extends { type: string }>(type: string): Promise<T> => mailbox.take<T>(type).message,
  };
}
