/**
 * The README's first command must keep working: runs the sample app's demo (API + 3 worker
 * processes) on a small batch, with and without the lock, and checks its report and its clean-up.
 */
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { withoutCounters } from './helpers/lock-keys.js';

const DEMO = [process.execPath, '--import', '@swc-node/register/esm-register', 'apps/payments/src/demo.ts'];
const USAGE = /usage: npm run demo \[-- \[--no-lock\] \[--payments=N\]\]/;

interface Run {
  code: number | null;
  output: string;
}

function demo(args: string[], env: NodeJS.ProcessEnv = {}, command: string[] = DEMO): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, [...command.slice(1), ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const lostOf = (output: string): number => Number(/lost updates\s+(\d+) payment/.exec(output)?.[1] ?? NaN);

describe('npm run demo (e2e)', () => {
  const redis = new Redis(process.env.REDIS_URL!);
  afterAll(async () => {
    await redis.quit();
  });

  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['--payments=5'], /--payments must be a whole number from 10 to 100000, got "5"/],
    [['--payments=1e3'], /got "1e3"/],
    [['--payments'], /argument missing/],
    [['300'], /Unexpected argument '300'/],
  ])('refuses %j with the usage and exit code 2, before touching Redis', async (args, message) => {
    const run = await demo(args);
    expect({ code: run.code, message: message.test(run.output), usage: USAGE.test(run.output) }).toEqual({
      code: 2,
      message: true,
      usage: true,
    });
  });

  it('--help prints the usage and exits 0', async () => {
    const run = await demo(['--help']);
    expect(run.code).toBe(0);
    expect(run.output).toMatch(USAGE);
  });

  // What npm leaves in the environment when it keeps a flag given before `--` for itself: npm 10 and 11 export
  // an unknown config as npm_config_<name> (--payments=50), an npm that no longer expands --no-lock to
  // --no-lockfile-version exports npm_config_lock= (see npmSwallowedFlags in demo.ts).
  it.each([
    [{ npm_config_payments: '50' }, 'use npm run demo -- --payments=50'],
    [{ npm_config_payments: 'true' }, 'use npm run demo -- --payments=N'],
    [{ npm_config_lock: '' }, 'use npm run demo -- --no-lock'],
  ])('under npm run demo, %j: says to put the flag after -- and exits 2', async (env, hint) => {
    const run = await demo([], { npm_lifecycle_event: 'demo', ...env });
    expect({ code: run.code, hint: run.output.includes(hint) }).toEqual({ code: 2, hint: true });
  });

  it('the real mistake: npm run demo --payments=50', async () => {
    const run = await demo(['--payments=50'], {}, ['npm', 'run', '--silent', 'demo']);
    expect({ code: run.code, hint: run.output.includes('use npm run demo -- --payments=50') }).toEqual({ code: 2, hint: true });
  }, 60_000);

  it('with the lock: every payment applied once, and nothing left behind', async () => {
    const run = await demo(['--payments=300']);
    // On a failure the demo's own output says why.
    expect({ code: run.code, lost: lostOf(run.output), output: run.code === 0 ? '' : run.output.slice(-3000) }).toEqual({
      code: 0,
      lost: 0,
      output: '',
    });
    // 300 payments and 30 webhook events: one job each, whatever the retries and redeliveries.
    expect(run.output).toMatch(/jobs completed \/ failed\s+330 \/ 0/);
    expect(run.output).toMatch(
      /expected total\s+\$1330\.00 \(10 accounts × \$100\.00 \+ 300 payments × \$1\.00 \+ 30 webhook events × \$1\.00\)/,
    );
    expect(run.output).toMatch(/client retries \/ duplicate payments created\s+30 \/ 0\n/);
    expect(run.output).toMatch(/webhook deliveries \/ events applied\s+60 \/ 30 /);
    // Read from the four processes' /metrics: one account lock per job, every duplicate answered by a replay.
    expect(run.output).toMatch(/figures from \/metrics of 4 processes/);
    expect(run.output).toMatch(/account locks acquired\s+330\n/);
    expect(run.output).toMatch(/lock wait p50 \/ p99\s+\d+ ms \/ \d+ ms/);
    expect(run.output).toMatch(/lost locks\s+0\n/);
    expect(run.output).toMatch(/idempotent replays\s+60 \(payment retries 30, webhook duplicates 30, jobs 0\)/);
    expect(withoutCounters(await redis.keys('demo-*'))).toEqual([]);
  }, 120_000);

  it('with --no-lock: the race loses payments', async () => {
    const run = await demo(['--no-lock', '--payments', '300']);
    expect({ code: run.code, output: run.code === 0 ? '' : run.output.slice(-3000) }).toEqual({ code: 0, output: '' });
    expect(lostOf(run.output)).toBeGreaterThan(0);
    // Idempotency does not need the account lock: retries and redeliveries still create nothing.
    expect(run.output).toMatch(/client retries \/ duplicate payments created\s+30 \/ 0\n/);
    expect(run.output).toMatch(/account locks acquired\s+n\/a \(no lock\)/);
    expect(withoutCounters(await redis.keys('demo-*'))).toEqual([]);
  }, 120_000);
});
