package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"backupstore/budget"
	"backupstore/ingest"
	pb "backupstore/proto/backupstore/v1"
)

// uploadFiles sends every file on one UploadFiles stream (all of them ahead
// of the answers: the server's window holds the rest back) and returns the
// answers by upload id.
func (e *env) uploadFiles(t *testing.T, hdrs []*pb.FileHeader, bodies [][]byte) (map[string]*pb.UploadFilesResponse, error) {
	t.Helper()
	return e.uploadFilesAs(t, as(tokenA), hdrs, bodies)
}

// uploadFilesAs is uploadFiles on ctx (a tenant's token).
func (e *env) uploadFilesAs(t *testing.T, ctx context.Context, hdrs []*pb.FileHeader, bodies [][]byte) (map[string]*pb.UploadFilesResponse, error) {
	t.Helper()
	st, err := e.backups.UploadFiles(ctx)
	if err != nil {
		return nil, err
	}
	sendErr := make(chan error, 1)
	go func() {
		for i, h := range hdrs {
			if err := st.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Header{Header: h}}); err != nil {
				sendErr <- err
				return
			}
			if bodies[i] == nil {
				continue // a header without its data: the stream's error
			}
			if err := st.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Data{Data: &pb.FileData{UploadId: h.GetUploadId(), Data: bodies[i]}}}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	got := map[string]*pb.UploadFilesResponse{}
	for {
		a, err := st.Recv()
		if err == io.EOF {
			return got, <-sendErr
		}
		if err != nil {
			return got, err
		}
		if got[a.GetUploadId()] != nil {
			t.Errorf("upload %s answered twice", a.GetUploadId())
		}
		got[a.GetUploadId()] = a
	}
}

