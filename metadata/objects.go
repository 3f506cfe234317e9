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

// Object kinds.
const (
	ObjRecords  = "records"  // a record set chunk's data (zstd frames)
	ObjIndex    = "index"    // a record set chunk's index
	ObjFile     = "file"     // a file body, shared by the files that have its SHA-256 (dedup)
	ObjManifest = "manifest" // a backup's manifest
)

func validObjectKind(k string) bool {
	switch k {
	case ObjRecords, ObjIndex, ObjFile, ObjManifest:
		return true
	}
	return false
}

// Object is an object in a bucket. Its row exists from the commit that stored it until no file or
// record chunk references it and the backups that did are purged. Empty and nil SHA256 are the
// same value (the store returns nil).
type Object struct {
	TenantID, ID, OrgID string
	StorageID           string // "" = the service-managed default storage
	// BackupID is the backup that stored it (record data and index, manifest, a file body stored
	// first by that backup); "" = none.
	BackupID  string
	Key, Kind string
	Size      int64  // stored bytes
	SHA256    []byte // 32 bytes: of the input for records and file objects; of the stored bytes for index and manifest
	ETag      string
	Damaged   bool
	CreatedAt time.Time
}

// File is a file of a backup: a binary body tied to a parent record, held by an object that may
// be shared with other files (dedup), or by a blob in a pack (BlobID; ObjectID is then ""):
// exactly one of ObjectID and BlobID is set. Empty and nil SHA256 are the same value.
type File struct {
	TenantID, BackupID, ID, ObjectID, UploadID string
	BlobID                                     string
	ParentID, Path, Name, ContentType          string
	Size                                       int64
	SHA256                                     []byte
	// Answer is how the file's upload was answered when it has no upload row (a packed file):
	// AnswerInUploadRow (0) when one holds the answer.
	Answer    FileAnswer
	CreatedAt time.Time
}

// FileAnswer says how the upload of a file without an upload row was answered, so that its file
// row can answer a resend (docs/FORMAT.md §2.5): the file's body is a blob, and the answer names
// its pack's key, the file's id, size and SHA-256, and one of these.
type FileAnswer int8

const (
	AnswerInUploadRow  FileAnswer = iota // the upload row holds the answer
	AnswerStored                         // its body was stored (in a pack)
	AnswerShared                         // its body was sent and shared one its pack already held
	AnswerSharedUnsent                   // it shared a stored body without sending it
)

// RecordChunk is one uploaded chunk of a record set: sObject and sequence within the backup, its
// data and index objects. Empty and nil byte slices are the same value.
type RecordChunk struct {
	TenantID, BackupID, SObject           string
	Sequence                              int32
	UploadID, DataObjectID, IndexObjectID string
	Records, BytesIn, BytesStored         int64  // BytesStored: data plus index object sizes
	SHA256                                []byte // of the chunk's input bytes
	References                            []byte // JSON of the declared reference fields, opaque
	CreatedAt                             time.Time
}

var objectCols = []string{"tenant_id", "id", "org_id", "storage_id", "backup_id", "object_key",
	"kind", "size", "sha256", "etag", "damaged", "created_at"}

// selectObject reads objects as "o".
var selectObject = "SELECT o." + strings.Join(objectCols, ", o.") + " FROM objects o"

func scanObject(r scanner) (*Object, error) {
	var (
		o               Object
		storage, backup sql.NullString
		created         int64
	)
	err := r.Scan(&o.TenantID, &o.ID, &o.OrgID, &storage, &backup, &o.Key, &o.Kind, &o.Size,
		&o.SHA256, &o.ETag, &o.Damaged, &created)
	if err != nil {
		return nil, err
	}
	o.StorageID, o.BackupID = storage.String, backup.String
	o.SHA256 = nilIfEmpty(o.SHA256)
	o.CreatedAt = fromMicros(created)
	return &o, nil
}

func (c catalog) queryObjects(ctx context.Context, q string, args ...any) ([]*Object, error) {
	return queryRows(c, ctx, scanObject, q, args...)
}

// checkSHA256 accepts a SHA-256 digest or none.
func checkSHA256(what string, sum []byte) error {
	if len(sum) != 0 && len(sum) != 32 {
		return fmt.Errorf("%w: %s SHA-256 of %d bytes", ErrInvalid, what, len(sum))
	}
	return nil
}

