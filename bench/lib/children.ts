/**
 * Worker processes of the benchmark: spawned as `node --import @swc-node/register/esm-register bench/<worker>.ts`,
 * talking JSON over IPC, every wait bounded, and every child killed when the parent ends, however it ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { clockBase } from './clock.js';
import { Mailbox, type Message } from './mailbox.js';

export type { Message } from './mailbox.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const live = new Set<ChildProcess>();

export interface Worker {
  readonly child: ChildProcess;
  send(message: Message): void;
  /** The next message of `type` (buffered if it came earlier); rejects after `timeoutMs` or if the worker exits. */
  next<T extends { type: string } = Message>(type: string, timeoutMs: number): Promise<T>;
  /** SIGKILL and wait for the exit (bounded). */
  kill(): Promise<void>;
  /** Waits up to `graceMs` for the worker to end by itself, then kills it. */
  end(graceMs?: number): Promise<void>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
}

/** Starts `bench/<file>` with `config` as its JSON argument. `nodeArgs` go before the script (e.g. --expose-gc). */
export function startWorker(file: string, config: object, nodeArgs: string[] = []): Worker {
  const child = spawn(
    process.execPath,
    [...nodeArgs, '--import', '@swc-node/register/esm-register', `bench/${file}`, JSON.stringify(config)],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, BENCH_CLOCK_BASE: clockBase() } },
  );
  live.add(child);
  const mailbox = new Mailbox();
  let exitError: Error | undefined;
  const failures = new Set<(error: Error) => void>();
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      exitError = new Error(`bench/${file} exited (code ${code}, signal ${signal})`);
      for (const fail of failures) fail(exitError);
      resolve();
    });
  });
  child.on('message', (raw) => mailbox.deliver(raw as Message));
  return {
    child,
    exited,
    send(message) {
      if (child.connected) child.send(message);
    },
    next<T extends { type: string }>(type: string, timeoutMs: number): Promise<T> {
      const request = mailbox.take<T>(type);
      if (request.buffered) return request.message;
      if (exitError) {
        request.cancel();
        return Promise.reject(exitError);
      }
      return new Promise<T>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          failures.delete(fail);
          request.cancel();
        };
        const fail = (error: Error) => {
          done();
          reject(error);
        };
        const timer = setTimeout(() => fail(new Error(`bench/${file}: no '${type}' within ${timeoutMs} ms`)), timeoutMs);
        failures.add(fail);
        request.message.then((message) => {
          done();
          resolve(message);
        }, fail);
      });
    },
    async end(graceMs = 5_000) {
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
      await this.kill();
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3_000).unref())]);
    },
  };
}

/** Kills every worker still running (the parent is ending). */
export function killAll(): void {
  for (const child of live) child.kill('SIGKILL');
}

process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}
