/**
 * Jest globalSetup: make sure REDIS_URL names a Redis that answers before any suite runs,
 * so a missing server fails once, with one clear message, instead of in every test.
 *
 * Self-contained on purpose: Jest loads this file through its CommonJS require hook, without
 * moduleNameMapper, so `./redis-server.js` would not resolve to the TypeScript helper.
 */
import { connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

const PING_TIMEOUT_MS = 5_000;

/**
 * Check `process.env.REDIS_URL` and PING it over a raw socket (bounded, 5 s).
 * @throws Error if REDIS_URL is missing or invalid, or the server does not answer.
 */
export default async function globalSetup(): Promise<void> {
  const url = process.env.REDIS_URL;
  if (!url) {
    throw new Error(
      'REDIS_URL is not set. Run the tests through `npm test`, which starts a private redis-server, ' +
        'or set REDIS_URL=redis://127.0.0.1:<port> to use a Redis you run yourself.',
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`REDIS_URL is not a valid URL: "${url}". Expected redis://host:port.`);
  }
  // TLS (rediss://) cannot be probed with a plain socket; let the suites report it.
  if (parsed.protocol !== 'redis:') return;

  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = Number(parsed.port || 6379);
  const deadline = Date.now() + PING_TIMEOUT_MS;
  for (let attempt = 0; attempt < PING_TIMEOUT_MS / 100 && Date.now() < deadline; attempt++) {
    if (await ping(host, port, Math.max(1, Math.min(500, deadline - Date.now())))) return;
    await delay(100);
  }
  throw new Error(
    `No Redis answered PING at ${host}:${port} (from REDIS_URL) within ${PING_TIMEOUT_MS} ms. ` +
      'Start it, fix REDIS_URL, or unset REDIS_URL and run `npm test` to get a private redis-server.',
  );
}

/** One inline PING; `-NOAUTH` counts as an answer (the server is up, the suites bring the password). */
function ping(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let reply = '';
    const socket = connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(/^(\+PONG|-NOAUTH)/.test(reply));
    });
  });
}
