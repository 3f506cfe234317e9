package ingest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/storage"
)

// Orphan is a file whose parent record is in no record set of the backup.
type Orphan struct{ FileID, ParentID, Path string }

// maxOrphansListed bounds the orphans CommitBackup returns (and keeps in
// memory); the total is counted beyond it.
const maxOrphansListed = 1000

// CommitBackup writes the manifest and flips an OPEN backup to COMMITTED.
//
// The manifest is built from the catalog while uploads of the backup may
// still commit (a single-PUT file has no PENDING row to refuse on), so the
// final catalog transaction, with the backup row locked, checks that the
// backup still has exactly the files and record chunks the manifest lists; if
// one arrived meanwhile the manifest is built again (a few times, then the
// commit answers Aborted, which a worker retries).
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
	st, err := s.cfg.Registry.StoreFor(ctx, b.TenantID, b.StorageID)
	if err != nil {
		return nil, nil, err
	}
	// The backup's open pack in this process is sealed and committed first,
	// so its files are in the count and the manifest.
	s.flushPacks(tenant, id)
	for attempt := 0; attempt < 3; attempt++ {
		nb, orphans, err := s.commitOnce(ctx, b, st, requireParents)
		var changed *metadata.BackupChangedError
		if errors.As(err, &changed) {
			s.cfg.Logger.InfoContext(ctx, "backup changed while committing; building the manifest again", "tenant", tenant, "backup", id)
			continue
		}
		return nb, orphans, err
	}
	return nil, nil, fault.New(fault.Aborted, "BACKUP_CHANGING",
		"uploads of backup %s kept committing while it was being committed; let them finish, then retry CommitBackup", id)
}

