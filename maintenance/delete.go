package maintenance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/storage"
)

// Deleted counts what a deletion removed from the bucket.
type Deleted struct {
	Objects int
	Bytes   int64
}

// DeleteBackup deletes a COMMITTED or ABORTED backup (and finishes one left
// DELETING by a crash): it marks it DELETING, then purges it under the
// tenant's maintenance lock — or, when another run holds the lock for longer
// than DeleteWait, answers with the backup DELETING and nothing deleted yet,
// and the next cleanup purges it.
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
	// The mark is a compare-and-set and final: taken outside the lock, it
	// takes the backup out of restores and retention at once, and the purge
	// (under the tenant's maintenance lock) follows now or, if another run
	// holds the lock past DeleteWait, in the next cleanup.
	if b.Status != metadata.BackupDeleting {
		if err := s.cfg.Catalog.SetBackupStatus(ctx, tenant, id, b.Status, metadata.BackupDeleting); err != nil {
			if errors.Is(err, metadata.ErrConflict) {
				return nil, Deleted{}, fault.Wrap(err, fault.Aborted, "BACKUP_CHANGED", "backup %s changed state meanwhile; retry", id)
			}
			return nil, Deleted{}, err
		}
		b.Status = metadata.BackupDeleting
	}
	var d Deleted
	deadline := s.cfg.Now().Add(DeleteWait)
	for {
		_, err = s.locked(ctx, tenant, "delete", false, func(*metadata.MaintenanceRun) (string, error) {
			var err error
			d, err = s.finishDeletion(ctx, b)
			return fmt.Sprintf("deleted backup %s: %d objects, %d bytes", id, d.Objects, d.Bytes), err
		})
		if !errors.Is(err, ErrBusy) {
			break
		}
		if !s.cfg.Now().Before(deadline) || ctx.Err() != nil {
			// Marked DELETING: the next cleanup finishes it.
			s.cfg.Logger.InfoContext(ctx, "backup deletion deferred to cleanup: the tenant's maintenance is running", "tenant", tenant, "backup", id)
			return b, Deleted{}, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, d, err
	}
	return b, d, nil
}

// DeleteWait is how long DeleteBackup waits for the tenant's maintenance
// lock before leaving the marked backup to the next cleanup.
const DeleteWait = 10 * time.Second

// finishDeletion deletes the objects only a DELETING backup references (its
// manifest last), then its rows, and then the backup row. Every step is
// idempotent: a run killed anywhere is finished by the next.
func (s *Service) finishDeletion(ctx context.Context, b *metadata.Backup) (Deleted, error) {
	s.crash("after-mark")
	d, err := s.purge(ctx, b)
	if err != nil {
		return d, err
	}
	s.crash("after-purge")
	if err := s.cfg.Catalog.DeleteBackupRow(ctx, b.TenantID, b.ID); err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return Deleted{}, err
	}
	return d, nil
}

// purgePage is how many objects one step of a purge deletes from the bucket
// and then from the catalog.
const purgePage = 500

