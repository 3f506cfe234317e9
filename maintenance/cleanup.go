package maintenance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/retention"
	"backupstore/storage"
)

// Item is one thing cleanup did, or would do with DryRun, and why.
type Item struct {
	Action, BackupID, Key, UploadID, S3UploadID string
	Bytes                                       int64
	Reason                                      string
}

// ActionStrayMultipart is the Item action of a multipart upload in the bucket that no PENDING
// upload owns, aborted by garbage collection (listed only, in a dry run).
const ActionStrayMultipart = "garbage-multipart"

// Report is what a cleanup run did.
type Report struct {
	RunID  string
	DryRun bool
	// GarbageDeleted counts stray keys and stray multipart uploads (MultipartAborted of them).
	Expired, ObjectsDeleted, GarbageDeleted, UploadsAborted, Skip int64
	MultipartAborted                                              int64
	// PacksRepacked counts the packs a repack retired, PacksWritten the new
	// packs their live bodies went to.
	PacksRepacked, PacksWritten int64
	BytesFreed                  int64
	Items                       []Item
}

// Cleanup applies retention, finishes deletions, aborts stale uploads and
// collects garbage for one tenant, under the maintenance lock.
func (s *Service) Cleanup(ctx context.Context, tenant string, dryRun bool) (*Report, error) {
	rep := &Report{DryRun: dryRun}
	run, err := s.locked(ctx, tenant, "cleanup", dryRun, func(run *metadata.MaintenanceRun) (string, error) {
		rep.RunID = run.ID
		steps := []func(context.Context, string, *Report) error{s.expire, s.finishDeletions, s.abortStale, s.repack, s.collectGarbage}
		for _, step := range steps {
			if err := step(ctx, tenant, rep); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("expired %d backups, deleted %d objects (%d bytes), %d garbage keys, %d stray multipart uploads, aborted %d uploads, repacked %d packs into %d, skipped %d",
			rep.Expired, rep.ObjectsDeleted, rep.BytesFreed, rep.GarbageDeleted-rep.MultipartAborted, rep.MultipartAborted, rep.UploadsAborted,
			rep.PacksRepacked, rep.PacksWritten, rep.Skip), nil
	})
	if run != nil {
		rep.RunID = run.ID
	}
	return rep, err
}

// allBackups pages through a filter.
func (s *Service) allBackups(ctx context.Context, tenant string, f metadata.BackupFilter) ([]*metadata.Backup, error) {
	var out []*metadata.Backup
	tok := ""
	for {
		page, next, err := s.cfg.Catalog.ListBackups(ctx, tenant, f, 1000, tok)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		tok = next
	}
}

// policyFor returns the org's policy, else the tenant's, else nil.
func (s *Service) policyFor(ctx context.Context, tenant, org string) (*metadata.RetentionPolicy, error) {
	for _, o := range []string{org, ""} {
		p, err := s.cfg.Catalog.GetRetentionPolicy(ctx, tenant, o)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, metadata.ErrNotFound) {
			return nil, err
		}
	}
	return nil, nil
}

func toPolicy(p *metadata.RetentionPolicy) retention.Policy {
	return retention.Policy{Last: p.KeepLast, Daily: p.KeepDaily, Weekly: p.KeepWeekly, Monthly: p.KeepMonthly, Yearly: p.KeepYearly, Within: p.KeepWithin}
}

// expire marks COMMITTED backups the policy does not keep DELETING.
func (s *Service) expire(ctx context.Context, tenant string, rep *Report) error {
	orgs, err := s.cfg.Catalog.OrgsWithBackups(ctx, tenant)
	if err != nil {
		return err
	}
	for _, org := range orgs {
		p, err := s.policyFor(ctx, tenant, org)
		if err != nil {
			return err
		}
		if p == nil {
			continue // no policy: keep everything
		}
		list, err := s.allBackups(ctx, tenant, metadata.BackupFilter{OrgID: org, Status: metadata.BackupCommitted})
		if err != nil {
			return err
		}
		in := make([]retention.Backup, len(list))
		byID := map[string]*metadata.Backup{}
		for i, b := range list {
			in[i] = retention.Backup{ID: b.ID, Started: b.StartedAt, Damaged: b.Damaged}
			byID[b.ID] = b
		}
		for _, d := range retention.Apply(in, toPolicy(p)) {
			if d.Keep {
				continue
			}
			b := byID[d.Backup.ID]
			rep.Items = append(rep.Items, Item{Action: "expire", BackupID: b.ID, Bytes: b.BytesStored, Reason: "not kept by the retention policy"})
			rep.Expired++
			if rep.DryRun {
				continue
			}
			if err := s.cfg.Catalog.SetBackupStatus(ctx, tenant, b.ID, metadata.BackupCommitted, metadata.BackupDeleting); err != nil {
				if errors.Is(err, metadata.ErrConflict) || errors.Is(err, metadata.ErrNotFound) {
					rep.Skip++
					continue
				}
				return err
			}
		}
	}
	return nil
}

