/**
 * nestjs-redis-lock/terminus: LockHealthIndicator against real private Redis servers: one server (down
 * within its timeout when frozen with SIGSTOP or stopped, up again when it returns), a Redis Cluster
 * (slots covered), a Redlock quorum of 3 (nodes answering vs the quorum), and the memory store.
 */
import { Module, ServiceUnavailableException, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { LockArgumentError, LockModule, type LockModuleOptions } from 'nestjs-redis-lock';
import { LockHealthIndicator, LockHealthModule } from 'nestjs-redis-lock/terminus';
import { startRedis, stopAll } from './helpers/redis-server.js';
import { startCluster, stopAllTopologies } from './helpers/redis-topologies.js';
import { randomPrefix, waitFor } from './fixtures/lock-e2e-utils.js';
import { frozen } from './fixtures/fault-utils.js';

describe('LockHealthIndicator (e2e)', () => {
  const keyPrefix = randomPrefix('health');
  const apps: INestApplicationContext[] = [];

  async function boot(options: LockModuleOptions): Promise<{ app: INestApplicationContext; health: LockHealthIndicator }> {
    @Module({ imports: [LockModule.forRoot({ keyPrefix, ...options }), TerminusModule, LockHealthModule] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    apps.push(app);
    return { app, health: app.get(LockHealthIndicator) };
  }

  afterAll(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await stopAllTopologies();
    await stopAll();
  }, 30_000);

  it('one Redis: up with its PING round trip; down within the timeout when frozen or stopped; up again when it returns', async () => {
    const server = await startRedis();
    const { app, health } = await boot({ redis: server.url, connectTimeout: 1_000 });
    const up = await health.isHealthy('lock', { timeout: 500 });
    expect(up).toEqual({ lock: { status: 'up', store: 'redis', mode: 'single', roundTripMs: expect.any(Number) } });

    // Through terminus' HealthCheckService, as a /health route calls it.
    const checks = app.get(HealthCheckService);
    await expect(checks.check([() => health.isHealthy('redis-lock')])).resolves.toMatchObject({
      status: 'ok',
      info: { 'redis-lock': { status: 'up' } },
    });

    const whileFrozen = await frozen(server, async () => {
      const start = performance.now();
      const result = await health.isHealthy('lock', { timeout: 500 });
      return { result, ms: performance.now() - start };
    });
    expect(whileFrozen.result.lock).toMatchObject({
      status: 'down',
      store: 'redis',
      error: expect.stringContaining('no answer within 500 ms'),
    });
    // Bounded by the timeout, not by anything Redis does (generous on a loaded machine).
    expect(whileFrozen.ms).toBeLessThan(3_000);
    await waitFor('up after SIGCONT', async () => (await health.isHealthy('lock', { timeout: 500 })).lock.status === 'up', 15_000, 100);

    await server.stop();
    const start = performance.now();
    const stopped = await health.isHealthy('lock', { timeout: 500 });
    expect(stopped.lock.status).toBe('down');
    expect(performance.now() - start).toBeLessThan(3_000);
    const failing = await checks.check([() => health.isHealthy('lock', { timeout: 500 })]).catch((error: unknown) => error);
    expect(failing).toBeInstanceOf(ServiceUnavailableException);

    await server.restart();
    await waitFor('up after the restart', async () => (await health.isHealthy('lock', { timeout: 500 })).lock.status === 'up', 20_000, 200);
  }, 60_000);

  it('Redis Cluster: up with every slot served; down when a master without replica is gone', async () => {
    const cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
    const { health } = await boot({ redis: { cluster: cluster.urls.slice(0, 1) }, connectTimeout: 1_000 });
    const up = await health.isHealthy('lock', { timeout: 1_000 });
    expect(up.lock).toMatchObject({ status: 'up', store: 'redis', mode: 'cluster', state: 'ok', slotsOk: 16384, knownNodes: 3, size: 3 });

    const [victim] = await cluster.masters();
    await victim!.kill();
    // Its slots fail once the others notice (cluster-node-timeout, 1 s here); asked of the dead node, no answer.
    const down = await waitFor(
      'the cluster to be reported down',
      async () => {
        const result = await health.isHealthy('lock', { timeout: 500 });
        return result.lock.status === 'down' ? result : undefined;
      },
      20_000,
      200,
    );
    expect(down.lock).toMatchObject({ status: 'down', mode: 'cluster' });
    await cluster.stop();
  }, 90_000);

  it('Redlock quorum of 3: up while a majority answers, with how many do; down below the quorum', async () => {
    const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
    const { health } = await boot({ redis: servers.map((s) => s.url), connectTimeout: 1_000 });
    const all = await health.isHealthy('lock', { timeout: 500 });
    expect(all.lock).toMatchObject({ status: 'up', store: 'redlock', nodes: 3, quorum: 2, answering: 3 });
    expect(all.lock.members).toEqual([
      { up: true, roundTripMs: expect.any(Number) },
      { up: true, roundTripMs: expect.any(Number) },
      { up: true, roundTripMs: expect.any(Number) },
    ]);

    await servers[0]!.stop();
    const two = await health.isHealthy('lock', { timeout: 500 });
    expect(two.lock).toMatchObject({ status: 'up', answering: 2, quorum: 2 });
    expect((two.lock.members as { up: boolean }[]).map((m) => m.up)).toEqual([false, true, true]);

    const one = await frozen(servers[1]!, () => health.isHealthy('lock', { timeout: 500 }));
    expect(one.lock).toMatchObject({ status: 'down', answering: 1, quorum: 2 });
    await Promise.all(servers.map((s) => s.stop()));
  }, 60_000);

  it('the memory store is always up; a bad timeout is refused before the store is asked', async () => {
    const { health } = await boot({ store: 'memory' });
    await expect(health.isHealthy()).resolves.toEqual({ lock: { status: 'up', store: 'memory' } });
    await expect(health.isHealthy('lock', { timeout: 0 })).rejects.toThrow(LockArgumentError);
    await expect(health.isHealthy('lock', { timeout: Number.NaN })).rejects.toThrow(/timeout must be a number of milliseconds/);
    await expect(health.isHealthy('lock', { timeuot: 5 } as never)).rejects.toThrow(/unknown option "timeuot"/);
  });
});
