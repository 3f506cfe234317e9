package metadata

import "context"

// FileWithKey is a file and the key of the object that holds its body.
type FileWithKey struct {
	File
	ObjectKey string
}

// ForEachFileByParent calls fn for every file of the backup with its object's key, ordered by
// parent id (byte order), then id, and stops at the first error, which it returns. It reads in
// keyset batches over the files_parent index (one query per batch, the object keys joined in, no
// query per file) and holds no rows open while fn runs, so memory stays bounded by one batch
// whatever the number of files. Ordered by parent, lookups of consecutive files in a record
// index touch the same blocks.
func (c catalog) ForEachFileByParent(ctx context.Context, tenantID, backupID string, fn func(*FileWithKey) error) error {
	return forEachKeyset(ctx, c, "ForEachFileByParent", forEachFileBatch, func(after *FileWithKey) ([]*FileWithKey, error) {
		q := `SELECT f.tenant_id, f.backup_id, f.id, f.object_id, f.upload_id, f.parent_id, f.path, f.name,
 f.content_type, f.size, f.sha256, f.created_at, o.object_key
 FROM files f JOIN objects o ON o.tenant_id = f.tenant_id AND o.id = f.object_id
 WHERE f.tenant_id = ? AND f.backup_id = ?`
		args := []any{tenantID, backupID}
		if after != nil {
			q += " AND (f.parent_id > ? OR (f.parent_id = ? AND f.id > ?))"
			args = append(args, after.ParentID, after.ParentID, after.ID)
		}
		return queryFileRows(c, ctx, q+" ORDER BY f.parent_id, f.id LIMIT ?", append(args, forEachFileBatch),
			func() (*FileWithKey, *File, []any) {
				fk := &FileWithKey{}
				return fk, &fk.File, []any{&fk.ObjectKey}
			})
	}, fn)
}
