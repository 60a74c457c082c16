import { monotonic } from '../../clock.js';
import { LockError, LockQuorumError, LockUnavailableError } from '../../errors.js';
import type { RedisLockStore } from '../redis/redis-store.js';
import type { AcquireRequest, AcquireResult, InspectResult, LockStore, ReleaseOutcome, StoreHealth, StoreListener } from '../store.js';
import { errorText } from '../health.js';

/** Settings of a {@link QuorumLockStore}. */
export interface QuorumLockStoreOptions {
  /** Three or more independent Redis nodes (not replicas of each other), each a store of its own. */
  readonly nodes: readonly RedisLockStore[];
  /** Close the nodes' stores on `close()`. Default true. */
  readonly ownsNodes?: boolean;
  /**
   * How long one node may take to answer before it counts as down for that operation, ms (so a node
   * that stopped answering never holds up a decision the others can make). Default 1000.
   */
  readonly nodeTimeout?: number;
}

/**
 * How far ahead of this machine's clock a proposed token is, µs: nodes whose clocks are behind it by
 * less than this (NTP keeps a LAN well within) issue the proposal as it is.
 */
const PROPOSAL_LEAD_US = 2_000;

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Runs `calls` in parallel and resolves as soon as `decide` can tell from the answers so far (a
 * majority has answered one way, or can no longer): a node that does not answer never holds up an
 * operation a majority has decided. `decide` must decide once every call has settled.
 */
function whenDecided<T, R>(
  calls: readonly Promise<T>[],
  decide: (answers: readonly Settled<T>[], done: boolean) => R | undefined,
): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    const answers: Settled<T>[] = [];
    let finished = false;
    const check = () => {
      if (finished) return;
      try {
        const decided = decide(answers, answers.length === calls.length);
        if (decided !== undefined) {
          finished = true;
          resolve(decided);
        }
      } catch (error) {
        finished = true;
        reject(error);
      }
    };
    for (const call of calls) {
      call.then(
        (value) => {
          answers.push({ ok: true, value });
          check();
        },
        (error: unknown) => {
          answers.push({ ok: false, error });
          check();
        },
      );
    }
    if (calls.length === 0) check();
  });
}

/** A permanent refusal of some node (bad permissions, foreign data): an error, not a missing vote. */
function permanent(answers: readonly Settled<unknown>[]): unknown {
  return answers.find((a) => !a.ok && a.error instanceof LockError && !(a.error instanceof LockUnavailableError)) as
    { ok: false; error: unknown } | undefined;
}

/**
 * Redlock: a lock on a majority (⌊n/2⌋+1) of n independent Redis nodes, each running the single-node
 * scripts. An acquisition goes to every node at once and counts when a majority took it; its validity
 * counts from when it was sent (the engine subtracts the drift), so a slow majority leaves less of it.
 * Partial acquisitions are rolled back at once. Extend, release, leave and forceRelease go to every node
 * and are decided by a majority; a minority of nodes down is not an error.
 *
 * Fencing: every node is proposed one token (above this machine's clock and every token it has seen);
 * a node issues the highest of the proposal, its counter + 1 and its clock, and keeps it as its
 * counter. The lock's token is the highest its majority issued. When a majority issued exactly that
 * (the usual case), their counters are at it already; otherwise it is written back to a majority (the
 * counters and the lock values) before the lock is returned, at the cost of one more round trip. Any
 * later majority shares a node with this one, whose counter is now at least this token, so its token
 * is higher.
 *
 * Waiting: no queue and no hand-off (a grant on some nodes to one waiter and on others to another would
 * leave neither with a majority): waiters subscribe to every node, are woken by a release on any of
 * them, and retry.
 */
export class QuorumLockStore implements LockStore {
  /** How many nodes make a majority. */
  readonly quorum: number;
  private readonly nodes: readonly RedisLockStore[];
  private readonly ownsNodes: boolean;
  private readonly nodeTimeout: number;

  constructor(options: QuorumLockStoreOptions) {
    if (options.nodes.length < 3) throw new Error(`a quorum needs at least 3 nodes, got ${options.nodes.length}`);
    this.nodes = options.nodes;
    this.quorum = Math.floor(options.nodes.length / 2) + 1;
    this.ownsNodes = options.ownsNodes ?? true;
    this.nodeTimeout = options.nodeTimeout ?? 1000;
  }

