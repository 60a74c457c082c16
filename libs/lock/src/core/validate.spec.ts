import { LockArgumentError } from './errors.js';
import {
  ACQUIRE_OPTIONS,
  DISPATCH_UNIQUE_OPTIONS,
  MAX_DURATION,
  MIN_TTL,
  RESTORE_OPTIONS,
  ROUTE_LOCK_OPTIONS,
  TRY_ACQUIRE_OPTIONS,
  USING_OPTIONS,
  WITH_LOCK_OPTIONS,
  isThenable,
  normalizeKeys,
  validateBoolean,
  validateFunction,
  validateKey,
  validateLockOptions,
  validateOnLockLost,
  validateOptions,
  validateToken,
  validateTtl,
  validateWait,
} from './validate.js';

/** The LockArgumentError `fn` throws; fails the test when it throws nothing or something else. */
function thrown(fn: () => unknown): LockArgumentError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(LockArgumentError);
    return error as LockArgumentError;
  }
  throw new Error('expected a LockArgumentError, nothing was thrown');
}

describe('bounds', () => {
  it('MIN_TTL leaves a usable lock after drift; MAX_DURATION is the largest Node timer delay', () => {
    expect(MIN_TTL).toBe(10);
    expect(MAX_DURATION).toBe(2 ** 31 - 1);
    expect(MIN_TTL - (Math.floor(MIN_TTL * 0.01) + 2)).toBeGreaterThan(0);
  });
});

describe('validateTtl', () => {
  it.each([
    [10, 10],
    [9.5, 10],
    [10.2, 11],
    [30_000, 30_000],
    [MAX_DURATION, MAX_DURATION],
    [MAX_DURATION - 0.5, MAX_DURATION],
  ])('accepts %p as %p ms', (ttl, ms) => {
    expect(validateTtl('acquire()', ttl)).toBe(ms);
  });

  it.each([
    [0, 'got 0.'],
    [-0, 'got 0.'],
    [-5, 'got -5.'],
    [1.5, 'got 1.5 (shorter than 10 ms'],
    [9, 'got 9 (shorter than 10 ms'],
    [2 ** 31, 'got 2147483648 (longer than 2147483647 ms'],
    [2 ** 53, 'got 9007199254740992 (longer'],
    [Number.NaN, 'got NaN.'],
    [Infinity, 'got Infinity.'],
    [-Infinity, 'got -Infinity.'],
    ['100', 'got "100".'],
    [null, 'got null.'],
    [10n, 'got 10n.'],
    [{ ms: 5 }, 'got {"ms":5}.'],
    [[100], 'got [100].'],
  ])('refuses %p', (ttl, fragment) => {
    const error = thrown(() => validateTtl('acquire()', ttl));
    expect(error.message).toContain('acquire(): ttl must be a positive finite number of milliseconds from 10 to 2147483647');
    expect(error.message).toContain(fragment);
  });

  it('names the argument it checks', () => {
    expect(thrown(() => validateTtl('using()', 0, 'maxHold')).message).toMatch(/^using\(\): maxHold must be/);
  });

  it('cuts a long value to about 60 characters', () => {
    const error = thrown(() => validateTtl('acquire()', 'x'.repeat(500)));
    expect(error.message).not.toContain('x'.repeat(61));
    expect(error.message.length).toBeLessThan(200);
    expect(thrown(() => validateTtl('acquire()', Array(500).fill(1))).message.length).toBeLessThan(200);
  });
});

describe('validateWait', () => {
  it.each([
    [0, 0],
    [-0, 0],
    [0.1, 1],
    [5, 5],
    [MAX_DURATION, MAX_DURATION],
  ])('accepts %p as %p ms', (wait, ms) => {
    expect(Object.is(validateWait('acquire()', wait), ms)).toBe(true);
  });

  it.each([
    [-1, 'got -1.'],
    [-0.5, 'got -0.5.'],
    [Number.NaN, 'got NaN.'],
    [Infinity, 'got Infinity.'],
    ['5', 'got "5".'],
    [2 ** 31, 'got 2147483648.'],
    [undefined, 'got undefined.'],
  ])('refuses %p', (wait, fragment) => {
    const error = thrown(() => validateWait('acquire()', wait));
    expect(error.message).toContain('acquire(): wait must be a finite number of milliseconds from 0 to 2147483647');
    expect(error.message).toContain(fragment);
  });

  it('names the argument it checks', () => {
    expect(thrown(() => validateWait('@WithLock()', -1, 'requeueDelay')).message).toMatch(/^@WithLock\(\): requeueDelay must be/);
  });
});

