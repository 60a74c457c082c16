import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { LockHealthIndicator } from 'nestjs-redis-lock/terminus';
import type { Registry } from 'prom-client';
import { PAYMENTS_CONFIG, type PaymentsConfig } from '../config.js';
import { HEALTH_TIMEOUT_MS } from './health.controller.js';
import { METRICS_REGISTRY } from './metrics.js';

/**
 * A process without the HTTP API (a worker) still has figures to scrape: when `metricsPort` is set,
 * this serves `GET /metrics` and `GET /health` on it with plain `node:http` (a worker is a Nest
 * application context, with no HTTP adapter). Listens at bootstrap, closes at shutdown.
 */
@Injectable()
export class MetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  #server?: Server;
  #url?: string;

  constructor(
    @Inject(PAYMENTS_CONFIG) private readonly config: PaymentsConfig,
    @Inject(METRICS_REGISTRY) private readonly registry: Registry,
    private readonly lockHealth: LockHealthIndicator,
  ) {}

  /** `http://host:port` once listening; undefined when no `metricsPort` is configured. */
  get url(): string | undefined {
    return this.#url;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (this.config.metricsPort === undefined) return;
    const server = createServer((req, res) => {
      this.answer(req.method, req.url).then(
        ({ status, type, body }) => res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body),
        (error: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error)),
      );
    });
    const host = process.env.HOST ?? '127.0.0.1';
    server.listen(this.config.metricsPort, host);
    await once(server, 'listening');
    this.#server = server;
    const { port } = server.address() as { port: number };
    this.#url = `http://${host}:${port}`;
    new Logger('Payments').log(`metrics on ${this.#url}/metrics`);
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    const closed = once(server, 'close');
    server.close();
    server.closeAllConnections();
    await closed;
  }

  private async answer(method: string | undefined, url: string | undefined): Promise<{ status: number; type: string; body: string }> {
    const path = (url ?? '/').split('?')[0];
    if (method !== 'GET') return { status: 405, type: 'text/plain', body: 'GET only\n' };
    if (path === '/metrics') return { status: 200, type: this.registry.contentType, body: await this.registry.metrics() };
    if (path === '/health') {
      const result = await this.lockHealth.isHealthy('lock', { timeout: HEALTH_TIMEOUT_MS });
      const up = result.lock.status === 'up';
      return {
        status: up ? 200 : 503,
        type: 'application/json',
        body: JSON.stringify({ status: up ? 'ok' : 'error', details: result }),
      };
    }
    return { status: 404, type: 'text/plain', body: 'not found: try /metrics or /health\n' };
  }
}