func (s *Service) commitOnce(ctx context.Context, b *metadata.Backup, st storage.Store, requireParents bool) (*metadata.Backup, []Orphan, error) {
	tenant, id := b.TenantID, b.ID
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
	chunks, err := s.cfg.Catalog.ListRecordChunks(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	mb, err := s.newManifestBuilder(ctx, b, st, chunks)
	if err != nil {
		return nil, nil, err
	}
	// The manifest streams to the bucket as it is built: memory stays
	// bounded by one batch of files, whatever their number.
	key := manifestKey(b)
	pr, pw := io.Pipe()
	built := make(chan error, 1)
	go func() {
		err := fault.Catch(func() error { return mb.write(ctx, pw) })
		pw.CloseWithError(err)
		built <- err
	}()
	sum := sha256.New()
	cr := &storage.CountingReader{R: io.TeeReader(pr, sum)}
	_, perr := st.Put(ctx, key, cr)
	pr.CloseWithError(errManifestUploadEnded)
	berr := <-built
	switch {
	case berr != nil && !errors.Is(berr, errManifestUploadEnded):
		return nil, nil, berr
	case perr != nil:
		return nil, nil, s3Fault(perr, "PutObject (manifest)")
	case berr != nil:
		return nil, nil, fault.Wrap(berr, fault.Unavailable, "STORAGE_UNAVAILABLE", "the manifest upload ended early; retry")
	}
	call(s.hooks().AfterManifest, id)
	orphans := mb.orphans
	if requireParents && mb.orphanCount > 0 {
		var lines []string
		for i, o := range orphans {
			if i == 20 {
				lines = append(lines, fmt.Sprintf("and %d more", mb.orphanCount-20))
				break
			}
			lines = append(lines, fmt.Sprintf("%s (parent %s, %s)", o.FileID, o.ParentID, o.Path))
		}
		return nil, orphans, fault.New(fault.FailedPrecondition, "ORPHAN_FILES",
			"%d file(s) have no parent record in this backup: %s", mb.orphanCount, strings.Join(lines, "; "))
	}
	obj := &metadata.Object{TenantID: tenant, ID: "obj-manifest-" + b.ID, OrgID: b.OrgID, StorageID: b.StorageID, BackupID: b.ID,
		Key: key, Kind: metadata.ObjManifest, Size: cr.N, SHA256: sum.Sum(nil), CreatedAt: s.cfg.Now().UTC()}
	nb, err := s.cfg.Catalog.CommitBackupManifest(ctx, tenant, id,
		metadata.ManifestCommit{Object: obj, Files: mb.files, Chunks: int64(len(chunks))}, s.cfg.Now().UTC())
	var pe *metadata.PendingUploadsError
	var changed *metadata.BackupChangedError
	switch {
	case errors.As(err, &pe):
		return nil, nil, pendingFault(pe.UploadIDs)
	case errors.As(err, &changed):
		return nil, nil, err
	case errors.Is(err, metadata.ErrConflict):
		return nil, nil, fault.Wrap(err, fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s changed state while committing", id)
	case err != nil:
		return nil, nil, err
	}
	s.cfg.Logger.InfoContext(ctx, "backup committed", "tenant", tenant, "backup", id, "records", nb.RecordCount,
		"files", nb.FileCount, "bytes_in", nb.BytesIn, "bytes_stored", nb.BytesStored, "orphan_files", mb.orphanCount)
	return nb, orphans, nil
}

// errManifestUploadEnded ends the manifest writer when the upload stopped
// reading (it failed, or finished early).
var errManifestUploadEnded = errors.New("manifest upload ended")

func pendingFault(ids []string) error {
	shown := ids
	more := ""
	if len(shown) > 20 {
		shown, more = shown[:20], fmt.Sprintf(" and %d more", len(ids)-20)
	}
	return fault.New(fault.FailedPrecondition, "UPLOADS_PENDING",
		"%d upload(s) are still pending: %s%s; finish or resend them (ListUploads), then commit", len(ids), strings.Join(shown, ", "), more)
}

// manifestHead is the manifest's JSON without its lists and totals, which
// are streamed after it.
type manifestHead struct {
	Version   int               `json:"version"`
	Backup    string            `json:"backup_id"`
	Tenant    string            `json:"tenant_id"`
	Org       string            `json:"org_id"`
	Storage   string            `json:"storage_id,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	StartedAt time.Time         `json:"started_at"`
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
	// PackOffset is where a packed file's body starts in the pack at Key
	// (absent for a file stored as an object of its own).
	PackOffset int64 `json:"pack_offset,omitempty"`
}

// commitBlockCacheBytes bounds the index blocks one CommitBackup keeps for
// its parent check (128 blocks of the default 16 KiB).
const commitBlockCacheBytes = 2 << 20

// manifestBuilder writes a backup's manifest and, on the way, finds files
// whose parent id is in no record index of the backup.
type manifestBuilder struct {
	s       *Service
	b       *metadata.Backup
	chunks  []manifestChunk
	records int64
	readers []*recindex.Reader

	files       int64
	orphans     []Orphan
	orphanCount int64
}

func (s *Service) newManifestBuilder(ctx context.Context, b *metadata.Backup, st storage.Store, chunks []*metadata.RecordChunk) (*manifestBuilder, error) {
	mb := &manifestBuilder{s: s, b: b}
	// Lookups of parent ids in sorted order land in the same blocks: one GET
	// per block, not per lookup, whatever the number of indexes.
	blocks := recindex.NewBlockCache(commitBlockCacheBytes)
	for _, c := range chunks {
		data, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.DataObjectID)
		if err != nil {
			return nil, err
		}
		idx, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.IndexObjectID)
		if err != nil {
			return nil, err
		}
		mb.chunks = append(mb.chunks, manifestChunk{SObject: c.SObject, Sequence: c.Sequence, DataKey: data.Key, IndexKey: idx.Key,
			Records: c.Records, BytesIn: c.BytesIn, BytesStored: c.BytesStored, SHA256: hex.EncodeToString(c.SHA256), References: c.References})
		mb.records += c.Records
		r, err := recindex.Open(blocks.ReaderAt(idx.Key, storage.NewReaderAt(ctx, st, idx.Key)), idx.Size)
		if err != nil {
			if errors.Is(err, recindex.ErrCorrupt) || errors.Is(err, storage.ErrNotFound) {
				return nil, fault.Wrap(err, fault.DataLoss, "INDEX_CORRUPT", "record index %s is missing or corrupt; this backup cannot be committed", idx.Key)
			}
			return nil, s3Fault(fmt.Errorf("record index %s: %w", idx.Key, err), "GetObject (index)")
		}
		mb.readers = append(mb.readers, r)
	}
	return mb, nil
}

// write streams the manifest to w. Files come ordered by parent id, so the
// parent lookups of consecutive files read the same index blocks (each
// reader keeps its last blocks).
func (mb *manifestBuilder) write(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	head, _ := json.Marshal(manifestHead{Version: 1, Backup: mb.b.ID, Tenant: mb.b.TenantID, Org: mb.b.OrgID, Storage: mb.b.StorageID,
		Labels: mb.b.Labels, StartedAt: mb.b.StartedAt})
	bw.Write(head[:len(head)-1])
	bw.WriteString(`,"record_chunks":[`)
	for i, c := range mb.chunks {
		if i > 0 {
			bw.WriteByte(',')
		}
		line, _ := json.Marshal(c)
		bw.WriteString("\n")
		bw.Write(line)
	}
	bw.WriteString(`],"files":[`)
	lastParent, lastFound := "", false
	err := mb.s.cfg.Catalog.ForEachFileByParent(ctx, mb.b.TenantID, mb.b.ID, func(f *metadata.FileWithKey) error {
		if mb.files > 0 {
			bw.WriteByte(',')
		}
		line, _ := json.Marshal(manifestFile{ID: f.ID, ParentID: f.ParentID, Path: f.Path, Name: f.Name,
			ContentType: f.ContentType, Size: f.Size, SHA256: hex.EncodeToString(f.SHA256), Key: f.ObjectKey, PackOffset: f.PackOffset})
		bw.WriteString("\n")
		if _, err := bw.Write(line); err != nil {
			return err
		}
		mb.files++
		if f.ParentID != lastParent || mb.files == 1 {
			found, err := mb.hasRecord(f.ParentID)
			if err != nil {
				return err
			}
			lastParent, lastFound = f.ParentID, found
		}
		if !lastFound {
			if len(mb.orphans) < maxOrphansListed {
				mb.orphans = append(mb.orphans, Orphan{FileID: f.ID, ParentID: f.ParentID, Path: f.Path})
			}
			mb.orphanCount++
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(bw, "\n],\"records\":%d}\n", mb.records)
	return bw.Flush()
}

func (mb *manifestBuilder) hasRecord(id string) (bool, error) {
	for _, r := range mb.readers {
		if !r.MayContain(id) {
			continue
		}
		if _, ok, err := r.Lookup(id); err != nil {
			if errors.Is(err, recindex.ErrCorrupt) || errors.Is(err, storage.ErrNotFound) {
				return false, fault.Wrap(err, fault.DataLoss, "INDEX_CORRUPT", "a record index of backup %s is missing or corrupt; it cannot be committed", mb.b.ID)
			}
			return false, s3Fault(err, "GetObject (index block)")
		} else if ok {
			return true, nil
		}
	}
	return false, nil
}

// AbortBackup marks an OPEN backup ABORTED (an ABORTED one is returned as
// it is) and ends its PENDING uploads: each goes to FAILED fenced by its
// generation, then its multipart upload is aborted. It deletes nothing: what
// only the backup references is deleted by the one deletion path, under the
// maintenance lock (maintenance.PurgeAborted, and cleanup for a purge that was
// interrupted).
func (s *Service) AbortBackup(ctx context.Context, tenant, id string) (*metadata.Backup, error) {
	var b *metadata.Backup
	for attempt := 0; ; attempt++ {
		var err error
		if b, err = s.GetBackup(ctx, tenant, id); err != nil {
			return nil, err
		}
		if b.Status == metadata.BackupAborted {
			break
		}
		if b.Status != metadata.BackupOpen {
			return nil, fault.New(fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s is %s; only an OPEN backup can be aborted", id, b.Status)
		}
		call(s.hooks().BeforeAbortMark, id)
		err = s.cfg.Catalog.SetBackupStatus(ctx, tenant, id, metadata.BackupOpen, metadata.BackupAborted)
		if err == nil {
			break
		}
		if !errors.Is(err, metadata.ErrConflict) {
			return nil, err
		}
		// A commit or another abort changed it between the read and the
		// update: read it again and answer for what it is now.
		if attempt == 2 {
			return nil, fault.Wrap(err, fault.Aborted, "BACKUP_CHANGING", "backup %s keeps changing state; retry", id)
		}
	}
	call(s.hooks().AfterAbortMark, id)
	st, err := s.cfg.Registry.StoreFor(ctx, b.TenantID, b.StorageID)
	if err != nil {
		return nil, err
	}
	pending, err := s.cfg.Catalog.PendingUploads(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	for _, u := range pending {
		s.endUpload(ctx, st, u, fault.New(fault.Aborted, "BACKUP_ABORTED", "the backup was aborted"))
	}
	s.cfg.Logger.InfoContext(ctx, "backup aborted", "tenant", tenant, "backup", id)
	return s.cfg.Catalog.GetBackup(ctx, tenant, id)
}

// UploadStatus is what a worker may learn of one upload: its catalog row
// and, once it is COMMITTED, the finish response it answered (nil before).
type UploadStatus struct {
	Upload *metadata.Upload
	Result *Result
}

// statusOf decodes the finish response the upload stored, so that callers
// never read ingest's storage format. One that does not decode is left out
// (and logged): the row itself is still the truth about the upload.
func (s *Service) statusOf(ctx context.Context, u *metadata.Upload) *UploadStatus {
	st := &UploadStatus{Upload: u}
	if len(u.Result) > 0 || u.Answered != nil {
		r, err := storedResult(u)
		if err != nil {
			s.cfg.Logger.WarnContext(ctx, "upload status without its result", "tenant", u.TenantID, "backup", u.BackupID, "upload", u.UploadID, "err", err)
		}
		st.Result = r
	}
	return st
}

// QueryUploadStatus returns one upload of a backup.
func (s *Service) QueryUploadStatus(ctx context.Context, tenant, backupID, uploadID string) (*UploadStatus, error) {
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
	if err != nil {
		return nil, err
	}
	return s.statusOf(ctx, u), nil
}

// ListUploads pages through a backup's uploads.
func (s *Service) ListUploads(ctx context.Context, tenant, backupID, state string, pageSize int, token string) ([]*UploadStatus, string, error) {
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
	if err != nil {
		return nil, "", err
	}
	out := make([]*UploadStatus, len(list))
	for i, u := range list {
		out[i] = s.statusOf(ctx, u)
	}
	return out, next, nil
}
