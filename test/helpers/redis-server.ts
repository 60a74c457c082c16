/**
 * Private `redis-server` processes for tests and benchmarks: the one shared helper.
 * Every server listens on 127.0.0.1 only, keeps no data on disk (unless asked to: `persist`), and dies
 * with the process that started it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 5_000;
const STOP_GRACE_MS = 3_000;
const PORT_ATTEMPTS = 5;

/** Options for {@link startRedis}. */
export interface StartRedisOptions {
  /** Port to listen on. Default: a free loopback port, picked again (up to 5 times) if redis fails to bind it. */
  port?: number;
  /** Extra `redis-server` arguments, e.g. `['--requirepass', 'secret']`. */
  args?: string[];
  /**
   * Give the server its own data directory, so that a snapshot survives a crash: `SAVE` writes
   * `<dir>/dump.rdb`, and {@link RedisServerHandle.restart} (also after {@link RedisServerHandle.kill})
   * starts from it. Nothing is saved automatically (`--save ''` stays). The directory is removed by
   * {@link RedisServerHandle.stop} and {@link stopAll}. Default false: no directory of its own.
   */
  persist?: boolean;
  /**
   * Contents of a config file, written to `redis.conf` in a data directory of the server's own (as with
   * `persist`, which this implies) and passed as the first argument, so that the generated arguments and
   * `args` override it. The file is writable: the server may rewrite it (`CONFIG REWRITE`; a sentinel keeps
   * its state there), and {@link RedisServerHandle.restart} starts from the rewritten file. A function gets
   * the port picked for this attempt (to write `port <port>` into the file, say).
   * Default: no config file.
   */
  config?: string | ((port: number) => string);
}

/** A running (or stopped) private `redis-server`. */
export interface RedisServerHandle {
  /** Always `127.0.0.1`. */
  readonly host: string;
  /** The port; it stays the same across {@link RedisServerHandle.restart}. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Pid of the current process (of the last one once stopped); it changes on restart. */
  readonly pid: number;
  /**
   * With `persist` or `config`: the server's own data directory (holds `dump.rdb` after a `SAVE`, and
   * `redis.conf` with `config`; a cluster node's `nodes.conf` lands here too); else undefined.
   */
  readonly dir: string | undefined;
  /**
   * SIGTERM, then SIGKILL if it has not exited after 3 s; resolves once it has exited. With `persist`,
   * then removes the data directory (also when the server was already killed). Otherwise a no-op when stopped.
   */
  stop(): Promise<void>;
  /**
   * SIGKILL (a crash: no clean shutdown) and wait for exit; the data directory stays (until stop(), stopAll(),
   * or the death of this process). No-op when stopped.
   */
  kill(): Promise<void>;
  /**
   * Stop the server if it is running (SIGTERM, which saves nothing), then start it again on the same port
   * with the same arguments; with `persist`, from the last `dump.rdb` of its directory, if any.
   * @throws Error if the port is taken meanwhile, or the server does not answer within 5 s.
   */
  restart(): Promise<void>;
}

interface Running {
  child: ChildProcess;
  watchdog: ChildProcess | undefined;
  exited: Promise<void>;
  closing?: Promise<void>;
}

const live = new Set<RedisServer>();
/** Servers with a data directory not removed yet (running or killed). */
const withDir = new Set<RedisServer>();
let exitHookInstalled = false;

/**
 * Start a private `redis-server` (`process.env.REDIS_SERVER_BIN`, else `redis-server` from PATH)
 * on 127.0.0.1 with `--save '' --appendonly no`, and wait until it answers PING.
 *
 * Stop it with {@link RedisServerHandle.stop} or {@link stopAll} (in `afterAll`). If the process
 * ends first, the server is killed anyway.
 *
 * @param opts - fixed port and extra arguments; see {@link StartRedisOptions}.
 * @returns a handle to stop, kill and restart the server.
 * @throws Error if `redis-server` cannot be spawned, the given port is taken, or it does not answer within 5 s.
 * @example
 * ```ts
 * const server = await startRedis();
 * const client = new Redis(server.url);
 * afterAll(() => stopAll());
 * ```
 */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServerHandle> {
  const attempts = opts.port === undefined ? PORT_ATTEMPTS : 1;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = opts.port ?? (await freePort());
    const config = typeof opts.config === 'function' ? opts.config(port) : opts.config;
    const server = new RedisServer(port, opts.args ?? [], (opts.persist ?? false) || config !== undefined, config);
    try {
      await server.launch();
      return server;
    } catch (error) {
      lastError = error;
      await server.stop().catch(() => undefined); // removes a data directory it made
      // ENOENT and friends will not get better with another port.
      if ((error as NodeJS.ErrnoException).code !== undefined) break;
    }
  }
  throw lastError;
}

