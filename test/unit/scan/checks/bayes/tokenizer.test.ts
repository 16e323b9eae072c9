import { describe, expect, it } from 'vitest';
import { bayesConfigSchema } from '../../../../../src/scan/checks/bayes/config.ts';
import { decodeHeaderValue, tokenize } from '../../../../../src/scan/checks/bayes/tokenizer.ts';
import { parseMessage } from '../../../../../src/scan/mime-parts.ts';
import { buildMail, encodedWord } from '../../../../helpers/mail-builder.ts';
import { japaneseSpam } from './japanese-corpus.ts';

const limits = bayesConfigSchema.parse({});

async function tokensOf(raw: Buffer, l = limits): Promise<string[]> {
  return tokenize(await parseMessage(raw), l);
}

describe('tokenize', () => {
  it('decodes ISO-2022-JP and Shift_JIS to the same words (only the charset token differs)', async () => {
    const jis = await tokensOf(japaneseSpam(0, 'iso-2022-jp'));
    const sjis = await tokensOf(japaneseSpam(0, 'shift_jis'));
    const withoutCharset = (t: string[]) => t.filter((x) => !x.startsWith('H:cs:')).sort();
    expect(withoutCharset(jis)).toEqual(withoutCharset(sjis));
    expect(jis).toContain('H:cs:iso-2022-jp');
    expect(sjis).toContain('H:cs:shift_jis');
  });

  it('segments Japanese into words, never into whole sentences or lone particles', async () => {
    const t = await tokensOf(japaneseSpam(0));
    expect(t).toEqual(expect.arrayContaining(['本人', '確認', 'アカウント', 'ログイン', '停止']));
    // The sentence is one whitespace-free run: a whitespace tokenizer would have produced it whole.
    expect(t.some((x) => x.includes('お客様のアカウントは'))).toBe(false);
    expect(t.filter((x) => ['の', 'は', 'を', 'が'].includes(x))).toEqual([]);
  });

  it('reads RFC 2047 subjects and display names in Japanese charsets, and raw Shift_JIS header bytes', async () => {
    const t = await tokensOf(japaneseSpam(1, 'shift_jis'));
    expect(t).toEqual(expect.arrayContaining(['S:本人', 'S:確認', 'F:n:カスタマーサポート']));
    const raw = Buffer.concat([Buffer.from('From: a@example.jp\r\nSubject: '), Buffer.from([0x90, 0xbf, 0x8b, 0x81, 0x8f, 0x91]), Buffer.from('\r\n\r\nbody\r\n')]);
    expect(await tokensOf(raw)).toEqual(expect.arrayContaining(['S:請求', 'S:書']));
    expect(decodeHeaderValue(`${encodedWord('還付', 'iso-2022-jp')} ${encodedWord('金', 'iso-2022-jp')}`)).toBe('還付金');
  });

  it('folds full-width letters and case (NFKC): ＰａｙＰａｌ is paypal', async () => {
    const t = await tokensOf(buildMail({ subject: 'x', text: { body: 'ＰａｙＰａｌ ＡＣＣＯＵＮＴ', charset: 'utf-8' } }));
    expect(t).toEqual(expect.arrayContaining(['paypal', 'account']));
  });

  it('adds From, URL host/domain/path tokens from text and from HTML links, and drops script text', async () => {
    const raw = buildMail({
      from: 'Support <x@mail.phish.example.co.jp>',
      subject: 'x',
      html: { body: '<p>ご確認<a href="https://login.bank-secure.example.com/account/verify.php?u=1">こちら</a></p><script>var secretword=1</script>', charset: 'utf-8' },
    });
    const t = await tokensOf(raw);
    expect(t).toEqual(expect.arrayContaining(['F:d:mail.phish.example.co.jp', 'F:r:example.co.jp', 'U:h:login.bank-secure.example.com', 'U:d:example.com', 'U:p:account', 'U:p:verify']));
    expect(t).toContain('H:ct:text/html');
    expect(t.some((x) => x.includes('secretword'))).toBe(false);
    expect(await tokensOf(buildMail({ subject: 'x', text: { body: 'see http://192.0.2.7/a', charset: 'utf-8' } }))).toContain('U:ip');
  });

  it('tokenizes HTML markup (tags, attributes, short values) of HTML parts only', async () => {
    const html = await tokensOf(buildMail({ subject: 'x', html: { body: '<font color="#FF0000" size=5>今すぐ</font><a href="https://x.example/">x</a>', charset: 'utf-8' } }));
    expect(html).toEqual(expect.arrayContaining(['T:font', 'T:color', 'T:color=#ff0000', 'T:size=5', 'T:a', 'T:href']));
    expect(html.some((t) => t.startsWith('T:href='))).toBe(false);
    const plain = await tokensOf(buildMail({ subject: 'x', text: { body: 'write <font color="#FF0000"> in the template', charset: 'utf-8' } }));
    expect(plain.filter((t) => t.startsWith('T:'))).toEqual([]);
  });

  it('hostile HTML (a hundred thousand unclosed <script and <!-- and <) is tokenized, not scanned quadratically', async () => {
    const body = `visible ${'<script <!-- < '.repeat(100_000)}`;
    const t = await tokensOf(buildMail({ subject: 'x', html: { body, charset: 'utf-8' } }));
    expect(t).toContain('visible');
    expect(t).toContain('T:script');
    // Many closed blocks: each is skipped once.
    const many = await tokensOf(buildMail({ subject: 'x', html: { body: `${'<!-- c --><style>s</style>'.repeat(15_000)} shown`, charset: 'utf-8' } }));
    expect(many).toContain('shown');
    const closed = await tokensOf(buildMail({ subject: 'x', html: { body: 'aaa<!-- hidden1 -->bbb<style>.hidden2{}</style >ccc<SCRIPT>hidden3</SCRIPT>ddd', charset: 'utf-8' } }));
    expect(closed.filter((x) => !x.includes(':'))).toEqual(['aaa', 'bbb', 'ccc', 'ddd']);
  });

  it('bounds the tokens of one message (a hostile message of 50,000 distinct words)', async () => {
    const words = Array.from({ length: 50_000 }, (_, i) => `w${i.toString(36)}xyz`).join(' ');
    const t = await tokensOf(buildMail({ subject: 'x', text: { body: words, charset: 'utf-8' } }), { ...limits, maxTokensPerMessage: 500 });
    expect(t.length).toBe(500);
    // Header tokens come first: they survive the cut.
    expect(t).toContain('H:ct:text/plain');
  });

  it('turns overlong words into sk: prefixes and drops short Latin noise', async () => {
    const t = await tokensOf(buildMail({ subject: 'x', text: { body: `an ok word ${'a'.repeat(60)}`, charset: 'utf-8' } }));
    expect(t).toContain('word');
    expect(t).toContain('sk:aaaaaaaa');
    expect(t).not.toContain('an');
    expect(t).not.toContain('ok');
  });
});