// finishDeletions deletes every DELETING backup's objects and rows (and, in
// a dry run, says which backups would be deleted now).
func (s *Service) finishDeletions(ctx context.Context, tenant string, rep *Report) error {
	list, err := s.allBackups(ctx, tenant, metadata.BackupFilter{Status: metadata.BackupDeleting})
	if err != nil {
		return err
	}
	if rep.DryRun {
		for _, it := range rep.Items {
			if it.Action == "expire" {
				list = append(list, &metadata.Backup{TenantID: tenant, ID: it.BackupID})
			}
		}
	}
	for _, b := range list {
		if rep.DryRun {
			objs, err := s.cfg.Catalog.ExclusiveObjects(ctx, tenant, b.ID)
			if err != nil {
				return err
			}
			for _, o := range objs {
				rep.Items = append(rep.Items, Item{Action: "delete", BackupID: b.ID, Key: o.Key, Bytes: o.Size, Reason: "only this backup references it"})
				rep.ObjectsDeleted++
				rep.BytesFreed += o.Size
			}
			continue
		}
		d, err := s.finishDeletion(ctx, b)
		if err != nil {
			return err
		}
		rep.Items = append(rep.Items, Item{Action: "delete", BackupID: b.ID, Bytes: d.Bytes, Reason: fmt.Sprintf("%d objects only this backup referenced", d.Objects)})
		rep.ObjectsDeleted += int64(d.Objects)
		rep.BytesFreed += d.Bytes
	}
	if rep.DryRun {
		return nil
	}
	// An AbortBackup whose purge was interrupted (or deferred while the lock
	// was busy) is finished here: the same purge, idempotent, under the lock.
	aborted, err := s.allBackups(ctx, tenant, metadata.BackupFilter{Status: metadata.BackupAborted})
	if err != nil {
		return err
	}
	for _, b := range aborted {
		d, err := s.purge(ctx, b)
		if err != nil {
			return err
		}
		if d.Objects > 0 {
			rep.Items = append(rep.Items, Item{Action: "delete", BackupID: b.ID, Bytes: d.Bytes, Reason: fmt.Sprintf("%d objects only this aborted backup referenced", d.Objects)})
			rep.ObjectsDeleted += int64(d.Objects)
			rep.BytesFreed += d.Bytes
		}
	}
	return nil
}

