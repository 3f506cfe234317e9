package storage

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names Local reserves in its root; keys using them are refused (ErrInvalidKey).
const (
	stagingDirName = ".multipart" // <root>/.multipart/<uploadID>/{key,<n>,complete}
	tempPrefix     = ".tmp-"      // temporary files, in the directory of their final name
)

// completedRecordTTL is how long a completed upload's record is kept for an idempotent repeat
// of CompleteMultipart; older ones are removed when a Local is opened.
const completedRecordTTL = 7 * 24 * time.Hour

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// LocalConfig configures a Local store.
type LocalConfig struct {
	Root string // directory holding the objects; created if missing
}

// Local is a Store in a local directory: the embedded default for development and single-node
// installs. Key "a/b" is the file <Root>/a/b.
//
// Writes are atomic (a temporary file in the destination directory, fsync, rename, fsync of
// the directory); a reader sees the old or the new object, never a partial one. Multipart parts
// are staged in <Root>/.multipart/<uploadID>/<n> (written the same way, so a re-uploaded part
// replaces the earlier one), and CompleteMultipart concatenates them into a temporary file that
// is then renamed into place; a small record of the completed upload stays (for a week) so a
// repeated Complete succeeds.
//
// ETags are not content hashes (that would cost a pass over every byte): an object's ETag is
// derived from its file's identity, size and modification time, so it changes whenever the
// object is replaced; a part's ETag is its CRC32C, size and file identity.
//
// Limits: a key cannot be both an object and the "directory" of another ("a" and "a/b");
// elements starting with ".tmp-" and a first element ".multipart" are reserved; temporary files
// a crash leaves behind are not listed, and are not removed automatically.
//
// Local is safe for concurrent use within one process; several processes sharing a Root are
// safe for objects but not for the same multipart upload.
type Local struct {
	root string

	mu      sync.Mutex
	uploads map[string]*uploadLock // by upload id, while in use
}

type uploadLock struct {
	sync.RWMutex // UploadPart holds it shared; Complete and Abort exclusively
	refs         int
}

var _ Store = (*Local)(nil)

// NewLocal creates cfg.Root if needed and returns a Local store on it.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Root == "" {
		return nil, errors.New("storage: invalid local config: root is required")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("storage: local root: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, stagingDirName), 0o755); err != nil {
		return nil, fmt.Errorf("storage: local root: %w", err)
	}
	l := &Local{root: root, uploads: map[string]*uploadLock{}}
	l.pruneCompletedRecords()
	return l, nil
}

// String describes the store.
func (l *Local) String() string { return "file://" + filepath.ToSlash(l.root) }

func (l *Local) pruneCompletedRecords() {
	dir := filepath.Join(l.root, stagingDirName)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, err := os.Stat(filepath.Join(dir, e.Name(), "complete"))
		if err == nil && time.Since(fi.ModTime()) > completedRecordTTL {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// path validates key and returns its file name.
func (l *Local) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if err := localReserved(key); err != nil {
		return "", err
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

func localReserved(key string) error {
	if key == stagingDirName || strings.HasPrefix(key, stagingDirName+"/") {
		return fmt.Errorf("%w: %q: %s is reserved", ErrInvalidKey, key, stagingDirName)
	}
	for elem := range strings.SplitSeq(key, "/") {
		if strings.HasPrefix(elem, tempPrefix) {
			return fmt.Errorf("%w: %q: elements starting with %s are reserved", ErrInvalidKey, key, tempPrefix)
		}
	}
	return nil
}

// objectETag derives an object's ETag from its file (see Local).
func objectETag(fi fs.FileInfo) string {
	return fmt.Sprintf(`"%x-%x-%x"`, fileID(fi), fi.Size(), fi.ModTime().UnixNano())
}

func partETag(crc uint32, fi fs.FileInfo) string {
	return fmt.Sprintf(`"%08x-%x-%x-%x"`, crc, fileID(fi), fi.Size(), fi.ModTime().UnixNano())
}

func (l *Local) info(key string, fi fs.FileInfo) ObjectInfo {
	return ObjectInfo{Key: key, Size: fi.Size(), ETag: objectETag(fi), LastModified: fi.ModTime()}
}

// statObject stats key's file; a directory or missing file is ErrNotFound.
func statObject(op, key, name string) (fs.FileInfo, error) {
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || (err == nil && !fi.Mode().IsRegular()):
		return nil, fmt.Errorf("%s %q: %w", op, key, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("%s %q: %w", op, key, err)
	}
	return fi, nil
}

// Get implements Reader.
func (l *Local) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	name, err := l.path(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("local.Get %q: negative offset %d", key, offset)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local.Get %q: %w", key, err)
	}
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("local.Get %q: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("local.Get %q: %w", key, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = ErrNotFound
	}
	if err == nil && offset > 0 && offset >= fi.Size() {
		err = fmt.Errorf("%w: offset %d, size %d", ErrInvalidRange, offset, fi.Size())
	}
	if err == nil && offset > 0 {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("local.Get %q: %w", key, err)
	}
	if length < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

// Head implements Reader.
func (l *Local) Head(ctx context.Context, key string) (ObjectInfo, error) {
	name, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, fmt.Errorf("local.Head %q: %w", key, err)
	}
	fi, err := statObject("local.Head", key, name)
	if err != nil {
		return ObjectInfo{}, err
	}
	return l.info(key, fi), nil
}

// List implements Reader: a walk of the directory tree in S3's key order (a directory "d" sorts
// as "d/").
func (l *Local) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	dirKey := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dirKey = prefix[:i+1]
	}
	err := l.walk(ctx, dirKey, prefix, fn)
	if errors.Is(err, errStopWalk) {
		return err.(*stopWalk).err
	}
	if err != nil {
		return fmt.Errorf("local.List %q: %w", prefix, err)
	}
	return nil
}

