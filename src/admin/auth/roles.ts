/**
 * The console's roles. A tenant role is bound to exactly one tenant; every other role is prefecture-wide and has
 * no tenant. Permissions per role are the admin app's; this file only names them.
 */

/**
 * admin: prefecture administrator, all tenants, may release directly. tenant-admin / tenant-staff: one
 * municipality's administrator / staff. operator: queues and metrics, never message content. auditor: the audit
 * log, read-only.
 */
export const roles = ['admin', 'tenant-admin', 'tenant-staff', 'operator', 'auditor'] as const;
export type Role = (typeof roles)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (roles as readonly string[]).includes(value);
}

/** True for the roles that belong to one tenant (and must have a tenantId); false for prefecture-wide roles. */
export function roleNeedsTenant(role: Role): boolean {
  return role === 'tenant-admin' || role === 'tenant-staff';
}
