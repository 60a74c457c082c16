import { ConflictException, Inject, Injectable, NotFoundException, UnprocessableEntityException } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentLock, WithLock } from 'nestjs-redis-lock';
import { ACCOUNT_LOCK, PAYMENTS_CONFIG, type PaymentsConfig } from '../config.js';
import { accountExists, accountNotFound, fencedWrite, insufficientFunds } from '../messages.js';
import { AccountsRepository, type BalanceWrite } from './accounts.repository.js';

/** An account as the API shows it. */
export interface AccountView {
  id: string;
  /** Integer cents. */
  balance: number;
}

/** Account use cases: open, read, adjust, transfer. */
@Injectable()
export class AccountsService {
  constructor(
    private readonly accounts: AccountsRepository,
    @Inject(PAYMENTS_CONFIG) private readonly config: PaymentsConfig,
  ) {}

  /**
   * Opens an account.
   * @throws ConflictException when the id is taken
   */
  async open(id: string | undefined, initialBalance: number): Promise<AccountView> {
    const accountId = id ?? randomUUID();
    if (!(await this.accounts.create(accountId, initialBalance))) throw new ConflictException(accountExists(accountId));
    return { id: accountId, balance: initialBalance };
  }

  /** @throws NotFoundException for an unknown account */
  async get(id: string): Promise<AccountView> {
    return { id, balance: await this.balanceOf(id) };
  }

  /**
   * Adds `amount` (may be negative) to a balance. Not atomic on its own: the caller holds the
   * account's lock (the route uses `@RouteLock`), whose fencing token guards the write.
   * @throws NotFoundException, UnprocessableEntityException when the balance would go negative,
   *   ConflictException when the lock was lost before the write (nothing is written)
   */
  async adjust(id: string, amount: number): Promise<AccountView> {
    const balance = await this.balanceOf(id);
    await sleep(this.config.applyDelayMs);
    if (balance + amount < 0) throw new UnprocessableEntityException(insufficientFunds(id, balance, -amount));
    await this.write([{ id, balance: balance + amount, fencingToken: currentLock()?.fencingToken }]);
    return { id, balance: balance + amount };
  }

  /**
   * Moves `amount` cents between two accounts under a lock on both. The library takes both
   * keys all-or-nothing, so concurrent A->B and B->A transfers cannot deadlock.
   * @throws NotFoundException, UnprocessableEntityException on insufficient funds,
   *   LockTimeoutError when the two accounts stay busy longer than the wait (the controller maps it to 423)
   */
  @WithLock((from: string, to: string) => [`account:${from}`, `account:${to}`], ACCOUNT_LOCK.ttl, ACCOUNT_LOCK.wait)
  async transfer(from: string, to: string, amount: number): Promise<{ from: AccountView; to: AccountView }> {
    const [fromBalance, toBalance] = [await this.balanceOf(from), await this.balanceOf(to)];
    if (fromBalance < amount) throw new UnprocessableEntityException(insufficientFunds(from, fromBalance, amount));
    await sleep(this.config.applyDelayMs);
    const [fromToken, toToken] = currentLock()!.fencingTokens;
    await this.write([
      { id: from, balance: fromBalance - amount, fencingToken: fromToken },
      { id: to, balance: toBalance + amount, fencingToken: toToken },
    ]);
    return { from: { id: from, balance: fromBalance - amount }, to: { id: to, balance: toBalance + amount } };
  }

  private async write(writes: BalanceWrite[]): Promise<void> {
    const outcome = await this.accounts.writeBalances(writes);
    if (outcome === 'missing') throw new NotFoundException(accountNotFound(writes.map((w) => w.id).join('", "')));
    if (outcome === 'fenced') throw new ConflictException(fencedWrite(writes.map((w) => w.id).join('", "')));
  }

  private async balanceOf(id: string): Promise<number> {
    const balance = await this.accounts.getBalance(id);
    if (balance === null) throw new NotFoundException(accountNotFound(id));
    return balance;
  }
}