// insertObject inserts o; a zero CreatedAt becomes t.
func (c catalog) insertObject(ctx context.Context, o *Object, t time.Time) error {
	if err := notEmpty("tenant id", o.TenantID, "object id", o.ID, "org id", o.OrgID, "object key", o.Key); err != nil {
		return err
	}
	if !validObjectKind(o.Kind) {
		return fmt.Errorf("%w: object kind %q", ErrInvalid, o.Kind)
	}
	if err := checkSHA256("object", o.SHA256); err != nil {
		return err
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = t
	}
	o.CreatedAt = micros(o.CreatedAt)
	_, err := c.q.ExecContext(ctx, insertSQL("objects", objectCols),
		o.TenantID, o.ID, o.OrgID, optString(o.StorageID), optString(o.BackupID), o.Key, o.Kind,
		o.Size, nonNil(o.SHA256), o.ETag, o.Damaged, toMicros(o.CreatedAt))
	return err
}

// InsertObject inserts o (e.g. a backup's manifest); a zero CreatedAt becomes now. ErrConflict:
// the tenant has an object with this id or key; ErrNotFound: its storage (or tenant) does not
// exist; ErrInvalid: empty ids or key, an unknown kind, a SHA-256 that is not 32 bytes.
func (c catalog) InsertObject(ctx context.Context, o *Object) error {
	return c.fail("InsertObject", c.insertObject(ctx, o, now()), ErrNotFound)
}

// GetObject returns the tenant's object with this id, or ErrNotFound.
func (c catalog) GetObject(ctx context.Context, tenantID, id string) (*Object, error) {
	o, err := scanObject(c.q.QueryRowContext(ctx, selectObject+" WHERE o.tenant_id = ? AND o.id = ?", tenantID, id))
	return o, c.fail("GetObject", err, nil)
}

// SetObjectDamaged marks the object damaged (verification found it missing or corrupt): dedup
// no longer shares it (FindFileObject). It is idempotent. ErrNotFound: no such object.
func (c catalog) SetObjectDamaged(ctx context.Context, tenantID, id string) error {
	res, err := c.q.ExecContext(ctx, "UPDATE objects SET damaged = ? WHERE tenant_id = ? AND id = ?", true, tenantID, id)
	if err == nil {
		err = affectedOne(res)
	}
	return c.fail("SetObjectDamaged", err, nil)
}

// liveFileRef is the condition that a file object o is still referenced by a file of a backup that
// is neither ABORTED nor DELETING, so that a new file may share it. Its arguments are the two
// statuses.
func (c catalog) liveFileRef() string {
	return `EXISTS (SELECT 1 FROM files f ` + c.d.straightJoin() + ` backups b ON b.tenant_id = f.tenant_id AND b.id = f.backup_id
 WHERE f.tenant_id = o.tenant_id AND f.object_id = o.id AND b.status NOT IN (?, ?))`
}

// FindFileObject is the dedup lookup: a file object of the org on the storage ("" = the service
// default) with this SHA-256 that is not damaged and is still referenced by a file of a backup
// that is neither ABORTED nor DELETING. ErrNotFound: none.
func (c catalog) FindFileObject(ctx context.Context, tenantID, orgID, storageID string, sha256 []byte) (*Object, error) {
	found, err := c.FindFileObjects(ctx, tenantID, orgID, storageID, [][]byte{sha256})
	if err != nil {
		return nil, err
	}
	if o := found[string(sha256)]; o != nil {
		return o, nil
	}
	return nil, c.fail("FindFileObject", sql.ErrNoRows, nil)
}

// FindFileObjects is FindFileObject for many SHA-256s (repeats count once): one such object per
// sum found, keyed by string(sha256), the one with the lowest id as FindFileObject picks. One
// query per dedupBatch sums.
func (c catalog) FindFileObjects(ctx context.Context, tenantID, orgID, storageID string, sums [][]byte) (map[string]*Object, error) {
	const op = "FindFileObjects"
	keys, err := dedupKeys(sums)
	if err != nil {
		return nil, c.fail(op, err, nil)
	}
	found := map[string]*Object{}
	for start := 0; start < len(keys); start += dedupBatch {
		batch := keys[start:min(start+dedupBatch, len(keys))]
		where, args := dedupWhere("o", tenantID, orgID, storageID, batch)
		q := selectObject + " WHERE " + where
		// No ORDER BY, as in FindBlobs: the lowest id is picked here.
		q += " AND o.kind = ? AND o.damaged = ? AND " + c.liveFileRef()
		args = append(args, ObjFile, false, BackupAborted, BackupDeleting)
		list, err := c.queryObjects(ctx, q, args...)
		if err != nil {
			return nil, c.fail(op, err, nil)
		}
		for _, o := range list {
			if f := found[string(o.SHA256)]; f == nil || o.ID < f.ID {
				found[string(o.SHA256)] = o
			}
		}
	}
	return found, nil
}

