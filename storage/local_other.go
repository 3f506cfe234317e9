//go:build !unix

package storage

import "io/fs"

// fileID is not available here: ETags rely on size and modification time alone.
func fileID(fs.FileInfo) uint64 { return 0 }

// syncDir is a no-op where directories cannot be opened for fsync.
func syncDir(string) error { return nil }
