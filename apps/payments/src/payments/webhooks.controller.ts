import { Body, ConflictException, Controller, HttpCode, Post, UnprocessableEntityException } from '@nestjs/common';
import { IdempotencyInFlightError, IdempotencyKeyReuseError, IdempotencyService } from 'nestjs-redis-lock';
import { HTTP_IDEMPOTENCY } from '../config.js';
import { webhookEventInFlight, webhookEventReused } from '../messages.js';
import { PaymentEventDto } from './payments.dto.js';
import { PaymentsService, type QueuedPayment } from './payments.service.js';

/** What the webhook answers, for the first delivery of an event and every later one alike. */
export type WebhookAnswer = QueuedPayment & { eventId: string };

/**
 * `POST /webhooks/payments`: the payment provider's "payment received" events. Providers deliver at
 * least once (a lost acknowledgement, a timeout on their side, a replay from their dashboard), so
 * every event id is applied once: the first delivery queues a payment, a duplicate (also one that
 * arrives while the first is being handled: it waits for it) is answered with the first answer,
 * the same `paymentId`, and queues nothing.
 */
@Controller('webhooks')
export class WebhooksController {
  constructor(
    private readonly idempotency: IdempotencyService,
    private readonly payments: PaymentsService,
  ) {}

  /**
   * Queues the event's payment once per event id.
   * @throws UnprocessableEntityException (422) for an event id delivered before with another body,
   *   ConflictException (409) when the first delivery is still running after the wait,
   *   NotFoundException for an unknown account (nothing stored: a redelivery runs again)
   */
  @Post('payments')
  @HttpCode(200)
  async receive(@Body() event: PaymentEventDto): Promise<WebhookAnswer> {
    const { eventId, accountId, amount } = event;
    try {
      return await this.idempotency.run(
        `webhook:${eventId}`,
        { fingerprint: { eventId, accountId, amount }, ttl: HTTP_IDEMPOTENCY.ttl, label: 'WebhooksController.receive' },
        async () => ({ ...(await this.payments.submit(accountId, amount, `webhook:${eventId}`)), eventId }),
      );
    } catch (error) {
      if (error instanceof IdempotencyKeyReuseError) throw new UnprocessableEntityException(webhookEventReused(eventId), { cause: error });
      if (error instanceof IdempotencyInFlightError) throw new ConflictException(webhookEventInFlight(eventId), { cause: error });
      throw error;
    }
  }
}
