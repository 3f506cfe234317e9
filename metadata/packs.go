package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PackSealed is the state of a pack whose object is complete in the bucket. Phase 1 writes a
// pack with one PutObject and inserts its row SEALED after it (docs/FORMAT.md §2.4); a repack
// retires it (PackRetired).
const PackSealed = "SEALED"

// Pack is a pack object: many small file bodies (blobs) back to back, with an authenticated
// index at its end (package pack). Empty and nil IndexSHA256 are the same value.
type Pack struct {
	TenantID, ID, OrgID string
	StorageID           string // "" = the service-managed default storage
	BackupID            string // the backup whose writer made it; "" once that backup is gone
	Key, State          string
	Size                int64 // the whole object
	BodyCount           int
	IndexOffset         int64  // index and trailer are [IndexOffset, Size)
	IndexSHA256         []byte // of [IndexOffset, Size)
	KeyID               string // the master key the index MAC was derived from
	Damaged             bool
	CreatedAt, SealedAt time.Time
}

// Blob is one body in a pack: files point at blobs, blobs at packs.
type Blob struct {
	TenantID, ID, OrgID string
	StorageID           string
	PackID              string
	Offset, Size        int64
	SHA256              []byte
	Damaged             bool
	CreatedAt           time.Time
}

// PackedFile is one file CommitPack records: the file row (its BlobID naming a blob of the
// pack, its Answer saying how the upload was answered) and the upload it commits, which gets no
// row: the file row answers for it (Upload.Answered, docs/FORMAT.md §2.5), a third of the
// catalog's bytes per packed file saved. Winner is set by CommitPack when the backup already had
// an upload with this id (a racing retry, or an earlier stream; a row or a file answering for
// it): that one wins and File was not written.
type PackedFile struct {
	Upload *Upload
	File   *File
	Winner *Upload
}

var packCols = []string{"tenant_id", "id", "org_id", "storage_id", "backup_id", "object_key", "state",
	"size", "body_count", "index_offset", "index_sha256", "key_id", "damaged", "created_at", "sealed_at"}

var blobCols = []string{"tenant_id", "id", "org_id", "storage_id", "pack_id", "pack_offset", "size",
	"sha256", "damaged", "created_at"}

func colsAs(a string, cols []string) string { return a + "." + strings.Join(cols, ", "+a+".") }

func packDest(p *Pack) ([]any, func()) {
	var (
		storage, backup  sql.NullString
		created, sealedA sql.NullInt64
	)
	return []any{&p.TenantID, &p.ID, &p.OrgID, &storage, &backup, &p.Key, &p.State, &p.Size, &p.BodyCount,
			&p.IndexOffset, &p.IndexSHA256, &p.KeyID, &p.Damaged, &created, &sealedA}, func() {
			p.StorageID, p.BackupID = storage.String, backup.String
			p.IndexSHA256 = nilIfEmpty(p.IndexSHA256)
			p.CreatedAt, p.SealedAt = fromOptMicros(created), fromOptMicros(sealedA)
		}
}

func blobDest(b *Blob) ([]any, func()) {
	var (
		storage sql.NullString
		created int64
	)
	return []any{&b.TenantID, &b.ID, &b.OrgID, &storage, &b.PackID, &b.Offset, &b.Size, &b.SHA256,
			&b.Damaged, &created}, func() {
			b.StorageID = storage.String
			b.SHA256 = nilIfEmpty(b.SHA256)
			b.CreatedAt = fromMicros(created)
		}
}

// insertRows inserts rows of cols in multi-row statements of at most insertRowsBatch rows.
func (c catalog) insertRows(ctx context.Context, table string, cols []string, rows [][]any) error {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for start := 0; start < len(rows); start += insertRowsBatch {
		batch := rows[start:min(start+insertRowsBatch, len(rows))]
		args := make([]any, 0, len(batch)*len(cols))
		for _, r := range batch {
			args = append(args, r...)
		}
		q := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES " +
			strings.TrimSuffix(strings.Repeat(one+", ", len(batch)), ", ")
		if _, err := c.q.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
	}
	return nil
}