describe('validateBoolean, validateFunction, validateOnLockLost', () => {
  it('passes booleans and undefined', () => {
    expect(validateBoolean('acquire()', 'autoExtend', true)).toBe(true);
    expect(validateBoolean('acquire()', 'autoExtend', false)).toBe(false);
    expect(validateBoolean('acquire()', 'autoExtend', undefined)).toBeUndefined();
  });

  it.each([
    ['no', '"no"'],
    [1, 'got 1'],
    [null, 'got null'],
    [0, 'got 0'],
  ])('refuses autoExtend %p', (value, fragment) => {
    const error = thrown(() => validateBoolean('acquire()', 'autoExtend', value));
    expect(error.message).toContain('acquire(): autoExtend must be true or false');
    expect(error.message).toContain(fragment);
  });

  it('validateFunction passes functions and names what is not one', () => {
    expect(() => validateFunction('using()', 'fn', () => 1)).not.toThrow();
    expect(() => validateFunction('using()', 'fn', async function named() {})).not.toThrow();
    expect(thrown(() => validateFunction('using()', 'fn', 'nope')).message).toBe('using(): fn must be a function, got "nope".');
    expect(thrown(() => validateFunction('using()', 'fn', undefined)).message).toContain('got undefined');
  });

  it("validateOnLockLost passes 'continue', 'throw' and undefined", () => {
    expect(validateOnLockLost('using()', 'continue')).toBe('continue');
    expect(validateOnLockLost('using()', 'throw')).toBe('throw');
    expect(validateOnLockLost('using()', undefined)).toBeUndefined();
    expect(thrown(() => validateOnLockLost('using()', 'retry')).message).toBe(
      `using(): onLockLost must be 'continue' or 'throw', got "retry".`,
    );
    expect(thrown(() => validateOnLockLost('using()', true)).message).toContain('got true');
  });
});