// Many small files on one UploadFiles stream fill packs: 2,000 files in a
// handful of PUTs, each answered once durable (it reads back); a file whose
// body breaks its header is answered with its error and the others go on;
// a resent upload id answers the first result; a header without its data
// ends the stream with InvalidArgument.
func TestUploadFilesFillsPacks(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			// No linger within the test: packs seal when the stream's window is
			// full and its files have joined, or when the stream ends — on a
			// loaded machine too (with a linger of 2 s, a slow read made 6).
			// Were a full window still counted as sending more, the first
			// pack would wait out the hour: the guard below ends the stream.
			e := newEnv(t, driver, func(o *envOptions) {
				o.pack = ingest.DefaultPackThreshold
				o.packLinger = time.Hour
			})
			sid, bucket := e.registerRoot(t, "prod")
			b := e.newBackup(t, sid)
			const n = 2000
			var hdrs []*pb.FileHeader
			var bodies [][]byte
			for i := range n {
				body := packedBody(7, i%300)
				body = append(body, fmt.Sprint(i)...) // distinct
				hdrs = append(hdrs, packedHeader(b.Id, uuid.NewString(), i, body))
				bodies = append(bodies, body)
			}
			bodies[10] = append(bytes.Clone(bodies[10]), 'x') // one byte more than declared
			guard, cancel := context.WithTimeout(as(tokenA), 2*time.Minute)
			defer cancel()
			got, err := e.uploadFilesAs(t, guard, hdrs, bodies)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("%d answers for %d files", len(got), n)
			}
			packs := map[string]bool{}
			for i, h := range hdrs {
				a := got[h.GetUploadId()]
				if i == 10 {
					if a.GetError() == nil || a.GetError().GetCode() != int32(codes.InvalidArgument) || a.GetError().GetReason() == "" {
						t.Errorf("a body longer than declared: %v", a)
					}
					continue
				}
				if a.GetError() != nil || !strings.Contains(a.GetResult().GetDataKey(), "/packs/pck-") {
					t.Fatalf("file %d: %v\n%s", i, a, grepLines(e.logs.String(), "ERROR"))
				}
				packs[a.GetResult().GetDataKey()] = true
			}
			var inBucket int
			for _, k := range e.keys(t, bucket) {
				if strings.Contains(k, "/packs/") {
					inBucket++
				}
			}
			// 2,000 bodies of ~6 KiB (≈ 12 MiB) under a window of 1,024 files: a
			// few packs, not one per file or per handful of files. A pack ends
			// at the 5 MiB target (at most 2 of 12 MiB), when the window is
			// full and its files have joined (at most 2: after 1,024 files,
			// then after 512 more at the earliest) or at the end (1): at most
			// 5 however the machine schedules the stream.
			if len(packs) > 5 || inBucket != len(packs) {
				t.Errorf("2,000 files in %d packs (%d in the bucket)", len(packs), inBucket)
			} else {
				t.Logf("2,000 files in %d packs", len(packs))
			}
			// A resend answers the first result; the fixed file goes in now.
			bodies[10] = bodies[10][:len(bodies[10])-1]
			again, err := e.uploadFiles(t, []*pb.FileHeader{hdrs[0], hdrs[10]}, [][]byte{bodies[0], bodies[10]})
			if err != nil {
				t.Fatal(err)
			}
			if a := again[hdrs[0].GetUploadId()]; a.GetResult().GetFileId() != got[hdrs[0].GetUploadId()].GetResult().GetFileId() {
				t.Errorf("a resent upload id answered %v, first %v", a, got[hdrs[0].GetUploadId()])
			}
			if a := again[hdrs[10].GetUploadId()]; a.GetError() != nil {
				t.Errorf("the fixed file: %v", a.GetError())
			}
			// A header without its data: the stream's error.
			_, err = e.uploadFiles(t, []*pb.FileHeader{packedHeader(b.Id, uuid.NewString(), 1, bodies[1]), packedHeader(b.Id, uuid.NewString(), 2, bodies[2])},
				[][]byte{nil, bodies[2]})
			wantCode(t, err, codes.InvalidArgument, "")
			e.commit(t, b.Id)
			// Answered means durable: a few read back.
			for _, i := range []int{0, 999, n - 1} {
				data, _, err := e.readFile(t, as(tokenA), &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: got[hdrs[i].GetUploadId()].GetResult().GetFileId()}})
				if err != nil || !bytes.Equal(data, bodies[i]) {
					t.Fatalf("file %d reads back %d bytes, %v", i, len(data), err)
				}
			}
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) && len(out) < 5 {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// UploadFiles' read-ahead is charged to the tenant's share: a stream of
// 600 files of 48 KiB (28 MiB: the window's 16 MiB of bodies read ahead plus
// the packs' buffers would pass the 40 MiB share if counted twice)
// completes, every file answered OK, the tenant's charge never passes its
// share, and nothing stays charged.
func TestUploadFilesWithinTenantShare(t *testing.T) {
	const share = 40 << 20
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.pack = ingest.DefaultPackThreshold
		o.budget = &budget.Config{Size: 100 << 20, TenantShare: share, MaxWait: 30 * time.Second}
	})
	b := e.newBackup(t, "")
	var hdrs []*pb.FileHeader
	var bodies [][]byte
	for i := range 600 {
		body := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 24<<10)
		hdrs = append(hdrs, packedHeader(b.Id, uuid.NewString(), i, body))
		bodies = append(bodies, body)
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			peak.Store(max(peak.Load(), e.budget.UsedBy("acme")))
			select {
			case <-stop:
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	got, err := e.uploadFiles(t, hdrs, bodies)
	close(stop)
	<-watched
	if err != nil {
		t.Fatalf("%v\n%s", err, grepLines(e.logs.String(), "ERROR"))
	}
	for _, h := range hdrs {
		if a := got[h.GetUploadId()]; a.GetError() != nil || a.GetResult() == nil {
			t.Fatalf("file %s: %v", h.GetPath(), a)
		}
	}
	if p := peak.Load(); p > share || p == 0 {
		t.Errorf("the tenant's charge peaked at %d MiB (share %d MiB)", p>>20, share>>20)
	} else {
		t.Logf("peak charge %.1f MiB of a %d MiB share", float64(p)/(1<<20), share>>20)
	}
	if n := e.budget.UsedBy("acme"); n != 0 {
		t.Errorf("%d bytes still charged after every file was answered", n)
	}
}
