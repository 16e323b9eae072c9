/**
 * A message's bytes with header lines in front of them, as one stream: delivery's added fields, a release's mark.
 * The stored bytes are streamed, never read whole; destroying the result does not destroy `rest` (its owner does).
 */
import { Readable } from 'node:stream';

export function prefixedStream(prefix: Buffer, rest: Readable): Readable {
  return Readable.from(
    (async function* () {
      yield prefix;
      for await (const chunk of rest) yield chunk as Buffer;
    })(),
  );
}
