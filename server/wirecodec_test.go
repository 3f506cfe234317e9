package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/csvscan/csvgen"
	"backupstore/internal/wirecodec"
	pb "backupstore/proto/backupstore/v1"
)

// messageSizes are the data message sizes the codec test cycles through:
// above and below wirecodec.MinAlias, and not on row boundaries.
var messageSizes = []int{1 << 20, 100, 5000, 300 << 10, 1, 64 << 10}

// sendCycling streams data in messages of the sizes in messageSizes, in turn,
// after first; it returns how many carried at least MinAlias bytes.
func sendCycling(data []byte, send func([]byte) error) (big int, err error) {
	for i := 0; len(data) > 0; i++ {
		n := min(messageSizes[i%len(messageSizes)], len(data))
		if n >= wirecodec.MinAlias {
			big++
		}
		if err := send(data[:n]); err != nil {
			return big, err
		}
		data = data[n:]
	}
	return big, nil
}

// TestUploadThroughWireCodec uploads a record chunk and a multipart file
// through the app-wired server, whose codec decodes data messages without a
// copy and releases each at the stream's next receive: the stored bytes are
// the bytes sent, the data messages were aliased (not copied), and no
// stream leaves a buffer held — after success, or after bad input ends the
// stream between two receives.
func TestUploadThroughWireCodec(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := as(tokenA)
	sid, bucket := e.registerRoot(t, "prod")
	b := e.newBackup(t, sid)
	held := wirecodec.Held()

	var gen bytes.Buffer
	if err := csvgen.Generate(&gen, 25000, 7); err != nil { // ~7.6 MB: several frames, two parts
		t.Fatal(err)
	}
	chunk := gen.Bytes()
	aliased := wirecodec.Aliased()
	st, err := e.backups.UploadRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{
		BackupId: b.Id, Sobject: "Account", UploadId: uuid.NewString(),
		References: []*pb.ReferenceField{{Field: "ParentId", Target: "Account"}}}}}); err != nil {
		t.Fatal(err)
	}
	big, err := sendCycling(chunk, func(d []byte) error {
		return st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: d}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}}); err != nil {
		t.Fatal(err)
	}
	res, err := st.CloseAndRecv()
	if err != nil {
		t.Fatalf("UploadRecords: %v", err)
	}
	if got := wirecodec.Aliased() - aliased; got < int64(big) {
		t.Errorf("the server aliased %d data messages of %d ≥ %d bytes: is the codec wired?", got, big, wirecodec.MinAlias)
	}
	if h := wirecodec.Held(); h != held {
		t.Errorf("%d buffers still held after the records stream, want %d", h, held)
	}
	sum := sha256.Sum256(chunk)
	if r := res.Result; r.BytesIn != int64(len(chunk)) || r.Sha256 != hex.EncodeToString(sum[:]) || r.Records != 25000 {
		t.Fatalf("result %v for %d bytes, 25000 records", r, len(chunk))
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	stored, err := dec.DecodeAll(e.get(t, bucket, res.Result.DataKey), nil)
	if err != nil || !bytes.Equal(stored, chunk) {
		t.Fatalf("stored chunk differs from the one sent (err %v, %d vs %d bytes)", err, len(stored), len(chunk))
	}

	// A file over the part size (5 MiB here): multipart, stored as sent.
	body := make([]byte, 12<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	aliased = wirecodec.Aliased()
	fst, err := e.backups.UploadFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fst.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{
		BackupId: b.Id, ParentId: "001000000000001AAA", Path: "big.bin", Name: "big.bin", UploadId: uuid.NewString()}}}); err != nil {
		t.Fatal(err)
	}
	big, err = sendCycling(body, func(d []byte) error {
		return fst.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: d}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fst.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}}); err != nil {
		t.Fatal(err)
	}
	fres, err := fst.CloseAndRecv()
	if err != nil {
		t.Fatalf("UploadFile: %v", err)
	}
	if got := wirecodec.Aliased() - aliased; got < int64(big) {
		t.Errorf("the server aliased %d of %d file data messages", got, big)
	}
	if h := wirecodec.Held(); h != held {
		t.Errorf("%d buffers still held after the file stream, want %d", h, held)
	}
	if got := e.get(t, bucket, fres.Result.DataKey); !bytes.Equal(got, body) {
		t.Fatalf("stored file differs from the body sent (%d vs %d bytes)", len(got), len(body))
	}

	// Bad input in a big message: ingest fails while the server holds that
	// message, and the stream's end releases it.
	bad := append(append([]byte{}, chunk[:bytes.IndexByte(chunk, '\n')+1]...), bytes.Repeat([]byte("001000000000001,x\n"), 10000)...)
	_, err = e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, bad, len(bad))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a row of the wrong width: %v, want InvalidArgument", err)
	}
	if h := wirecodec.Held(); h != held {
		t.Errorf("%d buffers still held after a failed stream, want %d", h, held)
	}
}
