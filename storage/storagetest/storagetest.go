// Package storagetest is the conformance suite every storage.Store implementation must pass.
//
// It is imported only by tests; it must not import any backupstore package but storage.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"backupstore/storage"
)

// Run runs the suite. newStore must return an empty store of its own (a fresh directory,
// bucket or key prefix) on every call; Run calls it once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"NotFound", testNotFound},
		{"PutGetHead", testPutGetHead},
		{"EmptyObject", testEmptyObject},
		{"RangedReads", testRangedReads},
		{"InvalidKeys", testInvalidKeys},
		{"List", testList},
		{"Delete", testDelete},
		{"DeleteMoreThanOneBatch", testDeleteMany},
		{"Multipart", testMultipart},
		{"MultipartReuploadedPart", testReuploadedPart},
		{"MultipartPartTooSmall", testPartTooSmall},
		{"MultipartIdempotentComplete", testIdempotentComplete},
		{"MultipartAbort", testAbort},
		{"ListMultipart", testListMultipart},
		{"MultipartChecksumMismatch", testChecksumMismatch},
		{"MultipartConcurrentParts", testConcurrentParts},
		{"PutFailureLeavesNoObject", testPutFailure},
		{"PutLarge", testPutLarge},
		{"ConcurrentPuts", testConcurrentPuts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// data returns n deterministic pseudo-random bytes.
func data(seed uint64, n int) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func crc(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// stream hides any Seek/ReadAt/WriteTo, as a network stream would.
type stream struct{ r io.Reader }

func (s stream) Read(p []byte) (int, error) { return s.r.Read(p) }

func put(t *testing.T, s storage.Store, key string, body []byte) storage.ObjectInfo {
	t.Helper()
	info, err := s.Put(t.Context(), key, stream{bytes.NewReader(body)})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(body)) || info.ETag == "" {
		t.Fatalf("Put(%q) = %+v, want key, size %d and an ETag", key, info, len(body))
	}
	return info
}

func get(t *testing.T, s storage.Store, key string, offset, length int64) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, offset, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, offset, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): read: %v", key, offset, length, err)
	}
	return b
}