describe('validateOptions', () => {
  it('turns undefined into {} and returns the object itself', () => {
    expect(validateOptions('acquire()', undefined, ACQUIRE_OPTIONS)).toEqual({});
    const options = { ttl: 5, wait: undefined };
    expect(validateOptions('acquire()', options, ACQUIRE_OPTIONS)).toBe(options);
    expect(validateOptions('acquire()', Object.create(null), ACQUIRE_OPTIONS)).toEqual({});
  });

  it.each([
    [null, 'got null'],
    ['fast', 'got "fast"'],
    [5, 'got 5'],
    [[], 'got []'],
    [() => 1, 'got function'],
  ])('refuses %p as options', (options, fragment) => {
    const error = thrown(() => validateOptions('acquire()', options, ACQUIRE_OPTIONS));
    expect(error.message).toContain('acquire(): options must be an object');
    expect(error.message).toContain(fragment);
  });

  it.each([
    [{ tll: 5 }, ACQUIRE_OPTIONS, 'unknown option "tll"; did you mean "ttl"?'],
    [{ wiat: 5 }, ACQUIRE_OPTIONS, 'unknown option "wiat"; did you mean "wait"?'],
    [{ autoextend: true }, ACQUIRE_OPTIONS, 'did you mean "autoExtend"?'],
    [{ maxhold: 5 }, USING_OPTIONS, 'did you mean "maxHold"?'],
    [{ onLockLots: 'throw' }, USING_OPTIONS, 'did you mean "onLockLost"?'],
    [{ onTimout: 'requeue' }, WITH_LOCK_OPTIONS, 'unknown option "onTimout"; did you mean "onTimeout"?'],
    [{ requeDelay: 5 }, WITH_LOCK_OPTIONS, 'did you mean "requeueDelay"?'],
    [{ timeout: 5 }, ACQUIRE_OPTIONS, 'unknown option "timeout". Known options: ttl, wait, autoExtend, maxHold, label, tenant.'],
    [{ wait: 5 }, TRY_ACQUIRE_OPTIONS, 'unknown option "wait". Known options: ttl, autoExtend, maxHold, label, tenant.'],
    [{ onLockLost: 'throw' }, RESTORE_OPTIONS, 'unknown option "onLockLost"'],
    [{ autoExtend: true }, DISPATCH_UNIQUE_OPTIONS, 'unknown option "autoExtend"'],
    [{ ttl: 5 }, ROUTE_LOCK_OPTIONS, 'unknown option "ttl". where() takes no options.'],
  ])('refuses %p', (options, known, fragment) => {
    expect(thrown(() => validateOptions('where()', options, known)).message).toContain(fragment);
  });

  it('refuses an unknown name even when its value is undefined', () => {
    expect(thrown(() => validateOptions('acquire()', { tll: undefined }, ACQUIRE_OPTIONS)).message).toContain('"tll"');
  });

  it('cuts a very long unknown name', () => {
    const error = thrown(() => validateOptions('acquire()', { ['t'.repeat(5000)]: 1 }, ACQUIRE_OPTIONS));
    expect(error.message.length).toBeLessThan(250);
  });

  it('the call sites allow what the issue lists', () => {
    expect(ACQUIRE_OPTIONS).toEqual(['ttl', 'wait', 'autoExtend', 'maxHold', 'label', 'tenant']);
    expect(TRY_ACQUIRE_OPTIONS).toEqual(['ttl', 'autoExtend', 'maxHold', 'label', 'tenant']);
    expect(USING_OPTIONS).toEqual(['ttl', 'wait', 'autoExtend', 'maxHold', 'onLockLost', 'label', 'tenant']);
    expect(RESTORE_OPTIONS).toEqual(['ttl', 'autoExtend', 'maxHold', 'tenant']);
    expect(DISPATCH_UNIQUE_OPTIONS).toEqual(['ttl', 'wait', 'tenant']);
    expect(WITH_LOCK_OPTIONS).toEqual(['onTimeout', 'requeueDelay', 'onLockLost', 'autoExtend', 'maxHold', 'label', 'tenant']);
  });
});

describe('validateLockOptions', () => {
  it('returns the given values checked and rounded, and leaves out what was not given', () => {
    expect(
      validateLockOptions('using()', { ttl: 99.5, wait: 0.2, autoExtend: false, maxHold: 1000, onLockLost: 'throw' }, USING_OPTIONS),
    ).toEqual({
      ttl: 100,
      wait: 1,
      autoExtend: false,
      maxHold: 1000,
      onLockLost: 'throw',
    });
    expect(validateLockOptions('using()', { ttl: undefined }, USING_OPTIONS)).toEqual({});
    expect(validateLockOptions('using()', undefined, USING_OPTIONS)).toEqual({});
  });

  it.each([
    [{ ttl: 0 }, 'acquire(): ttl must be'],
    [{ wait: -1 }, 'acquire(): wait must be'],
    [{ autoExtend: 'no' }, 'acquire(): autoExtend must be true or false, got "no".'],
    [{ maxHold: 2 ** 31 }, 'acquire(): maxHold must be'],
    [{ tll: 5 }, 'did you mean "ttl"'],
    [null, 'options must be an object'],
  ])('refuses %p', (options, fragment) => {
    expect(thrown(() => validateLockOptions('acquire()', options, ACQUIRE_OPTIONS)).message).toContain(fragment);
  });
});