// belongsTo fills the tenant and backup fields left empty and checks the others match.
func belongsTo(what string, tenant, backup *string, u *Upload) error {
	for _, f := range []struct {
		name string
		got  *string
		want string
	}{{"tenant", tenant, u.TenantID}, {"backup", backup, u.BackupID}} {
		if *f.got == "" {
			*f.got = f.want
		} else if *f.got != f.want {
			return fmt.Errorf("%w: %s %s %q is not the upload's %q", ErrInvalid, what, f.name, *f.got, f.want)
		}
	}
	return nil
}

// onStorageOf checks that an object stored for backup b is in b's org and on b's storage.
func onStorageOf(o *Object, b *Backup) error {
	if o.OrgID != b.OrgID || o.StorageID != b.StorageID {
		return fmt.Errorf("%w: object %s (org %q, storage %q) is not in backup %s's org %q and storage %q",
			ErrInvalid, o.ID, o.OrgID, o.StorageID, b.ID, b.OrgID, b.StorageID)
	}
	return nil
}

// CommitFileUpload records a finished file upload in one transaction. If the upload row
// (u.TenantID, u.BackupID, u.UploadID) exists, it must be PENDING at generation u.Generation
// (ErrStale otherwise; ErrConflict if it is already COMMITTED) and becomes COMMITTED with
// u.Result; if none exists (a single PUT, recorded only after it succeeded), u is inserted as
// COMMITTED (ErrConflict if a concurrent commit inserted it first). Then obj is inserted, unless
// it is nil: then f.ObjectID names an existing object (dedup), which must still be a live file
// object (as FindFileObject finds them; ErrNotFound otherwise, for the caller to upload the body
// after all). Then f is inserted. The backup must be OPEN (ErrConflict; ErrNotFound if there is
// none); obj must be in the backup's org and on its storage (ErrInvalid).
//
// A file whose Answer is not AnswerInUploadRow (a shared packed body, f.BlobID set, obj nil)
// answers for its upload: no upload row is written, and none may exist (ErrConflict).
//
// Empty tenant and backup ids of obj and f, an empty obj.OrgID, obj.BackupID, f.ObjectID (taken
// from obj) and f.UploadID are filled in from u and the backup, and zero CreatedAt fields become
// now. On success u is COMMITTED (State, UpdatedAt; CreatedAt when inserted).
func (c catalog) CommitFileUpload(ctx context.Context, u *Upload, obj *Object, f *File) error {
	const op = "CommitFileUpload"
	if err := notEmpty("tenant id", u.TenantID, "backup id", u.BackupID, "upload id", u.UploadID, "file id", f.ID); err != nil {
		return c.fail(op, err, nil)
	}
	if err := belongsTo("file", &f.TenantID, &f.BackupID, u); err != nil {
		return c.fail(op, err, nil)
	}
	if f.UploadID == "" {
		f.UploadID = u.UploadID
	}
	if obj != nil {
		if err := belongsTo("object", &obj.TenantID, &obj.BackupID, u); err != nil {
			return c.fail(op, err, nil)
		}
		if f.ObjectID == "" {
			f.ObjectID = obj.ID
		}
		if f.ObjectID != obj.ID {
			return c.fail(op, fmt.Errorf("%w: file object %q is not the new object %q", ErrInvalid, f.ObjectID, obj.ID), nil)
		}
	}
	if (f.ObjectID == "") == (f.BlobID == "") || (obj != nil && f.BlobID != "") {
		return c.fail(op, fmt.Errorf("%w: file %s needs exactly one of an object id and a blob id", ErrInvalid, f.ID), nil)
	}
	if err := checkSHA256("file", f.SHA256); err != nil {
		return c.fail(op, err, nil)
	}
	if f.Answer != AnswerInUploadRow && (f.BlobID == "" || f.Answer > AnswerSharedUnsent || f.Answer < 0) {
		return c.fail(op, fmt.Errorf("%w: file %s answers for its upload (%d) without a blob", ErrInvalid, f.ID, f.Answer), nil)
	}
	t := now()
	var inserted bool
	err := c.inTx(ctx, func(c catalog) error {
		var b *Backup
		var err error
		if f.Answer != AnswerInUploadRow {
			b, err = c.lockOpenBackup(ctx, u.TenantID, u.BackupID)
			if err == nil {
				err = c.noUploadRow(ctx, u)
			}
		} else {
			b, inserted, err = c.commitUploadOf(ctx, u, KindFile, t)
		}
		if err != nil {
			return err
		}
		if obj != nil {
			if err := c.insertObjectsOf(ctx, b, t, obj); err != nil {
				return err
			}
		} else if f.BlobID != "" {
			if err := c.checkSharedBlob(ctx, b, f.BlobID); err != nil {
				return err
			}
		} else if err := c.checkShared(ctx, b, f.ObjectID); err != nil {
			return err
		}
		return c.insertFile(ctx, f, t)
	})
	if err != nil {
		return c.fail(op, err, ErrNotFound)
	}
	committed(u, KindFile, inserted, t)
	return nil
}

