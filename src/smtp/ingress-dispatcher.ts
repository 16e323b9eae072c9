/**
 * The listening socket of a multi-process ingress (smtp.ingressProcesses > 1). One Node.js event loop accepts at
 * most one core's worth of mail (1.3–2 ms of CPU per small message, most of it smtp-server and the kernel's socket
 * writes); Postfix's smtpd processes use every core. Here the main process accepts each connection (paused: not a
 * byte is read), applies the limits that must hold across the whole ingress — smtp.maxConnections, and per client
 * address smtp.maxConnectionsPerIp and smtp.connectionRatePerIpPerMinute — and hands the socket to the ingress
 * child with the fewest open connections, which runs the SMTP session (src/smtp/ingress.ts, `external`). The child
 * reports when the connection closes, and the slot is released — a moment after the client saw the close, so a
 * client at its per-IP cap that reconnects at once may get `421 4.7.0` for that moment (it retries, as MTAs do).
 */
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.ts';
import type { Config } from '../config/schema.ts';
import { ConnectionLimiter } from './connection-limiter.ts';
import { type Bound, listenOn } from '../listen.ts';
import { endWithReply, replies, type SmtpReply } from './replies.ts';

/** IPC message from the dispatcher to an ingress child; the socket travels as the message's handle. */
export interface HandOver {
  type: 'smtp-connection';
  id: string;
}

/** IPC message from an ingress child: it takes connections from now on (sent once its handler is installed). */
export interface IngressReady {
  type: 'ingress-ready';
}

/** IPC message from an ingress child: the connection `id` it was handed has closed. */
export interface ConnectionClosed {
  type: 'smtp-closed';
  id: string;
}

export function isHandOver(m: unknown): m is HandOver {
  return typeof m === 'object' && m !== null && (m as HandOver).type === 'smtp-connection' && typeof (m as HandOver).id === 'string';
}

function isConnectionClosed(m: unknown): m is ConnectionClosed {
  return typeof m === 'object' && m !== null && (m as ConnectionClosed).type === 'smtp-closed';
}

interface Child {
  process: ChildProcess;
  /** A connection handed over before the child listens for them would be lost: none until it says so. */
  ready: boolean;
  open: Set<string>;
  onMessage: (m: unknown) => void;
  onExit: () => void;
}

export class IngressDispatcher {
  readonly #config: Config['smtp'];
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #limiter: ConnectionLimiter;
  readonly #server: net.Server;
  readonly #children = new Map<ChildProcess, Child>();
  #seq = 0;
  #open = 0;
  #closing = false;
  #onFirstReady: () => void = () => undefined;
  readonly #firstReady = new Promise<void>((resolve) => (this.#onFirstReady = resolve));

  constructor(config: Config['smtp'], log: Logger, metrics: Metrics) {
    this.#config = config;
    this.#log = log;
    this.#metrics = metrics;
    this.#limiter = new ConnectionLimiter({ maxPerIp: config.maxConnectionsPerIp, ratePerIpPerMinute: config.connectionRatePerIpPerMinute });
    this.#server = net.createServer({ pauseOnConnect: true }, (socket) => this.#onSocket(socket));
    this.#server.on('error', (err) => log.warn({ err }, 'smtp listener error'));
  }

  /** An ingress child that takes connections from now on (until it exits). */
  addChild(process: ChildProcess): void {
    const child: Child = {
      process,
      ready: false,
      open: new Set(),
      onMessage: (m: unknown) => {
        if (isConnectionClosed(m) && child.open.delete(m.id)) this.#release(m.id);
        else if ((m as IngressReady | undefined)?.type === 'ingress-ready') {
          child.ready = true;
          this.#onFirstReady();
        }
      },
      onExit: () => this.#removeChild(process),
    };
    this.#children.set(process, child);
    process.on('message', child.onMessage);
    process.once('exit', child.onExit);
  }

  #removeChild(process: ChildProcess): void {
    const child = this.#children.get(process);
    if (!child) return;
    this.#children.delete(process);
    process.off('message', child.onMessage);
    process.off('exit', child.onExit);
    // Its connections died with it (their clients retry: nothing was answered 250 that is not spooled).
    for (const id of child.open) this.#release(id);
    child.open.clear();
  }

  #release(id: string): void {
    this.#limiter.release(id);
    this.#open--;
  }

  /** Resolves when the first child takes connections (listening before would only answer 421). */
  whenReady(): Promise<void> {
    return this.#firstReady;
  }

  #refuse(socket: net.Socket, reply: SmtpReply, reason?: string): void {
    if (reason) this.#metrics.smtpRejected.inc({ reason });
    endWithReply(socket, reply);
  }

  #onSocket(socket: net.Socket): void {
    const ip = socket.remoteAddress ?? '';
    if (this.#closing) return this.#refuse(socket, replies.shuttingDown());
    const candidates = [...this.#children.values()].filter((c) => c.ready && c.process.connected);
    if (candidates.length === 0) {
      this.#log.warn({ ip }, 'no ingress process is running; connection refused');
      return this.#refuse(socket, replies.serviceBusy(), 'no-ingress');
    }
    if (this.#open >= this.#config.maxConnections) return this.#refuse(socket, replies.serviceBusy(), 'max-connections');
    const id = `d${(++this.#seq).toString(36)}`;
    const refusal = this.#limiter.admit(id, ip);
    if (refusal) {
      this.#log.info({ ip, reason: refusal }, 'connection refused');
      return this.#refuse(socket, refusal === 'ip-concurrency' ? replies.tooManyConnectionsFromIp() : replies.connectionRateExceeded(), refusal);
    }
    this.#open++;
    const child = candidates.reduce((a, b) => (b.open.size < a.open.size ? b : a));
    child.open.add(id);
    const message: HandOver = { type: 'smtp-connection', id };
    child.process.send(message, socket, (err) => {
      if (!err) return;
      // The child went away meanwhile: the client gets a 421 instead of a silent close.
      if (child.open.delete(id)) this.#release(id);
      this.#log.warn({ err, ip }, 'could not hand a connection to an ingress process');
      if (!socket.destroyed) this.#refuse(socket, replies.serviceBusy(), 'no-ingress');
    });
  }

  listen(): Promise<Bound> {
    return listenOn(this.#server, this.#config.listen);
  }

  /** Stops accepting; the children finish their sessions on their own (they are stopped after this). */
  close(): Promise<void> {
    this.#closing = true;
    this.#limiter.stop();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
