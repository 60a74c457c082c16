import 'reflect-metadata';
import { Controller, Get, Headers, Module, Param, ParseIntPipe, Post, UseInterceptors, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Redis } from 'ioredis';
import request from 'supertest';
import { LockNotInitializedError } from '../core/errors.js';
import { RouteLock } from '../decorators/route-lock.decorator.js';
import { WithLock } from '../decorators/with-lock.decorator.js';
import { LockModule } from '../lock.module.js';
import { LockService } from '../lock.service.js';
import { LockInterceptor } from './lock.interceptor.js';

@Controller('items')
class ItemsController {
  @Post(':id')
  @RouteLock(
    (req: { params: { id: string }; headers: Record<string, string> }) => `tenant:${req.headers['x-tenant']}:item:${req.params.id}`,
    5000,
    100,
  )
  async update(@Param('id', ParseIntPipe) id: number, @Headers('x-tenant') tenant: string): Promise<{ id: number; tenant: string }> {
    return { id, tenant };
  }

  @Post(':id/both')
  @RouteLock((req: { params: { id: string } }) => `item:${req.params.id}`, 5000, 100)
  @WithLock((id: string) => `item:${id}`, 5000, 0)
  async both(@Param('id') id: string): Promise<{ id: string }> {
    return { id };
  }
}

@Controller('reports')
@UseInterceptors(LockInterceptor)
class ReportsController {
  @Get(':id')
  @WithLock((id: string) => `report:${id}`, 5000, 100)
  async get(@Param('id') id: string): Promise<{ id: string }> {
    return { id };
  }
}

const prefix = `ic${Math.random().toString(36).slice(2, 8)}:`;

@Module({
  imports: [LockModule.forRoot({ redis: process.env.REDIS_URL!, keyPrefix: prefix })],
  controllers: [ItemsController, ReportsController],
})
class AppModule {}

describe.each([
  ['Express', () => new ExpressAdapter()],
  ['Fastify', () => new FastifyAdapter()],
])('LockInterceptor on %s', (_name, adapter) => {
  let app: INestApplication;
  let redis: Redis;
  let locks: LockService;

  beforeAll(async () => {
    app = await NestFactory.create(AppModule, adapter(), { logger: false });
    await app.init();
    if (_name === 'Fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<void> }).ready();
    locks = app.get(LockService);
    redis = new Redis(process.env.REDIS_URL!);
  });
  afterAll(async () => {
    await app.close();
    await redis.quit();
  });

  it('runs a @RouteLock handler holding the lock on a key from the request', async () => {
    let held: readonly string[] = [];
    const off = locks.on('acquired', ({ keys }) => void (held = keys));
    const res = await request(app.getHttpServer()).post('/items/7').set('x-tenant', 'acme').expect(201);
    off();
    expect(res.body).toEqual({ id: 7, tenant: 'acme' });
    expect(held).toEqual(['tenant:acme:item:7']);
    expect(await locks.isLocked('tenant:acme:item:7')).toBe(false);
  });

  it('answers 423 with Retry-After and a problem+json body when the route lock is busy', async () => {
    const lock = await locks.acquire('tenant:acme:item:8', { ttl: 4000 });
    try {
      const res = await request(app.getHttpServer()).post('/items/8').set('x-tenant', 'acme').expect(423);
      expect(res.headers['retry-after']).toMatch(/^[1-4]$/);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(res.text)).toMatchObject({ status: 423, title: 'Locked' });
    } finally {
      await lock.release();
    }
  });

  it('maps a LockTimeoutError from a @WithLock handler to 423 when used alone', async () => {
    const lock = await locks.acquire('report:1', { ttl: 4000 });
    try {
      await request(app.getHttpServer()).get('/reports/1').expect(423);
    } finally {
      await lock.release();
    }
    await request(app.getHttpServer()).get('/reports/1').expect(200, { id: '1' });
  });

  it('takes the lock once when @RouteLock and @WithLock name the same key', async () => {
    let acquisitions = 0;
    const off = locks.on('acquired', () => void acquisitions++);
    // @WithLock has wait 0: if it tried to take the key a second time, the request would get 423.
    await request(app.getHttpServer()).post('/items/5/both').expect(201, { id: '5' });
    off();
    expect(acquisitions).toBe(1);
  });

  it('takes no lock when a pipe rejects the request (nothing changes in Redis)', async () => {
    const state = async () => Promise.all((await redis.keys(`${prefix}*`)).sort().map(async (key) => [key, await redis.get(key)]));
    const before = await state();
    await request(app.getHttpServer()).post('/items/not-a-number').set('x-tenant', 'acme').expect(400);
    expect(await state()).toEqual(before);
    expect((await redis.keys(`${prefix}{*`)).filter((key) => !key.endsWith('}:f'))).toEqual([]);
  });

  it('a @RouteLock handler called outside HTTP says what is wrong', async () => {
    await expect(app.get(ItemsController).update(1, 'x')).rejects.toBeInstanceOf(LockNotInitializedError);
  });
});