// abortStale aborts PENDING uploads idle longer than UploadTTL.
func (s *Service) abortStale(ctx context.Context, tenant string, rep *Report) error {
	ups, err := s.cfg.Catalog.StaleUploads(ctx, tenant, s.cfg.Now().Add(-s.cfg.UploadTTL))
	if err != nil {
		return err
	}
	for _, u := range ups {
		it := Item{Action: "abort", BackupID: u.BackupID, UploadID: u.UploadID, Key: u.ObjectKey, S3UploadID: u.S3UploadID,
			Bytes: u.StoredSize, Reason: fmt.Sprintf("pending and idle since %s", u.UpdatedAt.UTC().Format(time.RFC3339))}
		if rep.DryRun {
			rep.Items = append(rep.Items, it)
			rep.UploadsAborted++
			continue
		}
		// Only the generation that was idle is ended: FAILED first, fenced
		// by it (a worker that resumed the upload meanwhile keeps it), and
		// only then is its multipart upload aborted. An abort that fails
		// leaves a multipart upload no PENDING row owns, which garbage
		// collection aborts later.
		err := s.cfg.Catalog.FailUpload(ctx, tenant, u.BackupID, u.UploadID, u.Generation, metadata.UploadFailed, "aborted by cleanup: idle longer than the upload TTL")
		if errors.Is(err, metadata.ErrStale) || errors.Is(err, metadata.ErrNotFound) {
			continue // resumed, ended or purged since it was listed
		}
		if err != nil {
			return err
		}
		if u.S3UploadID != "" {
			b, err := s.cfg.Catalog.GetBackup(ctx, tenant, u.BackupID)
			if errors.Is(err, metadata.ErrNotFound) {
				continue // purged meanwhile; garbage collection aborts what is left
			}
			if err != nil {
				return err
			}
			st, err := s.cfg.Registry.StoreFor(ctx, tenant, b.StorageID)
			if err != nil {
				return err
			}
			if err := st.AbortMultipart(ctx, u.ObjectKey, u.S3UploadID); err != nil {
				if !errors.Is(err, storage.ErrAbortDenied) {
					return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 AbortMultipartUpload failed; garbage collection retries it")
				}
				if err := s.cfg.Catalog.AbandonUpload(ctx, tenant, u.BackupID, u.UploadID, u.Generation); err != nil && !errors.Is(err, metadata.ErrStale) {
					return err
				}
				it.Action = "skip"
				it.Reason = "AbortMultipartUpload denied: its parts stay billed until a lifecycle rule AbortIncompleteMultipartUpload removes them (see backupctl storage policy)"
				rep.Skip++
			}
		}
		if it.Action == "abort" {
			rep.UploadsAborted++
		}
		rep.Items = append(rep.Items, it)
	}
	return nil
}

// storeOrSkip is the store of one of the tenant's storages, or nil with a skip item when the
// storage cannot be used now (deregistered, failing validation): cleanup goes on with the rest.
func (s *Service) storeOrSkip(ctx context.Context, tenant, sid string, rep *Report) (storage.Store, error) {
	st, err := s.cfg.Registry.StoreFor(ctx, tenant, sid)
	if fe, ok := fault.As(err); ok && fe.Kind == fault.FailedPrecondition {
		rep.Skip++
		rep.Items = append(rep.Items, Item{Action: "skip", Reason: "storage " + sid + ": " + fe.Msg})
		return nil, nil
	}
	return st, err
}

// collectGarbage deletes keys under the tenant's prefix, on each of its
// storages, that no catalog row and no live upload knows, once they are
// older than the grace period. Both listings come in byte order, so a merge
// finds them in memory bounded by one batch.
func (s *Service) collectGarbage(ctx context.Context, tenant string, rep *Report) error {
	storages, rows, err := s.tenantStorages(ctx, tenant)
	if err != nil {
		return err
	}
	pending, err := s.cfg.Catalog.PendingUploadKeys(ctx, tenant)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, k := range pending {
		live[k] = true
	}
	cutoff := s.cfg.Now().Add(-s.cfg.Grace)
	for _, sid := range storages {
		st, err := s.storeOrSkip(ctx, tenant, sid, rep)
		if err != nil {
			return err
		}
		if st == nil {
			continue
		}
		// Key spaces of other storages inside this one's (claimed before
		// claims were checked across tenants) are not this tenant's to
		// collect.
		var foreign []string
		if row := rows[sid]; row != nil {
			if foreign, err = s.cfg.Registry.NestedKeySpaces(ctx, row); err != nil {
				return err
			}
		}
		if err := s.garbageIn(ctx, tenant, sid, st, live, foreign, cutoff, rep); err != nil {
			return err
		}
		if err := s.strayMultipartIn(ctx, tenant, sid, st, cutoff, rep); err != nil {
			return err
		}
	}
	return nil
}

