package maintenance

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/storage"
)

// Deleted counts what a deletion removed from the bucket.
type Deleted struct {
	Objects int
	Bytes   int64
}

// DeleteBackup deletes a COMMITTED or ABORTED backup now (and finishes one
// left DELETING by a crash).
func (s *Service) DeleteBackup(ctx context.Context, tenant, id string) (*metadata.Backup, Deleted, error) {
	if id == "" {
		return nil, Deleted{}, fault.Invalid(fault.Violation{Field: "backup_id", Description: "required"})
	}
	b, err := s.cfg.Catalog.GetBackup(ctx, tenant, id)
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, Deleted{}, fault.Wrap(err, fault.NotFound, "BACKUP_NOT_FOUND", "backup %q not found", id)
	}
	if err != nil {
		return nil, Deleted{}, err
	}
	if b.Status == metadata.BackupOpen {
		return nil, Deleted{}, fault.New(fault.FailedPrecondition, "BACKUP_OPEN", "backup %s is OPEN: abort it (AbortBackup) instead", id)
	}
	var d Deleted
	_, err = s.locked(ctx, tenant, "delete", false, func(*metadata.MaintenanceRun) (string, error) {
		if b.Status != metadata.BackupDeleting {
			if err := s.cfg.Catalog.SetBackupStatus(ctx, tenant, id, b.Status, metadata.BackupDeleting); err != nil {
				return "", fault.Wrap(err, fault.Aborted, "BACKUP_CHANGED", "backup %s changed state meanwhile; retry", id)
			}
			b.Status = metadata.BackupDeleting
		}
		var err error
		d, err = s.finishDeletion(ctx, b)
		return fmt.Sprintf("deleted backup %s: %d objects, %d bytes", id, d.Objects, d.Bytes), err
	})
	if err != nil {
		return nil, d, err
	}
	return b, d, nil
}

// finishDeletion deletes the objects only a DELETING backup references (its
// manifest last), then its rows. Every step is idempotent: a run killed
// anywhere is finished by the next.
func (s *Service) finishDeletion(ctx context.Context, b *metadata.Backup) (Deleted, error) {
	var d Deleted
	s.crash("after-mark")
	st, err := s.storeOf(ctx, b.TenantID, b.StorageID)
	if err != nil {
		return d, err
	}
	objs, err := s.cfg.Catalog.ExclusiveObjects(ctx, b.TenantID, b.ID)
	if err != nil {
		return d, err
	}
	sort.SliceStable(objs, func(i, j int) bool { // the manifest goes last
		return objs[i].Kind != metadata.ObjManifest && objs[j].Kind == metadata.ObjManifest
	})
	var keys, manifest, ids []string
	for _, o := range objs {
		if o.Kind == metadata.ObjManifest {
			manifest = append(manifest, o.Key)
		} else {
			keys = append(keys, o.Key)
		}
		ids = append(ids, o.ID)
		d.Objects++
		d.Bytes += o.Size
	}
	for _, batch := range [][]string{keys, manifest} {
		if len(batch) == 0 {
			continue
		}
		if err := st.Delete(ctx, batch...); err != nil {
			return Deleted{}, deleteFault(err)
		}
	}
	s.crash("after-objects")
	if err := s.cfg.Catalog.PurgeBackupRows(ctx, b.TenantID, b.ID, ids); err != nil {
		return Deleted{}, err
	}
	s.crash("after-purge")
	if err := s.cfg.Catalog.DeleteBackupRow(ctx, b.TenantID, b.ID); err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return Deleted{}, err
	}
	return d, nil
}

func deleteFault(err error) error {
	var de *storage.DeleteError
	if errors.As(err, &de) && len(de.Keys) > 0 {
		k := de.Keys[0]
		return fault.Wrap(err, fault.FailedPrecondition, "DELETE_REFUSED",
			"S3 refused to delete %d object(s), e.g. %s (%s); the backup stays DELETING and the next cleanup retries; check s3:DeleteObject", len(de.Keys), k.Key, k.Code)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 DeleteObjects failed; the next cleanup retries")
}