  /** The highest fencing token this store has seen issued (its own, or a holder's it was refused by). */
  private highest = 0;
  private lastProposal = 0;

  /**
   * The token to propose to every node: this machine's clock in µs plus {@link PROPOSAL_LEAD_US}, and
   * above every token seen, strictly increasing. A node issues it when it is above the node's own next
   * token (its counter + 1 and its clock), so a majority usually agrees on it and the write-back round
   * is skipped; a node whose clock or counter is ahead issues its own, and the write-back follows.
   */
  private propose(): number {
    const clock = Math.floor((performance.timeOrigin + performance.now()) * 1000) + PROPOSAL_LEAD_US;
    const next = Math.max(clock, this.highest + 1, this.lastProposal + 1);
    this.lastProposal = next;
    return next;
  }

  /** Each node's call, failing with LockUnavailableError after nodeTimeout (the call itself goes on). */
  private each<T>(call: (node: RedisLockStore) => Promise<T>): Promise<T>[] {
    return this.nodes.map((node, i) => {
      const pending = call(node);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new LockUnavailableError(`Redis node ${i + 1} of ${this.nodes.length} did not answer within ${this.nodeTimeout} ms.`)),
          this.nodeTimeout,
        );
        timer.unref();
      });
      return Promise.race([pending, timeout]).finally(() => clearTimeout(timer));
    });
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const plain: AcquireRequest = { keys: request.keys, token: request.token, ttl: request.ttl };
    const validFrom = monotonic();
    const n = this.nodes.length;
    // Each node's answer as it arrives (the others arrive later: a late "acquired" of a failed attempt
    // is given back by the leave below, which is sent after it on the same connection).
    const results = new Array<AcquireResult | undefined>(n);
    const errors = new Array<unknown>(n);
    const proposed = this.propose();
    const calls = this.each((node) => node.acquireAbove(plain, proposed)).map((call, i) =>
      call.then(
        (result) => (results[i] = result),
        (error: unknown) => {
          errors[i] = error;
          throw error;
        },
      ),
    );
    const taken = await whenDecided(calls, (answers, done) => {
      const yes = answers.filter((a) => a.ok && a.value.acquired).length;
      if (yes >= this.quorum) return true;
      if (n - (answers.length - yes) < this.quorum || done) return false;
      return undefined;
    });
    if (taken) {
      let fence = 0;
      let remaining: number | undefined;
      for (const result of results) {
        if (!result?.acquired) continue;
        fence = Math.max(fence, ...result.fences);
        if (result.remaining !== undefined) remaining = Math.min(remaining ?? Infinity, result.remaining);
      }
      this.highest = Math.max(this.highest, fence);
      // A majority issued this very token (the proposal): their counters are at it already.
      const agreeing = results.filter((r) => r?.acquired && r.fences.every((f) => f === fence)).length;
      const raised =
        agreeing >= this.quorum ||
        (await whenDecided(
          // To every node: one whose "acquired" is still on its way gets it after that, on the same connection.
          this.each((node) => node.raiseFence(request.keys, request.token, fence)),
          (votes, done) => {
            const yes = votes.filter((v) => v.ok && v.value).length;
            if (yes >= this.quorum) return true;
            if (n - (votes.length - yes) < this.quorum || done) return false;
            return undefined;
          },
        ));
      if (raised) {
        const fences = request.keys.map(() => fence);
        return remaining === undefined ? { acquired: true, fences, validFrom } : { acquired: true, fences, validFrom, remaining };
      }
    }
    // No majority: give back at once whatever this token took anywhere. Awaited when a majority
    // answered (the nodes are there); with too few, the error comes first (the give-back is on its way,
    // and the engine gives back again for an attempt whose outcome is unknown).
    const answered = results.filter((r) => r !== undefined).length;
    const givingBack = this.leave(request).catch(() => undefined);
    if (answered >= this.quorum) await givingBack;
    const refusal = errors.find((e) => e instanceof LockError && !(e instanceof LockUnavailableError));
    if (refusal) throw refusal as LockError;
    if (answered < this.quorum) {
      throw new LockQuorumError(request.keys, this.quorum, n, answered, { cause: errors.find((e) => e !== undefined) });
    }
    const busy = results.filter((r): r is Extract<AcquireResult, { acquired: false }> => r !== undefined && !r.acquired);
    const pttls = busy
      .map((b) => b.pttl)
      .filter((p) => p >= 0)
      .sort((a, b) => a - b);
    const fences = busy.map((b) => b.fence).filter((f): f is number => f !== undefined);
    for (const f of fences) this.highest = Math.max(this.highest, f);
    return {
      acquired: false,
      // Free again once the holder's keys expired on enough nodes for a majority.
      pttl: pttls.length > 0 ? pttls[Math.min(pttls.length - 1, this.quorum - 1)]! : 0,
      fence: fences.length > 0 ? Math.max(...fences) : undefined,
    };
  }

  async release(keys: readonly string[], token: string): Promise<ReleaseOutcome> {
    return whenDecided(
      this.each((node) => node.release(keys, token)),
      (answers, done) => {
        const released = answers.filter((a) => a.ok && a.value === 'released').length;
        if (released >= this.quorum) return 'released';
        if (!done) return undefined;
        const unsure = answers.filter((a) => a.ok && a.value === 'unsure').length;
        const failed = answers.filter((a) => !a.ok).length;
        return released + unsure + failed >= this.quorum ? 'unsure' : 'not-ours';
      },
    );
  }

  /**
   * A yes/no question to every node: yes once a majority says yes, no once a majority can no longer
   * say yes; with too few answers to tell, a node's permanent refusal, else LockQuorumError (for an
   * extension: its outcome is unknown, and the engine shortens the lock's validity).
   */
  private vote(keys: readonly string[], ask: (node: RedisLockStore) => Promise<boolean>): Promise<boolean> {
    return whenDecided(this.each(ask), (answers, done) => {
      const yes = answers.filter((a) => a.ok && a.value).length;
      if (yes >= this.quorum) return true;
      const no = answers.filter((a) => a.ok && !a.value).length;
      if (this.nodes.length - no < this.quorum) return false;
      if (!done) return undefined;
      const refusal = permanent(answers);
      if (refusal) throw (refusal as { error: unknown }).error;
      throw this.noQuorum(keys, answers);
    });
  }

  extend(keys: readonly string[], token: string, ttl: number): Promise<boolean> {
    return this.vote(keys, (node) => node.extend(keys, token, ttl));
  }

  async inspect(key: string, token: string): Promise<InspectResult> {
    return whenDecided(
      this.each((node) => node.inspect(key, token)),
      (answers, done) => {
        const held = answers.flatMap((a) => (a.ok && a.value.held ? [a.value] : []));
        if (!done && held.length < this.nodes.length - (answers.length - held.length)) {
          // Wait for every node that may still say "held" unless a majority is already impossible.
          if (this.nodes.length - (answers.length - held.length) >= this.quorum) return undefined;
        }
        if (held.length >= this.quorum) {
          const pttls = held.map((h) => h.pttl).sort((a, b) => b - a);
          // Valid while a majority holds it: the quorum-th longest ttl left.
          // The lock's one token: the fence most holders agree on (ties: the higher). A node whose
          // "acquired" came after the majority's may still carry its own until the write-back reaches it.
          const votes = new Map<number, number>();
          for (const h of held) votes.set(h.fence, (votes.get(h.fence) ?? 0) + 1);
          const fence = [...votes.entries()].sort((x, y) => y[1] - x[1] || y[0] - x[0])[0]![0];
          return { held: true, fence, pttl: pttls[this.quorum - 1]! };
        }
        if (answers.filter((a) => a.ok).length < this.quorum && done) throw this.noQuorum([key], answers);
        return done || this.nodes.length - (answers.length - held.length) < this.quorum ? { held: false } : undefined;
      },
    );
  }

  isLocked(key: string): Promise<boolean> {
    return this.vote([key], (node) => node.isLocked(key));
  }

  async forceRelease(key: string): Promise<boolean> {
    const answers = await Promise.allSettled(this.each((node) => node.forceRelease(key)));
    if (answers.filter((a) => a.status === 'fulfilled').length < this.quorum)
      throw this.noQuorum(
        [key],
        answers.map((a) => (a.status === 'fulfilled' ? { ok: true, value: a.value } : { ok: false, error: a.reason as unknown })),
      );
    return answers.some((a) => a.status === 'fulfilled' && a.value);
  }

  /** On every node; stored when a majority stored it (each checks that the token holds its lock there). */
  putRecord(key: string, token: string, value: string, ttl: number): Promise<boolean> {
    return this.vote([key], (node) => node.putRecord(key, token, value, ttl));
  }

  /**
   * The record as any node has it, once a majority answered: a record stored on a majority is on at least
   * one node of every majority (records are written once per key and never changed, so any copy is it).
   */
  async getRecord(key: string): Promise<string | undefined> {
    return whenDecided(
      this.each((node) => node.getRecord(key)),
      (answers, done) => {
        const found = answers.find((a) => a.ok && a.value !== undefined);
        if (found && found.ok) return { value: found.value };
        if (answers.filter((a) => a.ok).length >= this.quorum) return { value: undefined };
        if (done) throw this.noQuorum([key], answers);
        return undefined;
      },
    ).then((r) => r.value);
  }

  async leave(request: AcquireRequest): Promise<boolean> {
    const plain: AcquireRequest = { keys: request.keys, token: request.token, ttl: request.ttl };
    const answers = await Promise.allSettled(this.each((node) => node.leave(plain)));
    if (answers.every((a) => a.status === 'rejected')) throw (answers[0] as PromiseRejectedResult).reason as Error;
    return answers.some((a) => a.status === 'fulfilled' && a.value);
  }

  async watch(keys: readonly string[], token: string, listener: StoreListener): Promise<() => void> {
    const stops: (() => void)[] = [];
    let stopped = false;
    const calls = this.nodes.map((node) =>
      node.watch(keys, token, listener).then((stop) => {
        if (stopped) stop();
        else stops.push(stop);
        return stop;
      }),
    );
    const stopAll = () => {
      stopped = true;
      for (const stop of stops.splice(0)) stop();
    };
    await whenDecided(calls, (answers, done) => {
      const live = answers.filter((a) => a.ok).length;
      if (live >= this.quorum) return true;
      if (!done) return undefined;
      stopAll();
      throw this.noQuorum(keys, answers as Settled<unknown>[]);
    });
    return stopAll;
  }

  listening(keys: readonly string[]): boolean {
    return this.nodes.filter((node) => node.listening(keys)).length >= this.quorum;
  }

  suspect(): void {
    for (const node of this.nodes) node.suspect();
  }

  lastError(): unknown {
    for (const node of this.nodes) {
      const error = node.lastError();
      if (error !== undefined) return error;
    }
    return undefined;
  }

  /** Every node that answers must allow what the store needs; a majority must answer. */
  async check(timeoutMs: number): Promise<void> {
    const answers = await Promise.allSettled(this.nodes.map((node) => node.check(timeoutMs)));
    const refusal = answers.find(
      (a): a is PromiseRejectedResult =>
        a.status === 'rejected' && a.reason instanceof LockError && !(a.reason instanceof LockUnavailableError),
    );
    if (refusal) throw refusal.reason as LockError;
    const answered = answers.filter((a) => a.status === 'fulfilled').length;
    if (answered < this.quorum) {
      const first = answers.find((a): a is PromiseRejectedResult => a.status === 'rejected');
      throw new LockQuorumError([], this.quorum, this.nodes.length, answered, { cause: first?.reason });
    }
  }

  /** Every node's own health (a PING each, in parallel); up when at least a majority answers. */
  async health(timeoutMs: number): Promise<StoreHealth> {
    const checks = await Promise.all(
      this.nodes.map((node) =>
        node.health(timeoutMs).catch((error: unknown): StoreHealth => ({ up: false, details: { error: errorText(error) } })),
      ),
    );
    const answering = checks.filter((check) => check.up).length;
    return {
      up: answering >= this.quorum,
      details: {
        store: 'redlock',
        nodes: this.nodes.length,
        quorum: this.quorum,
        answering,
        members: checks.map(({ up, details }) => {
          const { store: _store, mode: _mode, ...rest } = details;
          return { up, ...rest };
        }),
      },
    };
  }

  async close(timeoutMs?: number): Promise<void> {
    if (this.ownsNodes) await Promise.allSettled(this.nodes.map((node) => node.close(timeoutMs)));
  }

  private noQuorum(keys: readonly string[], answers: readonly Settled<unknown>[]): LockQuorumError {
    const failure = answers.find((a) => !a.ok) as { error: unknown } | undefined;
    return new LockQuorumError(keys, this.quorum, this.nodes.length, answers.filter((a) => a.ok).length, { cause: failure?.error });
  }
}