describe('validateKey', () => {
  it.each(['k', 'a}b', 'a{b', '{x}', 'x}', '😀', 'é', 'k'.repeat(1024)])('accepts %p', (key) => {
    expect(validateKey(key)).toBe(key);
  });

  it.each([
    [42, 'Lock key must be a string, got number (42).'],
    [null, 'got object (null)'],
    [undefined, 'got undefined'],
    ['', 'Lock key must not be empty.'],
    ['x'.repeat(1025), 'Lock key is 1025 characters long; the limit is 1024: "xxxxxxxx'],
    ['\uD800', 'lone surrogate at index 0'],
    ['ab\uDFFF', 'lone surrogate at index 2'],
    ['a\uDBFFb', '"a\\udbffb"'],
    ['}x', 'Lock key must not start with "}", got "}x"'],
    ['}', 'must not start with "}"'],
  ])('refuses %p', (key, fragment) => {
    expect(thrown(() => validateKey(key)).message).toContain(fragment);
  });

  it('explains why: different ill-formed keys would be one lock, a leading } spreads a lock over Cluster slots', () => {
    expect(Buffer.from('\uD800').equals(Buffer.from('\uDBFF'))).toBe(true);
    expect(thrown(() => validateKey('\uD800')).message).toContain('different keys would share one lock');
    expect(thrown(() => validateKey('}x')).message).toContain('different slots');
  });

  it('finds a lone surrogate without String.prototype.isWellFormed too', () => {
    const native = Object.getOwnPropertyDescriptor(String.prototype, 'isWellFormed');
    if (native) delete (String.prototype as { isWellFormed?: unknown }).isWellFormed;
    try {
      expect(thrown(() => validateKey('a\uD800')).message).toContain('lone surrogate at index 1');
      expect(validateKey('😀')).toBe('😀');
    } finally {
      if (native) Object.defineProperty(String.prototype, 'isWellFormed', native);
    }
  });

  it('does not print a 1,025-character key whole', () => {
    expect(thrown(() => validateKey('y'.repeat(1025))).message).not.toContain('y'.repeat(61));
  });
});

describe('normalizeKeys', () => {
  it('keeps order and drops duplicates', () => {
    expect(normalizeKeys('a')).toEqual(['a']);
    expect(normalizeKeys(['b', 'a', 'b'])).toEqual(['b', 'a']);
  });

  it.each([
    [[], 'at least one key'],
    [['a', 7], 'got number (7)'],
    [['a', ''], 'must not be empty'],
    [['a', '}b'], 'must not start with "}"'],
    // eslint-disable-next-line no-sparse-arrays
    [['a', , 'b'], 'got undefined'],
    [42, 'got number (42)'],
    [new Set(['a']), 'must be a string'],
  ])('refuses %p', (keys, fragment) => {
    expect(thrown(() => normalizeKeys(keys)).message).toContain(fragment);
  });

  it('refuses a Promise or thenable with its own message', () => {
    const message = 'got a Promise: await it first (key functions must be synchronous)';
    expect(thrown(() => normalizeKeys(Promise.resolve('k'))).message).toContain(message);
    expect(thrown(() => normalizeKeys({ then: () => undefined })).message).toContain(message);
  });

  it('a refused Promise that rejects does not become an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      thrown(() => normalizeKeys(Promise.reject(new Error('from the key function'))));
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('isThenable', () => {
    expect(isThenable(Promise.resolve())).toBe(true);
    expect(isThenable({ then() {} })).toBe(true);
    expect(isThenable(Object.assign(() => 1, { then() {} }))).toBe(true);
    expect(isThenable({ then: 1 })).toBe(false);
    expect(isThenable(null)).toBe(false);
    expect(isThenable('then')).toBe(false);
  });
});

describe('validateToken', () => {
  const good = 'AbCdEfGhIjKlMnOp_-0123';

  it('accepts 22 characters of base64url', () => {
    expect(good).toHaveLength(22);
    expect(validateToken('restore()', good)).toBe(good);
  });

  it.each([
    ['', '"" (0 characters)'],
    ['short', '"short" (5 characters)'],
    [`${good}x`, '(23 characters)'],
    [`${good.slice(0, 21)}!`, '(22 characters)'],
    [`${good.slice(0, 21)}+`, '(22 characters)'],
    [`${good.slice(0, 21)}=`, '(22 characters)'],
    [`${good}\n`, '(23 characters)'],
    [42, 'got 42.'],
    [null, 'got null.'],
    [undefined, 'got undefined.'],
  ])('refuses %p', (token, fragment) => {
    const error = thrown(() => validateToken('restore()', token));
    expect(error.message).toContain('restore(): token must be the 22-character base64url token of a lock');
    expect(error.message).toContain(fragment);
  });

  it('never prints more than 60 characters of a long token', () => {
    const error = thrown(() => validateToken('restore()', 'z'.repeat(5000)));
    expect(error.message).not.toContain('z'.repeat(61));
    expect(error.message).toContain('(5000 characters)');
  });
});