var fileInsertCols = []string{"tenant_id", "backup_id", "id", "object_id", "upload_id", "parent_id",
	"path", "name", "content_type", "size", "sha256", "created_at", "blob_id", "upload_answer"}

// insertFile inserts f; a zero CreatedAt becomes t.
func (c catalog) insertFile(ctx context.Context, f *File, t time.Time) error {
	if f.CreatedAt.IsZero() {
		f.CreatedAt = t
	}
	f.CreatedAt = micros(f.CreatedAt)
	_, err := c.q.ExecContext(ctx, insertSQL("files", fileInsertCols),
		f.TenantID, f.BackupID, f.ID, optString(f.ObjectID), f.UploadID, f.ParentID, f.Path, f.Name,
		f.ContentType, f.Size, nonNil(f.SHA256), toMicros(f.CreatedAt), optString(f.BlobID), f.Answer)
	return err
}

// noUploadRow is ErrConflict if u has an upload row: a plain read, as commitUpload's.
func (c catalog) noUploadRow(ctx context.Context, u *Upload) error {
	var one int
	err := c.q.QueryRowContext(ctx, "SELECT 1 FROM uploads"+uploadKey, u.TenantID, u.BackupID, u.UploadID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err == nil:
		return fmt.Errorf("%w: upload %s has a row", ErrConflict, u.UploadID)
	}
	return err
}

// commitUploadOf begins an upload commit inside a transaction: it locks the upload's backup,
// which must be OPEN, and marks the upload COMMITTED (commitUpload); it returns the backup.
func (c catalog) commitUploadOf(ctx context.Context, u *Upload, kind string, t time.Time) (*Backup, bool, error) {
	b, err := c.lockOpenBackup(ctx, u.TenantID, u.BackupID)
	if err != nil {
		return nil, false, err
	}
	inserted, err := c.commitUpload(ctx, u, kind, t)
	return b, inserted, err
}

// insertObjectsOf inserts an upload's new objects into backup b: an empty OrgID becomes b's,
// and each must be on b's storage.
func (c catalog) insertObjectsOf(ctx context.Context, b *Backup, t time.Time, objs ...*Object) error {
	for _, o := range objs {
		if o.OrgID == "" {
			o.OrgID = b.OrgID
		}
		if err := onStorageOf(o, b); err != nil {
			return err
		}
		if err := c.insertObject(ctx, o, t); err != nil {
			return err
		}
	}
	return nil
}

// checkShared checks, for a deduplicated file of backup b, that the object it shares is a file
// object of b's org and storage, not damaged, and still referenced by a file of a live backup.
// The locking read holds that file and its backup until the transaction ends, so the backup
// cannot turn DELETING, and the object be judged exclusive to it, before the new file exists.
func (c catalog) checkShared(ctx context.Context, b *Backup, objectID string) error {
	o, err := scanObject(c.q.QueryRowContext(ctx, selectObject+" WHERE o.tenant_id = ? AND o.id = ?", b.TenantID, objectID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: shared object %s", ErrNotFound, objectID)
	case err != nil:
		return err
	case o.Kind != ObjFile:
		return fmt.Errorf("%w: shared object %s is a %s object", ErrInvalid, objectID, o.Kind)
	case o.Damaged:
		return fmt.Errorf("%w: shared object %s is damaged", ErrNotFound, objectID)
	}
	if err := onStorageOf(o, b); err != nil {
		return err
	}
	var one int
	err = c.q.QueryRowContext(ctx, `SELECT 1 FROM files f JOIN backups b ON b.tenant_id = f.tenant_id AND b.id = f.backup_id
 WHERE f.tenant_id = ? AND f.object_id = ? AND b.status NOT IN (?, ?) LIMIT 1`+c.d.forShare(),
		b.TenantID, objectID, BackupAborted, BackupDeleting).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: shared object %s is no longer referenced by a live backup", ErrNotFound, objectID)
	}
	return err
}

var chunkCols = []string{"tenant_id", "backup_id", "sobject", "seq", "upload_id", "data_object_id",
	"index_object_id", "records", "bytes_in", "bytes_stored", "sha256", "reference_fields", "created_at"}