// dedupKeys are the distinct sums of a dedup lookup, as strings, in order; ErrInvalid if one
// is not a SHA-256.
func dedupKeys(sums [][]byte) ([]string, error) {
	keys := make([]string, 0, len(sums))
	for _, s := range sums {
		if len(s) != 32 {
			return nil, fmt.Errorf("%w: a SHA-256 of %d bytes", ErrInvalid, len(s))
		}
		keys = append(keys, string(s))
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// dedupWhere is the condition of a dedup lookup on table alias a (objects or blobs, which
// share the dedup index's columns): the tenant, the org, the storage ("" = the service
// default) and the sums of batch; args are its arguments in order.
func dedupWhere(a, tenantID, orgID, storageID string, batch []string) (string, []any) {
	q := a + ".tenant_id = ? AND " + a + ".org_id = ?"
	args := []any{tenantID, orgID}
	if storageID == "" {
		q += " AND " + a + ".storage_id IS NULL"
	} else {
		q += " AND " + a + ".storage_id = ?"
		args = append(args, storageID)
	}
	q += " AND " + a + ".sha256 IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(batch)), ", ") + ")"
	for _, k := range batch {
		args = append(args, []byte(k))
	}
	return q, args
}

// dedupBatch is how many SHA-256s one dedup lookup query asks for: below MariaDB's
// eq_range_index_dive_limit (200), past which it estimates an IN list from index statistics
// and, with a few distinct tenants and orgs, prefers scanning the tenant's rows to the dedup
// index (measured: 17,641 rows read for 500 sums).
const dedupBatch = 100

// insertRowsBatch keeps a statement's placeholders (14 columns for files) well below SQLite's
// 32,766 and MySQL's 65,535.
const insertRowsBatch = 200

// CommitPack records a pack that is in the bucket, in one transaction: the backup p.BackupID
// must be OPEN (ErrConflict; ErrNotFound if there is none), and is locked against a concurrent
// commit or delete; the pack row (SEALED), its blobs (in offset order), and the file row of each
// of files whose upload id the backup has no upload for yet (no upload row: the file answers
// for its upload, see Upload.Answered). Only blobs some inserted file references get a row, and
// the pack none if no blob does (GC then owns its object). A file whose upload id exists
// already gets Winner set to that upload instead and nothing written: a racing retry of the
// same upload id answers the upload that won. A transaction that loses such a race on a unique
// key is run again, a few times, to find the winner.
//
// Empty tenant, org and storage ids of the pack and blobs, blob PackIDs, file tenant and backup
// ids, upload ids of files (from their uploads), zero CreatedAt fields and a zero Answer
// (AnswerStored) are filled in; files must name one of blobs and answer as a packed file
// (ErrInvalid). ErrConflict: a pack or blob id or pack key exists.
func (c catalog) CommitPack(ctx context.Context, p *Pack, blobs []*Blob, files []*PackedFile) error {
	const op = "CommitPack"
	if err := notEmpty("tenant id", p.TenantID, "pack id", p.ID, "backup id", p.BackupID, "pack key", p.Key); err != nil {
		return c.fail(op, err, nil)
	}
	if err := checkSHA256("pack index", p.IndexSHA256); err != nil {
		return c.fail(op, err, nil)
	}
	mine := map[string]bool{}
	for _, bl := range blobs {
		if err := notEmpty("blob id", bl.ID); err != nil {
			return c.fail(op, err, nil)
		}
		if err := checkSHA256("blob", bl.SHA256); err != nil {
			return c.fail(op, err, nil)
		}
		mine[bl.ID] = true
	}
	for _, pf := range files {
		u, f := pf.Upload, pf.File
		if u == nil || f == nil {
			return c.fail(op, fmt.Errorf("%w: a packed file needs an upload and a file", ErrInvalid), nil)
		}
		if u.TenantID == "" {
			u.TenantID = p.TenantID
		}
		if u.BackupID == "" {
			u.BackupID = p.BackupID
		}
		if u.TenantID != p.TenantID || u.BackupID != p.BackupID {
			return c.fail(op, fmt.Errorf("%w: upload %s is not of the pack's backup", ErrInvalid, u.UploadID), nil)
		}
		if err := belongsTo("file", &f.TenantID, &f.BackupID, u); err != nil {
			return c.fail(op, err, nil)
		}
		if f.UploadID == "" {
			f.UploadID = u.UploadID
		}
		if f.ObjectID != "" || !mine[f.BlobID] || f.UploadID != u.UploadID {
			return c.fail(op, fmt.Errorf("%w: file %s must name a blob of the pack and its upload", ErrInvalid, f.ID), nil)
		}
		if f.Answer == AnswerInUploadRow {
			f.Answer = AnswerStored
		}
		if f.Answer < AnswerStored || f.Answer > AnswerSharedUnsent {
			return c.fail(op, fmt.Errorf("%w: file %s: answer %d", ErrInvalid, f.ID, f.Answer), nil)
		}
		if err := checkSHA256("file", f.SHA256); err != nil {
			return c.fail(op, err, nil)
		}
	}
	t := now()
	var err error
	for attempt := 1; ; attempt++ {
		err = c.inTx(ctx, func(c catalog) error { return c.commitPack(ctx, p, blobs, files, t) })
		if err == nil || c.tx != nil || attempt == 3 || c.d.classify(err) != violDuplicate {
			break
		}
	}
	return c.fail(op, err, ErrNotFound)
}

func (c catalog) commitPack(ctx context.Context, p *Pack, blobs []*Blob, files []*PackedFile, t time.Time) error {
	b, err := c.lockOpenBackup(ctx, p.TenantID, p.BackupID)
	if err != nil {
		return err
	}
	if p.OrgID == "" {
		p.OrgID = b.OrgID
	}
	if p.StorageID == "" {
		p.StorageID = b.StorageID
	}
	if p.OrgID != b.OrgID || p.StorageID != b.StorageID {
		return fmt.Errorf("%w: pack %s is not in backup %s's org and storage", ErrInvalid, p.ID, b.ID)
	}
	p.State = PackSealed
	if p.CreatedAt.IsZero() {
		p.CreatedAt = t
	}
	p.CreatedAt, p.SealedAt = micros(p.CreatedAt), t
	// Which upload ids exist already, as a row or as a file answering for one: plain queries, a
	// few per 500 ids. Not a locking read: on MySQL it would take gap locks that concurrent
	// packs' inserts wait for, in cycles (deadlocks at 8 writers, testPackConcurrentCommits). A
	// racing commit of one of these ids as a file is caught by files_upload instead, and
	// CommitPack runs the transaction again, whose fresh read then finds the winner. A racing
	// upload row of another kind is not (a client using one upload id for two uploads at once):
	// both are stored, and the row answers for the id from then on.
	ids := make([]string, len(files))
	for i, pf := range files {
		ids[i] = pf.Upload.UploadID
	}
	existing, err := c.getUploads(ctx, p.TenantID, p.BackupID, ids)
	if err != nil {
		return fmt.Errorf("uploads: %w", err)
	}
	var frows [][]any
	used := map[string]bool{}
	for _, pf := range files {
		pf.Winner = nil
		if w := existing[pf.Upload.UploadID]; w != nil {
			pf.Winner = w
			continue
		}
		nu := *pf.Upload
		nu.State, nu.Kind = UploadCommitted, KindFile
		if err := prepareUpload(&nu, t); err != nil {
			return err
		}
		f := pf.File
		if f.CreatedAt.IsZero() {
			f.CreatedAt = t
		}
		f.CreatedAt = micros(f.CreatedAt)
		// A later file of this transaction with the same upload id finds this one.
		existing[nu.UploadID] = answeredUpload(f, p.Key)
		frows = append(frows, []any{f.TenantID, f.BackupID, f.ID, nil, f.UploadID, f.ParentID, f.Path, f.Name,
			f.ContentType, f.Size, nonNil(f.SHA256), toMicros(f.CreatedAt), f.BlobID, f.Answer})
		used[f.BlobID] = true
	}
	// Phase 1: a body whose every file lost to an existing upload gets no row (nothing would
	// ever purge it), and a pack with no body left gets none either: its object is garbage
	// collection's, as a single PUT's orphan is.
	if len(used) == 0 {
		return nil
	}
	if _, err := c.q.ExecContext(ctx, insertSQL("packs", packCols), p.TenantID, p.ID, p.OrgID,
		optString(p.StorageID), optString(p.BackupID), p.Key, p.State, p.Size, p.BodyCount, p.IndexOffset,
		nonNil(p.IndexSHA256), p.KeyID, p.Damaged, toMicros(p.CreatedAt), toMicros(p.SealedAt)); err != nil {
		return fmt.Errorf("packs: %w", err)
	}
	rows := make([][]any, 0, len(blobs))
	for _, bl := range blobs {
		bl.TenantID, bl.OrgID, bl.StorageID, bl.PackID = p.TenantID, p.OrgID, p.StorageID, p.ID
		if bl.CreatedAt.IsZero() {
			bl.CreatedAt = t
		}
		bl.CreatedAt = micros(bl.CreatedAt)
		if used[bl.ID] {
			rows = append(rows, []any{bl.TenantID, bl.ID, bl.OrgID, optString(bl.StorageID), bl.PackID, bl.Offset,
				bl.Size, nonNil(bl.SHA256), bl.Damaged, toMicros(bl.CreatedAt)})
		}
	}
	if err := c.insertRows(ctx, "blobs", blobCols, rows); err != nil {
		return err
	}
	if err := c.insertRows(ctx, "files", fileInsertCols, frows); err != nil {
		return err
	}
	for _, pf := range files {
		if pf.Winner == nil {
			committed(pf.Upload, KindFile, true, t)
		}
	}
	return nil
}

// checkSharedBlob is checkShared for a blob: of b's org and storage, in a sealed pack, neither
// damaged, and referenced by a file of a live backup, which the locking read holds until the
// transaction ends (so the blob cannot be purged before the new file references it).
func (c catalog) checkSharedBlob(ctx context.Context, b *Backup, blobID string) error {
	bl, p, err := c.blobAndPack(ctx, b.TenantID, blobID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: shared blob %s", ErrNotFound, blobID)
	case err != nil:
		return err
	case bl.Damaged || p.Damaged || p.State != PackSealed:
		return fmt.Errorf("%w: shared blob %s is damaged or its pack is not sealed", ErrNotFound, blobID)
	case bl.OrgID != b.OrgID || bl.StorageID != b.StorageID:
		return fmt.Errorf("%w: blob %s is not in backup %s's org and storage", ErrInvalid, blobID, b.ID)
	}
	var one int
	err = c.q.QueryRowContext(ctx, `SELECT 1 FROM files f JOIN backups b ON b.tenant_id = f.tenant_id AND b.id = f.backup_id
 WHERE f.tenant_id = ? AND f.blob_id = ? AND b.status NOT IN (?, ?) LIMIT 1`+c.d.forShare(),
		b.TenantID, blobID, BackupAborted, BackupDeleting).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: shared blob %s is no longer referenced by a live backup", ErrNotFound, blobID)
	}
	return err
}

