import { BadRequestException, Body, Controller, HttpCode, Post, UseInterceptors } from '@nestjs/common';
import { LockInterceptor } from 'nestjs-redis-lock';
import { sameAccountTransfer } from '../messages.js';
import { TransferDto } from './accounts.dto.js';
import { AccountsService, type AccountView } from './accounts.service.js';

/**
 * `POST /transfers`: applied synchronously. The lock is taken by `@WithLock` on
 * {@link AccountsService.transfer}; `LockInterceptor` turns its LockTimeoutError into 423.
 */
@Controller('transfers')
@UseInterceptors(LockInterceptor)
export class TransfersController {
  constructor(private readonly accounts: AccountsService) {}

  @Post()
  @HttpCode(200)
  transfer(@Body() body: TransferDto): Promise<{ from: AccountView; to: AccountView }> {
    if (body.from === body.to) throw new BadRequestException(sameAccountTransfer());
    return this.accounts.transfer(body.from, body.to, body.amount);
  }
}
