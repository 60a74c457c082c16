/**
 * A link with latency, for the benchmark's round-trip-bound runs: a TCP proxy in a process of its own
 * (so its work does not share the measured client's event loop) that listens on a free 127.0.0.1 port
 * per target and forwards every chunk, both ways, `delayMs` after it arrived, in order.
 *
 * Why a proxy and not `tc qdisc … netem`: the kernel of this project's machines has no netem qdisc
 * ("Specified qdisc kind is unknown"), so the network-namespace route is not open here. A proxy's delay
 * is coarser (Node timers: about delayMs + 0.1 ms each way) and costs some CPU per chunk, the same for
 * every mode measured through it.
 *
 * Only loopback: it listens on and connects to 127.0.0.1. It exits when the parent goes away.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { workerSide } from './lib/worker.js';

interface Config {
  /** Ports of the servers to forward to, on 127.0.0.1. */
  targets: number[];
  /** Delay of every chunk in each direction, ms. */
  delayMs: number;
}

const { config, send, next } = workerSide<Config>();
const HOST = '127.0.0.1';
const MAX_CONNECTIONS = 512;

/** Forwards `from` to `to`, each chunk delayed: timers of one duration fire in the order they were set. */
function pipeDelayed(from: Socket, to: Socket): void {
  from.on('data', (chunk) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, config.delayMs);
  });
  from.on('close', () => setTimeout(() => to.destroy(), config.delayMs));
  from.on('error', () => undefined);
}

const servers: Server[] = [];
const ports: number[] = [];
for (const target of config.targets) {
  const server = createServer((client) => {
    client.setNoDelay(true);
    const upstream = connect({ host: HOST, port: target });
    upstream.setNoDelay(true);
    pipeDelayed(client, upstream);
    pipeDelayed(upstream, client);
  });
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  servers.push(server);
  ports.push((server.address() as { port: number }).port);
}
send({ type: 'ready', ports });
await next('stop');
for (const server of servers) server.close();
process.exit(0);
