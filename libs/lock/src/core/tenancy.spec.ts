import { LockArgumentError } from './errors.js';
import { KeyLayout, slotOf } from './store/redis/key-layout.js';
import { MAX_TENANT_LENGTH, Tenancy, currentTenant, encodeKeyPart, lockKey, validateTenant, withTenant } from './tenancy.js';

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

/** Tenant ids chosen to collide under a naive `${tenant}:${key}` or `${tenant}/${key}` join. */
const TENANTS = [
  'a',
  'a:b',
  'a/b',
  'a}b',
  'a{b',
  '{a}',
  '}',
  '%',
  '%2F',
  'a%2Fb',
  '@',
  '@a',
  'a@',
  ' ',
  'ü',
  'u\u0308', // u + combining diaeresis: another string than 'ü'
  '😀',
  '*',
  'a*',
  '\\',
  'tenant-42',
  'A',
];

/** Keys that, joined naively, would recreate another (tenant, key) pair of the table. */
const KEYS = ['b', 'c', 'b:c', 'b/c', ':c', '/c', 'c}', 'b}c', 'x{y}z', '%2Fc', '@a/b', 'ü', '😀', ' ', '*'];

describe('tenant key encoding', () => {
  for (const slot of [false, true]) {
    it(`gives every (tenant, key) pair its own key and Redis names${slot ? ' (slot per tenant)' : ''}`, () => {
      const tenancy = new Tenancy({ slot });
      const layout = new KeyLayout('lock:');
      const owner = new Map<string, string>();
      const names = new Map<string, string>();
      const pairs: [string | undefined, string][] = [];
      for (const tenant of [undefined, ...TENANTS]) for (const key of KEYS) pairs.push([tenant, key]);
      for (const [tenant, key] of pairs) {
        // Tenant-less keys starting with "@" are refused (below), so they take no part here.
        if (tenant === undefined && key.startsWith('@')) continue;
        const [scoped] = tenancy.keys([key], tenant);
        const pair = JSON.stringify([tenant ?? null, key]);
        expect(owner.get(scoped!)).toBeUndefined();
        owner.set(scoped!, pair);
        for (const name of [layout.lock(scoped!), layout.queue(scoped!), layout.channel(scoped!), layout.record(scoped!)]) {
          expect(names.get(name)).toBeUndefined();
          names.set(name, pair);
        }
      }
      // A sanity check that the table is not trivially small.
      expect(owner.size).toBeGreaterThan(300);
    });
  }

  it('names the same pair the same way every time, and differently in the two modes', () => {
    const spread = new Tenancy({});
    const slot = new Tenancy({ slot: true });
    expect(spread.keys(['k'], 'acme')).toEqual(['@acme/k']);
    expect(spread.keys(['k'], 'acme')).toEqual(spread.keys(['k'], 'acme'));
    expect(slot.keys(['k'], 'acme')).toEqual(['@acme}k']);
    expect(spread.keys(['k'], 'a:b/c}%')).toEqual(['@a%3Ab%2Fc%7D%25/k']);
  });

  it('leaves keys without a tenant as they are, and refuses one starting with "@"', () => {
    const tenancy = new Tenancy({});
    expect(tenancy.keys(['k', 'a/b'], undefined)).toEqual(['k', 'a/b']);
    const error = thrown(() => tenancy.keys(['k', '@acme/k'], undefined));
    expect(error.message).toContain('"@acme/k"');
    expect(error.message).toContain('tenant');
  });

  it('spreads one tenant over the hash slots by default, and keeps it in one slot with slot: true', () => {
    const keys = Array.from({ length: 50 }, (_, i) => `order:${i}`);
    const spread = new Set(new Tenancy({}).keys(keys, 'acme').map(slotOf));
    const together = new Set(new Tenancy({ slot: true }).keys(keys, 'acme').map(slotOf));
    expect(spread.size).toBeGreaterThan(40);
    expect(together.size).toBe(1);
    expect([...together][0]).toBe(slotOf('@acme'));
    // Each tenant has its own tag: two tenants may share a slot by chance, never a tag.
    expect(new Tenancy({ slot: true }).keys(['k'], 'globex')[0]!.split('}')[0]).toBe('@globex');
  });

  it('encodes a tenant or key part into ASCII without separators, braces, % or glob characters', () => {
    for (const text of [...TENANTS, ...KEYS, "?[]^!'()~._-"]) {
      const encoded = encodeKeyPart(text);
      expect(encoded).toMatch(/^[A-Za-z0-9_.~%-]*$/);
      expect(decodeURIComponent(encoded)).toBe(text);
    }
  });
});