/** Stop every server this process started with {@link startRedis} and has not stopped yet (and remove their data directories). */
export async function stopAll(): Promise<void> {
  await Promise.all([...new Set([...live, ...withDir])].map((server) => server.stop()));
}

/**
 * Send one inline `PING` over a raw TCP socket.
 * @param timeoutMs - bound for connecting and reading the reply.
 * @returns true if the server replied `+PONG` (or `-NOAUTH`: it is up but wants a password).
 */
export async function pingRedis(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  const reply = await rawCommand(host, port, 'PING', (text) => text.includes('\r\n'), timeoutMs);
  return reply !== undefined && /^(\+PONG|-NOAUTH)/.test(reply);
}

/**
 * PING until the server answers, for at most `timeoutMs`.
 * @param gaveUp - checked between attempts; return true to stop early (e.g. the process exited).
 * @returns whether the server answered in time.
 */
export function waitForRedis(
  host: string,
  port: number,
  timeoutMs = READY_TIMEOUT_MS,
  gaveUp: () => boolean = () => false,
): Promise<boolean> {
  return poll((left) => pingRedis(host, port, Math.min(500, left)), timeoutMs, gaveUp);
}

async function poll(check: (left: number) => Promise<boolean>, timeoutMs: number, gaveUp: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const maxAttempts = Math.ceil(timeoutMs / 50) + 1;
  for (let attempt = 0; attempt < maxAttempts && !gaveUp(); attempt++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    if (await check(left)) return true;
    await delay(50);
  }
  return false;
}

/**
 * The pid of the server on host:port, from a raw inline `INFO server`, so that a PONG from some other
 * server that holds the port is not mistaken for ours. 'noauth' when it wants a password.
 */
async function serverPid(host: string, port: number, timeoutMs: number): Promise<number | 'noauth' | undefined> {
  const reply = await rawCommand(host, port, 'INFO server', (text) => /process_id:\d+\r\n|^-.*\r\n/.test(text), timeoutMs);
  if (reply?.startsWith('-NOAUTH')) return 'noauth';
  const pid = reply?.match(/process_id:(\d+)\r\n/)?.[1];
  return pid === undefined ? undefined : Number(pid);
}

/** Send one inline command and collect the reply until `complete` says so; undefined on error or timeout. */
function rawCommand(
  host: string,
  port: number,
  command: string,
  complete: (text: string) => boolean,
  timeoutMs: number,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let reply = '';
    const socket = connect({ host, port });
    const done = (result: string | undefined): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('close', () => done(undefined));
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (complete(reply)) done(reply);
    });
  });
}

class RedisServer implements RedisServerHandle {
  readonly host = HOST;
  private run: Running | undefined;
  private lastPid = 0;
  private dataDir: string | undefined;
  /** The watchdog of a server that is gone while its directory stays: it removes the directory if we die. */
  private dirGuard: ChildProcess | undefined;

  constructor(
    readonly port: number,
    private readonly args: string[],
    private readonly persist: boolean,
    private readonly config: string | undefined,
  ) {}

  get dir(): string | undefined {
    return this.dataDir;
  }

  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  get pid(): number {
    return this.run?.child.pid ?? this.lastPid;
  }

