/**
 * The demo mailbox: a tiny SMTP server standing in for a municipality's mail server when `npm start` runs the
 * demo configuration. Every message it accepts is written to `<dataDir>/demo-mailbox/<time>-<n>.eml`, with the
 * envelope in X-Demo-Envelope-* headers on top.
 */
import { mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';

/** The demo mailbox takes what Sekisho's default allows, plus room for our headers. */
const DEMO_MAX_MESSAGE_BYTES = 60 * 1024 * 1024;

export interface DemoMailbox {
  dir: string;
  port: number;
  close(): Promise<void>;
}

export async function startDemoMailbox(dir: string, host: string, port: number): Promise<DemoMailbox> {
  mkdirSync(dir, { recursive: true });
  let n = 0;
  const server = new SMTPServer({
    name: 'demo-mailbox.local',
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    size: DEMO_MAX_MESSAGE_BYTES,
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const env =
          `X-Demo-Envelope-From: <${session.envelope.mailFrom ? session.envelope.mailFrom.address : ''}>\r\n` +
          `X-Demo-Envelope-To: ${session.envelope.rcptTo.map((r) => `<${r.address}>`).join(', ')}\r\n`;
        const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${++n}.eml`);
        writeFile(file, Buffer.concat([Buffer.from(env), ...chunks])).then(
          () => cb(null, `stored as ${path.basename(file)}`),
          (err: Error) => cb(err),
        );
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.server.address();
  return {
    dir,
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
