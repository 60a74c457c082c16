/**
 * `@IdempotentRoute` over HTTP on Express and Fastify, against a real Redis (REDIS_URL): the
 * Idempotency-Key status table (first response, replay, concurrent duplicates, 400, 422, 409), scoped
 * keys, failing handlers, stored errors, bodies that cannot be stored, and options refused at declaration.
 */
import {
  Body,
  ConflictException,
  Controller,
  Get,
  HttpCode,
  HttpException,
  Injectable,
  Module,
  Post,
  Res,
  ServiceUnavailableException,
  StreamableFile,
  UseInterceptors,
  type CallHandler,
  type ExecutionContext,
  type INestApplication,
  type NestInterceptor,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  IdempotencyInterceptor,
  IdempotentRoute,
  LockArgumentError,
  LockModule,
  LockService,
  type IdempotentRouteOptions,
} from 'nestjs-redis-lock';
import { createLockServiceMock } from 'nestjs-redis-lock/testing';
import { map, type Observable } from 'rxjs';
import request from 'supertest';
import { dropKeys, randomPrefix, redisUrl, waitFor } from './fixtures/lock-e2e-utils.js';

/** How often each handler ran, in the current app. */
const runs = new Map<string, number>();
const bump = (name: string): number => {
  const n = (runs.get(name) ?? 0) + 1;
  runs.set(name, n);
  return n;
};

/** A gate the `reject` handler waits on, so the test decides when the first request ends. */
let gate: { started: boolean; open: () => void; opened: Promise<void> } | undefined;
function newGate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  gate = { started: false, open, opened };
  return gate;
}

/** `res` of Express and `reply` of Fastify both have these. */
interface PassthroughResponse {
  status(code: number): unknown;
  header(name: string, value: string): unknown;
}

/** Adds `{ [tag]: true }` to the body and counts its runs. */
function tagging(tag: string) {
  @Injectable()
  class Tagging implements NestInterceptor {
    intercept(_context: unknown, next: CallHandler): Observable<unknown> {
      bump(`interceptor-${tag}`);
      return next.handle().pipe(map((body: object) => ({ ...body, [tag]: true })));
    }
  }
  return Tagging;
}
const Inner = tagging('inner');
const Outer = tagging('outer');

@Controller('idem')
class IdemController {
  @Post('ordered')
  @UseInterceptors(Inner)
  @IdempotentRoute()
  @UseInterceptors(Outer)
  async ordered(): Promise<unknown> {
    return { n: bump('ordered') };
  }

  @Post('orders')
  @IdempotentRoute({ replayHeaders: ['Location', 'x-order'] })
  async create(@Body() body: { item: string }, @Res({ passthrough: true }) res: PassthroughResponse): Promise<unknown> {
    const id = bump('create');
    res.header('Location', `/orders/${id}`);
    res.header('X-Order', String(id));
    res.header('X-Not-Replayed', 'yes');
    // A Date is replayed as JSON sent it the first time: its ISO string.
    return { id, item: body.item, at: new Date(Date.UTC(2026, 0, 1)) };
  }

  @Post('accepted')
  @HttpCode(202)
  @IdempotentRoute()
  async accepted(): Promise<unknown> {
    return { n: bump('accepted') };
  }

  @Post('status')
  @IdempotentRoute()
  async status(@Res({ passthrough: true }) res: PassthroughResponse): Promise<unknown> {
    res.status(207);
    return { n: bump('status') };
  }

  @Post('text')
  @IdempotentRoute()
  async text(): Promise<string> {
    return `plain ${bump('text')}`;
  }

  @Post('empty')
  @HttpCode(204)
  @IdempotentRoute()
  async empty(): Promise<void> {
    bump('empty');
  }

  @Post('slow')
  @IdempotentRoute({ wait: 15_000 })
  async slow(@Body() body: unknown): Promise<unknown> {
    const n = bump('slow');
    await sleep(300);
    return { n, body };
  }