func (c catalog) blobAndPack(ctx context.Context, tenantID, blobID string) (*Blob, *Pack, error) {
	bl, p := &Blob{}, &Pack{}
	bd, bfin := blobDest(bl)
	pd, pfin := packDest(p)
	err := c.q.QueryRowContext(ctx, "SELECT "+colsAs("bl", blobCols)+", "+colsAs("p", packCols)+
		" FROM blobs bl JOIN packs p ON p.tenant_id = bl.tenant_id AND p.id = bl.pack_id WHERE bl.tenant_id = ? AND bl.id = ?",
		tenantID, blobID).Scan(append(bd, pd...)...)
	if err != nil {
		return nil, nil, err
	}
	bfin()
	pfin()
	return bl, p, nil
}

func (c catalog) liveBlobRef() string {
	return `EXISTS (SELECT 1 FROM files f ` + c.d.straightJoin() + ` backups b ON b.tenant_id = f.tenant_id AND b.id = f.backup_id
 WHERE f.tenant_id = bl.tenant_id AND f.blob_id = bl.id AND b.status NOT IN (?, ?))`
}

// FindBlobs is the dedup lookup for packed bodies, batched: for each of sums (SHA-256s; any
// number, repeats count once) that the org has on the storage ("" = the service default) as a
// blob that is not damaged, in a sealed pack that is not damaged, and referenced by a file of a
// backup that is neither ABORTED nor DELETING, it returns one such blob (the lowest id), keyed
// by string(sha256). One query per dedupBatch sums.
func (c catalog) FindBlobs(ctx context.Context, tenantID, orgID, storageID string, sums [][]byte) (map[string]*Blob, error) {
	const op = "FindBlobs"
	keys, err := dedupKeys(sums)
	if err != nil {
		return nil, c.fail(op, err, nil)
	}
	found := map[string]*Blob{}
	for start := 0; start < len(keys); start += dedupBatch {
		batch := keys[start:min(start+dedupBatch, len(keys))]
		where, args := dedupWhere("bl", tenantID, orgID, storageID, batch)
		q := "SELECT " + colsAs("bl", blobCols) + ` FROM blobs bl JOIN packs p ON p.tenant_id = bl.tenant_id AND p.id = bl.pack_id
 WHERE ` + where
		// No ORDER BY: sorting by id makes MariaDB scan the tenant's blobs in
		// id order rather than look each sum up in blobs_dedup.
		q += " AND bl.damaged = ? AND p.damaged = ? AND p.state = ? AND " + c.liveBlobRef()
		args = append(args, false, false, PackSealed, BackupAborted, BackupDeleting)
		list, err := queryRows(c, ctx, func(r scanner) (*Blob, error) {
			bl := &Blob{}
			d, fin := blobDest(bl)
			if err := r.Scan(d...); err != nil {
				return nil, err
			}
			fin()
			return bl, nil
		}, q, args...)
		if err != nil {
			return nil, c.fail(op, err, nil)
		}
		for _, bl := range list {
			if f := found[string(bl.SHA256)]; f == nil || bl.ID < f.ID {
				found[string(bl.SHA256)] = bl
			}
		}
	}
	return found, nil
}