func head(t *testing.T, s storage.Store, key string) storage.ObjectInfo {
	t.Helper()
	info, err := s.Head(t.Context(), key)
	if err != nil {
		t.Fatalf("Head(%q): %v", key, err)
	}
	return info
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func wantAbsent(t *testing.T, s storage.Store, key string) {
	t.Helper()
	_, err := s.Head(t.Context(), key)
	wantErr(t, fmt.Sprintf("Head(%q)", key), err, storage.ErrNotFound)
}

func keys(t *testing.T, s storage.Store, prefix string) []string {
	t.Helper()
	var got []string
	err := s.List(t.Context(), prefix, func(o storage.ObjectInfo) error {
		got = append(got, o.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func uploadPart(t *testing.T, s storage.Store, key, id string, n int32, body []byte) storage.CompletedPart {
	t.Helper()
	etag, err := s.UploadPart(t.Context(), key, id, n, stream{bytes.NewReader(body)}, int64(len(body)), crc(body))
	if err != nil {
		t.Fatalf("UploadPart(%q, %d): %v", key, n, err)
	}
	if etag == "" {
		t.Fatalf("UploadPart(%q, %d): empty ETag", key, n)
	}
	return storage.CompletedPart{Number: n, ETag: etag, CRC32C: crc(body)}
}

func create(t *testing.T, s storage.Store, key string) string {
	t.Helper()
	id, err := s.CreateMultipart(t.Context(), key)
	if err != nil {
		t.Fatalf("CreateMultipart(%q): %v", key, err)
	}
	if id == "" {
		t.Fatalf("CreateMultipart(%q): empty upload id", key)
	}
	return id
}

func complete(t *testing.T, s storage.Store, key, id string, parts []storage.CompletedPart, wantSize int) storage.ObjectInfo {
	t.Helper()
	info, err := s.CompleteMultipart(t.Context(), key, id, parts)
	if err != nil {
		t.Fatalf("CompleteMultipart(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(wantSize) || info.ETag == "" {
		t.Fatalf("CompleteMultipart(%q) = %+v, want key, size %d and an ETag", key, info, wantSize)
	}
	return info
}

func testNotFound(t *testing.T, s storage.Store) {
	ctx := t.Context()
	put(t, s, "dir/present", []byte("x"))
	for _, key := range []string{"missing", "dir/missing", "dir", "dir/present/below"} {
		_, err := s.Get(ctx, key, 0, -1)
		wantErr(t, fmt.Sprintf("Get(%q)", key), err, storage.ErrNotFound)
		_, err = s.Get(ctx, key, 3, 10)
		wantErr(t, fmt.Sprintf("Get(%q, 3, 10)", key), err, storage.ErrNotFound)
		_, err = s.Get(ctx, key, 0, 0)
		wantErr(t, fmt.Sprintf("Get(%q, 0, 0)", key), err, storage.ErrNotFound)
		_, err = s.Head(ctx, key)
		wantErr(t, fmt.Sprintf("Head(%q)", key), err, storage.ErrNotFound)
	}
}

func testPutGetHead(t *testing.T, s storage.Store) {
	first := put(t, s, "a/b/c.txt", []byte("hello"))
	h := head(t, s, "a/b/c.txt")
	if h.Key != "a/b/c.txt" || h.Size != 5 || h.ETag != first.ETag {
		t.Fatalf("Head = %+v, want size 5 and Put's ETag %s", h, first.ETag)
	}
	if h.LastModified.IsZero() {
		t.Errorf("Head: zero LastModified")
	}
	if got := get(t, s, "a/b/c.txt", 0, -1); string(got) != "hello" {
		t.Fatalf("Get = %q, want hello", got)
	}
	second := put(t, s, "a/b/c.txt", []byte("hello, again"))
	if second.ETag == first.ETag {
		t.Errorf("replaced object kept its ETag %s", first.ETag)
	}
	if got := get(t, s, "a/b/c.txt", 0, -1); string(got) != "hello, again" {
		t.Fatalf("Get after replace = %q", got)
	}
	if h := head(t, s, "a/b/c.txt"); h.Size != 12 || h.ETag != second.ETag {
		t.Fatalf("Head after replace = %+v, want size 12, ETag %s", h, second.ETag)
	}
}

func testEmptyObject(t *testing.T, s storage.Store) {
	put(t, s, "empty", nil)
	if h := head(t, s, "empty"); h.Size != 0 {
		t.Fatalf("Head = %+v, want size 0", h)
	}
	for _, r := range [][2]int64{{0, -1}, {0, 5}, {0, 0}} {
		if got := get(t, s, "empty", r[0], r[1]); len(got) != 0 {
			t.Fatalf("Get(empty, %d, %d) = %q", r[0], r[1], got)
		}
	}
	_, err := s.Get(t.Context(), "empty", 1, -1)
	wantErr(t, "Get(empty, 1, -1)", err, storage.ErrInvalidRange)
}

func testRangedReads(t *testing.T, s storage.Store) {
	put(t, s, "r", []byte("0123456789"))
	for _, tc := range []struct {
		offset, length int64
		want           string
		err            error
	}{
		{0, -1, "0123456789", nil},
		{0, 10, "0123456789", nil},
		{2, 3, "234", nil},
		{5, -1, "56789", nil},
		{9, 1, "9", nil},
		{0, 1, "0", nil},
		{8, 100, "89", nil},
		{4, 0, "", nil},
		{10, -1, "", storage.ErrInvalidRange},
		{10, 2, "", storage.ErrInvalidRange},
		{20, -1, "", storage.ErrInvalidRange},
	} {
		t.Run(fmt.Sprintf("%d,%d", tc.offset, tc.length), func(t *testing.T) {
			if tc.err != nil {
				_, err := s.Get(t.Context(), "r", tc.offset, tc.length)
				wantErr(t, "Get", err, tc.err)
				return
			}
			if got := get(t, s, "r", tc.offset, tc.length); string(got) != tc.want {
				t.Fatalf("Get = %q, want %q", got, tc.want)
			}
		})
	}
}

func testInvalidKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, key := range []string{"", "/a", "a/", "a//b", ".", "..", "./a", "a/./b", "a/../b", "a/..", "a\x00b", "a\nb", "\xff"} {
		t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
			_, err := s.Put(ctx, key, bytes.NewReader([]byte("x")))
			wantErr(t, "Put", err, storage.ErrInvalidKey)
			_, err = s.Get(ctx, key, 0, -1)
			wantErr(t, "Get", err, storage.ErrInvalidKey)
			_, err = s.Head(ctx, key)
			wantErr(t, "Head", err, storage.ErrInvalidKey)
			err = s.Delete(ctx, "fine", key)
			wantErr(t, "Delete", err, storage.ErrInvalidKey)
			_, err = s.CreateMultipart(ctx, key)
			wantErr(t, "CreateMultipart", err, storage.ErrInvalidKey)
		})
	}
	for _, prefix := range []string{"/a", "a//", "../", "a/../b", "x\x00"} {
		err := s.List(ctx, prefix, func(storage.ObjectInfo) error { return nil })
		wantErr(t, fmt.Sprintf("List(%q)", prefix), err, storage.ErrInvalidKey)
	}
}

func testList(t *testing.T, s storage.Store) {
	all := []string{"l/a.txt", "l/a/1", "l/a/2", "l/ab/3", "l/b", "m/x"} // ascending byte order
	for i, k := range all {
		put(t, s, k, bytes.Repeat([]byte("x"), i+1))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"l/", all[:5]},
		{"l/a", all[:4]},
		{"l/a/", all[1:3]},
		{"l/a/1", all[1:2]},
		{"m", all[5:]},
		{"nope/", nil},
		{"l/b/", nil},
	} {
		if diff := cmp.Diff(tc.want, keys(t, s, tc.prefix)); diff != "" {
			t.Errorf("List(%q) (-want +got):\n%s", tc.prefix, diff)
		}
	}
	err := s.List(t.Context(), "l/a/", func(o storage.ObjectInfo) error {
		if o.Key == "l/a/1" && (o.Size != 2 || o.ETag == "" || o.LastModified.IsZero()) {
			t.Errorf("List: %+v, want size 2, an ETag and a time", o)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	calls := 0
	err = s.List(t.Context(), "", func(storage.ObjectInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List with failing fn: err %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func testDelete(t *testing.T, s storage.Store) {
	ctx := t.Context()
	if err := s.Delete(ctx, "never/existed"); err != nil {
		t.Fatalf("Delete(missing): %v", err)
	}
	if err := s.Delete(ctx); err != nil {
		t.Fatalf("Delete(): %v", err)
	}
	put(t, s, "d/1", []byte("1"))
	put(t, s, "d/2", []byte("2"))
	put(t, s, "d/sub/3", []byte("3"))
	for range 2 {
		if err := s.Delete(ctx, "d/1", "d/missing", "d/sub/3"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		wantAbsent(t, s, "d/1")
		wantAbsent(t, s, "d/sub/3")
		if diff := cmp.Diff([]string{"d/2"}, keys(t, s, "d/")); diff != "" {
			t.Fatalf("List after Delete (-want +got):\n%s", diff)
		}
	}
	put(t, s, "d/sub/3", []byte("again")) // a directory emptied by Delete is usable again
}

func testDeleteMany(t *testing.T, s storage.Store) {
	const n = 1005 // more than one DeleteObjects batch of 1000
	all := make([]string, n)
	for i := range all {
		all[i] = fmt.Sprintf("many/%04d", i)
	}
	parallel(t, 8, n, func(i int) error {
		_, err := s.Put(t.Context(), all[i], bytes.NewReader([]byte{byte(i)}))
		return err
	})
	if got := len(keys(t, s, "many/")); got != n {
		t.Fatalf("listed %d objects, want %d", got, n)
	}
	if err := s.Delete(t.Context(), all...); err != nil {
		t.Fatalf("Delete(%d keys): %v", n, err)
	}
	if got := keys(t, s, "many/"); len(got) != 0 {
		t.Fatalf("after Delete, %d objects remain, first %q", len(got), got[0])
	}
}

// parallel runs fn(0..n-1) on workers goroutines and fails the test on the first error.
func parallel(t *testing.T, workers, n int, fn func(i int) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("item %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func testMultipart(t *testing.T, s storage.Store) {
	const key = "mp/object"
	p1, p2 := data(1, storage.MinPartSize), data(2, 1000)
	id := create(t, s, key)
	wantAbsent(t, s, key)
	c2 := uploadPart(t, s, key, id, 2, p2) // any order
	c1 := uploadPart(t, s, key, id, 1, p1)
	wantAbsent(t, s, key)
	info := complete(t, s, key, id, []storage.CompletedPart{c2, c1}, len(p1)+len(p2))
	if h := head(t, s, key); h.Size != info.Size || h.ETag != info.ETag {
		t.Fatalf("Head = %+v, want Complete's %+v", h, info)
	}
	want := append(slices.Clone(p1), p2...)
	if got := get(t, s, key, 0, -1); !bytes.Equal(got, want) {
		t.Fatalf("content differs (got %d bytes, want %d)", len(got), len(want))
	}
	if got := get(t, s, key, storage.MinPartSize-2, 4); !bytes.Equal(got, want[storage.MinPartSize-2:storage.MinPartSize+2]) {
		t.Fatalf("read across the part boundary = %x", got)
	}
}

func testReuploadedPart(t *testing.T, s storage.Store) {
	const key = "mp/reuploaded"
	first, second, tail := data(3, storage.MinPartSize), data(4, storage.MinPartSize), []byte("tail")
	id := create(t, s, key)
	stale := uploadPart(t, s, key, id, 1, first)
	fresh := uploadPart(t, s, key, id, 1, second)
	last := uploadPart(t, s, key, id, 2, tail)

	_, err := s.CompleteMultipart(t.Context(), key, id, []storage.CompletedPart{stale, last})
	wantErr(t, "Complete with the replaced part's ETag", err, storage.ErrInvalidPart)
	wrongCRC := fresh
	wrongCRC.CRC32C++
	_, err = s.CompleteMultipart(t.Context(), key, id, []storage.CompletedPart{wrongCRC, last})
	wantErr(t, "Complete with a wrong CRC32C", err, storage.ErrInvalidPart)
	_, err = s.CompleteMultipart(t.Context(), key, id, []storage.CompletedPart{fresh, last, last})
	wantErr(t, "Complete with a repeated part", err, storage.ErrInvalidPart)
	_, err = s.CompleteMultipart(t.Context(), key, id, []storage.CompletedPart{fresh, {Number: 3, ETag: last.ETag, CRC32C: last.CRC32C}})
	wantErr(t, "Complete with a part never uploaded", err, storage.ErrInvalidPart)
	wantAbsent(t, s, key)

	complete(t, s, key, id, []storage.CompletedPart{fresh, last}, len(second)+len(tail))
	if got := get(t, s, key, 0, -1); !bytes.Equal(got, append(slices.Clone(second), tail...)) {
		t.Fatal("content is not the later upload of part 1")
	}
}

func testPartTooSmall(t *testing.T, s storage.Store) {
	const key = "mp/small"
	ctx := t.Context()
	id := create(t, s, key)
	c1 := uploadPart(t, s, key, id, 1, data(5, storage.MinPartSize-1))
	c2 := uploadPart(t, s, key, id, 2, []byte("last"))
	_, err := s.CompleteMultipart(ctx, key, id, []storage.CompletedPart{c1, c2})
	wantErr(t, "Complete with an undersized first part", err, storage.ErrPartTooSmall)
	wantAbsent(t, s, key)
	if err := s.AbortMultipart(ctx, key, id); err != nil {
		t.Fatalf("Abort: %v", err)
	}
}

func testIdempotentComplete(t *testing.T, s storage.Store) {
	const key = "mp/twice"
	ctx := t.Context()
	p1, p2 := data(6, storage.MinPartSize), []byte("end")
	id := create(t, s, key)
	parts := []storage.CompletedPart{uploadPart(t, s, key, id, 1, p1), uploadPart(t, s, key, id, 2, p2)}
	first := complete(t, s, key, id, parts, len(p1)+len(p2))
	second := complete(t, s, key, id, parts, len(p1)+len(p2))
	if first.ETag != second.ETag || first.Size != second.Size {
		t.Fatalf("second Complete = %+v, want %+v", second, first)
	}
	_, err := s.UploadPart(ctx, key, id, 3, bytes.NewReader(p2), int64(len(p2)), crc(p2))
	wantErr(t, "UploadPart after Complete", err, storage.ErrNotFound)
	if err := s.AbortMultipart(ctx, key, id); err != nil {
		t.Fatalf("Abort after Complete: %v", err)
	}
	if h := head(t, s, key); h.ETag != first.ETag {
		t.Fatalf("Abort after Complete changed the object: %+v", h)
	}
}

func testAbort(t *testing.T, s storage.Store) {
	const key = "mp/aborted"
	ctx := t.Context()
	p1 := data(7, storage.MinPartSize)
	id := create(t, s, key)
	c1 := uploadPart(t, s, key, id, 1, p1)
	if err := s.AbortMultipart(ctx, key, id); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	wantAbsent(t, s, key)
	_, err := s.UploadPart(ctx, key, id, 2, bytes.NewReader(p1), int64(len(p1)), crc(p1))
	wantErr(t, "UploadPart after Abort", err, storage.ErrNotFound)
	_, err = s.CompleteMultipart(ctx, key, id, []storage.CompletedPart{c1})
	wantErr(t, "Complete after Abort", err, storage.ErrNotFound)
	if err := s.AbortMultipart(ctx, key, id); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
	if got := keys(t, s, ""); len(got) != 0 {
		t.Fatalf("objects after Abort: %q", got)
	}
	_, err = s.UploadPart(ctx, key, "no-such-upload", 1, bytes.NewReader(p1), int64(len(p1)), crc(p1))
	wantErr(t, "UploadPart to an unknown upload", err, storage.ErrNotFound)
}

// ListMultipart reports the uploads in progress under a prefix, in key order, and none that
// was completed or aborted.
func testListMultipart(t *testing.T, s storage.Store) {
	ctx := t.Context()
	list := func(prefix string) []storage.MultipartUpload {
		t.Helper()
		var got []storage.MultipartUpload
		if err := s.ListMultipart(ctx, prefix, func(u storage.MultipartUpload) error {
			got = append(got, u)
			return nil
		}); err != nil {
			t.Fatalf("ListMultipart(%q): %v", prefix, err)
		}
		return got
	}
	if got := list(""); len(got) != 0 {
		t.Fatalf("uploads in an empty store: %+v", got)
	}
	start := time.Now()
	small := data(11, 100)
	done := create(t, s, "mp/done")
	complete(t, s, "mp/done", done, []storage.CompletedPart{uploadPart(t, s, "mp/done", done, 1, small)}, len(small))
	gone := create(t, s, "mp/gone")
	uploadPart(t, s, "mp/gone", gone, 1, small)
	if err := s.AbortMultipart(ctx, "mp/gone", gone); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // upload id -> key
	for _, key := range []string{"mp/c/d", "mp/a", "other/x", "mp/b", "mp/a", "mpx"} {
		id := create(t, s, key)
		if key == "mp/b" {
			uploadPart(t, s, key, id, 1, small)
		}
		want[id] = key
	}
	check := func(prefix string, wantKeys []string) {
		t.Helper()
		got := list(prefix)
		var gotKeys []string
		for _, u := range got {
			gotKeys = append(gotKeys, u.Key)
			if want[u.UploadID] != u.Key {
				t.Errorf("ListMultipart(%q): upload %s of %q, want of %q", prefix, u.UploadID, u.Key, want[u.UploadID])
			}
			if u.Initiated.Before(start.Add(-time.Minute)) || u.Initiated.After(time.Now().Add(time.Minute)) {
				t.Errorf("ListMultipart(%q): %q initiated %v, created between %v and now", prefix, u.Key, u.Initiated, start)
			}
		}
		if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
			t.Fatalf("ListMultipart(%q) keys (-want +got):\n%s", prefix, diff)
		}
	}
	check("mp/", []string{"mp/a", "mp/a", "mp/b", "mp/c/d"})
	check("mp", []string{"mp/a", "mp/a", "mp/b", "mp/c/d", "mpx"})
	check("", []string{"mp/a", "mp/a", "mp/b", "mp/c/d", "mpx", "other/x"})
	check("mp/c/", []string{"mp/c/d"})
	check("nothing/", nil)

	stop := errors.New("stop")
	calls := 0
	err := s.ListMultipart(ctx, "", func(storage.MultipartUpload) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("ListMultipart stopped by fn: err %v after %d calls, want stop after 1", err, calls)
	}
	err = s.ListMultipart(ctx, "/bad", func(storage.MultipartUpload) error { return nil })
	wantErr(t, "ListMultipart with an invalid prefix", err, storage.ErrInvalidKey)

	for id, key := range want {
		if err := s.AbortMultipart(ctx, key, id); err != nil {
			t.Fatal(err)
		}
	}
	check("", nil)
}

func testChecksumMismatch(t *testing.T, s storage.Store) {
	const key = "mp/crc"
	ctx := t.Context()
	body := []byte("the part")
	id := create(t, s, key)
	_, err := s.UploadPart(ctx, key, id, 1, bytes.NewReader(body), int64(len(body)), crc(body)^1)
	wantErr(t, "UploadPart with a wrong CRC32C", err, storage.ErrChecksumMismatch)
	_, err = s.CompleteMultipart(ctx, key, id, []storage.CompletedPart{{Number: 1, ETag: `"x"`, CRC32C: crc(body) ^ 1}})
	wantErr(t, "Complete of the rejected part", err, storage.ErrInvalidPart)
	c1 := uploadPart(t, s, key, id, 1, body)
	complete(t, s, key, id, []storage.CompletedPart{c1}, len(body))
	if got := get(t, s, key, 0, -1); !bytes.Equal(got, body) {
		t.Fatalf("content = %q", got)
	}
}

func testConcurrentParts(t *testing.T, s storage.Store) {
	const key, n = "mp/concurrent", 6
	id := create(t, s, key)
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = data(uint64(10+i), storage.MinPartSize)
	}
	bodies[n-1] = bodies[n-1][:123]
	parts := make([]storage.CompletedPart, n)
	parallel(t, 3, n, func(i int) error {
		b := bodies[i]
		etag, err := s.UploadPart(t.Context(), key, id, int32(i+1), bytes.NewReader(b), int64(len(b)), crc(b))
		parts[i] = storage.CompletedPart{Number: int32(i + 1), ETag: etag, CRC32C: crc(b)}
		return err
	})
	info := complete(t, s, key, id, parts, (n-1)*storage.MinPartSize+123)
	got := get(t, s, key, 0, -1)
	if sha256.Sum256(got) != sha256.Sum256(bytes.Join(bodies, nil)) {
		t.Fatalf("content of %d bytes differs (%+v)", len(got), info)
	}
}

// failingReader yields n bytes of data, then calls then() and returns its error (if any), or
// keeps yielding data if it returns nil.
type failingReader struct {
	n    int
	then func() error
	done bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		if !r.done {
			r.done = true
			if err := r.then(); err != nil {
				return 0, err
			}
		}
		if r.n < -(64 << 20) {
			return 0, io.EOF // safety net: stop a store that ignores its context
		}
	}
	k := min(len(p), 64<<10)
	if r.n > 0 {
		k = min(k, r.n)
	}
	clear(p[:k])
	r.n -= k
	return k, nil
}

func testPutFailure(t *testing.T, s storage.Store) {
	errBoom := errors.New("boom")
	put(t, s, "replaced", []byte("original"))
	for _, size := range []int{1 << 20, 12 << 20} { // a single PUT, and multipart on S3
		t.Run(fmt.Sprintf("ReaderError%dMiB", size>>20), func(t *testing.T) {
			for _, key := range []string{"failed", "replaced"} {
				_, err := s.Put(t.Context(), key, &failingReader{n: size, then: func() error { return errBoom }})
				wantErr(t, "Put with a failing reader", err, errBoom)
			}
		})
		t.Run(fmt.Sprintf("Cancel%dMiB", size>>20), func(t *testing.T) {
			for _, key := range []string{"cancelled", "replaced"} {
				ctx, cancel := context.WithCancel(t.Context())
				_, err := s.Put(ctx, key, &failingReader{n: size, then: func() error { cancel(); return nil }})
				cancel()
				wantErr(t, "Put cancelled midway", err, context.Canceled)
			}
		})
	}
	wantAbsent(t, s, "failed")
	wantAbsent(t, s, "cancelled")
	if got := get(t, s, "replaced", 0, -1); string(got) != "original" {
		t.Fatalf("a failed Put changed the object: %q", got)
	}
	if diff := cmp.Diff([]string{"replaced"}, keys(t, s, "")); diff != "" {
		t.Fatalf("List after failed Puts (-want +got):\n%s", diff)
	}
}

func testPutLarge(t *testing.T, s storage.Store) {
	const key, size = "large/object", 64<<20 + 1
	body := data(20, size)
	put(t, s, key, body)
	if h := head(t, s, key); h.Size != size {
		t.Fatalf("Head = %+v, want size %d", h, size)
	}
	got := get(t, s, key, 0, -1)
	if sha256.Sum256(got) != sha256.Sum256(body) {
		t.Fatalf("content of %d bytes differs", len(got))
	}
	for _, off := range []int64{8<<20 - 3, 32<<20 - 1, size - 2} {
		if got := get(t, s, key, off, 6); !bytes.Equal(got, body[off:min(off+6, size)]) {
			t.Fatalf("Get(%d, 6) = %x", off, got)
		}
	}
}

func testConcurrentPuts(t *testing.T, s storage.Store) {
	const n = 16
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = data(uint64(30+i), 1000+i)
	}
	parallel(t, 4, 2*n, func(i int) error {
		key := fmt.Sprintf("c/%d", i%n) // every key twice, and "same" by all
		if _, err := s.Put(t.Context(), key, bytes.NewReader(bodies[i%n])); err != nil {
			return err
		}
		_, err := s.Put(t.Context(), "c/same", bytes.NewReader(bodies[i%n]))
		return err
	})
	for i := range n {
		if got := get(t, s, fmt.Sprintf("c/%d", i), 0, -1); !bytes.Equal(got, bodies[i]) {
			t.Fatalf("c/%d: wrong content", i)
		}
	}
	got := get(t, s, "c/same", 0, -1)
	if !slices.ContainsFunc(bodies, func(b []byte) bool { return bytes.Equal(b, got) }) {
		t.Fatalf("c/same holds none of the bodies written (%d bytes)", len(got))
	}
}
