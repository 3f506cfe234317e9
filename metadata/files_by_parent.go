package metadata

import (
	"context"
	"strings"
)

// FileWithKey is a file and the key of the object that holds its body: its own object's, or
// for a packed file (BlobID set) its pack's, with the body at PackOffset.
type FileWithKey struct {
	File
	ObjectKey  string
	PackOffset int64
}

// ForEachFileByParent calls fn for every file of the backup with its object's key, ordered by
// parent id (byte order), then id, and stops at the first error, which it returns. It reads in
// keyset batches over the files_parent index (one query per batch, the object keys joined in, no
// query per file) and holds no rows open while fn runs, so memory stays bounded by one batch
// whatever the number of files. Ordered by parent, lookups of consecutive files in a record
// index touch the same blocks.
func (c catalog) ForEachFileByParent(ctx context.Context, tenantID, backupID string, fn func(*FileWithKey) error) error {
	return forEachKeyset(ctx, c, "ForEachFileByParent", forEachFileBatch, func(after *FileWithKey) ([]*FileWithKey, error) {
		q := "SELECT " + colsAs("f", strings.Split(fileCols, ", ")) + `, COALESCE(o.object_key, p.object_key),
 COALESCE(bl.pack_offset, 0)
 FROM files f LEFT JOIN objects o ON o.tenant_id = f.tenant_id AND o.id = f.object_id
 LEFT JOIN blobs bl ON bl.tenant_id = f.tenant_id AND bl.id = f.blob_id
 LEFT JOIN packs p ON p.tenant_id = bl.tenant_id AND p.id = bl.pack_id
 WHERE f.tenant_id = ? AND f.backup_id = ?`
		args := []any{tenantID, backupID}
		if after != nil {
			q += " AND (f.parent_id > ? OR (f.parent_id = ? AND f.id > ?))"
			args = append(args, after.ParentID, after.ParentID, after.ID)
		}
		return queryFileRows(c, ctx, q+" ORDER BY f.parent_id, f.id LIMIT ?", append(args, forEachFileBatch),
			func() (*FileWithKey, *File, []any) {
				fk := &FileWithKey{}
				return fk, &fk.File, []any{&fk.ObjectKey, &fk.PackOffset}
			})
	}, fn)
}
