package client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/client"
	"backupstore/internal/app"
	"backupstore/internal/wirecodec"
	pb "backupstore/proto/backupstore/v1"
)

// smallFrames makes the service cut 4 KiB frames and send 16 KiB messages,
// so that a chunk of a few hundred KiB has many frames, a message batches
// several, and a long row makes a frame larger than a message (sent alone).
func smallFrames(c *app.Config) {
	c.Ingest.FrameSize = 4 << 10
	c.Restore.MessageSize = 16 << 10
}

// framesChunks are the chunks of one record set that exercise every join:
// a chunk whose last row lacks a line ending, CRLF rows, a header-only
// chunk, a row longer than a message, and a chunk ending without a line
// ending at the end of the set.
func framesChunks() [][]byte {
	var a, b, d strings.Builder
	a.WriteString("Id,Name,Note\n")
	for i := range 3000 {
		fmt.Fprintf(&a, "001%012dAAA,Name %d,\"a note, with a comma\"\n", i, i)
	}
	a.WriteString("001999999999999AAA,last,no line ending")
	b.WriteString("Id,Name,Note\r\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "002%012dAAA,Name %d,\"multi\r\nline\"\r\n", i, i)
	}
	fmt.Fprintf(&b, "002999999999999AAA,long,%s\r\n", randomHex(40<<10))
	d.WriteString("Id,Name,Note\n")
	for i := range 500 {
		fmt.Fprintf(&d, "003%012dAAA,Name %d,x\n", i, i)
	}
	d.WriteString("003999999999999AAA,end,x")
	return [][]byte{[]byte(a.String()), []byte(b.String()), []byte("Id,Name,Note\n"), []byte(d.String())}
}

func randomHex(n int) string { return fmt.Sprintf("%x", randomBytes(n/2, 7)) }

// uploadChunks makes a committed backup of one Account record set.
func uploadChunks(t *testing.T, c *client.Client, chunks [][]byte) string {
	t.Helper()
	ctx := t.Context()
	b, err := c.Backup().CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	id := b.GetBackup().GetId()
	for i, ch := range chunks {
		if _, err := c.UploadRecords(ctx, id, "Account", bytes.NewReader(ch), client.RecordsOptions{Sequence: int32(i)}); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if _, err := c.Backup().CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
		t.Fatal(err)
	}
	return id
}

func readAs(t *testing.T, c *client.Client, req *pb.ReadRecordsRequest, enc ...pb.ContentEncoding) ([]byte, *pb.ReadRecordsSummary, error) {
	t.Helper()
	r := &pb.ReadRecordsRequest{BackupId: req.GetBackupId(), Sobject: req.GetSobject(), StartSequence: req.GetStartSequence(),
		EndSequence: req.GetEndSequence(), AcceptEncoding: enc}
	var out bytes.Buffer
	sum, err := c.ReadRecordsTo(t.Context(), r, &out)
	return out.Bytes(), sum, err
}

