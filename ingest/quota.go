package ingest

import (
	"context"

	"backupstore/fault"
	"backupstore/metadata"
)

// Quotas cap what one tenant may have in the catalog at once; a zero field
// is no limit. Checks count the catalog before a creation, so creations
// racing at the limit may overshoot it by as many as run at once (a few);
// the limits are guards against a runaway tenant, not billing.
type Quotas struct {
	// MaxOpenBackups caps backups in state OPEN.
	MaxOpenBackups int64
	// MaxPendingUploads caps uploads in state PENDING; new upload ids are
	// refused at the cap (resuming or finishing a pending one is not).
	MaxPendingUploads int64
	// MaxCatalogRows caps object plus file rows; new upload ids are refused
	// at the cap. Counting reads every such row of the tenant, so it is
	// paid on each new upload only when set.
	MaxCatalogRows int64
}

// checkNewBackup refuses a new backup past the open-backups quota.
func (s *Service) checkNewBackup(ctx context.Context, tenant string) error {
	q := s.cfg.Quotas
	if q.MaxOpenBackups <= 0 {
		return nil
	}
	tc, err := s.cfg.Catalog.CountTenant(ctx, tenant, metadata.CountOpenBackups)
	if err != nil {
		return err
	}
	if tc.OpenBackups >= q.MaxOpenBackups {
		return fault.New(fault.ResourceExhausted, "QUOTA_OPEN_BACKUPS",
			"the tenant has %d open backups and its limit is %d: commit or abort open backups (ListBackups with status OPEN) before creating more",
			tc.OpenBackups, q.MaxOpenBackups)
	}
	return nil
}

// checkNewUpload refuses a new upload id past the pending-uploads quota
// (when it may leave a PENDING upload) or the catalog-rows quota.
func (s *Service) checkNewUpload(ctx context.Context, tenant string, mayPend bool) error {
	q := s.cfg.Quotas
	kinds := 0
	if q.MaxPendingUploads > 0 && mayPend {
		kinds |= metadata.CountPendingUploads
	}
	if q.MaxCatalogRows > 0 {
		kinds |= metadata.CountCatalogRows
	}
	if kinds == 0 {
		return nil
	}
	tc, err := s.cfg.Catalog.CountTenant(ctx, tenant, kinds)
	if err != nil {
		return err
	}
	switch {
	case q.MaxPendingUploads > 0 && tc.PendingUploads >= q.MaxPendingUploads:
		return fault.New(fault.ResourceExhausted, "QUOTA_PENDING_UPLOADS",
			"the tenant has %d pending uploads and its limit is %d: finish or resume pending uploads (ListUploads with state PENDING) before starting new ones; cleanup aborts abandoned ones after the upload TTL",
			tc.PendingUploads, q.MaxPendingUploads)
	case q.MaxCatalogRows > 0 && tc.CatalogRows >= q.MaxCatalogRows:
		return fault.New(fault.ResourceExhausted, "QUOTA_CATALOG_ROWS",
			"the tenant's catalog holds %d objects and files and its limit is %d: delete old backups (or set a retention policy) before storing more, or ask the operator for a higher limit",
			tc.CatalogRows, q.MaxCatalogRows)
	}
	return nil
}