  @Post('reject')
  @IdempotentRoute({ inFlight: 'reject' })
  async reject(): Promise<unknown> {
    const n = bump('reject');
    if (gate) {
      gate.started = true;
      await gate.opened;
    }
    return { n };
  }

  @Post('short-wait')
  @IdempotentRoute({ wait: 100 })
  async shortWait(): Promise<unknown> {
    return this.reject();
  }

  @Post('scoped')
  @IdempotentRoute({ scope: (req: { headers: Record<string, string | undefined> }) => req.headers['x-user']! })
  async scoped(@Body() body: { note: string }): Promise<unknown> {
    return { n: bump('scoped'), note: body.note };
  }

  @Post('flaky')
  @IdempotentRoute()
  async flaky(): Promise<unknown> {
    const n = bump('flaky');
    if (n === 1) throw new ServiceUnavailableException('try again');
    return { n };
  }

  @Post('stored-error')
  @IdempotentRoute({ storeErrors: (e) => e instanceof HttpException && e.getStatus() < 500 })
  async storedError(): Promise<unknown> {
    throw new ConflictException({ code: 'taken', run: bump('stored-error') });
  }

  @Post('file')
  @IdempotentRoute()
  async file(): Promise<StreamableFile> {
    bump('file');
    return new StreamableFile(Buffer.from('a file'));
  }

  @Post('optional')
  @IdempotentRoute({ required: false })
  async optional(): Promise<unknown> {
    return { n: bump('optional') };
  }

  @Get('plain')
  async plain(): Promise<unknown> {
    return { n: bump('plain') };
  }
}

/** A subclass keying every route by the tenant header, on the controller: it runs first, the decorator's steps aside. */
@Injectable()
class TenantIdempotency extends IdempotencyInterceptor {
  protected override scopeOf(context: ExecutionContext): string {
    return String(context.switchToHttp().getRequest<{ headers: Record<string, string> }>().headers['x-tenant']);
  }
}

@Controller('custom')
@UseInterceptors(TenantIdempotency)
class CustomController {
  @Post()
  @IdempotentRoute()
  async create(): Promise<unknown> {
    return { n: bump('custom') };
  }
}

/** The whole controller is idempotent. */
@Controller('whole')
@IdempotentRoute({ fingerprint: false })
class WholeController {
  @Post('a')
  async a(): Promise<unknown> {
    return { n: bump('whole') };
  }
}

