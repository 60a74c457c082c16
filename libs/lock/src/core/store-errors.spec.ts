import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { ReplyError as IoredisReplyError } from 'ioredis';
import { LockError, LockStoreError, LockTimeoutError, LockUnavailableError } from './errors.js';
import { isTransient, noAnswer, redact, registerSecret, toLockError } from './store-errors.js';

/** An ioredis ReplyError as the client makes it: the server's message, and the command with its arguments. */
const reply = (message: string, command?: { name: string; args: unknown[] }): Error => {
  const ReplyError = IoredisReplyError as new (message: string) => Error;
  const error = new ReplyError(message);
  return command ? Object.assign(error, { command }) : error;
};
const SUFFIX = ' script: 3b0b57995a47ae0e1bb20220278b82568130ec0f, on @user_script:1.';
/** Never registered: redaction by shape alone must remove it. */
const secret = () => `sec-${randomBytes(6).toString('hex')}`;

describe('toLockError / isTransient', () => {
  it.each([
    ["NOPERM this user has no permissions to run the 'evalsha' command", 'NOPERM'],
    [`ERR The user executing the script can't run this command or subcommand${SUFFIX}`, 'NOPERM'],
    [`ERR The user executing the script can't access at least one of the keys mentioned in the command arguments${SUFFIX}`, 'NOPERM'],
    [`WRONGTYPE Operation against a key holding the wrong kind of value${SUFFIX}`, 'WRONGTYPE'],
    ['FOREIGN lock:{a b} holds a value that is not a lock of this library; it was left unchanged', 'FOREIGN'],
    ['WRONGPASS invalid username-password pair or user is disabled.', 'AUTH'],
    ['NOAUTH Authentication required.', 'AUTH'],
    ['ERR DB index is out of range', 'DB'],
    [`ERR invalid expire time in 'set' command${SUFFIX}`, 'RANGE'],
    [`ERR value is not an integer or out of range${SUFFIX}`, 'RANGE'],
    ["ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'", 'SCRIPT'],
    [`ERR user_script:1: boom${SUFFIX}`, 'SCRIPT'],
    ["OOM command not allowed when used memory > 'maxmemory'.", 'OOM'],
    ['ERR syntax error', 'ERR'],
  ])('%s → LockStoreError %s, permanent', (message, code) => {
    const error = reply(message);
    expect(isTransient(error)).toBe(false);
    const mapped = toLockError('acquire', error, ['k']);
    expect(mapped).toBeInstanceOf(LockStoreError);
    expect((mapped as LockStoreError).code).toBe(code);
    expect(mapped.keys).toEqual(['k']);
    expect(mapped.message).not.toMatch(/script: [0-9a-f]{40}/);
  });

  it.each([
    'LOADING Redis is loading the dataset in memory',
    'BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.',
    'TRYAGAIN Multiple keys request during rehashing of slot',
    'CLUSTERDOWN The cluster is down',
    "READONLY You can't write against a read only replica.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
  ])('%s → LockUnavailableError, transient', (message) => {
    const error = reply(message);
    expect(isTransient(error)).toBe(true);
    expect(toLockError('acquire', error)).toBeInstanceOf(LockUnavailableError);
  });

  it('connection errors are transient and keep their cause; a MaxRetriesPerRequestError names the last connection error', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED', syscall: 'connect' });
    expect(isTransient(refused)).toBe(true);
    const mapped = toLockError('release', refused);
    expect(mapped).toBeInstanceOf(LockUnavailableError);
    expect(mapped.message).toContain('ECONNREFUSED');
    const gaveUp = new Error('Reached the max retries per request limit (which is 2).');
    Object.defineProperty(gaveUp, 'name', { value: 'MaxRetriesPerRequestError' });
    const explained = toLockError('acquire', gaveUp, [], refused);
    expect(explained).toBeInstanceOf(LockUnavailableError);
    expect(explained.message).toContain('connect ECONNREFUSED 127.0.0.1:1');
  });

  it('a permanent refusal of the connection setup (lastError is a LockStoreError) wins over "connection closed"', () => {
    const db = new LockStoreError('The Redis server refused database 99', 'DB');
    const mapped = toLockError('acquire', new Error('Connection is closed.'), ['k'], db);
    expect(mapped).toBeInstanceOf(LockStoreError);
    expect((mapped as LockStoreError).code).toBe('DB');
    expect(mapped.keys).toEqual(['k']);
  });

  it('names the Redis key of a foreign value, spaces and all', () => {
    const mapped = toLockError(
      'acquire',
      reply('FOREIGN lock:{a b} holds a value that is not a lock of this library; it was left unchanged'),
    );
    expect(mapped.message).toContain('"lock:{a b}"');
  });

  it('returns a LockError unchanged, and maps a programming error to INTERNAL (not retried)', () => {
    const own = new LockTimeoutError(['k'], 10);
    expect(toLockError('acquire', own)).toBe(own);
    const bug = toLockError('acquire', new TypeError('x is not a function'));
    expect(bug).toBeInstanceOf(LockStoreError);
    expect((bug as LockStoreError).code).toBe('INTERNAL');
    expect(isTransient(new TypeError('x'))).toBe(false);
  });

  it('the cause is a redacted copy: HELLO … AUTH arguments removed, the original untouched', () => {
    const password = secret();
    const original = reply('WRONGPASS invalid username-password pair or user is disabled.', {
      name: 'hello',
      args: ['3', 'AUTH', 'default', password],
    });
    const mapped = toLockError('acquire', original);
    expect(inspect(mapped, { depth: 10 })).not.toContain(password);
    expect((mapped.cause as { command: { args: unknown[] } }).command.args).toEqual(['3', 'AUTH', 'default', '***']);
    expect(mapped.cause).toBeInstanceOf(IoredisReplyError as new () => Error);
    expect((original as unknown as { command: { args: unknown[] } }).command.args[3]).toBe(password);
  });
});