// The library's reads alias each message's data (CSV or frames) into its
// received buffer, and release every one: after a read no buffer is held.
func TestReadRecordsReleasesAliasedBuffers(t *testing.T) {
	c := dial(t, serve(t, nil, smallFrames))
	id := uploadChunks(t, c, framesChunks())
	for _, enc := range []pb.ContentEncoding{pb.ContentEncoding_CONTENT_ENCODING_ZSTD, pb.ContentEncoding_CONTENT_ENCODING_IDENTITY} {
		runtime.GC() // buffers of messages nobody released (earlier tests) leave when collected
		held, aliased := wirecodec.Held(), wirecodec.Aliased()
		got, sum, err := readAs(t, c, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account"}, enc)
		if err != nil {
			t.Fatal(err)
		}
		// 16 KiB messages: one per 16 KiB of CSV, or of frames.
		sent := int64(len(got))
		if enc == pb.ContentEncoding_CONTENT_ENCODING_ZSTD {
			sent = sum.GetStoredBytes()
		}
		if n := wirecodec.Aliased() - aliased; n < max(sent/(32<<10), 1) {
			t.Errorf("%v: %d messages aliased for %d bytes sent; want about one per 16 KiB", enc, n, sent)
		}
		if h := wirecodec.Held(); h > held {
			t.Errorf("%v: %d received buffers still held after the read (%d before): messages not released", enc, h, held)
		}
	}
}

// A zstd read gives byte for byte what the identity read gives, whole and
// for every range of chunks, with a quarter of the bytes on the wire.
func TestReadRecordsZstdMatchesIdentity(t *testing.T) {
	c := dial(t, serve(t, nil, smallFrames))
	chunks := framesChunks()
	id := uploadChunks(t, c, chunks)
	zstdEnc := pb.ContentEncoding_CONTENT_ENCODING_ZSTD
	for _, r := range [][2]int32{{0, 0}, {0, 1}, {1, 0}, {1, 3}, {2, 3}, {3, 4}, {1, 2}} {
		req := &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account", StartSequence: r[0], EndSequence: r[1]}
		plain, psum, err := readAs(t, c, req)
		if err != nil {
			t.Fatalf("range %v identity: %v", r, err)
		}
		got, zsum, err := readAs(t, c, req, zstdEnc)
		if err != nil {
			t.Fatalf("range %v zstd: %v", r, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("range %v: zstd read differs from identity (%d vs %d bytes)", r, len(got), len(plain))
		}
		if zsum.GetEncoding() != zstdEnc || psum.GetEncoding() == zstdEnc || zsum.GetRecords() != psum.GetRecords() || zsum.GetBytes() != int64(len(got)) {
			t.Errorf("range %v: summaries %v / %v", r, zsum, psum)
		}
		if r == [2]int32{0, 0} {
			// The whole read: the header once, every row kept apart.
			want := chunks[0][:len(chunks[0])] // the first chunk with its header
			if !bytes.HasPrefix(got, want) || !bytes.Contains(got, []byte("no line ending\n002000000000000AAA")) ||
				!bytes.HasSuffix(got, []byte("\n003999999999999AAA,end,x")) || bytes.Count(got, []byte("Id,Name,Note")) != 1 {
				t.Errorf("whole read is not the chunks joined: %d bytes", len(got))
			}
			if zsum.GetStoredBytes() <= 0 || zsum.GetStoredBytes() > int64(len(got))/2 {
				t.Errorf("stored bytes %d for %d CSV bytes", zsum.GetStoredBytes(), len(got))
			}
		}
	}
	// The iterator (zstd by default) yields the same.
	var it bytes.Buffer
	for p, err := range c.ReadRecords(t.Context(), id, "Account", nil) {
		if err != nil {
			t.Fatal(err)
		}
		it.Write(p)
	}
	whole, _, _ := readAs(t, c, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account"})
	if !bytes.Equal(it.Bytes(), whole) {
		t.Errorf("ReadRecords iterator: %d bytes, want %d", it.Len(), len(whole))
	}
	// Ranges the server refuses.
	for _, r := range [][2]int32{{-1, 0}, {2, 2}, {3, 1}} {
		_, _, err := readAs(t, c, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account", StartSequence: r[0], EndSequence: r[1]}, zstdEnc)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("range %v: %v, want InvalidArgument", r, err)
		}
	}
	// Reads by id are always identity, whatever is offered.
	var out bytes.Buffer
	sum, err := c.ReadRecordsTo(t.Context(), &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account", Ids: []string{"001000000000007AAA"},
		AcceptEncoding: client.AcceptZstd}, &out)
	if err != nil || sum.GetRecords() != 1 || !strings.HasPrefix(out.String(), "Id,Name,Note\n001000000000007AAA,Name 7,") {
		t.Errorf("read by id offering zstd: %v %v %q", sum, err, out.String())
	}
}

// flipFrames flips one byte of the n-th FrameBatch a client receives: a fault
// on the way that no real server produces (injected in the client).
func flipFrames(n int32, at func(data []byte) int) grpc.DialOption {
	var seen atomic.Int32
	return grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		return &flipStream{ClientStream: s, n: n, seen: &seen, at: at}, err
	})
}

type flipStream struct {
	grpc.ClientStream
	n    int32
	seen *atomic.Int32
	at   func([]byte) int
}

func (s *flipStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if r, ok := m.(*pb.ReadRecordsResponse); ok && err == nil {
		if f := r.GetFrames(); f != nil && s.seen.Add(1) == s.n {
			f.Data[s.at(f.Data)] ^= 0x40
		}
	}
	return err
}