// purge is the one deletion path, for DELETING and ABORTED backups alike,
// run under the maintenance lock: page by page, the objects no other backup
// references are deleted from the bucket (DeleteObjects) and then their rows
// (and this backup's rows that pointed at them) in one transaction; the
// manifest goes last; then the backup's remaining rows. Memory is bounded by a
// page whatever the backup's size. Pending uploads of an ABORTED backup are
// ended first (FAILED, then their multipart uploads aborted).
func (s *Service) purge(ctx context.Context, b *metadata.Backup) (Deleted, error) {
	var d Deleted
	// Nothing is deleted from the bucket for a backup that is not marked for
	// it (both marks are final states, so reading the mark once suffices).
	cur, err := s.cfg.Catalog.GetBackup(ctx, b.TenantID, b.ID)
	if errors.Is(err, metadata.ErrNotFound) {
		// The lock makes two purges at once rare, not impossible (a lost
		// MySQL session frees it): the other one finished this backup.
		return d, nil
	}
	if err != nil {
		return d, err
	}
	if cur.Status != metadata.BackupAborted && cur.Status != metadata.BackupDeleting {
		return d, fault.New(fault.FailedPrecondition, "BACKUP_NOT_DELETABLE", "backup %s is %s: only an ABORTED or DELETING backup is purged", b.ID, cur.Status)
	}
	st, err := s.cfg.Registry.StoreFor(ctx, b.TenantID, b.StorageID)
	if err != nil {
		return d, err
	}
	if err := s.endPendingUploads(ctx, b, st); err != nil {
		return d, err
	}
	var manifest *metadata.Object
	after := ""
	for {
		page, next, err := s.cfg.Catalog.ExclusiveObjectsPage(ctx, b.TenantID, b.ID, after, purgePage)
		if err != nil {
			return d, err
		}
		var keys, ids []string
		for _, o := range page {
			if o.Kind == metadata.ObjManifest {
				manifest = o
				continue
			}
			keys, ids = append(keys, o.Key), append(ids, o.ID)
			d.Objects++
			d.Bytes += o.Size
		}
		if len(keys) > 0 {
			if err := st.Delete(ctx, keys...); err != nil {
				return Deleted{}, deleteFault(err)
			}
			s.crash("after-objects")
			if err := s.cfg.Catalog.PurgeObjectRows(ctx, b.TenantID, b.ID, ids); errors.Is(err, metadata.ErrNotFound) {
				return d, nil // purged meanwhile by another run
			} else if err != nil {
				return Deleted{}, err
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	var ids []string
	if manifest != nil {
		if err := st.Delete(ctx, manifest.Key); err != nil {
			return Deleted{}, deleteFault(err)
		}
		ids = append(ids, manifest.ID)
		d.Objects++
		d.Bytes += manifest.Size
	}
	if err := s.cfg.Catalog.PurgeBackupRows(ctx, b.TenantID, b.ID, ids); err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return Deleted{}, err
	}
	// Packs left without a body (their last files were this backup's) go
	// from the bucket, then their rows; a crash in between finds them again.
	for {
		packs, err := s.cfg.Catalog.EmptyPacks(ctx, b.TenantID, b.StorageID, purgePage)
		if err != nil {
			return Deleted{}, err
		}
		if len(packs) == 0 {
			break
		}
		var keys, pids []string
		for _, p := range packs {
			keys, pids = append(keys, p.Key), append(pids, p.ID)
			d.Objects++
			d.Bytes += p.Size
		}
		if err := st.Delete(ctx, keys...); err != nil {
			return Deleted{}, deleteFault(err)
		}
		s.crash("after-packs")
		if err := s.cfg.Catalog.DeletePackRows(ctx, b.TenantID, pids); err != nil {
			return Deleted{}, err
		}
	}
	return d, nil
}

// endPendingUploads ends the PENDING uploads of an ABORTED backup: each goes
// to FAILED fenced by its generation (a stream still writing it is refused
// from then on), and only then is its multipart upload aborted.
func (s *Service) endPendingUploads(ctx context.Context, b *metadata.Backup, st storage.Store) error {
	pending, err := s.cfg.Catalog.PendingUploads(ctx, b.TenantID, b.ID)
	if err != nil {
		return err
	}
	for _, u := range pending {
		err := s.cfg.Catalog.FailUpload(ctx, b.TenantID, b.ID, u.UploadID, u.Generation, metadata.UploadFailed, "the backup was aborted")
		if errors.Is(err, metadata.ErrStale) {
			continue // reopened meanwhile: its stream cannot commit into an aborted backup; GC aborts what it leaves
		}
		if err != nil {
			return err
		}
		if u.S3UploadID == "" {
			continue
		}
		if err := st.AbortMultipart(ctx, u.ObjectKey, u.S3UploadID); err != nil {
			if !errors.Is(err, storage.ErrAbortDenied) {
				return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 AbortMultipartUpload failed; the next cleanup retries")
			}
			s.cfg.Logger.WarnContext(ctx, "multipart upload abandoned: AbortMultipartUpload denied", "tenant", b.TenantID,
				"backup", b.ID, "upload", u.UploadID, "key", u.ObjectKey, "s3_upload_id", u.S3UploadID)
			_ = s.cfg.Catalog.AbandonUpload(ctx, b.TenantID, b.ID, u.UploadID, u.Generation)
		}
	}
	return nil
}

// PurgeAborted deletes what only an ABORTED backup references, under the
// maintenance lock like every deletion; the backup row stays, ABORTED. When
// another replica holds the lock for longer than wait, it returns
// deferred=true and the next cleanup finishes the purge.
func (s *Service) PurgeAborted(ctx context.Context, tenant, id string, wait time.Duration) (d Deleted, deferred bool, err error) {
	b, err := s.cfg.Catalog.GetBackup(ctx, tenant, id)
	if errors.Is(err, metadata.ErrNotFound) {
		return d, false, fault.Wrap(err, fault.NotFound, "BACKUP_NOT_FOUND", "backup %q not found", id)
	}
	if err != nil {
		return d, false, err
	}
	if b.Status != metadata.BackupAborted {
		return d, false, fault.New(fault.FailedPrecondition, "BACKUP_NOT_ABORTED", "backup %s is %s, not ABORTED", id, b.Status)
	}
	deadline := s.cfg.Now().Add(wait)
	for {
		_, err = s.locked(ctx, tenant, "delete", false, func(*metadata.MaintenanceRun) (string, error) {
			var err error
			d, err = s.purge(ctx, b)
			return fmt.Sprintf("purged aborted backup %s: %d objects, %d bytes", id, d.Objects, d.Bytes), err
		})
		if !errors.Is(err, ErrBusy) {
			return d, false, err
		}
		if !s.cfg.Now().Before(deadline) {
			return d, true, nil
		}
		select {
		case <-ctx.Done():
			return d, true, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deleteFault answers a failed Delete: keys S3 refused one by one are named
// (with the permission to check), anything else — a refusal of the whole
// call included, which the server maps as every refusal — the next cleanup
// retries.
func deleteFault(err error) error {
	var de *storage.DeleteError
	if errors.As(err, &de) && len(de.Keys) > 0 && errors.Is(err, storage.ErrAccessDenied) {
		k := de.Keys[0]
		return fault.Wrap(err, fault.FailedPrecondition, "DELETE_REFUSED",
			"S3 refused to delete %d object(s), e.g. %s (%s); the backup stays DELETING and the next cleanup retries; check s3:DeleteObject", len(de.Keys), k.Key, k.Code)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 DeleteObjects failed; the next cleanup retries")
}
