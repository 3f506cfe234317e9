package registry

import (
	"context"
	"errors"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/storage"
)

// CommittedBackup returns the tenant's backup id and the store it lives on, when the backup is
// COMMITTED: the one check of restore's reads and maintenance's Verify. Another tenant's id, or
// one that does not exist, answers NotFound (BACKUP_NOT_FOUND); a backup in any other state
// answers FailedPrecondition (BACKUP_NOT_COMMITTED) with a message ending "only COMMITTED
// backups " + only (e.g. "can be read").
func (r *Registry) CommittedBackup(ctx context.Context, tenant, id, only string) (*metadata.Backup, storage.Store, error) {
	b, err := r.cfg.Catalog.GetBackup(ctx, tenant, id)
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, nil, fault.Wrap(err, fault.NotFound, "BACKUP_NOT_FOUND", "backup %q not found", id)
	}
	if err != nil {
		return nil, nil, err
	}
	if b.Status != metadata.BackupCommitted {
		return nil, nil, fault.New(fault.FailedPrecondition, "BACKUP_NOT_COMMITTED", "backup %s is %s; only COMMITTED backups %s", id, b.Status, only)
	}
	st, err := r.StoreFor(ctx, tenant, b.StorageID)
	if err != nil {
		return nil, nil, err
	}
	return b, st, nil
}
