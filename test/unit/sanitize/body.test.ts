/**
 * sanitizeBody on hostile and ordinary HTML and plain text: what a reader reads is kept (paragraphs, lists,
 * headings, tables aligned by display width), what must not reach them is gone (scripts, styles, forms, hidden
 * text, frames, images), no URL is left clickable anywhere, the plain-text alternative is preferred, and every
 * input limit holds by result.
 */
import { describe, expect, it } from 'vitest';
import { defangUrl, MAX_HTML_BYTES, MAX_PLAIN_BYTES, sanitizeBody, type BodyLeaf } from '../../../src/sanitize/body.ts';
import { parseMessage } from '../../../src/scan/mime-parts.ts';

/** A clickable URL as a client's auto-linker sees one. */
const CLICKABLE = /(?:https?|ftp|file|javascript):|www\./i;

function html(markup: string): BodyLeaf {
  return { contentType: 'text/html', charset: 'utf-8', content: Buffer.from(markup, 'utf8') };
}

function plain(text: string, charset: string | null = 'utf-8'): BodyLeaf {
  return { contentType: 'text/plain', charset, content: Buffer.from(text, 'utf8') };
}

/** Display columns in a Japanese monospaced font, computed independently of the code under test. */
function columns(s: string): number {
  let w = 0;
  for (const ch of s) w += /[\u2460-\u24ff\u3000-\u9fff\uff01-\uff60]/.test(ch) ? 2 : 1;
  return w;
}

/** The display column where `cell` starts on the output line that contains it. */
function columnOf(text: string, cell: string): number {
  const line = text.split('\n').find((l) => l.includes(cell));
  if (line === undefined) throw new Error(`${cell} not in:\n${text}`);
  return columns(line.slice(0, line.indexOf(cell)));
}

const PHISH = `<!DOCTYPE html>
<html><head><title>TITLE-TEXT</title>
<style>.x { color: red } STYLE-TEXT</style>
<script>document.write("SCRIPT-TEXT")</script>
<meta http-equiv="refresh" content="0;url=https://refresh.example/">
</head>
<body onload="alert('ONLOAD-TEXT')">
<!-- COMMENT-TEXT -->
<!--[if mso]><p>MSO-ONLY-TEXT</p><![endif]-->
<h1>重要なお知らせ</h1>
<p>いつもご利用&amp;ありがとう&nbsp;ございます。<br>アカウントを確認してください。</p>
<p><a href="https://evil.example/login?u=https://bank.example.jp/">こちらからログイン</a></p>
<p><a href="https://bank.example.jp/">https://bank.example.jp/</a></p>
<p><a href="https://evil.example/x">https://bank.example.jp/real</a></p>
<p><a href="mailto:support@evil.example">お問い合わせ</a> / <a href="javascript:alert(1)">実行</a></p>
<p>Plain URL: HTTP://UPPER.EXAMPLE/Path and www.bare.example and ht<b></b>tps://split.example/ and &#104;ttps://entity.example/</p>
<p><img src="https://track.example/open.gif?id=1" width="1" height="1"><img src="cid:logo@city" alt="市のロゴ"><img src="https://cdn.example/banner.png" alt="https://alt.example/"></p>
<form action="https://evil.example/steal"><label>パスワード</label><input type="password" placeholder="PLACEHOLDER-TEXT" value="VALUE-TEXT"><select><option>OPTION-TEXT</option></select><textarea>TEXTAREA-TEXT</textarea><button>BUTTON-TEXT</button></form>
<iframe src="https://evil.example/frame">IFRAME-TEXT</iframe><object data="x.swf">OBJECT-TEXT</object><embed src="x.swf">
<div style="display:none">HIDDEN-DISPLAY</div>
<div style="DISPLAY : NONE !important">HIDDEN-DISPLAY2</div>
<span style="visibility:hidden">HIDDEN-VISIBILITY</span>
<span style="font-size:0px">HIDDEN-FONT0</span>
<p hidden>HIDDEN-ATTR</p>
<p style="color:#ffffff;background-color:#FFF">HIDDEN-WHITE</p>
<div style="max-height:0;overflow:hidden;mso-hide:all">HIDDEN-PREHEADER</div>
<p style="opacity:0">HIDDEN-OPACITY</p>
<p style="position:absolute;left:-9999px">HIDDEN-OFFSCREEN</p>
<div style="font-size:0">HIDDEN-GAP<div style="font-size:14px">フォント復帰</div><span style="font-size:1em">HIDDEN-EM</span></div>
<span style="visibility:hidden">HIDDEN-V2<b style="visibility:visible">表示復帰</b></span>
<table style="display:none"><tr><td>HIDDEN-TABLE</td><td>x</td></tr></table>
</body></html>`;