var errStopWalk = errors.New("stop")

// stopWalk carries fn's error out of walk unwrapped.
type stopWalk struct{ err error }

func (e *stopWalk) Error() string        { return "stopped: " + e.err.Error() }
func (e *stopWalk) Is(target error) bool { return target == errStopWalk }

// walk lists directory dirKey ("" or ending in "/") and below, calling fn for the files whose
// key starts with prefix.
func (l *Local) walk(ctx context.Context, dirKey, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(l.root, filepath.FromSlash(dirKey)))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil // no such directory (or a file where the prefix wants one): nothing to list
	}
	if err != nil {
		return err
	}
	type entry struct {
		sortKey string
		e       fs.DirEntry
	}
	sorted := make([]entry, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tempPrefix) || (dirKey == "" && name == stagingDirName) {
			continue
		}
		sk := dirKey + name
		if e.IsDir() {
			sk += "/"
		}
		// Skip what cannot hold a match: neither a prefix of the wanted prefix nor under it.
		if !strings.HasPrefix(sk, prefix) && !strings.HasPrefix(prefix, sk) {
			continue
		}
		sorted = append(sorted, entry{sk, e})
	}
	slices.SortFunc(sorted, func(a, b entry) int { return strings.Compare(a.sortKey, b.sortKey) })
	for _, ent := range sorted {
		if ent.e.IsDir() {
			if err := l.walk(ctx, ent.sortKey, prefix, fn); err != nil {
				return err
			}
			continue
		}
		if !ent.e.Type().IsRegular() || !strings.HasPrefix(ent.sortKey, prefix) {
			continue
		}
		fi, err := ent.e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if err := fn(l.info(ent.sortKey, fi)); err != nil {
			return &stopWalk{err}
		}
	}
	return nil
}

// ctxReader fails once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// writeAtomic writes name through a temporary file in its directory: write, fsync, rename,
// fsync the directory. On failure the temporary file is removed and name is untouched. It
// returns the new file's info.
func writeAtomic(name string, write func(f *os.File) error) (fs.FileInfo, error) {
	dir := filepath.Dir(name)
	var f *os.File
	var err error
	// A concurrent Delete may remove the (then empty) directory between MkdirAll and
	// CreateTemp; try again.
	for attempt := 0; attempt < 5; attempt++ {
		if err = os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		f, err = os.CreateTemp(dir, tempPrefix+"*")
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	fail := func(err error) (fs.FileInfo, error) {
		f.Close() // already failing; a second error adds nothing
		os.Remove(tmp)
		return nil, err
	}
	if err := write(f); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return fi, nil
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, r io.Reader) (ObjectInfo, error) {
	name, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	fi, err := writeAtomic(name, func(f *os.File) error {
		_, err := io.Copy(f, ctxReader{ctx, r})
		return err
	})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("local.Put %q: %w", key, err)
	}
	return l.info(key, fi), nil
}

// lockUpload takes upload id's lock, shared or exclusive, and returns its release.
func (l *Local) lockUpload(id string, exclusive bool) (unlock func()) {
	l.mu.Lock()
	ul := l.uploads[id]
	if ul == nil {
		ul = &uploadLock{}
		l.uploads[id] = ul
	}
	ul.refs++
	l.mu.Unlock()
	if exclusive {
		ul.Lock()
	} else {
		ul.RLock()
	}
	return func() {
		if exclusive {
			ul.Unlock()
		} else {
			ul.RUnlock()
		}
		l.mu.Lock()
		if ul.refs--; ul.refs == 0 {
			delete(l.uploads, id)
		}
		l.mu.Unlock()
	}
}

