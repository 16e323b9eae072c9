import { describe, expect, it } from 'vitest';
import { chi2Q, classify, tokenProbability } from '../../../../../src/scan/checks/bayes/classify.ts';

const totals = { spamMessages: 100, hamMessages: 100 };

describe('chi2Q', () => {
  it('matches the chi-square upper tail for even degrees of freedom', () => {
    expect(chi2Q(0, 2)).toBe(1);
    expect(chi2Q(2, 2)).toBeCloseTo(Math.exp(-1), 10);
    // Table value: P(χ²(10) > 18.307) = 0.05
    expect(chi2Q(18.307, 10)).toBeCloseTo(0.05, 3);
    expect(chi2Q(10_000, 300)).toBe(0);
  });
});

describe('tokenProbability', () => {
  it('is strong only for tokens seen in several messages of one class', () => {
    expect(tokenProbability({ spam: 50, ham: 0 }, totals)).toBeGreaterThan(0.98);
    expect(tokenProbability({ spam: 0, ham: 50 }, totals)).toBeLessThan(0.02);
    // Seen once: pulled towards the prior, not evidence yet.
    expect(Math.abs(tokenProbability({ spam: 1, ham: 0 }, totals) - 0.5)).toBeLessThan(0.346);
  });

  it('normalises by the message totals (more ham learned does not make every token hammy)', () => {
    expect(tokenProbability({ spam: 10, ham: 50 }, { spamMessages: 100, hamMessages: 500 })).toBeCloseTo(0.5, 1);
  });
});

describe('classify', () => {
  const counts = new Map([
    ['還付金', { spam: 60, ham: 0 }],
    ['ログイン', { spam: 40, ham: 2 }],
    ['本人確認', { spam: 30, ham: 1 }],
    ['会議', { spam: 0, ham: 70 }],
    ['議事録', { spam: 1, ham: 40 }],
    ['予算', { spam: 0, ham: 35 }],
    ['確認', { spam: 50, ham: 50 }],
  ]);

  it('says spam for spam tokens, ham for ham tokens, and 0.5 without evidence', () => {
    expect(classify(['還付金', 'ログイン', '本人確認', '確認'], counts, totals).probability).toBeGreaterThan(0.99);
    expect(classify(['会議', '議事録', '予算', '確認'], counts, totals).probability).toBeLessThan(0.01);
    expect(classify(['確認', 'unknown'], counts, totals)).toEqual({ probability: 0.5, evidence: [] });
  });

  it('lists its evidence, strongest first, without the neutral tokens', () => {
    const { evidence } = classify(['確認', '議事録', '還付金'], counts, totals);
    expect(evidence.map((e) => e.token)).toEqual(['還付金', '議事録']);
  });
});
