/**
 * A small generated corpus of Japanese mail, in ISO-2022-JP and Shift_JIS alternately: phishing spam (account
 * suspension, identity confirmation, parcel redelivery, tax refund) and municipal ham (meetings, budgets, notices)
 * that share everyday words (確認, お願い, ご案内) so that the classifier must weigh evidence, not spot a charset.
 */
import { buildMail, encodedWord, type Charset } from '../../../../helpers/mail-builder.ts';

const SPAM_SUBJECTS = ['【重要】アカウント停止のお知らせ', '本人確認のお願い', 'お荷物の再配達について', '還付金のお受け取り手続き', '【緊急】お支払い情報の更新'];
const SPAM_BODIES = [
  'お客様のアカウントは一時停止されました。本人確認のため、下記URLよりログインしてください。24時間以内に手続きがない場合、アカウントは永久に利用できなくなります。',
  'お荷物をお届けにあがりましたが、宛先不明のため持ち帰りました。再配達のお申し込みは下記URLから配送料をお支払いください。',
  '未払いの税金の還付金があります。還付金の受け取りには、下記リンクからクレジットカード情報を入力して本人確認を完了してください。',
  'セキュリティ上の理由により、お支払い情報の更新が必要です。至急、下記URLよりカード番号と暗証番号をご入力ください。',
];
const SPAM_HOSTS = ['amaz0n-secure-login.xyz', 'kuroneko-redeliver.top', 'nta-refund.click', 'rakuten-card-verify.info'];

const HAM_SUBJECTS = ['来週の会議資料について', '予算要求書の提出期限', '住民説明会の開催について', '議事録の送付', '研修日程のご案内'];
const HAM_BODIES = [
  '総務課の田中です。来週火曜日の課長会議の資料を添付しますので、ご確認をお願いします。修正があれば金曜日までにご連絡ください。',
  '財政課です。令和九年度予算要求書の提出期限は十二月十五日です。各課で取りまとめのうえ、提出をお願いいたします。',
  '地域振興課より、住民説明会を市民会館で開催します。会場設営のため、職員の皆様のご協力をお願いします。',
  '先日の打合せの議事録を送付します。内容をご確認いただき、訂正がありましたらお知らせください。',
  '情報政策課です。情報セキュリティ研修の日程をご案内します。全職員が受講対象となりますので、出欠を回答してください。',
];

function pick<T>(items: readonly T[], i: number): T {
  return items[i % items.length]!;
}

/** The i-th generated phishing mail; even i in ISO-2022-JP, odd i in Shift_JIS. */
export function japaneseSpam(i: number, charset: Charset = i % 2 === 0 ? 'iso-2022-jp' : 'shift_jis'): Buffer {
  const host = pick(SPAM_HOSTS, i);
  return buildMail({
    from: `${encodedWord('カスタマーサポート', charset)} <support${i}@${host}>`,
    to: 'soumu@city-a.example.lg.jp',
    subject: encodedWord(pick(SPAM_SUBJECTS, i), charset),
    text: { body: `お客様各位\n\n${pick(SPAM_BODIES, i)}\n\nhttps://${host}/login/verify?id=${1000 + i}\n\n受付番号 ${i * 7919}`, charset },
  });
}

/** The i-th generated municipal mail; even i in ISO-2022-JP, odd i in Shift_JIS. */
export function japaneseHam(i: number, charset: Charset = i % 2 === 0 ? 'iso-2022-jp' : 'shift_jis'): Buffer {
  return buildMail({
    from: `${encodedWord('総務課 田中', charset)} <tanaka${i % 3}@city-a.example.lg.jp>`,
    to: 'staff@city-a.example.lg.jp',
    subject: encodedWord(pick(HAM_SUBJECTS, i), charset),
    text: { body: `関係各位\n\n${pick(HAM_BODIES, i)}\n\n詳細は庁内ポータル https://portal.city-a.example.lg.jp/docs/${i} をご覧ください。\n\n総務課 内線${2000 + i}`, charset },
  });
}
