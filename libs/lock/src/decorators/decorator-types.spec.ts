/**
 * The decorators' types, checked by `npm run typecheck` (tsc includes this file): every
 * `// @ts-expect-error` below must be a real compile error, or tsc fails on the unused directive.
 * At run time the same declarations apply (plain JavaScript gets no compile-time check), and the
 * options-object forms are checked like the positional ones.
 */
import 'reflect-metadata';
import { LockArgumentError } from '../core/errors.js';
import { WITH_LOCK_METADATA } from '../lock.constants.js';
import { RouteLock } from './route-lock.decorator.js';
import { WithLock } from './with-lock.decorator.js';

interface Job {
  data: { accountId: string };
}

describe('decorator types (compile time)', () => {
  it('accepts key functions the method’s arguments satisfy, in both forms', () => {
    class Fine {
      prefix = 'p';

      @WithLock('fixed')
      async fixedKey(): Promise<void> {}

      @WithLock((id: string) => `account:${id}`, 1000, 0)
      async fewerParameters(id: string, _amount: number, _note?: string): Promise<string> {
        return id;
      }

      @WithLock(function (this: Fine, id: string) {
        return `${this.prefix}:${id}`;
      })
      async withThis(id: string): Promise<string> {
        return id;
      }

      @WithLock({ key: (from: string, to: string) => [`account:${from}`, `account:${to}`], ttl: 1000, wait: 0, onTimeout: 'throw' })
      async objectForm(from: string, to: string, _amount: number): Promise<void> {
        void [from, to];
      }

      @WithLock({
        key: (job: Job) => `account:${job.data.accountId}`,
        onTimeout: (_error, job: Job, _token?: string) => job.data.accountId,
      })
      async process(job: Job, _token?: string): Promise<string> {
        return job.data.accountId;
      }

      @RouteLock({ key: (req: { params: { id: string } }) => `account:${req.params.id}`, ttl: 1000, wait: 0 })
      async route(_id: string): Promise<void> {}

      @RouteLock('fixed', 1000, 0)
      async routePositional(): Promise<void> {}
    }
    expect(typeof Fine.prototype.objectForm).toBe('function');
  });

  it('refuses key functions, onTimeout functions and methods that contradict each other', () => {
    class Wrong {
      // @ts-expect-error the key function takes a number, the method gets a string
      @WithLock((id: number) => `account:${id}`)
      async parameterType(id: string): Promise<string> {
        return id;
      }

      // @ts-expect-error the key function reads a second argument the method does not have
      @WithLock((a: string, b: string) => `${a}:${b}`)
      async tooManyParameters(a: string): Promise<string> {
        return a;
      }

      // @ts-expect-error the options-object form is checked the same way
      @WithLock({ key: (id: number) => `account:${id}`, ttl: 1000 })
      async objectFormParameterType(id: string): Promise<string> {
        return id;
      }

      // @ts-expect-error onTimeout's arguments after the error are the method's
      @WithLock('k', 1000, 0, { onTimeout: (_error, id: number) => id })
      async onTimeoutParameterType(id: string): Promise<string> {
        return id;
      }

      // @ts-expect-error a synchronous method: the wrapper would return a Promise its type does not say
      @WithLock('k')
      synchronous(): string {
        return 'x';
      }

      // @ts-expect-error the same for @RouteLock
      @RouteLock('k')
      synchronousRoute(): string {
        return 'x';
      }
    }
    // Refused at run time as well (see below); here, that they do not compile.
    // @ts-expect-error an unknown name in the options object (tll for ttl)
    expect(() => WithLock({ key: 'k', tll: 5 })).toThrow(LockArgumentError);
    // @ts-expect-error options such as onTimeout belong to @WithLock
    expect(() => RouteLock({ key: 'k', onTimeout: 'throw' })).toThrow(LockArgumentError);
    // @ts-expect-error no positional arguments after an options object
    expect(() => WithLock({ key: 'k' }, 1000)).toThrow(LockArgumentError);
    // @ts-expect-error a key is required
    expect(() => WithLock({ ttl: 1000 })).toThrow(LockArgumentError);
    expect(typeof Wrong).toBe('function');
  });
});

describe('options-object forms (run time)', () => {
  it('record the same definition as the positional form', () => {
    const key = (id: string) => `account:${id}`;
    class Both {
      @WithLock(key, 1000, 5, { onTimeout: 'requeue', requeueDelay: 10 })
      async positional(_id: string): Promise<void> {}

      @WithLock({ key, ttl: 1000, wait: 5, onTimeout: 'requeue', requeueDelay: 10 })
      async object(_id: string): Promise<void> {}
    }
    expect(Reflect.getMetadata(WITH_LOCK_METADATA, Both.prototype.object)).toEqual(
      Reflect.getMetadata(WITH_LOCK_METADATA, Both.prototype.positional),
    );
  });

  it.each([
    ['@WithLock: unknown name', () => WithLock({ key: 'k', tll: 5 } as never), 'unknown option "tll"; did you mean "ttl"?'],
    ['@WithLock: ttl 0', () => WithLock({ key: 'k', ttl: 0 }), '@WithLock(): ttl must be'],
    ['@WithLock: wait -1', () => WithLock({ key: 'k', wait: -1 }), '@WithLock(): wait must be'],
    ["@WithLock: onTimeout 'retry'", () => WithLock({ key: 'k', onTimeout: 'retry' as never }), 'onTimeout must be'],
    ['@WithLock: no key', () => WithLock({} as never), '@WithLock() needs a key string or a key function'],
    ['@WithLock: key }x', () => WithLock({ key: '}x' }), '"}x"'],
    [
      '@WithLock: a second argument',
      () => (WithLock as (...a: unknown[]) => unknown)({ key: 'k' }, 1000),
      'is not taken after an options object',
    ],
    ['@RouteLock: unknown name', () => RouteLock({ key: 'k', onTimeout: 'throw' } as never), 'unknown option "onTimeout"'],
    ['@RouteLock: ttl 0', () => RouteLock({ key: 'k', ttl: 0 }), '@RouteLock(): ttl must be'],
    [
      '@RouteLock: a second argument',
      () => (RouteLock as (...a: unknown[]) => unknown)({ key: 'k' }, 1000),
      'is not taken after an options object',
    ],
  ])('%s is refused at declaration', (_name, declare, fragment) => {
    expect(declare).toThrow(LockArgumentError);
    expect(declare).toThrow(fragment);
  });
});
