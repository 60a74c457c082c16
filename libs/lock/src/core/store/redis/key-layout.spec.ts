import { clusterKeySlot } from '../../../../../../test/helpers/redis-topologies.js';
import { KeyLayout, SLOTS, slotOf, slotTag } from './key-layout.js';

describe('key layout: hash slots', () => {
  const layout = new KeyLayout('app:');
  // ASCII (the fast path), multi-byte UTF-8, astral characters, a brace inside the key (the tag ends there).
  const keys = [
    'foo',
    'user:1000',
    'payment:42',
    '123456789',
    'é',
    'Überweisung:7',
    '付款:9',
    'emoji:💳',
    'a}b',
    'a}é',
    'x{y}z',
    ''.padEnd(300, 'k'),
  ];

  it.each(keys)('slotOf(%j) is the slot Redis Cluster gives every name of the lock, and its fence counter is in it', (key) => {
    const slot = slotOf(key);
    expect(slot).toBe(clusterKeySlot(layout.lock(key)));
    expect(clusterKeySlot(layout.queue(key))).toBe(slot);
    expect(clusterKeySlot(layout.channel(key))).toBe(slot);
    expect(clusterKeySlot(layout.fence(key))).toBe(slot);
  });

  it('agrees with the values Redis documents (CLUSTER KEYSLOT foo = 12182; CRC16 of "123456789" = 0x31C3)', () => {
    expect(slotOf('foo')).toBe(12182);
    expect(slotOf('123456789')).toBe(0x31c3 % SLOTS);
  });

  it('has a tag for every slot, each hashing to its slot', () => {
    for (let slot = 0; slot < SLOTS; slot++) expect(clusterKeySlot(`{${slotTag(slot)}}`)).toBe(slot);
  });
});
