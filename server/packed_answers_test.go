package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "backupstore/proto/backupstore/v1"

	"backupstore/ingest"
)

// TestPackedUploadsAnswerFromFileRows: a packed file's upload keeps no upload row
// (docs/FORMAT.md §2.5); its file row answers a resend, QueryUploadStatus and ListUploads
// with the very answer the upload got, for each way a packed upload is answered: its body
// stored, its body sent and shared with one its pack held, and a stored body shared without
// being sent. A resend may leave out a declaration (a packed file keeps none) but not
// contradict the file; a records upload with such an id is refused.
func TestPackedUploadsAnswerFromFileRows(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			e := newEnv(t, driver, func(o *envOptions) {
				o.pack, o.packLinger = ingest.DefaultPackThreshold, time.Hour
			})
			ctx := as(tokenA)
			sid, _ := e.registerRoot(t, "prod")
			b := e.newBackup(t, sid)
			body, other := packedBody(7, 1), packedBody(7, 2)
			stored, shared, third := uuid.NewString(), uuid.NewString(), uuid.NewString()
			// One stream, one pack (its linger is an hour: it seals at the stream's end). The
			// second file declares no SHA-256, so its body is sent and found in the open pack.
			hShared := packedHeader(b.Id, shared, 2, body)
			hShared.DeclaredSha256 = ""
			got, err := e.uploadFiles(t, []*pb.FileHeader{packedHeader(b.Id, stored, 1, body), hShared, packedHeader(b.Id, third, 3, other)},
				[][]byte{body, body, other})
			if err != nil {
				t.Fatal(err)
			}
			first := map[string]*pb.UploadResult{}
			for id, a := range got {
				if a.Error != nil {
					t.Fatalf("upload %s: %v", id, a.Error)
				}
				first[id] = a.Result
			}
			// After the pack's commit, a header declaring the stored body: shared, not sent.
			unsent := uuid.NewString()
			r, err := e.sendFile(ctx, packedHeader(b.Id, unsent, 4, other), nil, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			first[unsent] = r.Result
			// The stream's files go to the pack concurrently: either of the two with one body may
			// be the one that stored it. When the undeclared one stored it first, the declared one
			// finds it in the open pack from its header and is answered without sending it.
			type answer struct {
				in, stored int64
				dedup      bool
			}
			of := func(id string) answer {
				r := first[id]
				return answer{r.BytesIn, r.BytesStored, r.Deduplicated}
			}
			n := int64(len(body))
			if a, b := of(stored), of(shared); !(a == answer{n, n, false} && b == answer{n, 0, true}) &&
				!(b == answer{n, n, false} && (a == answer{n, 0, true} || a == answer{0, 0, true})) {
				t.Errorf("answers of one body sent twice: %+v and %+v; want one stored, one shared", a, b)
			}
			if a := of(unsent); a != (answer{0, 0, true}) {
				t.Errorf("answer of a declared stored body: %+v, want shared without its bytes", a)
			}

			// No upload rows: the catalog's uploads are the files' answers.
			for id := range first {
				u, err := e.catalog.GetUpload(ctx, "acme", b.Id, id)
				if err != nil || u.Answered == nil {
					t.Fatalf("catalog upload %s = %+v, %v; want one its file answers for", id, u, err)
				}
			}
			// Resends (same header; no declarations; the unsent one with its body) answer the same.
			for _, c := range []struct {
				id   string
				h    *pb.FileHeader
				data []byte
			}{
				{stored, packedHeader(b.Id, stored, 1, body), body},
				{shared, hShared, body},
				{shared, packedHeader(b.Id, shared, 2, body), body}, // declares what it left out first
				{third, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 3%5+1), Path: "Attachment/3.bin", UploadId: third}, other},
				{unsent, packedHeader(b.Id, unsent, 4, other), nil},
			} {
				r, err := e.sendFile(ctx, c.h, c.data, 1<<20)
				if err != nil || !proto.Equal(r.Result, first[c.id]) {
					t.Errorf("resend of %s: %v, %v; want %v", c.id, r, err, first[c.id])
				}
			}
			q, err := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b.Id, UploadId: shared})
			if err != nil || q.Upload.State != pb.UploadState_UPLOAD_STATE_COMMITTED || q.Upload.Path != "Attachment/2.bin" ||
				q.Upload.CommittedSize != int64(len(body)) || !proto.Equal(q.Upload.Result, first[shared]) {
				t.Errorf("QueryUploadStatus(%s) = %v, %v", shared, q, err)
			}
			listed := map[string]*pb.UploadResult{}
			tok := ""
			for range len(first) + 1 {
				l, err := e.backups.ListUploads(ctx, &pb.ListUploadsRequest{BackupId: b.Id, PageSize: 1, PageToken: tok})
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range l.Uploads {
					listed[u.UploadId] = u.Result
				}
				if tok = l.NextPageToken; tok == "" {
					break
				}
			}
			if len(listed) != len(first) {
				t.Errorf("ListUploads listed %d uploads, want %d", len(listed), len(first))
			}
			for id, r := range first {
				if !proto.Equal(listed[id], r) {
					t.Errorf("ListUploads: %s answered %v, want %v", id, listed[id], r)
				}
			}

			// Contradicting the file is another upload: refused, and nothing changes.
			bad := packedHeader(b.Id, stored, 1, body)
			wrong := sha256.Sum256(other)
			bad.DeclaredSha256 = hex.EncodeToString(wrong[:])
			_, err = e.sendFile(ctx, bad, body, 1<<20)
			wantCode(t, err, codes.InvalidArgument, "UPLOAD_ID_REUSED")
			longer := n + 1
			bad = packedHeader(b.Id, stored, 1, body)
			bad.DeclaredSize = &longer
			_, err = e.sendFile(ctx, bad, append(body, 'x'), 1<<20)
			wantCode(t, err, codes.InvalidArgument, "UPLOAD_ID_REUSED")
			_, err = e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", UploadId: stored}, []byte("Id\n001000000000001AAA\n"), 1<<20)
			wantCode(t, err, codes.InvalidArgument, "UPLOAD_ID_REUSED")
			if c := e.commit(t, b.Id); c.FileCount != 4 {
				t.Errorf("committed %d files, want 4", c.FileCount)
			}
			e.mustReadFile(t, b.Id, first[stored].FileId, body)
			e.mustReadFile(t, b.Id, first[unsent].FileId, other)
		})
	}
}
