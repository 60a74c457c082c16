/** Messages between the benchmark's parent and its workers: JSON objects with a `type`. */
export interface Message {
  type: string;
  [field: string]: unknown;
}

/**
 * One end of the IPC channel, for both sides: a message is handed to the oldest `take()` waiting for
 * its type, or kept until one asks for it.
 */
export class Mailbox {
  private readonly inbox: Message[] = [];
  private readonly waiting: { type: string; resolve: (m: Message) => void }[] = [];

  deliver(message: Message): void {
    const i = this.waiting.findIndex((w) => w.type === message.type);
    if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve(message);
    else this.inbox.push(message);
  }

  /**
   * The next message of `type`. `buffered` tells whether it had already arrived; `cancel()` withdraws
   * a request still waiting (used by timeouts).
   */
  take<T extends { type: string }>(type: string): { message: Promise<T>; buffered: boolean; cancel(): void } {
    const i = this.inbox.findIndex((m) => m.type === type);
    if (i >= 0) return { message: Promise.resolve(this.inbox.splice(i, 1)[0] as T), buffered: true, cancel: () => undefined };
    let entry!: { type: string; resolve: (m: Message) => void };
    const message = new Promise<T>((resolve) => {
      entry = { type, resolve: (m) => resolve(m as T) };
      this.waiting.push(entry);
    });
    return {
      message,
      buffered: false,
      cancel: () => {
        const j = this.waiting.indexOf(entry);
        if (j >= 0) this.waiting.splice(j, 1);
      },
    };
  }
}
