/**
 * Configuration of the Bayes check (`antispam.bayes`): where the model lives, how much learning it needs before
 * its opinion counts, and how much of a message the tokenizer reads.
 */
import { z } from 'zod';

export const bayesConfigSchema = z
  .object({
    /** false → the check is not registered at all (no BAYES_* symbol, not even BAYES_UNTRAINED). */
    enabled: z.boolean().default(true),
    /** The model's SQLite file; relative paths are under dataDir. Its own file, apart from the MetaStore. */
    dbFile: z.string().min(1).default('bayes.sqlite'),
    /** Spam messages the model must have learned before it classifies (below: BAYES_UNTRAINED). */
    minSpamMessages: z.number().int().nonnegative().default(200),
    /** Ham messages the model must have learned before it classifies (below: BAYES_UNTRAINED). */
    minHamMessages: z.number().int().nonnegative().default(200),
    /**
     * Distinct tokens taken from one message, headers and URLs first. Bounds the store lookups per message; a
     * long newsletter yields about 1,500.
     */
    maxTokensPerMessage: z.number().int().positive().default(2_500),
    /** Characters of decoded body text tokenized per message; what follows is not read. Spam says it early. */
    maxTextChars: z.number().int().positive().default(100_000),
  })
  .strict();

export type BayesConfig = z.infer<typeof bayesConfigSchema>;
