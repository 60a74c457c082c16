/**
 * The Redis key layout: the one place that names every key, channel, hash tag and fencing counter
 * the Redis stores use. Every name that belongs to one lock key shares its hash tag `{<key>}`, so one
 * script may touch them all on Redis Cluster:
 *
 *   <prefix>{<key>}        the lock: "<token>:<fencing token>[:<previous token>][*]" with a PX ttl
 *   <prefix>{<key>}:q      the waiters' FIFO queue (sorted set; gone when empty)
 *   <prefix>{<key>}:c      pub/sub channel: grants and releases
 *   <prefix>{<key>}:r      an idempotency record (the stored result of the call the lock <key> guards)
 *   <prefix>{<tag>}:f      the fencing counter of the key's hash slot: one per slot (at most 16,384
 *                          per prefix, whatever the number of keys), where <tag> is a short string
 *                          that hashes to that same slot, so the scripts reach it on Cluster too.
 *
 * Since the tag is the text between the first `{` and the next `}`, and every lock name starts with
 * `<prefix>{<key>`, they all hash alike whatever the key contains (the prefix has no braces).
 * @internal
 */
export class KeyLayout {
  constructor(readonly prefix: string) {}

  lock(key: string): string {
    return `${this.prefix}{${key}}`;
  }

  queue(key: string): string {
    return `${this.prefix}{${key}}:q`;
  }

  channel(key: string): string {
    return `${this.prefix}{${key}}:c`;
  }

  record(key: string): string {
    return `${this.prefix}{${key}}:r`;
  }

  /** The fencing counter of `key`'s slot. */
  fence(key: string): string {
    return this.fenceOfSlot(slotOf(key));
  }

  /** The fencing counter of a hash slot. */
  fenceOfSlot(slot: number): string {
    return `${this.prefix}{${slotTag(slot)}}:f`;
  }

  /** The lock key a channel belongs to, or undefined for a foreign channel. */
  keyOfChannel(channel: string): string | undefined {
    const head = `${this.prefix}{`;
    if (!channel.startsWith(head) || !channel.endsWith('}:c')) return undefined;
    return channel.slice(head.length, -3);
  }
}

/** The number of Redis Cluster hash slots. */
export const SLOTS = 16384;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/** CRC16-XMODEM of the UTF-8 bytes of `text`, as Redis Cluster hashes keys. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (let i = 0; i < bytes.length; i++) crc = ((crc << 8) ^ CRC16_TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!) & 0xffff;
  return crc;
}

/**
 * CRC16 of the first `end` characters of `text` when they are all ASCII (their UTF-8 bytes are their
 * char codes: no encoding, which costs more than the CRC itself on the acquire path), else -1.
 */
function crc16Ascii(text: string, end: number): number {
  let crc = 0;
  for (let i = 0; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return -1;
    crc = ((crc << 8) ^ CRC16_TABLE[((crc >> 8) ^ code) & 0xff]!) & 0xffff;
  }
  return crc;
}

const encoder = new TextEncoder();

/**
 * The hash slot of a lock key (the caller's key: its whole text is the hash tag of every name above).
 * The same as Redis computes for `<prefix>{<key>}`: keys are refused when they would make the tag
 * empty (a leading `}`), so the tag is the key up to its first `}`.
 */
export function slotOf(key: string): number {
  const brace = key.indexOf('}');
  const end = brace < 0 ? key.length : brace;
  const ascii = crc16Ascii(key, end);
  return (ascii >= 0 ? ascii : crc16(encoder.encode(key.slice(0, end)))) % SLOTS;
}

let tags: string[] | undefined;

/**
 * A short string whose hash slot is `slot`: found once for all 16,384 slots (about 170,000 CRC16s of
 * ASCII strings of up to 4 characters, a few ms) on first use.
 */
export function slotTag(slot: number): string {
  if (!tags) {
    const found = new Array<string>(SLOTS);
    let left = SLOTS;
    for (let n = 0; left > 0 && n < 10_000_000; n++) {
      const tag = n.toString(36);
      const s = crc16Ascii(tag, tag.length) % SLOTS;
      if (found[s] === undefined) {
        found[s] = tag;
        left--;
      }
    }
    tags = found;
  }
  return tags[slot]!;
}
