package ingest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/storage"
)

// Orphan is a file whose parent record is in no record set of the backup.
type Orphan struct{ FileID, ParentID, Path string }

// CommitBackup writes the manifest and flips an OPEN backup to COMMITTED.
func (s *Service) CommitBackup(ctx context.Context, tenant, id string, requireParents bool) (*metadata.Backup, []Orphan, error) {
	b, err := s.GetBackup(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	if b.Status == metadata.BackupCommitted {
		return b, nil, nil
	}
	if b.Status != metadata.BackupOpen {
		return nil, nil, fault.New(fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s is %s and cannot be committed", id, b.Status)
	}
	pending, err := s.cfg.Catalog.PendingUploads(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	if len(pending) > 0 {
		ids := make([]string, len(pending))
		for i, u := range pending {
			ids[i] = u.UploadID
		}
		return nil, nil, pendingFault(ids)
	}
	st, err := s.storeOf(ctx, b)
	if err != nil {
		return nil, nil, err
	}
	chunks, err := s.cfg.Catalog.ListRecordChunks(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	orphans, man, err := s.checkParents(ctx, b, st, chunks)
	if err != nil {
		return nil, nil, err
	}
	if requireParents && len(orphans) > 0 {
		var lines []string
		for i, o := range orphans {
			if i == 20 {
				lines = append(lines, fmt.Sprintf("and %d more", len(orphans)-20))
				break
			}
			lines = append(lines, fmt.Sprintf("%s (parent %s, %s)", o.FileID, o.ParentID, o.Path))
		}
		return nil, orphans, fault.New(fault.FailedPrecondition, "ORPHAN_FILES",
			"%d file(s) have no parent record in this backup: %s", len(orphans), strings.Join(lines, "; "))
	}
	// The manifest keeps the bucket self-describing if the catalog is lost.
	key := manifestKey(b)
	body, _ := json.MarshalIndent(man, "", " ")
	if _, err := st.Put(ctx, key, bytes.NewReader(body)); err != nil {
		return nil, nil, s3Fault(err, "PutObject (manifest)")
	}
	sum := sha256Sum(body)
	obj := &metadata.Object{TenantID: tenant, ID: "obj-manifest-" + b.ID, OrgID: b.OrgID, StorageID: b.StorageID, BackupID: b.ID,
		Key: key, Kind: metadata.ObjManifest, Size: int64(len(body)), SHA256: sum, CreatedAt: s.cfg.Now().UTC()}
	if err := s.cfg.Catalog.InsertObject(ctx, obj); err != nil && !errors.Is(err, metadata.ErrConflict) {
		return nil, nil, err
	}
	nb, err := s.cfg.Catalog.CommitBackup(ctx, tenant, id, key, s.cfg.Now().UTC())
	var pe *metadata.PendingUploadsError
	if errors.As(err, &pe) {
		return nil, nil, pendingFault(pe.UploadIDs)
	}
	if err != nil {
		if errors.Is(err, metadata.ErrConflict) {
			return nil, nil, fault.Wrap(err, fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s changed state while committing", id)
		}
		return nil, nil, err
	}
	s.cfg.Logger.InfoContext(ctx, "backup committed", "tenant", tenant, "backup", id, "records", nb.RecordCount,
		"files", nb.FileCount, "bytes_in", nb.BytesIn, "bytes_stored", nb.BytesStored, "orphan_files", len(orphans))
	return nb, orphans, nil
}

func pendingFault(ids []string) error {
	shown := ids
	more := ""
	if len(shown) > 20 {
		shown, more = shown[:20], fmt.Sprintf(" and %d more", len(ids)-20)
	}
	return fault.New(fault.FailedPrecondition, "UPLOADS_PENDING",
		"%d upload(s) are still pending: %s%s; finish or resend them (ListUploads), then commit", len(ids), strings.Join(shown, ", "), more)
}

type manifest struct {
	Version    int               `json:"version"`
	Backup     string            `json:"backup_id"`
	Tenant     string            `json:"tenant_id"`
	Org        string            `json:"org_id"`
	Storage    string            `json:"storage_id,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	StartedAt  time.Time         `json:"started_at"`
	RecordSets []manifestChunk   `json:"record_chunks"`
	Files      []manifestFile    `json:"files"`
	Records    int64             `json:"records"`
}

type manifestChunk struct {
	SObject     string          `json:"sobject"`
	Sequence    int32           `json:"sequence"`
	DataKey     string          `json:"data_key"`
	IndexKey    string          `json:"index_key"`
	Records     int64           `json:"records"`
	BytesIn     int64           `json:"bytes_in"`
	BytesStored int64           `json:"bytes_stored"`
	SHA256      string          `json:"sha256"`
	References  json.RawMessage `json:"references,omitempty"`
}

type manifestFile struct {
	ID          string `json:"id"`
	ParentID    string `json:"parent_id"`
	Path        string `json:"path"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Key         string `json:"key"`
}

// checkParents finds files whose parent id is in no record index of the
// backup. Work is proportional to files × chunks: each check is a bloom
// test on a cached footer and, on a hit, one block read.
func (s *Service) checkParents(ctx context.Context, b *metadata.Backup, st storage.Store, chunks []*metadata.RecordChunk) ([]Orphan, *manifest, error) {
	man := &manifest{Version: 1, Backup: b.ID, Tenant: b.TenantID, Org: b.OrgID, Storage: b.StorageID, Labels: b.Labels, StartedAt: b.StartedAt}
	var readers []*recindex.Reader
	for _, c := range chunks {
		data, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.DataObjectID)
		if err != nil {
			return nil, nil, err
		}
		idx, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.IndexObjectID)
		if err != nil {
			return nil, nil, err
		}
		man.RecordSets = append(man.RecordSets, manifestChunk{SObject: c.SObject, Sequence: c.Sequence, DataKey: data.Key, IndexKey: idx.Key,
			Records: c.Records, BytesIn: c.BytesIn, BytesStored: c.BytesStored, SHA256: hex.EncodeToString(c.SHA256), References: c.References})
		man.Records += c.Records
		r, err := recindex.Open(storage.NewReaderAt(ctx, st, idx.Key), idx.Size)
		if err != nil {
			return nil, nil, fmt.Errorf("record index %s: %w", idx.Key, err)
		}
		readers = append(readers, r)
	}
	var orphans []Orphan
	keys := map[string]string{}
	err := s.cfg.Catalog.ForEachFile(ctx, b.TenantID, b.ID, func(f *metadata.File) error {
		key, ok := keys[f.ObjectID]
		if !ok {
			o, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, f.ObjectID)
			if err != nil {
				return err
			}
			key, keys[f.ObjectID] = o.Key, o.Key
		}
		man.Files = append(man.Files, manifestFile{ID: f.ID, ParentID: f.ParentID, Path: f.Path, Name: f.Name,
			ContentType: f.ContentType, Size: f.Size, SHA256: hex.EncodeToString(f.SHA256), Key: key})
		for _, r := range readers {
			if !r.MayContain(f.ParentID) {
				continue
			}
			if _, ok, err := r.Lookup(f.ParentID); err != nil {
				return err
			} else if ok {
				return nil
			}
		}
		orphans = append(orphans, Orphan{FileID: f.ID, ParentID: f.ParentID, Path: f.Path})
		return nil
	})
	return orphans, man, err
}

// AbortBackup marks an OPEN backup ABORTED and deletes what only it
// references. Running it again finishes what an interrupted run left.
func (s *Service) AbortBackup(ctx context.Context, tenant, id string) (*metadata.Backup, int, error) {
	b, err := s.GetBackup(ctx, tenant, id)
	if err != nil {
		return nil, 0, err
	}
	switch b.Status {
	case metadata.BackupOpen:
		if err := s.cfg.Catalog.SetBackupStatus(ctx, tenant, id, metadata.BackupOpen, metadata.BackupAborted); err != nil {
			return nil, 0, fault.Wrap(err, fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s changed state meanwhile; retry", id)
		}
	case metadata.BackupAborted:
	default:
		return nil, 0, fault.New(fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s is %s; only an OPEN backup can be aborted", id, b.Status)
	}
	st, err := s.storeOf(ctx, b)
	if err != nil {
		return nil, 0, err
	}
	pending, err := s.cfg.Catalog.PendingUploads(ctx, tenant, id)
	if err != nil {
		return nil, 0, err
	}
	for _, u := range pending {
		s.fail(ctx, st, u, fault.New(fault.Aborted, "BACKUP_ABORTED", "the backup was aborted"))
	}
	objs, err := s.cfg.Catalog.ExclusiveObjects(ctx, tenant, id)
	if err != nil {
		return nil, 0, err
	}
	keys := make([]string, len(objs))
	ids := make([]string, len(objs))
	for i, o := range objs {
		keys[i], ids[i] = o.Key, o.ID
	}
	if len(keys) > 0 {
		if err := st.Delete(ctx, keys...); err != nil {
			return nil, 0, s3Fault(err, "DeleteObjects")
		}
	}
	if err := s.cfg.Catalog.PurgeBackupRows(ctx, tenant, id, ids); err != nil {
		return nil, 0, err
	}
	nb, err := s.cfg.Catalog.GetBackup(ctx, tenant, id)
	s.cfg.Logger.InfoContext(ctx, "backup aborted", "tenant", tenant, "backup", id, "objects_deleted", len(keys))
	return nb, len(keys), err
}

// QueryUploadStatus returns one upload of a backup.
func (s *Service) QueryUploadStatus(ctx context.Context, tenant, backupID, uploadID string) (*metadata.Upload, error) {
	if _, err := s.GetBackup(ctx, tenant, backupID); err != nil {
		return nil, err
	}
	if v := checkUploadID(uploadID); v != nil {
		return nil, fault.Invalid(*v)
	}
	u, err := s.cfg.Catalog.GetUpload(ctx, tenant, backupID, uploadID)
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, fault.Wrap(err, fault.NotFound, "UPLOAD_NOT_FOUND", "backup %s has no upload %s", backupID, uploadID)
	}
	return u, err
}

// ListUploads pages through a backup's uploads.
func (s *Service) ListUploads(ctx context.Context, tenant, backupID, state string, pageSize int, token string) ([]*metadata.Upload, string, error) {
	if _, err := s.GetBackup(ctx, tenant, backupID); err != nil {
		return nil, "", err
	}
	if pageSize < 0 || pageSize > 1000 {
		return nil, "", fault.Invalid(fault.Violation{Field: "page_size", Description: "must be between 0 and 1000"})
	}
	if pageSize == 0 {
		pageSize = 100
	}
	list, next, err := s.cfg.Catalog.ListUploads(ctx, tenant, backupID, state, pageSize, token)
	if errors.Is(err, metadata.ErrInvalid) {
		return nil, "", fault.Invalid(fault.Violation{Field: "page_token", Description: "not a token from a previous response"})
	}
	return list, next, err
}
