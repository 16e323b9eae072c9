/**
 * The list of stages, in the order a message goes through them. The pipeline makes one queue per entry, the
 * workers one BullMQ worker, the reconciler asks each what to recover, the metrics label by their names:
 * adding a stage is one file behind the Stage interface and one line here.
 */
import type { AnyStage } from './stage.ts';
import { deliverStage } from './stages/deliver-stage.ts';
import { sanitizeStage } from './stages/sanitize-stage.ts';
import { scanStage } from './stages/scan-stage.ts';

export const stages: readonly AnyStage[] = [scanStage, sanitizeStage, deliverStage];