describe('HTML: what must not reach the reader is gone', () => {
  const r = sanitizeBody([html(PHISH)]);

  it('no script, style, title, comment, conditional comment or event-handler text', () => {
    for (const s of ['SCRIPT-TEXT', 'STYLE-TEXT', 'TITLE-TEXT', 'COMMENT-TEXT', 'MSO-ONLY-TEXT', 'ONLOAD-TEXT', 'refresh']) expect(r.text).not.toContain(s);
  });

  it('no form controls: no placeholder, value, option, textarea or button text, no label', () => {
    for (const s of ['PLACEHOLDER-TEXT', 'VALUE-TEXT', 'OPTION-TEXT', 'TEXTAREA-TEXT', 'BUTTON-TEXT', 'パスワード', 'steal']) expect(r.text).not.toContain(s);
  });

  it('no frame or object text', () => {
    for (const s of ['IFRAME-TEXT', 'OBJECT-TEXT', 'frame']) expect(r.text).not.toContain(s);
  });

  it('no hidden text (display, visibility, font-size:0, hidden, white on white, preheader, opacity, off-screen)', () => {
    expect(r.text).not.toMatch(/HIDDEN/);
  });

  it('text a descendant makes visible again is kept', () => {
    expect(r.text).toContain('フォント復帰');
    expect(r.text).toContain('表示復帰');
  });

  it('no URL is clickable anywhere, while anchor text and defanged targets are there', () => {
    expect(r.text).not.toMatch(/https?:\/\//i);
    expect(r.text).not.toMatch(CLICKABLE);
    expect(r.text).toContain('こちらからログイン [hxxps://evil[.]example/login?u=hxxps://bank.example.jp/]');
    expect(r.text).toContain('お問い合わせ [support@evil[.]example]');
    expect(r.text).toContain('hxxp://UPPER[.]EXAMPLE/Path');
    expect(r.text).toContain('www[.]bare[.]example');
    expect(r.text).toContain('hxxps://split[.]example/');
    expect(r.text).toContain('hxxps://entity[.]example/');
  });

  it('a link whose text is its target is shown once; one whose text is another URL shows both', () => {
    expect(r.text.split('\n')).toContain('hxxps://bank[.]example[.]jp/');
    expect(r.text).toContain('hxxps://bank[.]example[.]jp/real [hxxps://evil[.]example/x]');
  });

  it('a javascript: link keeps its text and loses its code', () => {
    expect(r.text).toContain('実行');
    expect(r.text).not.toContain('alert');
  });

  it('remote images and web beacons are dropped, an inline image leaves a note, alt text stays (defanged)', () => {
    expect(r.text).toContain('[image: 市のロゴ]');
    expect(r.text).toContain('[image: hxxps://alt[.]example/]');
    expect(r.text).not.toContain('track');
  });

  it('entities are decoded, headings kept as written', () => {
    expect(r.text).toContain('いつもご利用&ありがとう ございます。\nアカウントを確認してください。');
    expect(r.text.startsWith('重要なお知らせ\n\n')).toBe(true);
  });

  it('lists what was done', () => {
    expect(r.actions).toEqual([
      'HTML converted to text',
      '10 links defanged',
      '2 scripts removed', // the <script> and the javascript: link
      '1 form element removed',
      '3 embedded frames or objects removed',
      '2 remote images removed',
      '1 inline image removed',
      'hidden text removed',
    ]);
  });

  it('the output is tidy: \\n line ends, no trailing blanks, at most one empty line in a row', () => {
    expect(r.text).not.toMatch(/\r|[ \t]+\n|\n{3}|^\n|\n$/);
  });
});

describe('HTML: what a reader reads is kept', () => {
  it('paragraphs, line breaks, headings, blockquotes and preformatted text', () => {
    const r = sanitizeBody([html('<h2>件名</h2><p>一段落目。<br>改行後。</p><p>二段落目。</p><blockquote>引用文</blockquote><pre>  字下げ\n  そのまま</pre>')]);
    expect(r.text).toBe('件名\n\n一段落目。\n改行後。\n\n二段落目。\n\n> 引用文\n\n  字下げ\n  そのまま');
  });

  it('lists: bullets, numbers, nested items', () => {
    const r = sanitizeBody([html('<ul><li>りんご</li><li>みかん<ul><li>温州</li></ul></li></ul><ol start="3"><li>第三</li><li>第四</li></ol>')]);
    expect(r.text).toBe(' * りんご\n * みかん\n   * 温州\n\n 3. 第三\n 4. 第四');
  });

  it('a data table is aligned in display columns: full-width characters count two', () => {
    const r = sanitizeBody([
      html(`<table border="1">
        <tr><th>品名</th><th>数量</th><th>備考</th></tr>
        <tr><td>りんご（青森）</td><td>10</td><td>①至急</td></tr>
        <tr><td>Banana</td><td>２００</td><td>see <a href="https://shop.example/b">shop</a></td></tr>
        <tr><td colspan="2">合計</td><td>210</td></tr>
      </table>`),
    ]);
    const col2 = columnOf(r.text, '数量');
    expect(columnOf(r.text, '10')).toBe(col2);
    expect(columnOf(r.text, '２００')).toBe(col2);
    const col3 = columnOf(r.text, '備考');
    expect(columnOf(r.text, '①至急')).toBe(col3);
    expect(columnOf(r.text, 'see shop')).toBe(col3);
    expect(columnOf(r.text, '210')).toBe(col3);
    expect(col2).toBeGreaterThan(columns('りんご（青森）'));
    expect(r.text).toContain('[hxxps://shop[.]example/b]');
  });

  it('Word/Outlook tables (paragraphs in cells) stay aligned, multi-line cells included', () => {
    const r = sanitizeBody([html('<table><tr><td><p class=MsoNormal>氏名<o:p></o:p></p></td><td><p class=MsoNormal>所属</p></td></tr><tr><td><p>山田　太郎</p></td><td><p>総務課<br>庶務係</p></td></tr></table>')]);
    expect(r.text).toBe('氏名        所属\n山田　太郎  総務課\n            庶務係');
  });

  it('layout tables (nested, one column) come out as blocks, the data table inside still aligned', () => {
    const r = sanitizeBody([html('<table width="600"><tr><td><table><tr><td>ロゴ</td><td>メニュー</td></tr></table></td></tr><tr><td><p>本文です。</p><p>二段落目。</p></td></tr></table>')]);
    expect(r.text).toBe('ロゴ  メニュー\n\n本文です。\n\n二段落目。');
  });

  it('hidden rows and cells of a data table are dropped', () => {
    const r = sanitizeBody([html('<table><tr style="display:none"><td>HIDDEN-ROW</td><td>x</td></tr><tr><td style="display:none">HIDDEN-CELL</td><td>見える</td></tr></table>')]);
    expect(r.text).not.toContain('HIDDEN');
    expect(r.text).toContain('見える');
    expect(r.actions).toContain('hidden text removed');
  });
});

describe('plain text', () => {
  it('is chosen over the HTML alternative (multipart/alternative read by parseMessage)', async () => {
    const raw = Buffer.from(
      [
        'From: a@example.jp',
        'To: b@city.example.lg.jp',
        'Subject: alt',
        'MIME-Version: 1.0',
        'Content-Type: multipart/alternative; boundary="alt"',
        '',
        '--alt',
        'Content-Type: text/plain; charset=UTF-8',
        'Content-Transfer-Encoding: 8bit',
        '',
        'プレーン本文 https://plain.example/',
        '--alt',
        'Content-Type: text/html; charset=UTF-8',
        '',
        '<p>HTML-BODY</p>',
        '--alt--',
        '',
      ].join('\r\n'),
    );
    const r = sanitizeBody((await parseMessage(raw)).parts);
    expect(r.text).toBe('プレーン本文 hxxps://plain[.]example/');
    expect(r.actions).toEqual(['HTML alternative dropped (the plain-text one was used)', '1 link defanged']);
  });

  it('an empty plain alternative does not win over the HTML', () => {
    const r = sanitizeBody([plain(' \r\n '), html('<p>HTML本文</p>')]);
    expect(r.text).toBe('HTML本文');
  });

  it('bare URLs are defanged (scheme, www., mailto:, UNC), e-mail addresses are left alone', () => {
    const r = sanitizeBody([plain('See https://a.example/x?y=1, www.b.example\r\nmailto:c@d.example \\\\server\\share\\f.txt\r\nfile:///C:/x.exe 担当 tanaka@city.example.lg.jp')]);
    expect(r.text).toBe('See hxxps://a[.]example/x?y=1, www[.]b[.]example\nc@d[.]example [\\\\]server\\share\\f.txt\nfile[:]///C:/x.exe 担当 tanaka@city.example.lg.jp');
    expect(r.text).not.toMatch(CLICKABLE);
    expect(r.actions).toEqual(['5 links defanged']);
  });

  it('line ends become \\n, trailing blanks and control characters go, inner blank lines stay', () => {
    const r = sanitizeBody([plain('\r\n一行目  \r\n\r\n\r\n三行目\x1b[31m\t\r\n\r\n')]);
    expect(r.text).toBe('一行目\n\n\n三行目[31m');
  });

  it('two plain leaves are joined; no body leaf gives an empty text', () => {
    expect(sanitizeBody([plain('一'), plain('二')]).text).toBe('一\n\n二');
    expect(sanitizeBody([])).toEqual({ text: '', actions: [] });
  });
});

describe('defangUrl', () => {
  it.each([
    ['https://example.com/path?a=1', 'hxxps://example[.]com/path?a=1'],
    ['HTTP://Evil.Example.co.jp:8080/x.html#y', 'hxxp://Evil[.]Example[.]co[.]jp:8080/x.html#y'],
    ['ftp://files.example/a', 'fxp://files[.]example/a'],
    ['mailto:info@city.example.lg.jp?subject=hi', 'info@city[.]example[.]lg[.]jp?subject=hi'],
    ['www.example.com/x', 'www[.]example[.]com/x'],
    [' java\nscript:alert(1)', 'javascript[:]alert(1)'],
    ['//evil.example/x', '//evil[.]example/x'],
    ['https://a.example/r?u=https://b.example/', 'hxxps://a[.]example/r?u=hxxps://b.example/'],
    ['file:///C:/Windows', 'file[:]///C:/Windows'],
    ['ms-msdt:/id PCWDiagnostic', 'ms-msdt[:]/idPCWDiagnostic'],
  ])('%s → %s, and again the same', (url, shown) => {
    expect(defangUrl(url)).toBe(shown);
    expect(defangUrl(shown)).toBe(shown);
  });
});

describe('limits hold by result', () => {
  it('100,000 nested elements: cut at the nesting limit, text before it kept, noted', () => {
    const r = sanitizeBody([html(`<p>前文</p>${'<div>'.repeat(100_000)}深部${'</div>'.repeat(100_000)}<p>後文</p>`)]);
    expect(r.text).toMatch(/^前文\n\n…$/);
    expect(r.actions).toContain('HTML cut where it nests deeper than 200 levels');
  });

  it('nesting just under the limit is rendered whole', () => {
    const r = sanitizeBody([html(`${'<div>'.repeat(150)}深部${'</div>'.repeat(150)}<p>後文</p>`)]);
    expect(r.text).toBe('深部\n\n後文');
  });

  it('colspan=1000 rowspan=65534 cells stay a small table', () => {
    const r = sanitizeBody([html(`<table>${'<tr><td colspan="1000" rowspan="65534">x</td><td>y</td></tr>'.repeat(200)}</table>`)]);
    expect(r.text.length).toBeLessThan(100_000);
    expect(r.text).toContain('y');
  });

  it(`HTML over ${MAX_HTML_BYTES} bytes is cut there, with a note`, () => {
    const r = sanitizeBody([html(`<p>始まり</p>${'<p>あいうえお</p>\n'.repeat(MAX_HTML_BYTES / 20)}<p>END-TEXT</p>`)]);
    expect(r.text.startsWith('始まり')).toBe(true);
    expect(r.text).not.toContain('END-TEXT');
    expect(r.text.endsWith('…')).toBe(true);
    expect(r.actions).toContain('HTML body cut after its first 2 MiB');
  });

  it('a plain body over the limit on one line is cut on a character boundary: the charset still reads right', () => {
    const r = sanitizeBody([plain(`あいう${'日本語テキスト'.repeat(MAX_PLAIN_BYTES / 18)}`)]);
    expect(r.text.startsWith('あいう日本語テキスト')).toBe(true);
    expect(r.text).not.toContain('\ufffd');
    expect(r.actions).toEqual(['text body cut after its first 5 MiB']);
  });

  it('an element with 200,000 children renders (no call-stack overflow), its hidden twin is dropped', () => {
    const kids = '<b>x</b>'.repeat(200_000);
    expect(sanitizeBody([html(`<div>${kids}</div>`)]).text.length).toBeGreaterThan(0);
    expect(sanitizeBody([html(`<div style="display:none">${kids}</div><table style="display:none">${kids}</table>`)]).text).toBe('');
  });
});
