/**
 * The README's first command must keep working: runs the sample app's demo (API + 3 worker
 * processes) on a small batch, with and without the lock, and checks its report and its clean-up.
 */
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';

interface Run {
  code: number | null;
  output: string;
}

function demo(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', '@swc-node/register/esm-register', 'apps/payments/src/demo.ts', ...args], {
      env: { ...process.env },
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

  it('with the lock: every payment applied once, and nothing left behind', async () => {
    const run = await demo(['--payments=300']);
    // On a failure the demo's own output says why.
    expect({ code: run.code, lost: lostOf(run.output), output: run.code === 0 ? '' : run.output.slice(-3000) }).toEqual({ code: 0, lost: 0, output: '' });
    expect(run.output).toMatch(/jobs completed \/ failed\s+300 \/ 0/);
    expect(await redis.keys('demo-*')).toEqual([]);
  }, 120_000);

  it('with --no-lock: the race loses payments', async () => {
    const run = await demo(['--no-lock', '--payments=300']);
    expect(run.code).toBe(0);
    expect(lostOf(run.output)).toBeGreaterThan(0);
    expect(await redis.keys('demo-*')).toEqual([]);
  }, 120_000);
});