// Frames corrupted on the way: the client finds it, the server's own read
// of the chunk checks out, so the read is Unavailable (retry) and nothing is
// flagged; the next read succeeds.
func TestReadRecordsZstdCorruptedInTransit(t *testing.T) {
	addr := serve(t, nil, smallFrames)
	c := dial(t, addr)
	id := uploadChunks(t, c, framesChunks())
	want, _, err := readAs(t, c, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account"})
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []func([]byte) int{
		func(d []byte) int { return len(d) / 2 }, // inside a frame's blocks
		func(d []byte) int { return len(d) - 1 }, // a frame's checksum
		func(d []byte) int { return 5 },          // the first frame's header
	} {
		bad := dial(t, addr, client.WithDialOptions(flipFrames(3, at)))
		_, _, err := readAs(t, bad, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account"}, pb.ContentEncoding_CONTENT_ENCODING_ZSTD)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "corrupted on the way") {
			t.Fatalf("corrupted frames: %v, want Unavailable (corrupted on the way)", err)
		}
	}
	got, _, err := readAs(t, c, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account"}, pb.ContentEncoding_CONTENT_ENCODING_ZSTD)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after: %v (%d bytes, want %d)", err, len(got), len(want))
	}
	l, err := c.Restore().ListBackupContents(t.Context(), &pb.ListBackupContentsRequest{BackupId: id})
	if err != nil || l.GetBackup().GetDamaged() {
		t.Fatalf("backup flagged damaged on the client's word: %v %v", l.GetBackup(), err)
	}
}

// dataObjects returns the record data objects under a local storage root.
func dataObjects(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".csv.zst") {
			out = append(out, p)
		}
		return err
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("no data objects under %s: %v", root, err)
	}
	return out
}

// Damage in the bucket: inside a frame, the client finds it and the
// server's identity re-read confirms and flags it (DataLoss); in a frame's
// header, the server refuses before sending the frame.
func TestReadRecordsZstdDamagedInBucket(t *testing.T) {
	for _, tc := range []struct {
		name string
		flip func(t *testing.T, obj []byte) int
		msg  string
	}{
		{"inside a frame", func(t *testing.T, obj []byte) int { return len(obj) / 2 }, "does not decode"},
		{"frame header's content size", func(t *testing.T, obj []byte) int {
			var h zstd.Header
			if err := h.Decode(obj); err != nil || !h.HasFCS {
				t.Fatalf("frame 0 header: %v (has size %v)", err, h.HasFCS)
			}
			return h.HeaderSize - 1 // the content size is the header's last field
		}, "declares"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			addr, stop, err := startServer(dir, nil, smallFrames)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			c := dial(t, addr)
			id := uploadChunks(t, c, framesChunks()[:1])
			obj := dataObjects(t, filepath.Join(dir, "objects"))[0]
			b, err := os.ReadFile(obj)
			if err != nil {
				t.Fatal(err)
			}
			b[tc.flip(t, b)] ^= 0x01
			if err := os.WriteFile(obj, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err = readAs(t, c, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account"}, pb.ContentEncoding_CONTENT_ENCODING_ZSTD)
			if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), ".csv.zst") {
				t.Fatalf("read of a damaged object: %v, want DataLoss naming the object (%s)", err, tc.msg)
			}
			l, err := c.Restore().ListBackupContents(t.Context(), &pb.ListBackupContentsRequest{BackupId: id})
			if err != nil || !l.GetBackup().GetDamaged() {
				t.Fatalf("backup not flagged damaged: %v %v", l.GetBackup(), err)
			}
		})
	}
}

// A record index that does not open: a whole plain read still succeeds (the
// server decodes the data object as a stream, and its SHA-256 tells), while
// a passthrough read, which needs the frame table, is DataLoss naming the
// index, flagged.
func TestReadRecordsDamagedIndex(t *testing.T) {
	dir := t.TempDir()
	addr, stop, err := startServer(dir, nil, smallFrames)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	c := dial(t, addr)
	chunks := framesChunks()[:1]
	id := uploadChunks(t, c, chunks)
	idx := strings.TrimSuffix(dataObjects(t, filepath.Join(dir, "objects"))[0], ".csv.zst") + ".idx"
	b, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-30] ^= 0x01 // the footer: its CRC fails
	if err := os.WriteFile(idx, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, _, err := readAs(t, c, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account"}, pb.ContentEncoding_CONTENT_ENCODING_IDENTITY)
	if err != nil || !bytes.Equal(got, chunks[0]) {
		t.Fatalf("plain read with a damaged index: %v (%d bytes, want %d)", err, len(got), len(chunks[0]))
	}
	_, _, err = readAs(t, c, &pb.ReadRecordsRequest{BackupId: id, Sobject: "Account"}, pb.ContentEncoding_CONTENT_ENCODING_ZSTD)
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), ".idx") {
		t.Fatalf("passthrough read with a damaged index: %v, want DataLoss naming the index", err)
	}
}

