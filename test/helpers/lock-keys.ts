/**
 * The library leaves one kind of key behind on purpose: the fencing counter of each hash slot it used,
 * `<prefix>{<slot tag>}:f` (at most 16,384 per prefix, whatever the number of lock keys). Tests that
 * check "nothing left" look at every other key, and check that the counters stay bounded.
 */
export const isFenceCounter = (key: string): boolean => /\{[0-9a-z]{1,4}\}:f$/.test(key);

/** The keys that are not fencing counters. */
export const withoutCounters = (keys: readonly string[]): string[] => keys.filter((key) => !isFenceCounter(key));