// CommitRecordsUpload records a finished record set chunk in one transaction: the upload row as
// in CommitFileUpload, then the data and index objects, then the chunk. ErrConflict: the backup
// already has a chunk with this sObject and sequence, or is not OPEN; ErrStale, ErrNotFound and
// ErrInvalid as for CommitFileUpload. Empty tenant, backup, org and object ids of data, index and
// ch are filled in from u, the backup and the objects, and zero CreatedAt fields become now. On
// success u is COMMITTED as for CommitFileUpload.
func (c catalog) CommitRecordsUpload(ctx context.Context, u *Upload, data, index *Object, ch *RecordChunk) error {
	const op = "CommitRecordsUpload"
	if err := notEmpty("tenant id", u.TenantID, "backup id", u.BackupID, "upload id", u.UploadID, "sObject", ch.SObject); err != nil {
		return c.fail(op, err, nil)
	}
	if data == nil || index == nil {
		return c.fail(op, fmt.Errorf("%w: a record chunk needs a data and an index object", ErrInvalid), nil)
	}
	for _, o := range []*Object{data, index} {
		if err := belongsTo("object", &o.TenantID, &o.BackupID, u); err != nil {
			return c.fail(op, err, nil)
		}
	}
	if err := belongsTo("chunk", &ch.TenantID, &ch.BackupID, u); err != nil {
		return c.fail(op, err, nil)
	}
	if ch.UploadID == "" {
		ch.UploadID = u.UploadID
	}
	if ch.DataObjectID == "" {
		ch.DataObjectID = data.ID
	}
	if ch.IndexObjectID == "" {
		ch.IndexObjectID = index.ID
	}
	if ch.DataObjectID != data.ID || ch.IndexObjectID != index.ID {
		return c.fail(op, fmt.Errorf("%w: chunk objects %q, %q are not the new objects %q, %q",
			ErrInvalid, ch.DataObjectID, ch.IndexObjectID, data.ID, index.ID), nil)
	}
	if err := checkSHA256("chunk", ch.SHA256); err != nil {
		return c.fail(op, err, nil)
	}
	t := now()
	var inserted bool
	err := c.inTx(ctx, func(c catalog) error {
		b, ins, err := c.commitUploadOf(ctx, u, KindRecords, t)
		if err != nil {
			return err
		}
		inserted = ins
		if err := c.insertObjectsOf(ctx, b, t, data, index); err != nil {
			return err
		}
		if ch.CreatedAt.IsZero() {
			ch.CreatedAt = t
		}
		ch.CreatedAt = micros(ch.CreatedAt)
		_, err = c.q.ExecContext(ctx, insertSQL("record_chunks", chunkCols),
			ch.TenantID, ch.BackupID, ch.SObject, ch.Sequence, ch.UploadID, ch.DataObjectID,
			ch.IndexObjectID, ch.Records, ch.BytesIn, ch.BytesStored, nonNil(ch.SHA256),
			nilIfEmpty(ch.References), toMicros(ch.CreatedAt))
		return err
	})
	if err != nil {
		return c.fail(op, err, ErrNotFound)
	}
	committed(u, KindRecords, inserted, t)
	return nil
}

// forEachFileBatch is how many files ForEachFile reads per query.
const forEachFileBatch = 500

var fileCols = "tenant_id, backup_id, id, object_id, upload_id, parent_id, path, name, content_type, size, sha256, created_at, blob_id, upload_answer"

// ForEachFile calls fn for every file of the backup, in byte order of id, and stops at the first
// error, which it returns. Like ForEachStorage it reads in batches and holds no rows open while fn
// runs.
func (c catalog) ForEachFile(ctx context.Context, tenantID, backupID string, fn func(*File) error) error {
	return forEachKeyset(ctx, c, "ForEachFile", forEachFileBatch, func(after *File) ([]*File, error) {
		q := "SELECT " + fileCols + " FROM files WHERE tenant_id = ? AND backup_id = ?"
		args := []any{tenantID, backupID}
		if after != nil {
			q += " AND id > ?"
			args = append(args, after.ID)
		}
		return c.queryFiles(ctx, q+" ORDER BY id LIMIT ?", append(args, forEachFileBatch)...)
	}, fn)
}

func (c catalog) queryFiles(ctx context.Context, q string, args ...any) ([]*File, error) {
	return queryFileRows(c, ctx, q, args, func() (*File, *File, []any) { f := &File{}; return f, f, nil })
}

// queryFileRows scans rows of fileCols, followed by the columns whose destinations item returns
// with each new item and the File in it to fill.
func queryFileRows[T any](c catalog, ctx context.Context, q string, args []any, item func() (*T, *File, []any)) ([]*T, error) {
	rows, err := c.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []*T
	for rows.Next() {
		var (
			created      int64
			object, blob sql.NullString
		)
		it, f, extra := item()
		dest := append([]any{&f.TenantID, &f.BackupID, &f.ID, &object, &f.UploadID, &f.ParentID,
			&f.Path, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &created, &blob, &f.Answer}, extra...)
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		f.ObjectID, f.BlobID = object.String, blob.String
		f.SHA256 = nilIfEmpty(f.SHA256)
		f.CreatedAt = fromMicros(created)
		list = append(list, it)
	}
	return list, rows.Err()
}