describe.each([
  ['Express', () => new ExpressAdapter()],
  ['Fastify', () => new FastifyAdapter()],
])('@IdempotentRoute on %s (e2e)', (name, adapter) => {
  const keyPrefix = randomPrefix(`idem-http-${name.toLowerCase()}`);
  let app: INestApplication;
  let url: string;
  let admin: Redis;
  const http = () => request(url);
  const key = () => randomUUID();

  beforeAll(async () => {
    runs.clear();
    @Module({
      imports: [LockModule.forRoot({ redis: redisUrl(), keyPrefix, wait: 2_000 })],
      controllers: [IdemController, WholeController, CustomController],
    })
    class AppModule {}
    app = await NestFactory.create(AppModule, adapter(), { logger: false });
    await app.listen(0, '127.0.0.1');
    const { port } = (app.getHttpServer() as { address(): { port: number } }).address();
    url = `http://127.0.0.1:${port}`;
    admin = new Redis(redisUrl());
  });
  afterAll(async () => {
    await app?.close();
    await dropKeys(redisUrl(), keyPrefix);
    admin?.disconnect();
  });

  it('first request: 201 and the body; same key again: same status, body and allowed headers, marked replayed, handler ran once', async () => {
    const k = key();
    const first = await http().post('/idem/orders').set('Idempotency-Key', k).send({ item: 'book' }).expect(201);
    const body = { id: 1, item: 'book', at: '2026-01-01T00:00:00.000Z' };
    expect(first.body).toEqual(body);
    expect(first.headers).toMatchObject({ location: '/orders/1', 'x-order': '1', 'x-not-replayed': 'yes' });
    expect(first.headers['idempotent-replayed']).toBeUndefined();

    const again = await http().post('/idem/orders').set('Idempotency-Key', k).send({ item: 'book' }).expect(201);
    expect(again.body).toEqual(body);
    expect(again.headers).toMatchObject({ location: '/orders/1', 'x-order': '1', 'idempotent-replayed': 'true' });
    expect(again.headers['content-type']).toMatch(/^application\/json/);
    // Only the headers the route allows are replayed.
    expect(again.headers['x-not-replayed']).toBeUndefined();
    expect(runs.get('create')).toBe(1);

    // The record is kept for the default ttl, 24 h, in the idempotency namespace.
    const pttl = await admin.pttl(`${keyPrefix}{idempotency-http::${k}}:r`);
    expect(pttl).toBeGreaterThan(23 * 3600_000);
    expect(pttl).toBeLessThanOrEqual(24 * 3600_000);

    // A new key is a new request.
    await http()
      .post('/idem/orders')
      .set('Idempotency-Key', key())
      .send({ item: 'book' })
      .expect(201, { ...body, id: 2 });
  });

  it('replays the status of @HttpCode, of res.status() with passthrough, a text body and an empty 204', async () => {
    for (const [path, status, first] of [
      ['accepted', 202, { n: 1 }],
      ['status', 207, { n: 1 }],
    ] as const) {
      const k = key();
      await http().post(`/idem/${path}`).set('Idempotency-Key', k).expect(status, first);
      const again = await http().post(`/idem/${path}`).set('Idempotency-Key', k).expect(status, first);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(runs.get(path)).toBe(1);
    }
    const k = key();
    const text = await http().post('/idem/text').set('Idempotency-Key', k).expect(201);
    const textAgain = await http().post('/idem/text').set('Idempotency-Key', k).expect(201);
    expect([text.text, textAgain.text]).toEqual(['plain 1', 'plain 1']);
    expect(textAgain.headers['content-type']).toBe(text.headers['content-type']);

    const e = key();
    await http().post('/idem/empty').set('Idempotency-Key', e).expect(204, '');
    const emptyAgain = await http().post('/idem/empty').set('Idempotency-Key', e).expect(204, '');
    expect(emptyAgain.headers['idempotent-replayed']).toBe('true');
    expect(runs.get('empty')).toBe(1);
  });

  it('takes the key as the draft sends it (a quoted String) or bare, as Stripe does: both name the same key', async () => {
    const k = key();
    await http().post('/idem/accepted').set('Idempotency-Key', `"${k}"`).expect(202);
    const before = runs.get('accepted');
    const bare = await http().post('/idem/accepted').set('Idempotency-Key', k).expect(202);
    expect(bare.headers['idempotent-replayed']).toBe('true');
    expect(runs.get('accepted')).toBe(before);
  });

  it('concurrent duplicates: the handler runs once and all five get the same response', async () => {
    const k = key();
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => http().post('/idem/slow').set('Idempotency-Key', k).send({ amount: 5 })),
    );
    expect(runs.get('slow')).toBe(1);
    for (const res of answers) expect({ status: res.status, body: res.body }).toEqual({ status: 201, body: { n: 1, body: { amount: 5 } } });
    // Four waited for the first and got its stored response.
    expect(answers.filter((res) => res.headers['idempotent-replayed'] === 'true')).toHaveLength(4);

    // Without idempotency the same five requests all run: what the test above would see if it did nothing.
    const plain = await Promise.all(Array.from({ length: 5 }, () => http().get('/idem/plain')));
    expect(new Set(plain.map((res) => res.body.n)).size).toBe(5);
  }, 30_000);

  it('400 with a problem body for a missing key, and for an empty, too long or non-ASCII one; 255 characters are fine', async () => {
    const before = runs.get('accepted') ?? 0;
    const missing = await http().post('/idem/accepted').expect(400);
    expect(missing.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(missing.text)).toEqual({
      type: 'about:blank',
      title: 'Bad Request',
      status: 400,
      detail: expect.stringMatching(/needs an Idempotency-Key header/),
    });
    const cases: [string, RegExp][] = [
      ['x'.repeat(256), /256 characters long; at most 255/],
      ['caf\u00e9', /printable ASCII/],
      ['a\tb', /printable ASCII/],
      ['""', /must not be empty/],
      ['"half', /not a valid quoted string/],
    ];
    for (const [value, detail] of cases) {
      const res = await http().post('/idem/accepted').set('Idempotency-Key', value).expect(400);
      expect(JSON.parse(res.text)).toMatchObject({ status: 400, detail: expect.stringMatching(detail) });
    }
    expect(runs.get('accepted') ?? 0).toBe(before);
    await http().post('/idem/accepted').set('Idempotency-Key', 'k'.repeat(255)).expect(202);
    expect(runs.get('accepted')).toBe(before + 1);
  });

  it('422 when a key is reused with another body or on another route; the first response stays', async () => {
    const k = key();
    await http().post('/idem/orders').set('Idempotency-Key', k).send({ item: 'pen' }).expect(201);
    const before = runs.get('create');
    const other = await http().post('/idem/orders').set('Idempotency-Key', k).send({ item: 'car' }).expect(422);
    expect(other.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(other.text)).toMatchObject({
      status: 422,
      title: 'Unprocessable Entity',
      detail: expect.stringMatching(/already used/),
    });
    await http().post('/idem/accepted').set('Idempotency-Key', k).expect(422);
    expect(runs.get('create')).toBe(before);
    const same = await http().post('/idem/orders').set('Idempotency-Key', k).send({ item: 'pen' }).expect(201);
    expect(same.body.item).toBe('pen');
  });

  it("409 with Retry-After while the first request runs, with inFlight: 'reject'; then the stored response", async () => {
    const k = key();
    const g = newGate();
    try {
      const first = http()
        .post('/idem/reject')
        .set('Idempotency-Key', k)
        .then((res) => res);
      await waitFor('the first request to run', async () => g.started, 10_000, 10);
      const busy = await http().post('/idem/reject').set('Idempotency-Key', k).expect(409);
      expect(busy.headers['retry-after']).toMatch(/^[1-9]\d*$/);
      expect(busy.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(busy.text)).toMatchObject({ status: 409, title: 'Conflict', retryAfter: Number(busy.headers['retry-after']) });
      g.open();
      expect((await first).status).toBe(201);
      const later = await http().post('/idem/reject').set('Idempotency-Key', k).expect(201, { n: 1 });
      expect(later.headers['idempotent-replayed']).toBe('true');
      expect(runs.get('reject')).toBe(1);
    } finally {
      g.open();
      gate = undefined;
    }
  });

  it('409 too when a duplicate waited its whole wait for the first request', async () => {
    const k = key();
    const g = newGate();
    try {
      const first = http()
        .post('/idem/short-wait')
        .set('Idempotency-Key', k)
        .then((res) => res);
      await waitFor('the first request to run', async () => g.started, 10_000, 10);
      const busy = await http().post('/idem/short-wait').set('Idempotency-Key', k).expect(409);
      expect(busy.headers['retry-after']).toMatch(/^[1-9]\d*$/);
      g.open();
      expect((await first).status).toBe(201);
      await http()
        .post('/idem/short-wait')
        .set('Idempotency-Key', k)
        .expect(201, (await first).body);
    } finally {
      g.open();
      gate = undefined;
    }
  });

  it('scoped keys: two users sending the same key each run their own request; each replays only their own', async () => {
    const k = key();
    const alice = await http().post('/idem/scoped').set('Idempotency-Key', k).set('x-user', 'alice').send({ note: 'a' }).expect(201);
    const bob = await http().post('/idem/scoped').set('Idempotency-Key', k).set('x-user', 'bob').send({ note: 'a' }).expect(201);
    expect(runs.get('scoped')).toBe(2);
    expect(bob.body.n).not.toBe(alice.body.n);
    const aliceAgain = await http().post('/idem/scoped').set('Idempotency-Key', k).set('x-user', 'alice').send({ note: 'a' }).expect(201);
    expect(aliceAgain.body).toEqual(alice.body);
    expect(aliceAgain.headers['idempotent-replayed']).toBe('true');
    // Crafted scopes and keys cannot meet: user "a:b" with key "c" is not user "a" with key "b:c".
    await http().post('/idem/scoped').set('Idempotency-Key', 'c').set('x-user', 'a:b').send({ note: 'x' }).expect(201);
    const crafted = await http().post('/idem/scoped').set('Idempotency-Key', 'b:c').set('x-user', 'a').send({ note: 'x' }).expect(201);
    expect(crafted.headers['idempotent-replayed']).toBeUndefined();
    expect(runs.get('scoped')).toBe(4);
    // A request the scope function has no owner for is a server error, not an unscoped key.
    await http().post('/idem/scoped').set('Idempotency-Key', k).send({ note: 'a' }).expect(500);
    expect(runs.get('scoped')).toBe(4);
  });

  it('a handler that throws stores nothing: the retry runs and its response is the one replayed', async () => {
    const k = key();
    await http().post('/idem/flaky').set('Idempotency-Key', k).expect(503);
    await http().post('/idem/flaky').set('Idempotency-Key', k).expect(201, { n: 2 });
    const replay = await http().post('/idem/flaky').set('Idempotency-Key', k).expect(201, { n: 2 });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(runs.get('flaky')).toBe(2);
  });

  it('an error chosen by storeErrors is stored and replayed with its status and body', async () => {
    const k = key();
    const first = await http().post('/idem/stored-error').set('Idempotency-Key', k).expect(409);
    expect(first.body).toEqual({ code: 'taken', run: 1 });
    const again = await http().post('/idem/stored-error').set('Idempotency-Key', k).expect(409);
    expect(again.body).toEqual({ code: 'taken', run: 1 });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(runs.get('stored-error')).toBe(1);
  });

  it('a file body is refused with a 500 that says the work ran; nothing is stored, so a retry runs again', async () => {
    const k = key();
    const res = await http().post('/idem/file').set('Idempotency-Key', k).expect(500);
    expect(JSON.parse(res.text)).toMatchObject({
      status: 500,
      detail: expect.stringMatching(/was processed, but its response cannot be stored .*StreamableFile/),
    });
    await http().post('/idem/file').set('Idempotency-Key', k).expect(500);
    expect(runs.get('file')).toBe(2);
  });

  it('required: false runs a request without a key normally; with a key it is idempotent', async () => {
    await http().post('/idem/optional').expect(201, { n: 1 });
    await http().post('/idem/optional').expect(201, { n: 2 });
    const k = key();
    await http().post('/idem/optional').set('Idempotency-Key', k).expect(201, { n: 3 });
    await http().post('/idem/optional').set('Idempotency-Key', k).expect(201, { n: 3 });
  });

  it('an interceptor listed above @IdempotentRoute runs inside it (stored), one listed below outside it (on every replay)', async () => {
    const k = key();
    const body = { n: 1, inner: true, outer: true };
    await http().post('/idem/ordered').set('Idempotency-Key', k).expect(201, body);
    await http().post('/idem/ordered').set('Idempotency-Key', k).expect(201, body);
    expect([runs.get('ordered'), runs.get('interceptor-inner'), runs.get('interceptor-outer')]).toEqual([1, 1, 2]);
  });

  it('a subclass of IdempotencyInterceptor on the controller takes over from the one @IdempotentRoute applies', async () => {
    const k = key();
    await http().post('/custom').set('Idempotency-Key', k).set('x-tenant', 't1').expect(201, { n: 1 });
    await http().post('/custom').set('Idempotency-Key', k).set('x-tenant', 't2').expect(201, { n: 2 });
    const again = await http().post('/custom').set('Idempotency-Key', k).set('x-tenant', 't1').expect(201, { n: 1 });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(runs.get('custom')).toBe(2);
  });

  it('on a controller, every route of it is idempotent', async () => {
    const k = key();
    await http().post('/whole/a').set('Idempotency-Key', k).expect(201, { n: 1 });
    await http().post('/whole/a').set('Idempotency-Key', k).expect(201, { n: 1 });
    await http().post('/whole/a').expect(400);
    expect(runs.get('whole')).toBe(1);
  });
});