// FileLocation returns a packed file of the backup with its blob and pack, in one query.
// ErrNotFound: no such file; ErrInvalid: the file is not packed (its body is an object).
func (c catalog) FileLocation(ctx context.Context, tenantID, backupID, fileID string) (*File, *Blob, *Pack, error) {
	const op = "FileLocation"
	list, err := c.queryFiles(ctx, "SELECT "+colsAs("f", strings.Split(fileCols, ", "))+
		" FROM files f WHERE f.tenant_id = ? AND f.backup_id = ? AND f.id = ?", tenantID, backupID, fileID)
	switch {
	case err != nil:
		return nil, nil, nil, c.fail(op, err, nil)
	case len(list) == 0:
		return nil, nil, nil, c.fail(op, fmt.Errorf("%w: file %s", ErrNotFound, fileID), nil)
	case list[0].BlobID == "":
		return nil, nil, nil, c.fail(op, fmt.Errorf("%w: file %s is not packed", ErrInvalid, fileID), nil)
	}
	bl, p, err := c.blobAndPack(ctx, tenantID, list[0].BlobID)
	if err != nil {
		return nil, nil, nil, c.fail(op, err, nil)
	}
	return list[0], bl, p, nil
}

// GetPack returns the tenant's pack with this id, or ErrNotFound.
func (c catalog) GetPack(ctx context.Context, tenantID, id string) (*Pack, error) {
	p := &Pack{}
	d, fin := packDest(p)
	err := c.q.QueryRowContext(ctx, "SELECT "+strings.Join(packCols, ", ")+" FROM packs WHERE tenant_id = ? AND id = ?", tenantID, id).Scan(d...)
	if err != nil {
		return nil, c.fail("GetPack", err, nil)
	}
	fin()
	return p, nil
}