// defaultFilePageSize is ListFiles' page size when the caller asks for none.
const defaultFilePageSize = 100

// ListFiles returns one page of the backup's files in byte order of id, and the token of the next
// page ("" after the last); an unknown backup has none. pageSize 0 means 100. ErrInvalid: a
// pageSize that is negative or larger than MaxPageSize, or a token ListFiles did not make.
func (c catalog) ListFiles(ctx context.Context, tenantID, backupID string, pageSize int, pageToken string) ([]*File, string, error) {
	const op = "ListFiles"
	switch {
	case pageSize < 0 || pageSize > MaxPageSize:
		return nil, "", c.fail(op, fmt.Errorf("%w: page size %d (want 0 to %d)", ErrInvalid, pageSize, MaxPageSize), nil)
	case pageSize == 0:
		pageSize = defaultFilePageSize
	}
	q := "SELECT " + fileCols + " FROM files WHERE tenant_id = ? AND backup_id = ?"
	return listPage(c, op, keyset{cols: []keyCol{{name: "id"}}}, q, []any{tenantID, backupID}, pageSize, pageToken,
		func(q string, args ...any) ([]*File, error) { return c.queryFiles(ctx, q, args...) },
		func(f *File) []any { return []any{f.ID} })
}

// GetFile returns the backup's file with this id, or ErrNotFound.
func (c catalog) GetFile(ctx context.Context, tenantID, backupID, id string) (*File, error) {
	list, err := c.queryFiles(ctx, "SELECT "+fileCols+" FROM files WHERE tenant_id = ? AND backup_id = ? AND id = ?",
		tenantID, backupID, id)
	if err == nil && len(list) == 0 {
		err = fmt.Errorf("%w: file %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, c.fail("GetFile", err, nil)
	}
	return list[0], nil
}

// filesByParentBatch is how many parent ids one query of FilesByParent names.
const filesByParentBatch = 500

// FilesByParent returns the backup's files whose ParentID is one of parentIDs (any number; repeats
// count once), ordered by parent id (byte order), then id; none for an unknown backup. It queries
// in batches of parent ids, each its own statement (like ForEachFile): a backup's files do not
// change once it has left OPEN, until it is purged.
func (c catalog) FilesByParent(ctx context.Context, tenantID, backupID string, parentIDs []string) ([]*File, error) {
	const op = "FilesByParent"
	if len(parentIDs) == 0 {
		return nil, nil
	}
	// Sorted and without repeats, the batches are disjoint ranges in ascending order, so their
	// results, each ordered by parent_id and id, concatenate in order.
	ids := slices.Clone(parentIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var list []*File
	for start := 0; start < len(ids); start += filesByParentBatch {
		batch := ids[start:min(start+filesByParentBatch, len(ids))]
		args := make([]any, 0, len(batch)+2)
		args = append(args, tenantID, backupID)
		for _, id := range batch {
			args = append(args, id)
		}
		files, err := c.queryFiles(ctx, "SELECT "+fileCols+" FROM files WHERE tenant_id = ? AND backup_id = ? AND parent_id IN ("+
			strings.TrimSuffix(strings.Repeat("?, ", len(batch)), ", ")+") ORDER BY parent_id, id", args...)
		if err != nil {
			return nil, c.fail(op, err, nil)
		}
		list = append(list, files...)
	}
	return list, nil
}

// ListRecordChunks returns all record set chunks of the backup, by sObject (byte order), then
// sequence.
func (c catalog) ListRecordChunks(ctx context.Context, tenantID, backupID string) ([]*RecordChunk, error) {
	const op = "ListRecordChunks"
	rows, err := c.q.QueryContext(ctx, "SELECT "+strings.Join(chunkCols, ", ")+
		" FROM record_chunks WHERE tenant_id = ? AND backup_id = ? ORDER BY sobject, seq", tenantID, backupID)
	if err != nil {
		return nil, c.fail(op, err, nil)
	}
	defer rows.Close()
	var list []*RecordChunk
	for rows.Next() {
		var (
			ch      RecordChunk
			created int64
		)
		if err := rows.Scan(&ch.TenantID, &ch.BackupID, &ch.SObject, &ch.Sequence, &ch.UploadID,
			&ch.DataObjectID, &ch.IndexObjectID, &ch.Records, &ch.BytesIn, &ch.BytesStored,
			&ch.SHA256, &ch.References, &created); err != nil {
			return nil, c.fail(op, err, nil)
		}
		ch.SHA256, ch.References = nilIfEmpty(ch.SHA256), nilIfEmpty(ch.References)
		ch.CreatedAt = fromMicros(created)
		list = append(list, &ch)
	}
	return list, c.fail(op, rows.Err(), nil)
}

// PutRecordSetSchema stores the record set's header row and declared reference fields (JSON)
// unless the backup already has them for this sObject, and returns what is stored: the first
// writer's values, which the caller compares with its own. ErrNotFound: no such backup.
func (c catalog) PutRecordSetSchema(ctx context.Context, tenantID, backupID, sobject string, header, references []byte) (gotHeader, gotRefs []byte, err error) {
	const op = "PutRecordSetSchema"
	if err := notEmpty("tenant id", tenantID, "backup id", backupID, "sObject", sobject); err != nil {
		return nil, nil, c.fail(op, err, nil)
	}
	err = c.inTx(ctx, func(c catalog) error {
		_, err := c.q.ExecContext(ctx, c.d.upsert("record_sets",
			[]string{"tenant_id", "backup_id", "sobject", "header", "reference_fields", "created_at"},
			[]string{"tenant_id", "backup_id", "sobject"}, nil),
			tenantID, backupID, sobject, nonNil(header), nilIfEmpty(references), toMicros(now()))
		if err != nil {
			return err
		}
		// A locking read: the first writer's row, even if it committed after this transaction's
		// snapshot (MySQL).
		gotHeader, gotRefs, err = c.recordSetSchema(ctx, tenantID, backupID, sobject, c.d.forShare())
		return err
	})
	if err != nil {
		return nil, nil, c.fail(op, err, ErrNotFound)
	}
	return gotHeader, gotRefs, nil
}

// GetRecordSetSchema returns the record set's header row and reference fields, or ErrNotFound.
func (c catalog) GetRecordSetSchema(ctx context.Context, tenantID, backupID, sobject string) (header, references []byte, err error) {
	header, references, err = c.recordSetSchema(ctx, tenantID, backupID, sobject, "")
	return header, references, c.fail("GetRecordSetSchema", err, nil)
}

func (c catalog) recordSetSchema(ctx context.Context, tenantID, backupID, sobject, lock string) (header, references []byte, err error) {
	err = c.q.QueryRowContext(ctx, `SELECT header, reference_fields FROM record_sets
 WHERE tenant_id = ? AND backup_id = ? AND sobject = ?`+lock, tenantID, backupID, sobject).Scan(&header, &references)
	if err != nil {
		return nil, nil, err
	}
	return nilIfEmpty(header), nilIfEmpty(references), nil
}

// ExclusiveObjects returns, by id, the objects of the backup that no row of another backup
// references: its record chunks' data and index objects, the objects it stored (its manifest,
// file bodies it stored first) and the objects its files share, each only if no file or record
// chunk of another backup references it. These are what deleting the backup may delete from the
// bucket. Mark the backup DELETING first: a new file then cannot start sharing one of them
// (CommitFileUpload checks under lock).
func (c catalog) ExclusiveObjects(ctx context.Context, tenantID, backupID string) ([]*Object, error) {
	var list []*Object
	after := ""
	for {
		page, next, err := c.ExclusiveObjectsPage(ctx, tenantID, backupID, after, 1000)
		if err != nil {
			return nil, err
		}
		list = append(list, page...)
		if next == "" {
			return list, nil
		}
		after = next
	}
}

// purgeBatch is how many object ids one DELETE of PurgeBackupRows names.
const purgeBatch = 500

// PurgeBackupRows deletes, in one transaction, the backup's files, record chunks, record set
// schemas, uploads and their parts, and then those of objectIDs that no remaining file or chunk
// references (the others stay, silently, and no longer name the backup as the one that stored
// them); ids of other tenants' objects are ignored. The backup row stays (DeleteBackupRow removes it). The backup must be ABORTED or DELETING (ErrConflict otherwise);
// ErrNotFound: no such backup.
func (c catalog) PurgeBackupRows(ctx context.Context, tenantID, backupID string, objectIDs []string) error {
	const op = "PurgeBackupRows"
	// A backup's files go first in batches, each its own transaction, so that
	// a backup of millions of files is not one huge transaction. Its rows are
	// invisible (the backup is ABORTED or DELETING), so a purge interrupted
	// between batches is simply finished by the next.
	// Each batch goes on after the last id of the one before (a keyset): an
	// InnoDB range scan from the first id would walk every row the batches
	// before deleted until the purge thread removes them, which made a
	// backup's delete quadratic in its files.
	after := ""
	for c.tx == nil {
		var ids []string
		err := c.inTx(ctx, func(c catalog) error {
			if err := c.lockDeletable(ctx, tenantID, backupID); err != nil {
				return err
			}
			var err error
			var blobs []sql.NullString
			rows, err := queryRows(c, ctx, func(r scanner) ([2]sql.NullString, error) {
				var v [2]sql.NullString
				return v, r.Scan(&v[0], &v[1])
			}, "SELECT id, blob_id FROM files WHERE tenant_id = ? AND backup_id = ? AND id > ? ORDER BY id LIMIT ?", tenantID, backupID, after, purgeBatch)
			if err != nil || len(rows) == 0 {
				return err
			}
			ids = ids[:0]
			for _, r := range rows {
				ids = append(ids, r[0].String)
				if r[1].Valid {
					blobs = append(blobs, r[1])
				}
			}
			in, args := inList(tenantID, ids)
			if _, err = c.q.ExecContext(ctx, "DELETE FROM files WHERE tenant_id = ? AND backup_id = ? AND id IN ("+in+")",
				append([]any{tenantID, backupID}, args[1:]...)...); err != nil {
				return err
			}
			// Packed bodies no file references any more go with their last file; a pack left
			// without blobs is found by EmptyPacks.
			blobIDs := make([]string, 0, len(blobs))
			for _, b := range blobs {
				blobIDs = append(blobIDs, b.String)
			}
			slices.Sort(blobIDs)
			return c.deleteUnreferencedBlobs(ctx, tenantID, slices.Compact(blobIDs))
		})
		if err != nil {
			return c.fail(op, err, ErrReferenced)
		}
		if len(ids) < purgeBatch {
			break
		}
		after = ids[len(ids)-1]
	}
	// Then its upload rows (one per packed file too), in batches of their own
	// for the same reason: not millions of rows in the last transaction.
	afterUpload := ""
	for c.tx == nil {
		var ups []string
		err := c.inTx(ctx, func(c catalog) error {
			if err := c.lockDeletable(ctx, tenantID, backupID); err != nil {
				return err
			}
			var err error
			ups, err = c.queryStrings(ctx, "SELECT upload_id FROM uploads WHERE tenant_id = ? AND backup_id = ? AND upload_id > ? ORDER BY upload_id LIMIT ?",
				tenantID, backupID, afterUpload, purgeBatch)
			if err != nil || len(ups) == 0 {
				return err
			}
			in, args := inList(tenantID, ups)
			for _, table := range []string{"upload_parts", "uploads"} {
				if _, err := c.q.ExecContext(ctx, "DELETE FROM "+table+" WHERE tenant_id = ? AND backup_id = ? AND upload_id IN ("+in+")",
					append([]any{tenantID, backupID}, args[1:]...)...); err != nil {
					return fmt.Errorf("%s: %w", table, err)
				}
			}
			return nil
		})
		if err != nil {
			return c.fail(op, err, ErrReferenced)
		}
		if len(ups) < purgeBatch {
			break
		}
		afterUpload = ups[len(ups)-1]
	}
	err := c.inTx(ctx, func(c catalog) error {
		if err := c.lockDeletable(ctx, tenantID, backupID); err != nil {
			return err
		}
		for _, table := range []string{"files", "record_chunks", "record_sets", "upload_parts", "uploads"} {
			if _, err := c.q.ExecContext(ctx, "DELETE FROM "+table+" WHERE tenant_id = ? AND backup_id = ?", tenantID, backupID); err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
		}
		for start := 0; start < len(objectIDs); start += purgeBatch {
			if err := c.deleteUnreferencedObjects(ctx, tenantID, objectIDs[start:min(start+purgeBatch, len(objectIDs))]); err != nil {
				return err
			}
		}
		// Objects this backup stored first that other backups still use
		// (deduplicated file bodies) outlive it: they stop naming it, so its
		// row can go.
		if _, err := c.q.ExecContext(ctx, `UPDATE objects SET backup_id = NULL WHERE tenant_id = ? AND backup_id = ?
 AND (EXISTS (SELECT 1 FROM files f WHERE f.tenant_id = objects.tenant_id AND f.object_id = objects.id)
  OR EXISTS (SELECT 1 FROM record_chunks r WHERE r.tenant_id = objects.tenant_id AND (r.data_object_id = objects.id OR r.index_object_id = objects.id)))`,
			tenantID, backupID); err != nil {
			return fmt.Errorf("objects: %w", err)
		}
		// Packs its writer made likewise stop naming it (they have no foreign key to it).
		if _, err := c.q.ExecContext(ctx, "UPDATE packs SET backup_id = NULL WHERE tenant_id = ? AND backup_id = ?", tenantID, backupID); err != nil {
			return fmt.Errorf("packs: %w", err)
		}
		return nil
	})
	return c.fail(op, err, ErrReferenced)
}
