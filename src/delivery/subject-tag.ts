/**
 * Puts a tag (policy.subjectTag, e.g. 【迷惑メール】) in front of a message's Subject without touching anything else:
 * the tag goes in as its own RFC 2047 encoded-word on the Subject line and the original field body follows on a
 * continuation line, byte for byte — whatever its charset, encoded or raw 8-bit, it is never decoded and re-encoded.
 * Between two encoded-words the folding white space is not displayed, so "【迷惑メール】会議資料" reads as one subject;
 * a plain-text subject shows after a space. A message whose Subject already starts with the tag is left alone
 * (a retried delivery), and one without a Subject gets one.
 */

/** The header block is searched this far; a message whose header is longer is sent as it is (no tag). */
const MAX_HEADER_BYTES = 256 * 1024;

function encodedWord(tag: string): string {
  return `=?UTF-8?B?${Buffer.from(tag, 'utf8').toString('base64')}?=`;
}

export function tagSubject(message: Buffer, tag: string): Buffer {
  const head = message.subarray(0, MAX_HEADER_BYTES).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  if (end < 0) return message;
  const word = encodedWord(tag);
  const subject = /(^|\n)(subject:)([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)/i.exec(head.slice(0, end));
  if (!subject) return Buffer.concat([Buffer.from(`Subject: ${word}\r\n`, 'latin1'), message]);
  const value = subject[3]!;
  if (value.trimStart().startsWith(word)) return message;
  const at = subject.index + subject[1]!.length + subject[2]!.length;
  const folded = value.trim() ? ` ${word}\r\n ${value.replace(/^[ \t]+/, '')}` : ` ${word}`;
  return Buffer.concat([message.subarray(0, at), Buffer.from(folded, 'latin1'), message.subarray(at + value.length)]);
}