// SetBlobDamaged marks a blob and its pack damaged: dedup no longer shares either. ErrNotFound:
// no such blob.
func (c catalog) SetBlobDamaged(ctx context.Context, tenantID, blobID string) error {
	err := c.inTx(ctx, func(c catalog) error {
		var packID string
		if err := c.q.QueryRowContext(ctx, "SELECT pack_id FROM blobs WHERE tenant_id = ? AND id = ?", tenantID, blobID).Scan(&packID); err != nil {
			return err
		}
		if _, err := c.q.ExecContext(ctx, "UPDATE blobs SET damaged = ? WHERE tenant_id = ? AND id = ?", true, tenantID, blobID); err != nil {
			return err
		}
		_, err := c.q.ExecContext(ctx, "UPDATE packs SET damaged = ? WHERE tenant_id = ? AND id = ?", true, tenantID, packID)
		return err
	})
	return c.fail("SetBlobDamaged", err, nil)
}

func (c catalog) queryPacks(ctx context.Context, q string, args ...any) ([]*Pack, error) {
	return queryRows(c, ctx, func(r scanner) (*Pack, error) {
		p := &Pack{}
		d, fin := packDest(p)
		if err := r.Scan(d...); err != nil {
			return nil, err
		}
		fin()
		return p, nil
	}, q, args...)
}

