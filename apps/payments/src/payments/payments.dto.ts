import { IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import { ACCOUNT_ID, ACCOUNT_ID_MESSAGE, MAX_AMOUNT } from '../accounts/accounts.dto.js';

/** An amount in cents credited to an account: what a payment and a provider's payment event both carry. */
export class AccountCreditDto {
  @IsString()
  @Matches(ACCOUNT_ID, { message: ACCOUNT_ID_MESSAGE })
  accountId!: string;

  @IsInt()
  @Min(1)
  @Max(MAX_AMOUNT)
  amount!: number;
}

/** Body of `POST /payments`: an incoming payment credited to an account, in cents. */
export class CreatePaymentDto extends AccountCreditDto {
  @IsOptional()
  @IsString()
  @MaxLength(200)
  reference?: string;
}

/** Data of a job on the `payments` queue. The job id is the payment id. */
export interface PaymentJobData {
  paymentId: string;
  accountId: string;
  amount: number;
  reference?: string;
}

/** Return value of a payment job. */
export interface PaymentJobResult {
  outcome: 'applied' | 'duplicate';
  /** Time from the job becoming active to the processor getting the lock, in ms. */
  lockWaitMs: number;
  /** Times this job went back to the queue because the account stayed locked. */
  requeues: number;
}

/** Body of `POST /webhooks/payments`: a payment-received event of the payment provider, delivered at least once. */
export class PaymentEventDto extends AccountCreditDto {
  /** The provider's event id: the same for every delivery of one event. */
  @IsString()
  @Matches(/^[\x21-\x7E]{1,200}$/, { message: '$property must be 1-200 printable ASCII characters without spaces' })
  eventId!: string;
}