describe('@IdempotentRoute with a LockService mock (overrideProvider)', () => {
  it('checks the key (400) but runs the handler every time: there is no store to keep responses in', async () => {
    runs.clear();
    @Module({ imports: [LockModule.forRoot({ redis: 'redis://127.0.0.1:1', connectTimeout: 50 })], controllers: [IdemController] })
    class MockedModule {}
    const moduleRef = await Test.createTestingModule({ imports: [MockedModule] })
      .overrideProvider(LockService)
      .useValue(createLockServiceMock())
      .compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    try {
      await request(app.getHttpServer()).post('/idem/accepted').expect(400);
      await request(app.getHttpServer()).post('/idem/accepted').set('Idempotency-Key', 'k').expect(202, { n: 1 });
      await request(app.getHttpServer()).post('/idem/accepted').set('Idempotency-Key', 'k').expect(202, { n: 2 });
    } finally {
      await app.close();
    }
  });
});

describe('@IdempotentRoute options', () => {
  const cases: [string, unknown, RegExp][] = [
    ['unknown option', { requried: false }, /unknown option "requried"; did you mean "required"\?/],
    ['required', { required: 'yes' }, /required must be true or false, got "yes"/],
    ['ttl', { ttl: 0 }, /ttl must be a positive finite number of milliseconds/],
    ['leaseTtl', { leaseTtl: -5 }, /leaseTtl must be/],
    ['wait', { wait: Infinity }, /wait must be a finite number/],
    ['inFlight', { inFlight: 'queue' }, /inFlight must be 'wait' or 'reject', got "queue"/],
    ['scope', { scope: 'user' }, /scope must be a function of the request/],
    ['replayHeaders', { replayHeaders: 'location' }, /replayHeaders must be an array/],
    ['a header name', { replayHeaders: ['bad header'] }, /replayHeaders\[0\] must be an HTTP header name, got "bad header"/],
    ['set-cookie', { replayHeaders: ['location', 'Set-Cookie'] }, /replayHeaders\[1\] must not be "set-cookie"/],
    ['content-length', { replayHeaders: ['content-length'] }, /must not be "content-length"/],
    ['fingerprint', { fingerprint: 'body' }, /fingerprint must be true, false or a function/],
    ['storeErrors', { storeErrors: true }, /storeErrors must be a function/],
    ['options', 'fast', /options must be an object/],
  ];
  it.each(cases)('refuses a bad %s at declaration, naming it', (_what, options, message) => {
    let thrown: unknown;
    try {
      IdempotentRoute(options as IdempotentRouteOptions);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(LockArgumentError);
    expect((thrown as Error).message).toMatch(/^@IdempotentRoute\(\)/);
    expect((thrown as Error).message).toMatch(message);
  });

  it('refuses a handler that sends its own response with @Res(), and accepts @Res({ passthrough: true })', () => {
    expect(() => {
      class Refused {
        @Post()
        @IdempotentRoute()
        async send(@Res() res: { json(body: unknown): void }): Promise<void> {
          res.json({});
        }
      }
      return Refused;
    }).toThrow(/@IdempotentRoute\(\) on Refused.send: the handler injects the response with @Res\(\)/);
    expect(() => {
      class Accepted {
        @Post()
        @IdempotentRoute()
        async send(@Res({ passthrough: true }) _res: unknown): Promise<unknown> {
          return {};
        }
      }
      return Accepted;
    }).not.toThrow();
  });
});
