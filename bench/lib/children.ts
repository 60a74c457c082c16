/**
 * Worker processes of the benchmark: spawned as `node --import @swc-node/register/esm-register bench/<worker>.ts`,
 * talking JSON over IPC, every wait bounded, and every child killed when the parent ends, however it ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { clockBase } from './clock.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const live = new Set<ChildProcess>();

export interface Message {
  type: string;
  [field: string]: unknown;
}

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
  const inbox: Message[] = [];
  const waiting: { type: string; resolve: (m: Message) => void }[] = [];
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
  child.on('message', (raw) => {
    const message = raw as Message;
    const i = waiting.findIndex((w) => w.type === message.type);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(message);
    else inbox.push(message);
  });
  return {
    child,
    exited,
    send(message) {
      if (child.connected) child.send(message);
    },
    next<T extends { type: string }>(type: string, timeoutMs: number): Promise<T> {
      const i = inbox.findIndex((m) => m.type === type);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0] as T);
      if (exitError) return Promise.reject(exitError);
      return new Promise<T>((resolve, reject) => {
        const entry = {
          type,
          resolve: (m: Message) => {
            done();
            resolve(m as T);
          },
        };
        const fail = (error: Error) => {
          done();
          reject(error);
        };
        const timer = setTimeout(() => fail(new Error(`bench/${file}: no '${type}' within ${timeoutMs} ms`)), timeoutMs);
        const done = () => {
          clearTimeout(timer);
          failures.delete(fail);
          const j = waiting.indexOf(entry);
          if (j >= 0) waiting.splice(j, 1);
        };
        failures.add(fail);
        waiting.push(entry);
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
