/**
 * Prometheus metrics. Each process (ingress, worker) counts what it does in its own registry; the admin process
 * merges the worker's registry (sent over IPC) with its own when `sekisho start` runs them as one tree.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Stage latencies from 1 ms to ~2 min: SMTP acceptance is milliseconds, a deferred delivery is minutes. */
const LATENCY_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The delivered-mark window, 50 µs to 1 s: one small commit without fsync is tens of µs; a busy disk or lock, ms. */
const MARK_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export function createMetrics(role: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ role });
  collectDefaultMetrics({ register: registry, prefix: 'sekisho_' });
  return {
    registry,
    received: new Counter({ name: 'sekisho_messages_received_total', help: 'Messages accepted with 250 and spooled', registers: [registry] }),
    smtpRejected: new Counter({
      name: 'sekisho_smtp_rejected_total',
      help: 'SMTP commands or messages refused by the ingress, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    deliveries: new Counter({
      name: 'sekisho_recipients_total',
      help: 'Recipient outcomes: delivered, deferred, bounced, quarantined, rejected',
      labelNames: ['outcome', 'tenant'],
      registers: [registry],
    }),
    actions: new Counter({ name: 'sekisho_policy_actions_total', help: 'Actions chosen by policy per tenant', labelNames: ['action', 'tenant'], registers: [registry] }),
    stageSeconds: new Histogram({
      name: 'sekisho_stage_duration_seconds',
      help: 'Time spent in one stage of one message (ingress: DATA to 250; scan; deliver: one attempt)',
      labelNames: ['stage'],
      buckets: LATENCY_BUCKETS_S,
      registers: [registry],
    }),
    checkSeconds: new Histogram({
      name: 'sekisho_check_duration_seconds',
      help: 'Time of one check on one message, by outcome',
      labelNames: ['check', 'outcome'],
      buckets: LATENCY_BUCKETS_S,
      registers: [registry],
    }),
    endToEndSeconds: new Histogram({
      name: 'sekisho_end_to_end_seconds',
      help: 'From receipt to the downstream 250 of a recipient',
      buckets: LATENCY_BUCKETS_S,
      registers: [registry],
    }),
    deliveredMarkSeconds: new Histogram({
      name: 'sekisho_delivered_mark_seconds',
      help: "From a downstream server's reply accepting a message to the commit of its delivered mark: the window in which a process death makes a duplicate",
      buckets: MARK_BUCKETS_S,
      registers: [registry],
    }),
    sanitizedParts: new Counter({
      name: 'sekisho_sanitized_parts_total',
      help: 'Attachments of sanitized messages: converted, or removed with the reason (encrypted, executable, timeout…)',
      labelNames: ['tenant', 'outcome', 'reason'],
      registers: [registry],
    }),
    failedHold: new Counter({ name: 'sekisho_messages_failed_total', help: 'Messages moved to the failed hold after maxAttempts', registers: [registry] }),
    serviceRestarts: new Counter({
      name: 'sekisho_service_restarts_total',
      help: 'Restarts of a supervised process after it died (clamd, redis-server, converter, libreoffice)',
      labelNames: ['service'],
      registers: [registry],
    }),
    serviceUp: new Gauge({
      name: 'sekisho_service_up',
      help: 'A managed service of `sekisho start`: 1 while it runs, 0 while it is down (being restarted)',
      labelNames: ['service'],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
