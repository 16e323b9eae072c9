/**
 * What the admin app's routes and pages need, wired by the composition root (src/runtime.ts) or by tests. The app
 * reads the stores through their interfaces only (DESIGN §8), and changes quarantine records only through the
 * release workflow.
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Config } from '../config/schema.ts';
import type { TenantIndex } from '../config/tenants.ts';
import type { Metrics } from '../metrics.ts';
import type { SenderListStore } from '../policy/sender-list-store.ts';
import type { Pipeline } from '../queue/pipeline.ts';
import type { QuarantineStore } from '../quarantine/quarantine-store.ts';
import type { DigestSigner } from '../quarantine/digest.ts';
import type { ReleaseService } from '../quarantine/release.ts';
import type { AvCurrency } from '../scan/av-currency.ts';
import type { ServiceStatus } from '../services/supervisor.ts';
import type { MessageStore } from '../spool/message-store.ts';
import type { MetaStore } from '../spool/meta-store.ts';
import type { AccountStore } from './auth/account-store.ts';
import type { AuditLog } from './audit/audit-log.ts';

export interface AdminContext {
  config: Config;
  tenants: TenantIndex;
  meta: MetaStore;
  store: MessageStore;
  quarantine: QuarantineStore;
  accounts: AccountStore;
  audit: AuditLog;
  senderLists?: SenderListStore;
  release: ReleaseService;
  pipeline: Pick<Pipeline, 'ping' | 'counts' | 'stages' | 'queue'>;
  metrics: Metrics;
  /** Metrics of other processes of the tree (the worker child), fetched at scrape time. */
  remoteMetrics?: () => Promise<MetricObjectWithValues<MetricValue<string>>[][]>;
  /** How current clamd's signatures are (AvCurrencyMonitor); absent: not known here. */
  avCurrency?: { latest(): AvCurrency | null };
  /** The managed services of this process (clamd, redis-server) and whether each is up; absent: none here. */
  services?: { status(): ServiceStatus[] };
  /** Signs and checks the links of recipient digests. */
  digestSigner?: DigestSigner;
  now: () => number;
}