func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// stagingDir returns the upload's staging directory after checking that it exists and belongs
// to key; ErrNotFound otherwise (like S3's NoSuchUpload).
func (l *Local) stagingDir(key, uploadID string) (string, error) {
	if !validUploadID(uploadID) {
		return "", fmt.Errorf("upload %q: %w", uploadID, ErrNotFound)
	}
	dir := filepath.Join(l.root, stagingDirName, uploadID)
	b, err := os.ReadFile(filepath.Join(dir, "key"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("upload %s: %w", uploadID, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("upload %s: %w", uploadID, err)
	}
	if string(b) != key {
		return "", fmt.Errorf("upload %s is not for this key: %w", uploadID, ErrNotFound)
	}
	return dir, nil
}

// CreateMultipart implements Store.
func (l *Local) CreateMultipart(ctx context.Context, key string) (string, error) {
	if _, err := l.path(key); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("local.CreateMultipart %q: %w", key, err)
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	id := hex.EncodeToString(b[:])
	dir := filepath.Join(l.root, stagingDirName, id)
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		_, err = writeAtomic(filepath.Join(dir, "key"), func(f *os.File) error {
			_, err := f.WriteString(key)
			return err
		})
	}
	if err == nil {
		err = syncDir(filepath.Dir(dir))
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("local.CreateMultipart %q: %w", key, err)
	}
	return id, nil
}

// UploadPart implements Store. The part is fsynced before UploadPart returns.
func (l *Local) UploadPart(ctx context.Context, key, uploadID string, number int32, r io.Reader, size int64, crc32c uint32) (string, error) {
	if _, err := l.path(key); err != nil {
		return "", err
	}
	op := fmt.Sprintf("local.UploadPart %d %q", number, key)
	if number < 1 || number > MaxPartNumber {
		return "", fmt.Errorf("%s: %w: part number outside 1..%d", op, ErrInvalidPart, MaxPartNumber)
	}
	if size < 0 {
		return "", fmt.Errorf("%s: negative size %d", op, size)
	}
	unlock := l.lockUpload(uploadID, false)
	defer unlock()
	dir, err := l.stagingDir(key, uploadID)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return "", fmt.Errorf("%s: upload %s is completed: %w", op, uploadID, ErrNotFound)
	}
	fi, err := writeAtomic(filepath.Join(dir, strconv.Itoa(int(number))), func(f *os.File) error {
		h := crc32.New(castagnoli)
		n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx, r}, size+1))
		switch {
		case err != nil:
			return err
		case n != size:
			return fmt.Errorf("read %d bytes, want %d", min(n, size+1), size)
		case h.Sum32() != crc32c:
			return fmt.Errorf("%w: CRC32C %08x, want %08x", ErrChecksumMismatch, h.Sum32(), crc32c)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	return partETag(crc32c, fi), nil
}

// completedRecord is what <staging>/complete holds.
type completedRecord struct {
	Parts []CompletedPart `json:"parts"`
	ETag  string          `json:"etag"` // of the object it produced
}