// UploadFiles: every file answered once (done), all of them in packs (a
// few PUTs for hundreds of files), each reading back; a second call with
// the same upload ids answers the first results.
func TestUploadFilesPacks(t *testing.T) {
	c := dial(t, serve(t, nil, func(cfg *app.Config) { cfg.Ingest.PackThreshold = 1 << 20 }))
	ctx := t.Context()
	b, err := c.Backup().CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	id := b.GetBackup().GetId()
	var files []client.SmallFile
	for i := range 300 {
		files = append(files, client.SmallFile{File: client.File{ParentID: "001000000000001AAA", Path: fmt.Sprintf("f/%d.bin", i),
			UploadID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)}, Body: randomBytes(3000+i, uint64(i))})
	}
	results := make([]*pb.UploadResult, len(files))
	calls := 0
	if err := c.UploadFiles(ctx, id, files, func(i int, res *pb.UploadResult, err error) {
		calls++
		if err != nil {
			t.Errorf("file %d: %v", i, err)
		}
		results[i] = res
	}); err != nil {
		t.Fatal(err)
	}
	packs := map[string]bool{}
	for i, r := range results {
		if r == nil || !strings.Contains(r.GetDataKey(), "/packs/") {
			t.Fatalf("file %d: %v", i, r)
		}
		packs[r.GetDataKey()] = true
	}
	if calls != len(files) || len(packs) > 10 {
		t.Errorf("%d answers for %d files, in %d packs", calls, len(files), len(packs))
	}
	if err := c.UploadFiles(ctx, id, files[:5], func(i int, res *pb.UploadResult, err error) {
		if err != nil || res.GetFileId() != results[i].GetFileId() {
			t.Errorf("resent file %d: %v %v, first %v", i, res, err, results[i])
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Backup().CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 299} {
		var got bytes.Buffer
		_, err := c.ReadFiles(ctx, &pb.ReadFileRequest{BackupId: id, Selector: &pb.ReadFileRequest_FileId{FileId: results[i].GetFileId()}},
			client.FileSink{Begin: func(*pb.FileInfo) (io.Writer, error) { return &got, nil }})
		if err != nil || !bytes.Equal(got.Bytes(), files[i].Body) {
			t.Fatalf("file %d reads back %d bytes: %v", i, got.Len(), err)
		}
	}
}

// ReadFiles aliases each data message into its received buffer, as the
// record reads do, and releases it once the sink's writer returned: a file
// (an object) and a packed one read back whole, with about one message
// aliased per 16 KiB and no buffer left held.
func TestReadFilesReleasesAliasedBuffers(t *testing.T) {
	c := dial(t, serve(t, nil, smallFrames))
	ctx := t.Context()
	b, err := c.Backup().CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	id := b.GetBackup().GetId()
	bodies := [][]byte{randomBytes(300<<10, 11), randomBytes(20<<10, 12)}
	var ids []string
	for i, body := range bodies {
		res, err := c.UploadFile(ctx, id, client.File{ParentID: "001000000000001", Path: fmt.Sprintf("f%d.bin", i), SHA256: sha(body)},
			bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Result.GetFileId())
	}
	if _, err := c.Backup().CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
		t.Fatal(err)
	}
	for i, fid := range ids {
		runtime.GC() // buffers of messages nobody released (earlier tests) leave when collected
		held, aliased := wirecodec.Held(), wirecodec.Aliased()
		var got bytes.Buffer
		if _, err := c.ReadFiles(ctx, &pb.ReadFileRequest{BackupId: id, Selector: &pb.ReadFileRequest_FileId{FileId: fid}},
			client.FileSink{Begin: func(*pb.FileInfo) (io.Writer, error) { return &got, nil }}); err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		if !bytes.Equal(got.Bytes(), bodies[i]) {
			t.Fatalf("file %d reads back %d bytes, not its body", i, got.Len())
		}
		if n := wirecodec.Aliased() - aliased; n < int64(len(bodies[i])/(32<<10)) || n == 0 {
			t.Errorf("file %d: %d messages aliased for %d bytes; want about one per 16 KiB", i, n, len(bodies[i]))
		}
		if h := wirecodec.Held(); h > held {
			t.Errorf("file %d: %d received buffers still held after the read (%d before): messages not released", i, h, held)
		}
	}
}
