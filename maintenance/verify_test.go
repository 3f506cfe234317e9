package maintenance_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/storage"
)

// hostileFrame is a valid zstd frame holding content as one raw block, whose header declares a
// window of 2^windowLog bytes (and no content size, so the window is what a decoder must hold).
func hostileFrame(content []byte, windowLog int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte((windowLog - 10) << 3)}
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(content))<<3|1) // raw block, last
	f = append(f, hdr[:3]...)
	return append(f, content...)
}

// committedBackup stores one record chunk (data and index objects with the given bodies, the
// data's catalog SHA-256 being of plain) and one file, and commits the backup.
func committedBackup(t *testing.T, e *env, data, plain, file []byte) (dataKey, fileKey string) {
	t.Helper()
	ctx := t.Context()
	const org = "00D000000000001AAA"
	b, _, err := e.catalog.CreateBackup(ctx, &metadata.Backup{TenantID: "acme", ID: "bak-v", OrgID: org})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, body []byte) {
		if _, err := e.store.Put(ctx, key, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	sum := func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
	dataKey = "acme/" + org + "/bak-v/records/Account/chk-1.csv.zst"
	index := []byte("not an index")
	put(dataKey, data)
	put(dataKey+".idx", index)
	u := &metadata.Upload{TenantID: "acme", BackupID: b.ID, UploadID: "up-r", Kind: metadata.KindRecords, ObjectID: "obj-r",
		ObjectKey: dataKey, PartSize: 8 << 20, SObject: "Account", Sequence: 1, DeclaredSize: -1}
	if err := e.catalog.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	d := &metadata.Object{ID: "obj-r", Key: dataKey, Kind: metadata.ObjRecords, Size: int64(len(data)), SHA256: sum(plain)}
	ix := &metadata.Object{ID: "obj-r-idx", Key: dataKey + ".idx", Kind: metadata.ObjIndex, Size: int64(len(index)), SHA256: sum(index)}
	ch := &metadata.RecordChunk{SObject: "Account", Sequence: 1, UploadID: "up-r", DataObjectID: d.ID, IndexObjectID: ix.ID,
		Records: 1, BytesIn: int64(len(plain)), BytesStored: int64(len(data) + len(index)), SHA256: sum(plain)}
	if err := e.catalog.CommitRecordsUpload(ctx, u, d, ix, ch); err != nil {
		t.Fatal(err)
	}
	fileKey = "acme/" + org + "/files/obj-f"
	put(fileKey, file)
	fu := &metadata.Upload{TenantID: "acme", BackupID: b.ID, UploadID: "up-f", Kind: metadata.KindFile, ObjectID: "obj-f",
		ObjectKey: fileKey, PartSize: 8 << 20, ParentID: "001000000000001AAA", Path: "a", Name: "a", DeclaredSize: -1}
	fo := &metadata.Object{ID: "obj-f", Key: fileKey, Kind: metadata.ObjFile, Size: int64(len(file)), SHA256: sum(file)}
	f := &metadata.File{ID: "fil-1", ParentID: "001000000000001AAA", Path: "a", Name: "a", Size: int64(len(file)), SHA256: sum(file)}
	if err := e.catalog.CommitFileUpload(ctx, fu, fo, f); err != nil {
		t.Fatal(err)
	}
	if err := e.catalog.SetBackupStatus(ctx, "acme", b.ID, metadata.BackupOpen, metadata.BackupCommitted); err != nil {
		t.Fatal(err)
	}
	return dataKey, fileKey
}

func problemOf(t *testing.T, probs []string, key string) string {
	t.Helper()
	for _, p := range probs {
		if strings.HasPrefix(p, key+": ") {
			return p
		}
	}
	t.Fatalf("no problem for %s in %q", key, probs)
	return ""
}

// A record data object whose zstd frame declares a window larger than any frame the service
// writes is corrupt: Verify refuses it before allocating the window, names the object and
// flags the backup damaged — even though the bytes decode to the catalog's SHA-256.
func TestVerifyBoundsTheZstdDecoder(t *testing.T) {
	e := newEnv(t, "mysql", nil)
	plain := []byte("Id,Name\n001000000000001AAA,Acme\n")
	frame := hostileFrame(plain, 28) // 256 MiB window; klauspost's default limit is 512 MiB
	// The frame is valid: an unbounded decoder returns the content.
	if got, err := io.ReadAll(must(zstd.NewReader(bytes.NewReader(frame)))); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("the crafted frame does not decode with default limits: %v", err)
	}
	dataKey, _ := committedBackup(t, e, frame, plain, []byte("file body"))
	b, rep, err := e.svc.Verify(t.Context(), "acme", "bak-v", 100)
	if err != nil {
		t.Fatal(err)
	}
	var probs []string
	for _, p := range rep.Problems {
		probs = append(probs, p.Key+": "+p.Problem+": "+p.Detail)
	}
	p := problemOf(t, probs, dataKey)
	if !strings.Contains(p, "does not decode") || !strings.Contains(p, dataKey) {
		t.Fatalf("problem %q", p)
	}
	if !b.Damaged {
		t.Fatal("backup not flagged damaged")
	}
	o, err := e.catalog.GetObject(t.Context(), "acme", "obj-r")
	if err != nil || !o.Damaged {
		t.Fatalf("data object not flagged damaged: %v", err)
	}
}

