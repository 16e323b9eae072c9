/**
 * The configuration `npm start` runs with when no config file is given: two demo tenants — デモ市 gets mail as it
 * came, デモ町 sanitized (メール無害化) — both delivering into a local demo mailbox.
 */
export const DEMO_MAILBOX_LISTEN = '127.0.0.1:2526';

export const demoConfig = {
  hostname: 'sekisho.demo.local',
  smtp: { listen: '127.0.0.1:2525', verdictWaitMs: 5000 },
  dataDir: './var',
  admin: { listen: '127.0.0.1:8025' },
  tenants: [
    {
      id: 'city',
      name: 'デモ市',
      domains: ['city.example.lg.jp'],
      deliverTo: `smtp://${DEMO_MAILBOX_LISTEN}`,
      sanitize: false,
    },
    {
      id: 'town',
      name: 'デモ町',
      domains: ['town.example.lg.jp'],
      deliverTo: `smtp://${DEMO_MAILBOX_LISTEN}`,
      sanitize: true,
    },
  ],
};
