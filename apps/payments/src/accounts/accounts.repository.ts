import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { PAYMENTS_CONFIG, type PaymentsConfig } from '../config.js';
import { REDIS } from '../redis.module.js';

/** Outcome of {@link AccountsRepository.commitPayment}. */
export type CommitOutcome = 'applied' | 'duplicate' | 'fenced' | 'missing';

/** A balance to write, with the fencing token of the lock on that account (undefined: no lock). */
export interface BalanceWrite {
  id: string;
  balance: number;
  fencingToken?: number;
}

// A fencing token of -1 means "written without a lock": no check, nothing recorded.
const FENCE_CHECK = `
local function fenced(key, token)
  if token < 0 then return false end
  local last = tonumber(redis.call('HGET', key, 'fence') or '-1')
  return token < last
end
local function record(key, token)
  if token >= 0 then redis.call('HSET', key, 'fence', token) end
end
`;

// KEYS: account hash, applied-payments set. ARGV: payment id, new balance, fencing token (-1: none).
// One script, so "already applied?", "is the writer's token current?", the balance and the
// applied marker are decided and written together: a re-delivered job can never apply twice,
// and a holder whose lock expired cannot overwrite the work of the holder that followed it.
const COMMIT_PAYMENT = `${FENCE_CHECK}
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 'duplicate' end
local token = tonumber(ARGV[3])
if fenced(KEYS[1], token) then return 'fenced' end
record(KEYS[1], token)
redis.call('HSET', KEYS[1], 'balance', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 'applied'
`;

// KEYS: account hashes. ARGV: balance, token, balance, token, ... All or nothing.
const WRITE_BALANCES = `${FENCE_CHECK}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then return 'missing' end
  if fenced(key, tonumber(ARGV[2 * i])) then return 'fenced' end
end
for i, key in ipairs(KEYS) do
  record(key, tonumber(ARGV[2 * i]))
  redis.call('HSET', key, 'balance', ARGV[2 * i - 1])
end
return 'written'
`;

const CREATE_ACCOUNT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'balance', ARGV[1])
return 1
`;

/**
 * Accounts in Redis: a hash `<prefix>account:<id>` with the balance in integer cents (and the
 * last fencing token that wrote it), and a set `<prefix>account:<id>:applied` of applied payment
 * ids. Callers hold the account's lock around a read-modify-write and pass its fencing token,
 * so a holder whose lock expired (a long GC pause, a stalled worker) cannot overwrite newer work.
 */
@Injectable()
export class AccountsRepository {
  private readonly prefix: string;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(PAYMENTS_CONFIG) config: PaymentsConfig,
  ) {
    this.prefix = config.keyPrefix;
  }

  /** @returns false when the account already exists */
  async create(id: string, balance: number): Promise<boolean> {
    return (await this.redis.eval(CREATE_ACCOUNT, 1, this.accountKey(id), balance)) === 1;
  }

  /** @returns the balance in cents, or null for an unknown account */
  async getBalance(id: string): Promise<number | null> {
    const raw = await this.redis.hget(this.accountKey(id), 'balance');
    return raw === null ? null : Number(raw);
  }

  /**
   * Writes several balances atomically, all or none: none when an account is gone or when a
   * fencing token is older than the last one recorded for its account.
   */
  async writeBalances(writes: readonly BalanceWrite[]): Promise<'written' | 'fenced' | 'missing'> {
    const keys = writes.map((w) => this.accountKey(w.id));
    const args = writes.flatMap((w) => [w.balance, w.fencingToken ?? -1]);
    return (await this.redis.eval(WRITE_BALANCES, keys.length, ...keys, ...args)) as 'written' | 'fenced' | 'missing';
  }

  /** @returns whether the payment was already applied to the account */
  async isApplied(accountId: string, paymentId: string): Promise<boolean> {
    return (await this.redis.sismember(this.appliedKey(accountId), paymentId)) === 1;
  }

  /**
   * Sets the balance and marks the payment as applied, atomically, unless it was applied
   * already or `fencingToken` is older than the last token that wrote to this account.
   * @param fencingToken - the lock's fencing token, or undefined when running without a lock
   */
  async commitPayment(accountId: string, paymentId: string, balance: number, fencingToken?: number): Promise<CommitOutcome> {
    const keys = [this.accountKey(accountId), this.appliedKey(accountId)];
    return (await this.redis.eval(COMMIT_PAYMENT, keys.length, ...keys, paymentId, balance, fencingToken ?? -1)) as CommitOutcome;
  }

  private accountKey(id: string): string {
    return `${this.prefix}account:${id}`;
  }

  private appliedKey(id: string): string {
    return `${this.prefix}account:${id}:applied`;
  }
}
