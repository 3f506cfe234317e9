package metadata

import "context"

// TenantCounts is what a tenant has in the catalog, as quotas count it.
type TenantCounts struct {
	OpenBackups    int64 // backups in state OPEN
	PendingUploads int64 // uploads in state PENDING
	// CatalogRows is object rows plus file rows: what grows with what a
	// tenant stores (record chunks add two objects each, files one row and
	// at most one object).
	CatalogRows int64
}

// Count kinds for CountTenant.
const (
	CountOpenBackups = 1 << iota
	CountPendingUploads
	CountCatalogRows
)

// CountTenant counts the tenant's rows of the kinds asked for (an OR of the
// Count constants; the others are left 0). Counting open backups reads the
// tenant's backup rows, pending uploads use the (tenant, state) index, and
// catalog rows read every object and file row of the tenant — ask for that
// one only when a limit is set. The counts are a snapshot: two callers
// checking a limit at once may both pass it.
func (c catalog) CountTenant(ctx context.Context, tenantID string, kinds int) (TenantCounts, error) {
	var tc TenantCounts
	if err := notEmpty("tenant id", tenantID); err != nil {
		return tc, c.fail("CountTenant", err, nil)
	}
	count := func(dst *int64, q string, args ...any) error {
		return c.q.QueryRowContext(ctx, q, args...).Scan(dst)
	}
	var err error
	if kinds&CountOpenBackups != 0 {
		err = count(&tc.OpenBackups, "SELECT COUNT(*) FROM backups WHERE tenant_id = ? AND status = ?", tenantID, BackupOpen)
	}
	if err == nil && kinds&CountPendingUploads != 0 {
		err = count(&tc.PendingUploads, "SELECT COUNT(*) FROM uploads WHERE tenant_id = ? AND state = ?", tenantID, UploadPending)
	}
	if err == nil && kinds&CountCatalogRows != 0 {
		var objects, files int64
		if err = count(&objects, "SELECT COUNT(*) FROM objects WHERE tenant_id = ?", tenantID); err == nil {
			err = count(&files, "SELECT COUNT(*) FROM files WHERE tenant_id = ?", tenantID)
		}
		tc.CatalogRows = objects + files
	}
	return tc, c.fail("CountTenant", err, nil)
}

// BackupByIdempotencyKey returns the tenant's backup created with this
// idempotency key, or ErrNotFound.
func (c catalog) BackupByIdempotencyKey(ctx context.Context, tenantID, key string) (*Backup, error) {
	if err := notEmpty("tenant id", tenantID, "idempotency key", key); err != nil {
		return nil, c.fail("BackupByIdempotencyKey", err, nil)
	}
	b, err := scanBackup(c.q.QueryRowContext(ctx, selectBackup+" WHERE tenant_id = ? AND idempotency_key = ?", tenantID, key))
	return b, c.fail("BackupByIdempotencyKey", err, nil)
}
