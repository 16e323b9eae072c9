/** The reason of the ConversionError a converter rejected with (the test fails if it resolved or threw anything else). */
import { expect } from 'vitest';
import { ConversionError } from '../../src/sanitize/types.ts';

export async function reasonOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConversionError);
  return (err as ConversionError).reason;
}
