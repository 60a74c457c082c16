import { spawnSync } from 'node:child_process';
import { SKEW_CLOCK_PRELOAD } from '../fixtures/lock-e2e-utils.js';

/** Runs `node --import <preload> -e <script>` with CLOCK_SKEW_MS and parses the JSON it prints. */
function runSkewed(skew: string, script: string): Record<string, unknown> {
  const result = spawnSync(process.execPath, ['--import', SKEW_CLOCK_PRELOAD, '--input-type=module', '-e', script], {
    env: { ...process.env, NODE_OPTIONS: '', CLOCK_SKEW_MS: skew },
    encoding: 'utf8',
    timeout: 20_000,
  });
  if (result.status !== 0) throw new Error(`node exited ${result.status}: ${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

const PROBE = `
const wall = performance.timeOrigin + performance.now();
console.log(JSON.stringify({
  now: Date.now() - wall,
  constructed: new Date().getTime() - wall,
  called: Date.parse(Date()) - wall,
  explicit: new Date(1234).getTime(),
  instance: new Date() instanceof Date,
  utc: Date.UTC(2020, 0, 1),
}));`;

describe('skew-clock preload', () => {
  it.each([5_000, -5_000])('shifts Date.now(), new Date() and Date() by %i ms and leaves the rest alone', (skew) => {
    const seen = runSkewed(String(skew), PROBE);
    // performance.timeOrigin + now() is the true wall clock at start, within a few ms.
    expect(Math.abs((seen.now as number) - skew)).toBeLessThan(100);
    expect(Math.abs((seen.constructed as number) - skew)).toBeLessThan(100);
    expect(Math.abs((seen.called as number) - skew)).toBeLessThan(1_100); // Date() has whole seconds
    expect(seen.explicit).toBe(1234);
    expect(seen.instance).toBe(true);
    expect(seen.utc).toBe(Date.UTC(2020, 0, 1));
  });

  it('changes nothing without CLOCK_SKEW_MS, and refuses a non-number', () => {
    expect(Math.abs(runSkewed('', PROBE).now as number)).toBeLessThan(100);
    expect(() => runSkewed('soon', PROBE)).toThrow(/CLOCK_SKEW_MS must be a number/);
  });
});