// A bug that panics in a verify worker (say, in a decoder fed hostile bytes
// from the tenant's bucket) fails that Verify with Internal, PANIC; the
// process — and every other tenant's calls — go on. Before the workers ran
// through fault.Catch, the panic ended the process: the server's recovery
// interceptor covers only the handler's own goroutine.
func TestVerifyWorkerPanicIsAnError(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	plain := []byte("Id,Name\n001000000000001AAA,Acme\n")
	committedBackup(t, e, must2(zstd.NewWriter(nil)).EncodeAll(plain, nil), plain, []byte("file body"))
	e.hooks.BeforeCheckObject = func(o *metadata.Object) { panic("a decoder bug on " + o.Key) }
	_, _, err := e.svc.Verify(t.Context(), "acme", "bak-v", 100)
	fe, ok := fault.As(err)
	if !ok || fe.Kind != fault.Internal || fe.Reason != "PANIC" || !strings.Contains(err.Error(), "a decoder bug on") {
		t.Fatalf("Verify with a panicking worker: %v, want Internal PANIC carrying the panic", err)
	}
	e.hooks.BeforeCheckObject = nil
	// The service goes on (the fixture's index is a stub, so problems are expected).
	if _, rep, err := e.svc.Verify(t.Context(), "acme", "bak-v", 100); err != nil || rep.Checked == 0 {
		t.Fatalf("Verify after the panic: %v, %+v", err, rep)
	}
}

func must2(e *zstd.Encoder, err error) *zstd.Encoder {
	if err != nil {
		panic(err)
	}
	return e
}

func must(d *zstd.Decoder, err error) io.Reader {
	if err != nil {
		panic(err)
	}
	return d
}

// getIgnoresSize is a store whose whole-object GET of one key answers an endless body.
type getIgnoresSize struct {
	storage.Store
	key  string
	read *int64
}

type endlessBody struct{ n *int64 }

func (b endlessBody) Read(p []byte) (int, error) {
	*b.n += int64(len(p))
	return len(p), nil
}

func (s getIgnoresSize) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if key == s.key {
		return io.NopCloser(endlessBody{s.read}), nil
	}
	return s.Store.Get(ctx, key, offset, length)
}

// Verify reads no more of an object than the catalog's size: a body without end is a problem
// naming the object, not an endless read.
func TestVerifyBoundsTheBody(t *testing.T) {
	var read int64
	const fileKey = "acme/00D000000000001AAA/files/obj-f"
	e := newEnv(t, "sqlite", func(st storage.Store) storage.Store { return getIgnoresSize{Store: st, key: fileKey, read: &read} })
	enc, _ := zstd.NewWriter(nil)
	plain := []byte("Id\n001000000000001AAA\n")
	committedBackup(t, e, enc.EncodeAll(plain, nil), plain, []byte("file body"))
	_, rep, err := e.svc.Verify(t.Context(), "acme", "bak-v", 100)
	if err != nil {
		t.Fatal(err)
	}
	var probs []string
	for _, p := range rep.Problems {
		probs = append(probs, p.Key+": "+p.Problem+": "+p.Detail)
	}
	if p := problemOf(t, probs, fileKey); !strings.Contains(p, "size") || !strings.Contains(p, "longer") {
		t.Fatalf("problem %q", p)
	}
	if read > 1<<20 {
		t.Fatalf("read %d bytes of an endless body for a %d-byte object", read, len("file body"))
	}
	for _, p := range probs {
		if strings.Contains(p, "chk-1.csv.zst:") {
			t.Fatalf("the intact data object has a problem: %s", p)
		}
	}
}
