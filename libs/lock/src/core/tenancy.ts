import { AsyncLocalStorage } from 'node:async_hooks';
import { LockArgumentError } from './errors.js';
import { MAX_KEY_LENGTH, messages } from './messages.js';
import { isThenable } from './validate.js';

/** Longest tenant id, in UTF-16 units. */
export const MAX_TENANT_LENGTH = 256;

/**
 * The first character of every tenant-namespaced key (`@<tenant>/<key>`). With tenancy on, a key used
 * without a tenant may not start with it, so no tenant-less call can reach a tenant's key.
 * @internal
 */
export const TENANT_MARK = '@';

/**
 * Returns the tenant of the current call: a tenant id, or `undefined`/`null` when there is none. Called
 * synchronously at every lock and idempotency call that does not pass its own `tenant`, e.g.
 * `() => cls.get('tenantId')` (nestjs-cls), `currentTenant` (see {@link withTenant}), or your own
 * AsyncLocalStorage.
 */
export type TenantResolver = () => string | null | undefined;

/** The `tenant` option of LockModule (and `LockClient`), when more than a resolver is needed. */
export interface TenancyOptions {
  /** The tenant of a call that passes none. Default: none (each call passes its own `tenant`). */
  resolve?: TenantResolver;
  /**
   * Refuse (LockArgumentError, before Redis is touched) every call that ends up without a tenant.
   * Default false: such a call locks the plain, un-namespaced key (a key shared by every tenant).
   */
  required?: boolean;
  /**
   * Put all keys of one tenant in one Redis Cluster hash slot (the hash tag is the tenant part), so a
   * multi-key lock of one tenant is one slot. Default false: a tenant's keys spread over the slots like
   * any keys. Changing it changes every tenant key's Redis name.
   */
  slot?: boolean;
}

const TENANCY_OPTIONS = ['resolve', 'required', 'slot'];

/**
 * Percent-encodes `text` (its UTF-8 bytes) so that only `A-Z a-z 0-9 - _ . ~` are left as they are:
 * no `:`, `/`, `@`, braces, `%` or glob characters (`* ? [ ] \`). Injective; its output is ASCII.
 * @internal
 */