// strayMultipartIn aborts the multipart uploads under the tenant's prefix that no PENDING upload
// owns (same key and S3 upload id) and that were initiated before cutoff: those a crash left
// between CreateMultipart and recording its id, an upload reset to a new key, or an upload
// created after AbortBackup's snapshot. Their parts are billed but invisible to object listings.
// A young one is reported as skipped (its owner may record it any moment); one whose server
// reports no initiation time is skipped too (its age cannot be judged).
func (s *Service) strayMultipartIn(ctx context.Context, tenant, storageID string, st storage.Store, cutoff time.Time, rep *Report) error {
	err := st.ListMultipart(ctx, tenant+"/", func(u storage.MultipartUpload) error {
		owned, err := s.cfg.Catalog.PendingUploadOwns(ctx, tenant, u.Key, u.UploadID)
		if err != nil {
			return err
		}
		if owned {
			return nil
		}
		it := Item{Action: ActionStrayMultipart, Key: u.Key, S3UploadID: u.UploadID,
			Reason: "multipart upload no pending upload owns, initiated " + u.Initiated.UTC().Format(time.RFC3339) + ", before the grace period"}
		switch {
		case u.Initiated.IsZero():
			it.Action, it.Reason = "skip", "multipart upload no pending upload owns, but the storage reports no initiation time"
			rep.Skip++
			rep.Items = append(rep.Items, it)
			return nil
		case u.Initiated.After(cutoff):
			it.Action, it.Reason = "skip", "multipart upload no pending upload owns, but initiated within the grace period"
			rep.Skip++
			rep.Items = append(rep.Items, it)
			return nil
		}
		if !rep.DryRun {
			if err := st.AbortMultipart(ctx, u.Key, u.UploadID); err != nil {
				if !errors.Is(err, storage.ErrAbortDenied) {
					return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 AbortMultipartUpload of a stray upload failed; the next cleanup retries")
				}
				it.Action = "skip"
				it.Reason = "stray multipart upload, but AbortMultipartUpload denied: its parts stay billed until a lifecycle rule AbortIncompleteMultipartUpload removes them (see backupctl storage policy)"
				rep.Skip++
				rep.Items = append(rep.Items, it)
				return nil
			}
		}
		rep.GarbageDeleted++
		rep.MultipartAborted++
		rep.Items = append(rep.Items, it)
		return nil
	})
	if err != nil {
		if _, ok := fault.As(err); ok {
			return err
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "listing multipart uploads of storage %q failed; retry", storageID)
	}
	return nil
}

// garbageBatch is how many stray keys garbage collection re-checks and
// deletes at a time.
const garbageBatch = 500

func (s *Service) garbageIn(ctx context.Context, tenant, storageID string, st storage.Store, live map[string]bool, foreign []string, cutoff time.Time, rep *Report) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	known := make(chan string, 1024)
	kerr := make(chan error, 1)
	go func() {
		defer close(known)
		kerr <- fault.Catch(func() error {
			return s.cfg.Catalog.ForEachObjectKey(ctx, tenant, storageID, func(k string) error {
				select {
				case known <- k:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		})
	}()
	next, more := <-known
	var batch []string
	// flush re-checks the batch against the catalog with a locking read
	// (a commit still in flight when the listings were merged is waited
	// for, a key claimed since is kept) and deletes what is still nobody's.
	var sizes = map[string]int64{}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		unclaimed, err := s.cfg.Catalog.UnclaimedKeys(ctx, tenant, batch)
		batch = batch[:0]
		if err != nil {
			return err
		}
		for _, k := range unclaimed {
			rep.Items = append(rep.Items, Item{Action: "garbage", Key: k, Bytes: sizes[k], Reason: "no catalog row and older than the grace period"})
			rep.GarbageDeleted++
			rep.BytesFreed += sizes[k]
		}
		clear(sizes)
		if len(unclaimed) == 0 || rep.DryRun {
			return nil
		}
		if err := st.Delete(ctx, unclaimed...); err != nil {
			return deleteFault(err)
		}
		return nil
	}
	err := st.List(ctx, tenant+"/", func(o storage.ObjectInfo) error {
		for more && next < o.Key {
			next, more = <-known
		}
		if more && next == o.Key {
			return nil // in the catalog
		}
		if live[o.Key] || strings.Contains(o.Key, "/.tmp-") {
			return nil
		}
		for _, p := range foreign {
			if strings.HasPrefix(o.Key, p) {
				return nil
			}
		}
		if o.LastModified.After(cutoff) {
			rep.Skip++
			rep.Items = append(rep.Items, Item{Action: "skip", Key: o.Key, Bytes: o.Size, Reason: "no catalog row, but younger than the grace period"})
			return nil
		}
		batch = append(batch, o.Key)
		sizes[o.Key] = o.Size
		if len(batch) == garbageBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	cancel()
	for range known { // drain
	}
	if kerr2 := <-kerr; err == nil && kerr2 != nil && !errors.Is(kerr2, context.Canceled) {
		err = kerr2
	}
	if err != nil {
		if _, ok := fault.As(err); ok {
			return err
		}
		return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "listing storage %q for garbage failed; retry", storageID)
	}
	return nil
}
