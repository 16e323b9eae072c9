/** tagSubject: the tag in front, the rest of the message byte for byte, in every charset, once. */
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { tagSubject } from '../../../src/delivery/subject-tag.ts';
import { buildMail, encodeText } from '../../helpers/mail-builder.ts';

const TAG = '【迷惑メール】';

describe('tagSubject', () => {
  it('puts the tag in front of an ISO-2022-JP subject and leaves every other byte as it was', async () => {
    const subject = `=?ISO-2022-JP?B?${encodeText('会議資料', 'iso-2022-jp').toString('base64')}?=`;
    const raw = buildMail({ subject, text: { body: '本文', charset: 'iso-2022-jp' } });
    const out = tagSubject(raw, TAG);
    expect((await simpleParser(out)).subject).toBe('【迷惑メール】会議資料');
    const bodyAt = (b: Buffer) => b.indexOf('\r\n\r\n');
    expect(out.subarray(bodyAt(out)).equals(raw.subarray(bodyAt(raw)))).toBe(true);
    expect(out.toString('latin1').replace(/Subject: [^\r]*\r\n /, 'Subject: ')).toBe(raw.toString('latin1'));
  });

  it('keeps a raw 8-bit Shift_JIS subject byte for byte after the tag', () => {
    const sjis = encodeText('請求書の件', 'shift_jis');
    const raw = Buffer.concat([Buffer.from('From: a@example.net\r\nSubject: ', 'latin1'), sjis, Buffer.from('\r\n\r\nbody\r\n', 'latin1')]);
    const out = tagSubject(raw, TAG);
    expect(out.includes(sjis)).toBe(true);
    expect(out.toString('latin1')).toMatch(/^From: a@example\.net\r\nSubject: =\?UTF-8\?B\?[A-Za-z0-9+/=]+\?=\r\n /);
  });

  it('shows a plain subject after a space, keeps a folded one whole, and adds a Subject when there is none', async () => {
    expect((await simpleParser(tagSubject(Buffer.from('Subject: Hello\r\n\r\nx\r\n'), TAG))).subject).toBe('【迷惑メール】 Hello');
    const folded = Buffer.from('Subject: a very long\r\n subject line\r\nFrom: a@b.example\r\n\r\nx\r\n');
    expect((await simpleParser(tagSubject(folded, TAG))).subject).toBe('【迷惑メール】 a very long subject line');
    expect((await simpleParser(tagSubject(Buffer.from('From: a@b.example\r\n\r\nx\r\n'), TAG))).subject).toBe('【迷惑メール】');
  });

  it('tags once: a retried delivery does not add the tag again', () => {
    const once = tagSubject(Buffer.from('Subject: Hello\r\n\r\nx\r\n'), TAG);
    expect(tagSubject(once, TAG).equals(once)).toBe(true);
  });

  it('never touches a "Subject:" line in the body', () => {
    const raw = Buffer.from('From: a@b.example\r\n\r\nSubject: not a header\r\n');
    expect(tagSubject(raw, TAG).toString()).toBe(`Subject: =?UTF-8?B?${Buffer.from(TAG).toString('base64')}?=\r\n${raw.toString()}`);
  });
});
