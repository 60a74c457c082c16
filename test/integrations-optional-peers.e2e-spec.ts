/**
 * The optional peers stay optional: with prom-client, @opentelemetry/api, @nestjs/terminus and
 * @nestjs/event-emitter unresolvable (a loader hook hides them), 'nestjs-redis-lock' loads, LockModule
 * boots on the memory store, a lock is taken, and the process exits on its own after app.close(). The
 * subpath exports, which do need them, fail to load there (which shows the hook works).
 */
import { spawn } from 'node:child_process';
import { ROOT } from './fixtures/lock-e2e-utils.js';

describe('optional peers absent (e2e)', () => {
  it('the main entry loads and LockModule boots without any of them', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        '@swc-node/register/esm-register',
        '--import',
        './test/helpers/hide-optional-peers.mjs',
        'test/fixtures/optional-peers-child.ts',
      ],
      { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timer);

    const line = stdout.split('\n').find((l) => l.startsWith('@@ '));
    expect({ code, stderr: line ? '' : stderr }).toEqual({ code: 0, stderr: '' });
    const report = JSON.parse(line!.slice(3)) as { value: number; peers: Record<string, string>; subpaths: Record<string, string> };
    expect(report.value).toBe(42);
    expect(report.peers).toEqual({
      'prom-client': 'ERR_MODULE_NOT_FOUND',
      '@opentelemetry/api': 'ERR_MODULE_NOT_FOUND',
      '@nestjs/terminus': 'ERR_MODULE_NOT_FOUND',
      '@nestjs/event-emitter': 'ERR_MODULE_NOT_FOUND',
    });
    expect(report.subpaths).toEqual({
      prometheus: 'ERR_MODULE_NOT_FOUND',
      otel: 'ERR_MODULE_NOT_FOUND',
      terminus: 'ERR_MODULE_NOT_FOUND',
      'event-emitter': 'ERR_MODULE_NOT_FOUND',
    });
    expect(stderr).toBe('');
  }, 60_000);
});