  async launch(): Promise<void> {
    const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
    if (await pingRedis(HOST, this.port, 300)) {
      throw new Error(`Port ${this.port} on ${HOST} is already taken by another Redis`);
    }
    this.disarmDirGuard(); // the new watchdog takes the directory over
    if (this.persist) {
      if (this.dataDir === undefined) this.dataDir = mkdtempSync(join(tmpdir(), 'redis-test-'));
      else mkdirSync(this.dataDir, { recursive: true });
      withDir.add(this);
    }
    const dataArgs = this.dataDir === undefined ? ['--dir', tmpdir()] : ['--dir', this.dataDir, '--dbfilename', 'dump.rdb'];
    const configArgs: string[] = [];
    if (this.config !== undefined && this.dataDir !== undefined) {
      const file = join(this.dataDir, 'redis.conf');
      // Written once: a restart starts from what the server rewrote.
      if (!existsSync(file)) writeFileSync(file, this.config.endsWith('\n') ? this.config : `${this.config}\n`);
      configArgs.push(file);
    }
    const child = spawn(
      bin,
      [...configArgs, '--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no', ...dataArgs, ...this.args],
      { stdio: 'ignore' },
    );
    // A server a test forgot to stop must not keep Jest open; stop() and kill() hold the loop with their own timers.
    child.unref();
    let spawnError: Error | undefined;
    let dead = false;
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', (error) => {
        spawnError = error;
        resolve();
      });
    }).then(() => {
      dead = true;
    });
    const run: Running = { child, exited, watchdog: child.pid === undefined ? undefined : spawnWatchdog(child.pid, this.dataDir) };
    this.run = run;
    this.lastPid = child.pid ?? 0;
    live.add(this);
    installExitHook();

    const ours = async (left: number): Promise<boolean> => {
      const pid = await serverPid(HOST, this.port, Math.min(500, left));
      return pid === child.pid || (pid === 'noauth' && !dead);
    };
    if (await poll(ours, READY_TIMEOUT_MS, () => dead)) return;

    await this.kill();
    if (spawnError) {
      throw Object.assign(new Error(`Could not start ${bin}: ${spawnError.message}. Install redis-server or set REDIS_SERVER_BIN.`), {
        code: (spawnError as NodeJS.ErrnoException).code,
      });
    }
    const why = dead ? `exited with code ${child.exitCode} (port taken?)` : `did not answer within ${READY_TIMEOUT_MS} ms`;
    throw new Error(`${bin} on ${HOST}:${this.port} ${why}. Run \`${bin} --port ${this.port}\` by hand to see why.`);
  }

  async stop(): Promise<void> {
    await this.terminate('SIGTERM');
    this.removeDir();
  }

  kill(): Promise<void> {
    return this.terminate('SIGKILL');
  }

  async restart(): Promise<void> {
    await this.terminate('SIGTERM');
    await this.launch();
  }

  /** Synchronous last resort, for the `exit` hook. */
  killNow(): void {
    if (this.run && !hasExited(this.run.child)) this.run.child.kill('SIGKILL');
    this.removeDir();
  }

  private removeDir(): void {
    this.disarmDirGuard();
    if (this.dataDir === undefined) return;
    rmSync(this.dataDir, { recursive: true, force: true });
    this.dataDir = undefined;
    withDir.delete(this);
  }

  private terminate(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const run = this.run;
    if (!run) return Promise.resolve();
    run.closing ??= (async () => {
      if (signal === 'SIGTERM') {
        run.child.kill('SIGTERM');
        if (await exitsWithin(run, STOP_GRACE_MS)) return this.forget(run);
      }
      run.child.kill('SIGKILL');
      if (!(await exitsWithin(run, STOP_GRACE_MS))) {
        throw new Error(`redis-server pid ${run.child.pid} did not exit ${STOP_GRACE_MS} ms after SIGKILL`);
      }
      this.forget(run);
    })();
    return run.closing;
  }

  private disarmDirGuard(): void {
    this.dirGuard?.stdin?.end('done\n');
    this.dirGuard = undefined;
  }

  private forget(run: Running): void {
    if (this.dataDir !== undefined && run.watchdog) {
      // Killed (or restarting): the directory stays for now, and the watchdog keeps only the job of removing it.
      run.watchdog.stdin?.write('dead\n');
      this.disarmDirGuard();
      this.dirGuard = run.watchdog;
    } else {
      run.watchdog?.stdin?.end('done\n');
    }
    if (this.run === run) this.run = undefined;
    live.delete(this);
  }
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function exitsWithin(run: Running, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([run.exited.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Bind port 0 on 127.0.0.1 to learn a free port, then release it (for redis, or a cluster bus port).
 * Another process may take it before it is bound again: be ready to pick another.
 */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, HOST, () => resolve());
  });
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('Could not read a free port');
  return address.port;
}

/**
 * Inside Jest, `process` is a per-test-file copy whose 'exit' event never fires, so the exit hook
 * alone cannot keep a promise that servers die with the test process. This tiny `sh` holds the read
 * end of a pipe from us: "done" disarms it; EOF (we died, however) makes it SIGKILL the server and
 * remove its data directory, if it has one. "dead" (the server exited, its directory stays: after
 * kill()) leaves it only the directory to remove on EOF, until a "done".
 */
function spawnWatchdog(pid: number, dataDir: string | undefined): ChildProcess | undefined {
  // $2 is a mkdtemp directory of ours (or empty): removed with the server when we die. The second rm is for a
  // file the dying server (a cluster node saving nodes.conf) created during the first.
  const script = [
    'read line',
    'if [ "$line" = dead ]; then read line; [ "$line" = done ] || { [ -n "$2" ] && rm -rf "$2"; }; exit 0; fi',
    '[ "$line" = done ] || { kill -9 "$1" 2>/dev/null; [ -n "$2" ] && { rm -rf "$2" 2>/dev/null || { sleep 1; rm -rf "$2"; }; }; }',
  ].join('\n');
  const watchdog = spawn('sh', ['-c', script, 'redis-watchdog', String(pid), dataDir ?? ''], { stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.once('error', () => undefined); // No sh (Windows): the exit hook still covers plain Node.
  watchdog.stdin?.on('error', () => undefined);
  watchdog.unref();
  (watchdog.stdin as Socket | null)?.unref();
  return watchdog;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const server of new Set([...live, ...withDir])) server.killNow();
  });
}
