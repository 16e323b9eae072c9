/**
 * sanitizeBody on hostile and ordinary HTML and plain text: what a reader reads is kept (paragraphs, lists,
 * headings, tables aligned by display width), what must not reach them is gone (scripts, styles, forms, hidden
 * text — by inline style, style sheet or colour —, frames, images), no URL is left clickable anywhere, the
 * plain-text alternative is preferred, and every input limit holds by result.
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

describe('HTML: text hidden by style sheets and colours', () => {
  /** The body of `markup` after `css` in a <style> block, with SHOWN before and after to prove the rest stays. */
  function withSheet(css: string, markup: string): string {
    return sanitizeBody([html(`<html><head><style>${css}</style></head><body><p>SHOWN-BEFORE</p>${markup}<p>SHOWN-AFTER</p></body></html>`)]).text;
  }

  it.each([
    ['display:none by class', '.h{display:none}', '<p class="h">隠し</p>'],
    ['display:none by id', '#h { DISPLAY: NONE }', '<div id="h">隠し</div>'],
    ['display:none by tag.class', 'span.h{display:none}', '<span class="h">隠し</span>'],
    ['display:none by two classes', '.a.b{display:none}', '<span class="b x a">隠し</span>'],
    ['display:none in a selector list', 'h9, .h {display:none}', '<span class="h">隠し</span>'],
    ['display:none by descendant', '.wrap .h{display:none}', '<div class="wrap"><div><span class="h">隠し</span></div></div>'],
    ['display:none by child', '.wrap > span{display:none}', '<div class="wrap"><span>隠し</span></div>'],
    ['display:none by tag', 'mark{display:none}', '<mark>隠し</mark>'],
    ['visibility:hidden, inherited', '.h{visibility:hidden}', '<div class="h"><p>隠し</p></div>'],
    ['font-size 0', '.h{font-size:0}', '<span class="h">隠し</span>'],
    ['font-size 1px', '.h{font-size:1px}', '<span class="h">隠し</span>'],
    ['font-size 2px', '.h{font-size:2px}', '<span class="h">隠し</span>'],
    ['font-size 1pt', '.h{font-size:1pt}', '<span class="h">隠し</span>'],
    ['font shorthand 0/0', '.h{font:0/0 a}', '<span class="h">隠し</span>'],
    ['opacity 0', '.h{opacity:0}', '<p class="h">隠し</p>'],
    ['colour equal to its background', '.h{color:#123456;background-color:#123456}', '<p class="h">隠し</p>'],
    ['mso-hide:all', '.h{mso-hide:all}', '<p class="h">隠し</p>'],
    ['max-height 0 with overflow hidden', '.h{max-height:0;overflow:hidden}', '<div class="h">隠し</div>'],
    ['height 0 with overflow hidden', '.h{height:0px;overflow:hidden}', '<div class="h">隠し</div>'],
    ['off-screen', '.h{position:absolute;left:-9999px}', '<div class="h">隠し</div>'],
    ['white text on the default page', '.h{color:#fff}', '<p class="h">隠し</p>'],
    ['near-white text on the default page', '.h{color:rgb(252, 252, 252)}', '<p class="h">隠し</p>'],
    ['transparent text', '.h{color:transparent}', '<p class="h">隠し</p>'],
    ['!important in the sheet beats the inline style', '.h{display:none !important}', '<p class="h" style="display:block">隠し</p>'],
    ['a later rule of the same specificity wins', '.h{display:block} .h{display:none}', '<p class="h">隠し</p>'],
    ['a more specific rule wins over a later one', 'p.h{display:none} .h{display:block}', '<p class="h">隠し</p>'],
    ['a rule in a second <style> block', '.h{display:none}</style><style>.x{color:red}', '<p class="h">隠し</p>'],
  ])('%s: hidden', (_name, css, markup) => {
    const text = withSheet(css, markup);
    expect(text).not.toContain('隠し');
    expect(text).toBe('SHOWN-BEFORE\n\nSHOWN-AFTER');
  });

  it.each([
    ['display:block', '.h{display:block}', '<p class="h">見える</p>'],
    ['display:none only inside @media', '@media (max-width: 480px){.m{display:none}}', '<p class="m">見える</p>'],
    ['display:none undone inside @media', '.m{display:none} @media (max-width: 480px){.m{display:block !important}}', '<p class="m">見える</p>'],
    ['display:none undone by a selector not evaluated', '.h{display:none} div > p.h:first-child{display:block}', '<div><p class="h">見える</p></div>'],
    ['display:none behind a selector not evaluated', 'p:hover{display:none} .a + .b{display:none} [title]{display:none} *:not(p){display:none}', '<p class="b" title="t">見える</p>'],
    ['font-size 12px', '.h{font-size:12px}', '<span class="h">見える</span>'],
    ['font-size 0.8em', '.h{font-size:0.8em}', '<span class="h">見える</span>'],
    ['a class that only sets the colour', '.h{color:#cc0000}', '<p class="h">見える</p>'],
    ['a rule for another class', '.h{display:none}', '<p class="hh">見える</p>'],
    ['a descendant rule whose ancestor is absent', '.wrap .h{display:none}', '<p class="h">見える</p>'],
    ['visibility:hidden undone by a visible child', '.h{visibility:hidden} .v{visibility:visible}', '<div class="h"><p class="v">見える</p></div>'],
    ['white text on a dark bgcolor', '.w{color:#ffffff}', '<table bgcolor="#003366"><tr><td><p class="w">見える</p></td></tr></table>'],
    ['white text on a dark background set by the sheet', '.w{color:white} .dark{background:#003366 no-repeat}', '<div class="dark"><p class="w">見える</p></div>'],
    ['white text on a background image', '.w{color:#fff} .img{background-image:url(cid:bg)}', '<div class="img"><p class="w">見える</p></div>'],
    ['dark text on a dark bgcolor', '.d{color:#333333}', '<table><tr><td bgcolor="#003366"><span class="d">見える</span></td></tr></table>'],
    ['a white link text: links are drawn in the link colour', '.w{color:#fff}', '<p class="w"><a href="#top">見える</a></p>'],
    ['an unclosed rule', '.h{display:none', '<p>見える</p>'],
    ['a mobile-only block (hidden with mso-hide too, shown by @media)', '.mo{display:none;max-height:0;overflow:hidden;mso-hide:all} @media only screen and (max-width:480px){.mo{display:block !important;max-height:none !important}}', '<div class="mo">見える</div>'],
    ['white text whose colour a @media rule changes', '.w{color:#fff} @media (prefers-color-scheme: light){.w{color:#111}}', '<div class="w"><p>見える</p></div>'],
    ['a tiny font a @media rule enlarges', '.t{font-size:1px} @media screen{.t{font-size:16px}}', '<div class="t"><p>見える</p></div>'],
    ['display:none undone by a rule holding nested CSS', '.h{display:none} .h{display:block; &:hover{color:red}}', '<p class="h">見える</p>'],
    ['display:none undone inside nested @supports and @media', '.h{display:none} @supports (display:grid){@media screen{.h{display:block}}}', '<p class="h">見える</p>'],
  ])('%s: shown', (_name, css, markup) => {
    expect(withSheet(css, markup)).toContain('見える');
  });

  it('the inline style beats the sheet both ways', () => {
    expect(withSheet('.h{display:none}', '<p class="h" style="display:block">見える</p>')).toContain('見える');
    expect(withSheet('.v{display:block}', '<p class="v" style="display:none">隠し</p>')).not.toContain('隠し');
    expect(withSheet('.v{font-size:14px}', '<p class="v" style="font-size:1px">隠し</p>')).not.toContain('隠し');
    expect(withSheet('.h{font-size:1px}', '<p class="h" style="font-size:14px">見える</p>')).toContain('見える');
  });

  it('colour and property names that are Object.prototype keys are just unknown values', () => {
    const text = withSheet('.c{color:constructor;background:__proto__} .d{toString:1}', '<p class="c d" style="color:hasOwnProperty">見える</p><p style="color:constructor">二</p>');
    expect(text).toContain('見える');
    expect(text).toContain('二');
  });

  it('a stray end tag, which the parser turns into an element, is left as it was', () => {
    expect(withSheet('p{font-size:14px} br{color:red}', '<div>前</p>後</br>末</div>')).toBe('SHOWN-BEFORE\n\n前\n\n後\n末\n\nSHOWN-AFTER');
  });

  it('colour attributes count: <font color> white on the page is hidden, on a dark bgcolor it is shown', () => {
    expect(withSheet('', '<font color="#FFFFFF">隠し</font>')).not.toContain('隠し');
    expect(withSheet('', '<body bgcolor="000000"><font color="white">見える</font></body>')).toContain('見える');
    expect(withSheet('', '<p style="color:#fff">隠し</p>')).not.toContain('隠し');
    expect(withSheet('', '<div style="color:#fff"><span style="color:#222">見える</span></div>')).toContain('見える');
  });

  it('says hidden text was removed; the inserted styles leave the rest of the mail as it was', () => {
    const r = sanitizeBody([html('<style>.h{display:none}</style><p class="h">隠し <a href="https://evil.example/">x</a></p><table bgcolor="#eeeeee"><tr><td>品名</td><td>数量</td></tr></table>')]);
    expect(r.text).toBe('品名  数量');
    expect(r.actions).toEqual(['HTML converted to text', 'hidden text removed']);
  });

  it(`${MAX_HTML_BYTES / 1024 / 1024} MiB of CSS: the sheet is ignored with a note, the text is shown`, () => {
    const css = `.h{display:none}${'.x{color:red;padding:1px 2px 3px 4px}\n'.repeat(60_000)}`;
    const r = sanitizeBody([html(`<style>${css.slice(0, MAX_HTML_BYTES - 100)}</style><p class="h">見える</p>`)]);
    expect(r.text).toContain('見える');
    expect(r.actions).toContain('style sheet ignored (over 512 KiB): text it hides is shown');
  });

  it('100,000 rules: the sheet is ignored with a note, the text is shown', () => {
    const r = sanitizeBody([html(`<style>.h{display:none}${'a{}'.repeat(100_000)}</style><p class="h">見える</p>`)]);
    expect(r.text).toContain('見える');
    expect(r.actions).toContain('style sheet ignored (over 10000 rules): text it hides is shown');
  });

  it('@media nested 30,000 deep: no stack overflow, the sheet is ignored with a note', () => {
    const r = sanitizeBody([html(`<style>.h{display:none}${'@media screen{'.repeat(30_000)}</style><p class="h">見える</p>`)]);
    expect(r.text).toContain('見える');
    expect(r.actions).toContain('style sheet ignored (@media nested over 4 deep): text it hides is shown');
  });

  it('rules × elements × depth past the matching budget: the sheet is ignored with a note, the text is shown', () => {
    const rules = Array.from({ length: 5_000 }, (_, i) => `.z${i} .a`).join(',');
    const r = sanitizeBody([html(`<style>${rules}{display:none} .h{display:none}</style>${'<div class="a">'.repeat(150)}${'<b class="a">x</b>'.repeat(2_000)}<p class="h">見える</p>`)]);
    expect(r.text).toContain('見える');
    expect(r.actions).toContain('style sheet ignored (too costly to match): text it hides is shown');
  });
});