// CompleteMultipart implements Store. Each part's bytes are checked against its CRC32C while
// they are copied (ErrChecksumMismatch if the staged file changed).
func (l *Local) CompleteMultipart(ctx context.Context, key, uploadID string, parts []CompletedPart) (ObjectInfo, error) {
	name, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	op := fmt.Sprintf("local.CompleteMultipart %q", key)
	sorted, err := sortedParts(parts)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: %w", op, err)
	}
	unlock := l.lockUpload(uploadID, true)
	defer unlock()
	dir, err := l.stagingDir(key, uploadID)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: %w", op, err)
	}
	recordName := filepath.Join(dir, "complete")
	if b, err := os.ReadFile(recordName); err == nil {
		return l.completedAgain(op, key, name, b, sorted)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return ObjectInfo{}, fmt.Errorf("%s: %w", op, err)
	}

	files := make([]string, len(sorted))
	for i, p := range sorted {
		files[i] = filepath.Join(dir, strconv.Itoa(int(p.Number)))
		fi, err := os.Stat(files[i])
		if errors.Is(err, fs.ErrNotExist) {
			return ObjectInfo{}, fmt.Errorf("%s: %w: part %d was not uploaded", op, ErrInvalidPart, p.Number)
		}
		if err != nil {
			return ObjectInfo{}, fmt.Errorf("%s: %w", op, err)
		}
		if partETag(p.CRC32C, fi) != p.ETag {
			return ObjectInfo{}, fmt.Errorf("%s: %w: part %d: ETag or CRC32C does not match the uploaded part", op, ErrInvalidPart, p.Number)
		}
		if i < len(sorted)-1 && fi.Size() < MinPartSize {
			return ObjectInfo{}, fmt.Errorf("%s: %w: part %d has %d bytes, minimum %d", op, ErrPartTooSmall, p.Number, fi.Size(), MinPartSize)
		}
	}
	fi, err := writeAtomic(name, func(f *os.File) error {
		for i, p := range sorted {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := appendPart(f, files[i], p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: %w", op, err)
	}
	info := l.info(key, fi)

	// Keep a record for a repeated Complete, then drop the parts.
	rec, err := json.Marshal(completedRecord{Parts: sorted, ETag: info.ETag})
	if err == nil {
		_, err = writeAtomic(recordName, func(f *os.File) error {
			_, err := f.Write(rec)
			return err
		})
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: object written, but recording the completion: %w", op, err)
	}
	for _, name := range files {
		os.Remove(name) // a leftover part only costs space until the record expires
	}
	return info, nil
}

func appendPart(dst *os.File, name string, p CompletedPart) error {
	src, err := os.Open(name)
	if err != nil {
		return err
	}
	defer src.Close()
	h := crc32.New(castagnoli)
	if _, err := io.Copy(io.MultiWriter(dst, h), src); err != nil {
		return err
	}
	if h.Sum32() != p.CRC32C {
		return fmt.Errorf("%w: staged part %d has CRC32C %08x, want %08x", ErrChecksumMismatch, p.Number, h.Sum32(), p.CRC32C)
	}
	return nil
}

// completedAgain answers a repeated CompleteMultipart from the completion record.
func (l *Local) completedAgain(op, key, name string, record []byte, sorted []CompletedPart) (ObjectInfo, error) {
	var rec completedRecord
	if err := json.Unmarshal(record, &rec); err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: completion record: %w", op, err)
	}
	if !slices.Equal(rec.Parts, sorted) {
		return ObjectInfo{}, fmt.Errorf("%s: upload was completed with other parts: %w", op, ErrNotFound)
	}
	fi, err := statObject(op, key, name)
	if err != nil {
		return ObjectInfo{}, err
	}
	info := l.info(key, fi)
	if info.ETag != rec.ETag {
		return ObjectInfo{}, fmt.Errorf("%s: object was replaced since the upload completed: %w", op, ErrNotFound)
	}
	return info, nil
}

// AbortMultipart implements Store; it also removes a completed upload's record (never the
// object).
func (l *Local) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if _, err := l.path(key); err != nil {
		return err
	}
	unlock := l.lockUpload(uploadID, true)
	defer unlock()
	dir, err := l.stagingDir(key, uploadID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err == nil {
		err = os.RemoveAll(dir)
	}
	if err != nil {
		return fmt.Errorf("local.AbortMultipart %q upload %s: %w", key, uploadID, err)
	}
	return nil
}

// ListMultipart implements Store: the uploads staged in <Root>/.multipart that were neither
// completed nor aborted; Initiated is the modification time of the upload's key record, written
// once by CreateMultipart. It reads every staged upload's key before calling fn (uploads are
// few on a local store: one per upload in progress).
func (l *Local) ListMultipart(ctx context.Context, prefix string, fn func(MultipartUpload) error) error {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	dir := filepath.Join(l.root, stagingDirName)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("local.ListMultipart %q: %w", prefix, err)
	}
	var ups []MultipartUpload
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("local.ListMultipart %q: %w", prefix, err)
		}
		id := e.Name()
		if !e.IsDir() || !validUploadID(id) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, id, "complete")); err == nil {
			continue // completed; only its record stays
		}
		name := filepath.Join(dir, id, "key")
		f, err := os.Open(name)
		if err != nil {
			continue // aborted or being created meanwhile
		}
		fi, err := f.Stat()
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(f, MaxKeyLen+1))
		}
		f.Close()
		key := string(b)
		if err != nil || !strings.HasPrefix(key, prefix) || ValidateKey(key) != nil {
			continue
		}
		ups = append(ups, MultipartUpload{Key: key, UploadID: id, Initiated: fi.ModTime()})
	}
	slices.SortFunc(ups, func(a, b MultipartUpload) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), a.Initiated.Compare(b.Initiated), strings.Compare(a.UploadID, b.UploadID))
	})
	for _, u := range ups {
		if err := fn(u); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements Store, and removes directories it leaves empty.
func (l *Local) Delete(ctx context.Context, keys ...string) error {
	names := make([]string, len(keys))
	for i, key := range keys {
		name, err := l.path(key)
		if err != nil {
			return err
		}
		names[i] = name
	}
	for i, name := range names {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("local.Delete: %w", err)
			}
		}
		fi, err := os.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || (err == nil && fi.IsDir()) {
			continue
		}
		if err == nil {
			err = os.Remove(name)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("local.Delete %q: %w", keys[i], err)
		}
		l.removeEmptyParents(filepath.Dir(name))
	}
	return nil
}

// removeEmptyParents removes dir and its parents up to (not including) the root while they are
// empty.
func (l *Local) removeEmptyParents(dir string) {
	for dir != l.root && strings.HasPrefix(dir, l.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil { // not empty (or gone): stop
			return
		}
		dir = filepath.Dir(dir)
	}
}