describe('tenant resolution', () => {
  it('takes the call’s tenant over the resolver’s, null as none, and the resolver’s otherwise', () => {
    let resolved: string | undefined = 'from-resolver';
    const tenancy = new Tenancy({ resolve: () => resolved });
    expect(tenancy.tenantOf('acquire()', undefined)).toBe('from-resolver');
    expect(tenancy.tenantOf('acquire()', 'given')).toBe('given');
    expect(tenancy.tenantOf('acquire()', null)).toBeUndefined();
    resolved = undefined;
    expect(tenancy.tenantOf('acquire()', undefined)).toBeUndefined();
  });

  it('refuses a missing tenant when required, naming the call', () => {
    const tenancy = new Tenancy({ resolve: () => undefined, required: true });
    expect(thrown(() => tenancy.tenantOf('using()', undefined)).message).toContain('using() has no tenant');
    expect(thrown(() => tenancy.tenantOf('using()', null)).message).toContain('required: true');
    expect(tenancy.tenantOf('using()', 'acme')).toBe('acme');
  });

  it.each<[string, unknown, string]>([
    ['empty', '', '""'],
    ['a number', 42, 'number 42'],
    ['an object', { id: 'a' }, 'object {"id":"a"}'],
    ['too long', 'x'.repeat(MAX_TENANT_LENGTH + 1), `at most ${MAX_TENANT_LENGTH}`],
    ['a lone surrogate', 'a\uD800', 'well-formed'],
    ['a Promise', Promise.resolve('acme'), 'synchronous'],
  ])('refuses a tenant that is %s, naming where it came from', (_, value, fragment) => {
    const fromCall = thrown(() => new Tenancy({}).tenantOf('acquire()', value));
    expect(fromCall.message).toContain('acquire() option tenant');
    expect(fromCall.message).toContain(fragment);
    const fromResolver = thrown(() => new Tenancy({ resolve: () => value as string }).tenantOf('acquire()', undefined));
    expect(fromResolver.message).toContain('tenant resolver');
  });

  it('lets an error of the resolver itself through unchanged', () => {
    const boom = new Error('no request context');
    const tenancy = new Tenancy({
      resolve: () => {
        throw boom;
      },
    });
    expect(() => tenancy.tenantOf('acquire()', undefined)).toThrow(boom);
  });

  it('accepts the longest tenant id and unicode', () => {
    expect(validateTenant('x', 'x'.repeat(MAX_TENANT_LENGTH))).toHaveLength(MAX_TENANT_LENGTH);
    expect(validateTenant('x', 'Zürich 😀')).toBe('Zürich 😀');
  });

  it('checks the tenant option: a function, or { resolve, required, slot }', () => {
    const fail = (option: string, value: unknown, expected: string): never => {
      throw new LockArgumentError(`${option} ${expected}: ${String(value)}`);
    };
    const resolve = () => 'a';
    expect(Tenancy.check(resolve, fail)).toEqual({ resolve });
    expect(Tenancy.check({ required: true, slot: true }, fail)).toEqual({ resolve: undefined, required: true, slot: true });
    expect(thrown(() => Tenancy.check('acme', fail)).message).toContain('tenant must be a resolver');
    expect(thrown(() => Tenancy.check({ requried: true }, fail)).message).toContain('tenant.requried');
    expect(thrown(() => Tenancy.check({ slot: 'yes' }, fail)).message).toContain('tenant.slot');
    expect(thrown(() => Tenancy.check({ resolve: 'acme' }, fail)).message).toContain('tenant.resolve');
  });
});

describe('withTenant() / currentTenant()', () => {
  it('sets the tenant for the whole async call chain, innermost first', async () => {
    expect(currentTenant()).toBeUndefined();
    const seen = await withTenant('outer', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      const inner = withTenant('inner', () => currentTenant());
      return [currentTenant(), inner];
    });
    expect(seen).toEqual(['outer', 'inner']);
    expect(currentTenant()).toBeUndefined();
  });

  it('refuses an invalid tenant before running anything', () => {
    let ran = false;
    expect(thrown(() => withTenant('', () => (ran = true))).message).toContain('withTenant()');
    expect(ran).toBe(false);
  });
});

describe('lockKey()', () => {
  const LISTS: (string | number)[][] = [
    ['a'],
    ['a', ''],
    ['a', '', ''],
    ['', 'a'],
    ['a', 'b'],
    ['a:b'],
    ['a', 'b:c'],
    ['a:b', 'c'],
    ['a', 'b', 'c'],
    ['a%3Ab'],
    ['a/b'],
    ['a', '/b'],
    ['@a'],
    ['}a'],
    ['a}', 'b'],
    ['ü'],
    ['u\u0308'],
    ['n', 1],
    ['n', 1.5],
    ['n', -1],
    ['*'],
  ];

  it('never gives two different part lists the same key', () => {
    const seen = new Map<string, string>();
    for (const parts of LISTS) {
      const key = lockKey(...parts);
      expect(seen.get(key)).toBeUndefined();
      seen.set(key, JSON.stringify(parts));
    }
  });

  it('keeps plain parts readable and encodes the rest', () => {
    expect(lockKey('account', 42, 'balance')).toBe('account:42:balance');
    expect(lockKey('order', 'a/b')).toBe('order:a%2Fb');
    expect(lockKey('n', 1)).toBe(lockKey('n', '1'));
  });

  it('never starts a key with "}" or "@" (both would be refused as a key)', () => {
    expect(lockKey('}x')).toBe('%7Dx');
    expect(lockKey('@x')).toBe('%40x');
  });

  it.each<[string, unknown[], string]>([
    ['no part', [], 'at least one part'],
    ['only an empty part', [''], 'at least one part'],
    ['an object part', ['a', { id: 1 }], 'part 1'],
    ['NaN', ['a', Number.NaN], 'part 1'],
    ['undefined', [undefined], 'part 0'],
    ['a lone surrogate', ['\uDC00'], 'part 0'],
  ])('refuses %s', (_, parts, fragment) => {
    expect(thrown(() => lockKey(...(parts as string[]))).message).toContain(fragment);
  });

  it('refuses a key over 1024 characters', () => {
    expect(thrown(() => lockKey('/'.repeat(400))).message).toContain('1200 characters');
  });
});