// BackupPacks returns the packs holding the bodies of the backup's packed files (each once), in
// byte order of pack id.
func (c catalog) BackupPacks(ctx context.Context, tenantID, backupID string) ([]*Pack, error) {
	list, err := c.queryPacks(ctx, "SELECT "+colsAs("p", packCols)+` FROM packs p WHERE p.tenant_id = ? AND p.id IN (
 SELECT bl.pack_id FROM files f JOIN blobs bl ON bl.tenant_id = f.tenant_id AND bl.id = f.blob_id
 WHERE f.tenant_id = ? AND f.backup_id = ?) ORDER BY p.id`, tenantID, tenantID, backupID)
	return list, c.fail("BackupPacks", err, nil)
}

// PackBlobs returns the blobs of a pack in offset order.
func (c catalog) PackBlobs(ctx context.Context, tenantID, packID string) ([]*Blob, error) {
	list, err := queryRows(c, ctx, func(r scanner) (*Blob, error) {
		bl := &Blob{}
		d, fin := blobDest(bl)
		if err := r.Scan(d...); err != nil {
			return nil, err
		}
		fin()
		return bl, nil
	}, "SELECT "+strings.Join(blobCols, ", ")+" FROM blobs WHERE tenant_id = ? AND pack_id = ? ORDER BY pack_offset, id", tenantID, packID)
	return list, c.fail("PackBlobs", err, nil)
}

// EmptyPacks returns up to limit of the tenant's SEALED packs on the storage ("" = the service
// default) that hold no blob any more (the purge deleted the last file referencing each of its
// bodies), in byte order of id: their objects are deleted from the bucket, then their rows
// (DeletePackRows). A RETIRED pack holds no blob either but is not one of them: its object
// waits out the repack grace (RetiredPacks).
func (c catalog) EmptyPacks(ctx context.Context, tenantID, storageID string, limit int) ([]*Pack, error) {
	const op = "EmptyPacks"
	if limit <= 0 || limit > 1000 {
		return nil, c.fail(op, fmt.Errorf("%w: limit %d (want 1 to 1000)", ErrInvalid, limit), nil)
	}
	q := "SELECT " + colsAs("p", packCols) + " FROM packs p WHERE p.tenant_id = ? AND p.state = ?"
	args := []any{tenantID, PackSealed}
	if storageID == "" {
		q += " AND p.storage_id IS NULL"
	} else {
		q += " AND p.storage_id = ?"
		args = append(args, storageID)
	}
	list, err := c.queryPacks(ctx, q+` AND NOT EXISTS (SELECT 1 FROM blobs bl WHERE bl.tenant_id = p.tenant_id AND bl.pack_id = p.id)
 ORDER BY p.id LIMIT ?`, append(args, limit)...)
	return list, c.fail(op, err, nil)
}

// DeletePackRows deletes the rows of those of the packs ids (at most 500) that hold no blob.
// Call it after their objects were deleted from the bucket.
func (c catalog) DeletePackRows(ctx context.Context, tenantID string, ids []string) error {
	const op = "DeletePackRows"
	if len(ids) == 0 {
		return nil
	}
	if len(ids) > purgeBatch {
		return c.fail(op, fmt.Errorf("%w: %d pack ids (at most %d)", ErrInvalid, len(ids), purgeBatch), nil)
	}
	in, args := inList(tenantID, ids)
	_, err := c.q.ExecContext(ctx, "DELETE FROM packs WHERE tenant_id = ? AND id IN ("+in+`)
 AND NOT EXISTS (SELECT 1 FROM blobs bl WHERE bl.tenant_id = packs.tenant_id AND bl.pack_id = packs.id)`, args...)
	return c.fail(op, err, ErrReferenced)
}

// deleteUnreferencedBlobs deletes those of the blobs ids (at most purgeBatch) that no file
// references (IN on files_blob, as deleteUnreferencedObjects).
func (c catalog) deleteUnreferencedBlobs(ctx context.Context, tenantID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	in, args := inList(tenantID, ids)
	kept, err := c.queryStrings(ctx, "SELECT blob_id FROM files WHERE tenant_id = ? AND blob_id IN ("+in+")", args...)
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	var del []string
	for _, id := range ids {
		if !slices.Contains(kept, id) {
			del = append(del, id)
		}
	}
	if len(del) == 0 {
		return nil
	}
	in, args = inList(tenantID, del)
	if _, err := c.q.ExecContext(ctx, "DELETE FROM blobs WHERE tenant_id = ? AND id IN ("+in+")", args...); err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	return nil
}
