import { IsInt, IsOptional, IsString, Matches, Max, Min, NotEquals } from 'class-validator';
import { zeroAdjustment } from '../messages.js';

export const ACCOUNT_ID = /^[A-Za-z0-9_-]{1,64}$/;
export const ACCOUNT_ID_MESSAGE = '$property must be 1-64 letters, digits, "_" or "-"';
/** Largest amount accepted in one request, in cents (keeps sums far from 2^53). */
export const MAX_AMOUNT = 1_000_000_000;

/** Body of `POST /accounts`. */
export class CreateAccountDto {
  @IsOptional()
  @IsString()
  @Matches(ACCOUNT_ID, { message: ACCOUNT_ID_MESSAGE })
  id?: string;

  @IsInt()
  @Min(0)
  @Max(MAX_AMOUNT)
  initialBalance!: number;
}

/** Body of `POST /accounts/:id/adjust`: a credit (positive) or debit (negative) in cents. */
export class AdjustBalanceDto {
  @IsInt()
  @NotEquals(0, { message: zeroAdjustment() })
  @Min(-MAX_AMOUNT)
  @Max(MAX_AMOUNT)
  amount!: number;
}

/** Body of `POST /transfers`. */
export class TransferDto {
  @IsString()
  @Matches(ACCOUNT_ID, { message: ACCOUNT_ID_MESSAGE })
  from!: string;

  @IsString()
  @Matches(ACCOUNT_ID, { message: ACCOUNT_ID_MESSAGE })
  to!: string;

  @IsInt()
  @Min(1)
  @Max(MAX_AMOUNT)
  amount!: number;
}