describe('noAnswer', () => {
  it('says how long it waited, and the last connection error when there is one, redacted', () => {
    expect(noAnswer('acquire', 800).message).toMatch(/no answer within 800 ms\.$/);
    const password = secret();
    const last = Object.assign(new Error(`getaddrinfo ENOTFOUND for redis://u:${password}@nowhere:6379`), { code: 'ENOTFOUND' });
    const error = noAnswer('acquire', 800, last);
    expect(error).toBeInstanceOf(LockUnavailableError);
    expect(error.message).toContain('last connection error: getaddrinfo ENOTFOUND');
    expect(inspect(error, { depth: 10 })).not.toContain(password);
  });
});

describe('redact', () => {
  it('URLs: user:***@ (also with @ / # ? in a raw password), ***@ without a user, credential parameters', () => {
    const p = secret();
    expect(redact(`redis://admin:${p}@host:6379/2`)).toBe('redis://admin:***@host:6379/2');
    expect(redact(`rediss://:${p}@host`)).toBe('rediss://:***@host');
    expect(redact(`redis://${p}@host`)).toBe('redis://***@host');
    expect(redact(`redis://admin:a@b/c#d?${p}@host:1/0`)).toBe('redis://admin:***@host:1/0');
    expect(redact(`redis://host:1/0?password=${p}&family=6`)).toBe('redis://host:1/0?password=***&family=6');
    expect(redact(`from redis://a:${p}@h1 to redis://b:${p}@h2`)).toBe('from redis://a:***@h1 to redis://b:***@h2');
    expect(redact('no secret here: redis://host:6379')).toBe('no secret here: redis://host:6379');
  });

  it('command arguments of AUTH, HELLO, ACL SETUSER, CONFIG SET, MIGRATE', () => {
    const p = secret();
    const args = (name: string, list: unknown[]) =>
      (redact(reply('ERR', { name, args: list })) as unknown as { command: { args: unknown[] } }).command.args;
    expect(args('auth', [p])).toEqual(['***']);
    expect(args('auth', ['user', p])).toEqual(['user', '***']);
    expect(args('hello', ['3', 'AUTH', 'user', p, 'SETNAME', 'app'])).toEqual(['3', 'AUTH', 'user', '***', 'SETNAME', 'app']);
    expect(args('acl', ['SETUSER', 'bob', 'on', `>${p}`, '~k:*'])).toEqual(['SETUSER', 'bob', 'on', '***', '~k:*']);
    expect(args('config', ['SET', 'requirepass', p])).toEqual(['SET', 'requirepass', '***']);
    expect(args('migrate', ['h', '1', 'k', '0', '100', 'AUTH2', 'u', p, 'KEYS', 'a'])).toEqual([
      'h',
      '1',
      'k',
      '0',
      '100',
      'AUTH2',
      'u',
      '***',
      'KEYS',
      'a',
    ]);
  });

  it('errors: same class and name, message, stack and causes redacted (also cyclic ones), original untouched', () => {
    const p = secret();
    const inner = new Error(`to redis://u:${p}@h`);
    const outer = new LockUnavailableError(`via redis://u:${p}@h`, ['k'], { cause: inner });
    (inner as { cause?: unknown }).cause = outer;
    const safe = redact(outer);
    expect(safe).toBeInstanceOf(LockUnavailableError);
    expect(safe).toBeInstanceOf(LockError);
    expect(safe.name).toBe('LockUnavailableError');
    expect(safe.keys).toEqual(['k']);
    expect(safe.message).toBe('via redis://u:***@h');
    expect(inspect(safe, { depth: 10 })).not.toContain(p);
    expect(String(safe.stack)).not.toContain(p);
    expect(outer.message).toContain(p);
  });

  it('plain objects: fields named like a password; registered secrets anywhere in text', () => {
    const p = secret();
    expect(redact({ host: 'h', password: p, nested: { sentinelPassword: p } })).toEqual({
      host: 'h',
      password: '***',
      nested: { sentinelPassword: '***' },
    });
    const registered = secret();
    registerSecret(registered);
    expect(redact(`the server said ${registered} and ${encodeURIComponent(registered)}`)).toBe('the server said *** and ***');
    registerSecret('abc'); // too short to search for in text: it would blank out ordinary words
    expect(redact('abc')).toBe('abc');
  });
});