export function encodeKeyPart(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** A lone surrogate makes encodeURIComponent throw: the text is not well-formed UTF-16. */
function encodable(text: string): boolean {
  try {
    encodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks a tenant id: a non-empty, well-formed string of at most {@link MAX_TENANT_LENGTH} characters.
 * @param where the call or option it came from, for the message.
 * @throws LockArgumentError naming `where` and the value.
 * @internal
 */
export function validateTenant(where: string, tenant: unknown): string {
  if (typeof tenant === 'string' && tenant.length > 0 && tenant.length <= MAX_TENANT_LENGTH && encodable(tenant)) return tenant;
  if (isThenable(tenant) && tenant instanceof Promise) tenant.catch(() => undefined);
  throw new LockArgumentError(messages.tenantInvalid(where, tenant, MAX_TENANT_LENGTH));
}

/**
 * Builds a lock or idempotency key from parts, so that no part can pose as another: each part is
 * percent-encoded (its `:` too) and the parts are joined with `:`. Two different part lists never give
 * the same key (`lockKey('a:b', 'c') !== lockKey('a', 'b:c')`, `lockKey('a', '') !== lockKey('a')`),
 * whatever user input they hold. A number part is its decimal text (`lockKey('n', 1) === lockKey('n', '1')`).
 * @param parts strings (well-formed; empty allowed) and finite numbers; at least one, and not all empty.
 * @returns the key, e.g. `account:42:balance`, `order:a%2Fb` for `('order', 'a/b')`.
 * @throws LockArgumentError naming the bad part, or when the key would be empty or over 1024 characters.
 * @example
 * ```ts
 * await locks.using(lockKey('account', dto.accountId, 'balance'), {}, () => this.adjust(dto));
 * ```
 */
export function lockKey(...parts: (string | number)[]): string {
  if (parts.length === 0) throw new LockArgumentError(messages.lockKeyEmpty());
  const encoded = parts.map((part, i) => {
    if (typeof part === 'number' && Number.isFinite(part)) return String(part);
    if (typeof part !== 'string' || !encodable(part)) throw new LockArgumentError(messages.lockKeyPart(i, part));
    return encodeKeyPart(part);
  });
  const key = encoded.join(':');
  if (key.length === 0) throw new LockArgumentError(messages.lockKeyEmpty());
  if (key.length > MAX_KEY_LENGTH) throw new LockArgumentError(messages.keyTooLongShown(key), [key.slice(0, 64)]);
  return key;
}

const tenantStorage = new AsyncLocalStorage<string>();

/**
 * Runs `fn` with `tenant` as the current tenant of its whole async call chain, for apps without a CLS
 * library: give LockModule `tenant: currentTenant`, and wrap each request (a middleware) or job in
 * `withTenant(...)`.
 * @returns what `fn` returns.
 * @throws LockArgumentError when `tenant` is not a valid tenant id (non-empty, at most 256 characters).
 * @example
 * ```ts
 * app.use((req, _res, next) => withTenant(req.get('x-tenant') ?? 'public', next));
 * // LockModule.forRoot({ redis, tenant: currentTenant })
 * ```
 */
export function withTenant<T>(tenant: string, fn: () => T): T {
  validateTenant('withTenant(): tenant', tenant);
  return tenantStorage.run(tenant, fn);
}

/**
 * The tenant set by the innermost {@link withTenant} of the current async call chain, or undefined. A
 * {@link TenantResolver} for LockModule's `tenant` option.
 */
export function currentTenant(): string | undefined {
  return tenantStorage.getStore();
}

/**
 * Tenancy of one engine: which tenant a call has, and the keys it locks under it.
 *
 * A tenant's key is `@<encoded tenant>/<key>` (or `@<encoded tenant>}<key>` with `slot`, so that the
 * Redis name `<prefix>{@<tenant>}<key>}` has the tenant part as its hash tag). The encoded tenant holds
 * neither `/` nor `}`, so the first of them ends it: the pair (tenant, key) can be read back from the
 * namespaced key, and two different pairs never share one. A key without a tenant is left as it is and
 * may not start with `@`.
 * @internal
 */
export class Tenancy {
  private readonly resolver?: TenantResolver;
  private readonly required: boolean;
  private readonly separator: string;
  /** Heads of recent tenants (`@<encoded>/`), so the encoding runs once per tenant, not per call. */
  private readonly heads = new Map<string, string>();

  constructor(options: TenancyOptions) {
    this.resolver = options.resolve;
    this.required = options.required ?? false;
    this.separator = options.slot ? '}' : '/';
  }

  /**
   * The `tenant` option of LockModule or LockClient, checked: a resolver, or {@link TenancyOptions}.
   * @param fail reports a bad value (option name, value, what it must be); it throws.
   */
  static check(value: unknown, fail: (option: string, value: unknown, expected: string) => never): TenancyOptions {
    if (typeof value === 'function') return { resolve: value as TenantResolver };
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return fail('tenant', value, 'must be a resolver function () => string | undefined, or { resolve?, required?, slot? }');
    }
    const given = value as Record<string, unknown>;
    for (const name of Object.keys(given)) {
      if (!TENANCY_OPTIONS.includes(name)) fail(`tenant.${name}`, given[name], 'is not a tenant option (resolve, required, slot)');
    }
    if (given.resolve !== undefined && typeof given.resolve !== 'function') fail('tenant.resolve', given.resolve, 'must be a function');
    for (const name of ['required', 'slot'] as const) {
      if (given[name] !== undefined && typeof given[name] !== 'boolean') fail(`tenant.${name}`, given[name], 'must be true or false');
    }
    return { resolve: given.resolve as TenantResolver | undefined, required: given.required as boolean, slot: given.slot as boolean };
  }

  /**
   * The tenant of a call: `given` (the call's own `tenant`: a tenant id, or null for none), else what the
   * resolver returns. undefined: no tenant.
   * @throws LockArgumentError for an invalid tenant id (naming where it came from), a Promise from the
   *   resolver, or no tenant when one is required. What the resolver itself throws passes unchanged.
   */
  tenantOf(where: string, given: unknown): string | undefined {
    let tenant = given;
    let source = `${where} option tenant`;
    if (given === undefined && this.resolver) {
      tenant = this.resolver();
      source = 'What the tenant resolver (LockModule option tenant) returned';
    }
    if (tenant === undefined || tenant === null) {
      if (this.required) throw new LockArgumentError(messages.tenantRequired(where));
      return undefined;
    }
    return validateTenant(source, tenant);
  }

  /**
   * The keys a call locks: namespaced under `tenant`, or, without one, as given (refused when one starts
   * with `@`, the mark of a tenant's key).
   * @throws LockArgumentError for a tenant-less key starting with `@`.
   */
  keys(keys: string[], tenant: string | undefined): string[] {
    if (tenant === undefined) {
      for (const key of keys) if (key.startsWith(TENANT_MARK)) throw new LockArgumentError(messages.keyTenantMark(key), [key]);
      return keys;
    }
    let head = this.heads.get(tenant);
    if (head === undefined) {
      head = TENANT_MARK + encodeKeyPart(tenant) + this.separator;
      if (this.heads.size >= 1000) this.heads.clear();
      this.heads.set(tenant, head);
    }
    return keys.map((key) => head + key);
  }
}
