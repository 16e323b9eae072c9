/**
 * The pause before the SMTP greeting (smtp.greetPauseMs). smtp-server always waits a fixed 100 ms before it
 * greets, to catch clients that talk first ("421 You talk too soon"); that pause caps what one connection can do
 * (an MX that opens a connection per message gets at most ~10 greetings a second per concurrent connection) and is
 * not what Postfix's smtpd does (no pause; the pregreet test belongs to postscreen, with its greet_wait). Here the
 * pause is a setting: 0 greets at once — a client that sends before the greeting has gone out is still refused —
 * and a longer pause is the postscreen-style pregreet test. Idempotent; reads the pause from the server options.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

interface ConnectionInternals {
  _server: { options: { maxClients?: number; greetPauseMs?: number }; connections: Set<unknown> };
  name: string;
  _setListeners(done: () => void): void;
  connectionReady(): void;
  send(code: number, text: string, context?: unknown): void;
}

/** The SMTPServer option (smtp-server keeps options it does not know) that carries the pause. */
export function greetPauseOption(ms: number): object {
  return { greetPauseMs: ms };
}

let patched = false;

export function useConfigurableGreetPause(): void {
  if (patched) return;
  patched = true;
  const proto = SMTPConnection.prototype as unknown as ConnectionInternals & { init(): void };
  proto.init = function init(this: ConnectionInternals) {
    this._setListeners(() => {
      const { maxClients, greetPauseMs = 100 } = this._server.options;
      // As smtp-server's own init: the connection-count guard first.
      if (maxClients && this._server.connections.size > maxClients) {
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      }
      if (greetPauseMs <= 0) return this.connectionReady();
      setTimeout(() => this.connectionReady(), greetPauseMs).unref();
    });
  };
}
