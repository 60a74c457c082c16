import { Body, Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { RouteLock } from 'nestjs-redis-lock';
import { ACCOUNT_LOCK } from '../config.js';
import { AdjustBalanceDto, CreateAccountDto } from './accounts.dto.js';
import { AccountsService, type AccountView } from './accounts.service.js';

/** `/accounts`: open, read and adjust accounts. */
@Controller('accounts')
export class AccountsController {
  constructor(private readonly accounts: AccountsService) {}

  @Post()
  open(@Body() body: CreateAccountDto): Promise<AccountView> {
    return this.accounts.open(body.id, body.initialBalance);
  }

  @Get(':id')
  get(@Param('id') id: string): Promise<AccountView> {
    return this.accounts.get(id);
  }

  /**
   * The lock is taken on a key from the request, after validation, around the handler; when another
   * holder keeps the account longer than the wait, the client gets 423 Locked with Retry-After.
   */
  @Post(':id/adjust')
  @HttpCode(200)
  @RouteLock((req: { params: Record<string, string> }) => `account:${req.params.id}`, ACCOUNT_LOCK.ttl, ACCOUNT_LOCK.wait)
  adjust(@Param('id') id: string, @Body() body: AdjustBalanceDto): Promise<AccountView> {
    return this.accounts.adjust(id, body.amount);
  }
}
