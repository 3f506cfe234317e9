package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"backupstore/csvscan/csvgen"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/sfid"
)

// randomField returns a CSV field: empty, plain, or quoted with commas,
// doubled quotes, CR/LF newlines and multi-byte UTF-8.
func randomField(r *rand.Rand) string {
	words := []string{"alpha", "ü", "日本語", "naïve", "😀", "x", "Zürich", "O'Brien", "a,b", "line"}
	switch r.IntN(5) {
	case 0:
		return ""
	case 1:
		if w := words[r.IntN(len(words))]; !strings.Contains(w, ",") {
			return w
		}
		return "plain"
	}
	var b strings.Builder
	b.WriteByte('"')
	for n := r.IntN(6) + 1; n > 0; n-- {
		b.WriteString(words[r.IntN(len(words))])
		switch r.IntN(5) {
		case 0:
			b.WriteString(",")
		case 1:
			b.WriteString(`""`)
		case 2:
			b.WriteString("\n")
		case 3:
			b.WriteString("\r\n")
		default:
			b.WriteString(" ")
		}
	}
	b.WriteByte('"')
	return b.String()
}

// randomCSV returns a record set with a self-reference (ParentId) as one
// file's worth of bytes, its ids (18-character), and rows (without header).
func randomCSV(r *rand.Rand, prefix string, rows int, base int) (header string, body []string, ids []string) {
	eol := []string{"\n", "\r\n"}[r.IntN(2)]
	header = "Id,Name,Note,ParentId" + eol
	for i := 0; i < rows; i++ {
		id15 := fmt.Sprintf("%s%012d", prefix, base+i)
		id, _ := sfid.Normalize(id15)
		idText := id15
		if r.IntN(2) == 0 {
			idText = id
		}
		parent := ""
		if i > 0 && r.IntN(3) == 0 {
			parent = ids[r.IntN(len(ids))]
		}
		rowEOL := eol
		if r.IntN(4) == 0 {
			rowEOL = []string{"\n", "\r\n"}[r.IntN(2)]
		}
		body = append(body, idText+","+randomField(r)+","+randomField(r)+","+parent+rowEOL)
		ids = append(ids, id)
	}
	return header, body, ids
}

func (e *env) readRecords(t *testing.T, ctx context.Context, req *pb.ReadRecordsRequest) ([]byte, *pb.ReadRecordsSummary, error) {
	t.Helper()
	st, err := e.restore.ReadRecords(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var out []byte
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return out, nil, fmt.Errorf("stream ended without a summary")
		}
		if err != nil {
			return out, nil, err
		}
		if s := m.GetSummary(); s != nil {
			return out, s, nil
		}
		out = append(out, m.GetData()...)
	}
}

func (e *env) readFile(t *testing.T, ctx context.Context, req *pb.ReadFileRequest) ([]byte, []*pb.FileInfo, error) {
	t.Helper()
	st, err := e.restore.ReadFile(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var out []byte
	var infos []*pb.FileInfo
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return out, infos, fmt.Errorf("stream ended without a summary")
		}
		if err != nil {
			return out, infos, err
		}
		switch {
		case m.GetSummary() != nil:
			return out, infos, nil
		case m.GetInfo() != nil:
			infos = append(infos, m.GetInfo())
		default:
			out = append(out, m.GetData()...)
		}
	}
}

func TestRestoreRoundTripProperty(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, e *env) {
		ctx := as(tokenA)
		sid, _ := e.registerRoot(t, "prod")
		for seed := uint64(1); seed <= 3; seed++ {
			r := rand.New(rand.NewPCG(seed, 99))
			b := e.newBackup(t, sid)
			header, rows, ids := randomCSV(r, "001", 200+r.IntN(3000), int(seed)*100000)
			// Split the rows into 1-4 chunks, each starting with the header.
			nChunks := 1 + r.IntN(4)
			var whole bytes.Buffer
			whole.WriteString(header)
			start := 0
			for c := 0; c < nChunks; c++ {
				end := len(rows)
				if c < nChunks-1 {
					end = start + (len(rows)-start)/(nChunks-c)
				}
				var chunk bytes.Buffer
				chunk.WriteString(header)
				for _, row := range rows[start:end] {
					chunk.WriteString(row)
					whole.WriteString(row)
				}
				_, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: int32(c),
					References: []*pb.ReferenceField{{Field: "ParentId", Target: "Account"}}}, chunk.Bytes(), 1+r.IntN(5000))
				if err != nil {
					t.Fatalf("seed %d chunk %d: %v", seed, c, err)
				}
				start = end
			}
			// Random binary files.
			var bodies [][]byte
			var fileIDs []string
			for i := 0; i < 3; i++ {
				body := make([]byte, r.IntN(200000))
				rand.NewChaCha8([32]byte{byte(seed), byte(i)}).Read(body)
				res, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: ids[i], Path: fmt.Sprintf("f/%d.bin", i), UploadId: uuid.NewString()}, body, 1+r.IntN(70000))
				if err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, body)
				fileIDs = append(fileIDs, res.Result.FileId)
			}
			// Not readable before commit.
			_, _, err := e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
			wantCode(t, err, codes.FailedPrecondition, "BACKUP_NOT_COMMITTED")
			if _, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id}); err != nil {
				t.Fatal(err)
			}

			// Whole read: byte for byte.
			got, sum, err := e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
			if err != nil {
				t.Fatalf("seed %d whole read: %v", seed, err)
			}
			if !bytes.Equal(got, whole.Bytes()) {
				t.Fatalf("seed %d: whole read differs (%d vs %d bytes)", seed, len(got), whole.Len())
			}
			if sum.Bytes != int64(len(got)) {
				t.Fatalf("summary bytes %d, got %d", sum.Bytes, len(got))
			}
			// Id read: a random subset (in 15- and 18-character form) plus unknown ids.
			var want []string
			var ask []string
			for i, id := range ids {
				if r.IntN(40) == 0 {
					want = append(want, rows[i])
					if r.IntN(2) == 0 {
						ask = append(ask, id[:15])
					} else {
						ask = append(ask, id)
					}
				}
			}
			unknown, _ := sfid.Normalize("001999999999999")
			ask = append(ask, unknown)
			got, sum, err = e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account", Ids: ask})
			if err != nil {
				t.Fatalf("id read: %v", err)
			}
			if exp := header + strings.Join(want, ""); string(got) != exp {
				t.Fatalf("seed %d id read:\n got %q\nwant %q", seed, got, exp)
			}
			if sum.Records != int64(len(want)) || len(sum.MissingIds) != 1 || sum.MissingIds[0] != unknown {
				t.Fatalf("summary %v", sum)
			}
			// Files: whole, ranged, by parent.
			for i, id := range fileIDs {
				got, infos, err := e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: id}})
				if err != nil || !bytes.Equal(got, bodies[i]) || len(infos) != 1 {
					t.Fatalf("file %d: %v", i, err)
				}
				if len(bodies[i]) > 10 {
					off := int64(r.IntN(len(bodies[i])))
					lim := int64(r.IntN(len(bodies[i])-int(off)) + 1)
					got, _, err := e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: id}, ReadOffset: off, ReadLimit: lim})
					if err != nil || !bytes.Equal(got, bodies[i][off:off+lim]) {
						t.Fatalf("ranged read %d+%d: %v", off, lim, err)
					}
				}
				got, infos, err = e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_ParentId{ParentId: ids[i][:15]}})
				if err != nil || len(infos) != 1 || !bytes.Equal(got, bodies[i]) {
					t.Fatalf("by parent: %v %d", err, len(infos))
				}
			}
		}
	})
}

func TestRestoreBadInput(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := as(tokenA)
	sid, _ := e.registerRoot(t, "prod")
	before := time.Now().Add(-time.Hour)
	b := e.newBackup(t, sid)
	if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, accountCSV(0, 5, "\n"), 100); err != nil {
		t.Fatal(err)
	}
	f, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "a", UploadId: uuid.NewString()}, []byte("0123456789"), 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id}); err != nil {
		t.Fatal(err)
	}
	open := e.newBackup(t, sid)

	_, _, err = e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: "bkp-unknown", Sobject: "Account"})
	wantCode(t, err, codes.NotFound, "BACKUP_NOT_FOUND")
	_, _, err = e.readRecords(t, as(tokenB), &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
	wantCode(t, err, codes.NotFound, "BACKUP_NOT_FOUND")
	_, _, err = e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: open.Id, Sobject: "Account"})
	wantCode(t, err, codes.FailedPrecondition, "BACKUP_NOT_COMMITTED")
	_, _, err = e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account", Ids: []string{"not-an-id"}})
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	_, _, err = e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Contact"})
	wantCode(t, err, codes.NotFound, "RECORD_SET_NOT_FOUND")
	got, sum, err := e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account", Ids: []string{"001000000000777"}})
	if err != nil || sum.Records != 0 || len(sum.MissingIds) != 1 || !strings.HasPrefix(string(got), "Id,") {
		t.Fatalf("ids not in the backup: %q %v %v", got, sum, err)
	}
	_, _, err = e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: f.Result.FileId}, ReadOffset: 11})
	wantCode(t, err, codes.OutOfRange, "READ_OFFSET_PAST_END")
	_, _, err = e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: "fil-nope"}})
	wantCode(t, err, codes.NotFound, "FILE_NOT_FOUND")
	_, err = e.restore.PlanRestore(ctx, &pb.PlanRestoreRequest{BackupId: b.Id, Roots: []*pb.RootRecords{{Sobject: "Account", Ids: []string{sfid18("001", 1)}}}, Depth: 6})
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	_, err = e.restore.FindBackup(ctx, &pb.FindBackupRequest{OrgId: org, At: timestamppb.New(before)})
	wantCode(t, err, codes.NotFound, "NO_BACKUP_AT_TIME")
	found, err := e.restore.FindBackup(ctx, &pb.FindBackupRequest{OrgId: org})
	if err != nil || found.Backup.Id != b.Id {
		t.Fatalf("find now: %v %v (the open backup must not count)", found, err)
	}
	c, err := e.restore.ListBackupContents(ctx, &pb.ListBackupContentsRequest{BackupId: b.Id})
	if err != nil || len(c.RecordSets) != 1 || c.RecordSets[0].Records != 5 || len(c.Files) != 1 || c.Files[0].Size != 10 {
		t.Fatalf("contents %v %v", c, err)
	}
}

func TestRestoreDataLoss(t *testing.T) {
	e := newEnv(t, "mysql")
	ctx := as(tokenA)
	sid, bucket := e.registerRoot(t, "prod")
	b := e.newBackup(t, sid)
	rec, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, accountCSV(0, 3000, "\n"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Case"}, accountCSV(0, 10, "\n"), 1<<20); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("attachment "), 1000)
	files := map[string]string{}
	keys := map[string]string{}
	for _, name := range []string{"gone", "flipped", "short", "fine"} {
		res, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: name, UploadId: uuid.NewString()}, append([]byte(name), body...), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		files[name], keys[name] = res.Result.FileId, res.Result.DataKey
	}
	if _, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id}); err != nil {
		t.Fatal(err)
	}
	root := e.gw.RootClient()
	put := func(key string, data []byte) {
		if _, err := root.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	}
	// Behind the service's back: delete one, flip a byte in one, truncate one; and corrupt the Account data.
	root.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(keys["gone"])})
	flipped := e.get(t, bucket, keys["flipped"])
	flipped[100] ^= 0x20
	put(keys["flipped"], flipped)
	put(keys["short"], e.get(t, bucket, keys["short"])[:500])
	data := e.get(t, bucket, rec.Result.DataKey)
	data[len(data)/2] ^= 0xff
	put(rec.Result.DataKey, data)

	for name, key := range map[string]string{"gone": keys["gone"], "flipped": keys["flipped"], "short": keys["short"]} {
		_, _, err := e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: files[name]}})
		st := wantCode(t, err, codes.DataLoss, "DATA_LOSS")
		if !strings.Contains(st.Message(), key) {
			t.Fatalf("%s: message does not name the object: %s", name, st.Message())
		}
	}
	_, _, err = e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
	st := wantCode(t, err, codes.DataLoss, "DATA_LOSS")
	if !strings.Contains(st.Message(), rec.Result.DataKey) {
		t.Fatalf("message: %s", st.Message())
	}
	// The rest of the backup stays readable, and the backup is flagged damaged.
	got, _, err := e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: files["fine"]}})
	if err != nil || !bytes.Equal(got, append([]byte("fine"), body...)) {
		t.Fatalf("intact file: %v", err)
	}
	if _, _, err := e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Case"}); err != nil {
		t.Fatalf("intact record set: %v", err)
	}
	g, err := e.backups.GetBackup(ctx, &pb.GetBackupRequest{Id: b.Id})
	if err != nil || !g.Backup.Damaged {
		t.Fatalf("backup not flagged damaged: %v %v", g, err)
	}
	sum := sha256.Sum256(append([]byte("fine"), body...))
	if c, _ := e.restore.ListBackupContents(ctx, &pb.ListBackupContentsRequest{BackupId: b.Id}); c == nil || !strings.Contains(fmt.Sprint(c.Files), hex.EncodeToString(sum[:])) {
		t.Fatal("contents lost the intact file")
	}
}

func TestPlanRestoreParentsChildrenCycles(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := as(tokenA)
	b := e.newBackup(t, "")
	id := func(p string, n int) string { return fmt.Sprintf("%s%012d", p, n) }
	n18 := func(s string) string { v, _ := sfid.Normalize(s); return v }
	// Accounts: 1 ← 2 ← 3 (ParentId), and Account 2's primary contact is Contact 1 (a cycle with Contact.AccountId).
	accounts := "Id,ParentId,PrimaryContact__c\n" +
		id("001", 1) + ",,\n" +
		id("001", 2) + "," + id("001", 1) + "," + id("003", 1) + "\n" +
		id("001", 3) + "," + id("001", 2) + ",\n"
	contacts := "Id,AccountId\n" + id("003", 1) + "," + id("001", 2) + "\n" + id("003", 2) + "," + id("001", 3) + "\n"
	cases := "Id,ContactId\n" + id("500", 1) + "," + id("003", 2) + "\n"
	send := func(so, data string, refs ...*pb.ReferenceField) {
		if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: so, References: refs}, []byte(data), 7); err != nil {
			t.Fatalf("%s: %v", so, err)
		}
	}
	send("Account", accounts, &pb.ReferenceField{Field: "ParentId", Target: "Account"}, &pb.ReferenceField{Field: "PrimaryContact__c", Target: "Contact"})
	send("Contact", contacts, &pb.ReferenceField{Field: "AccountId", Target: "Account"})
	send("Case", cases, &pb.ReferenceField{Field: "ContactId", Target: "Contact"})
	f, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: id("500", 1), Path: "case.txt", UploadId: uuid.NewString()}, []byte("c"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id}); err != nil {
		t.Fatal(err)
	}
	plan, err := e.restore.PlanRestore(ctx, &pb.PlanRestoreRequest{BackupId: b.Id, Depth: 2,
		Roots: []*pb.RootRecords{{Sobject: "Account", Ids: []string{id("001", 3), id("001", 999)}}}})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range plan.Steps {
		lines = append(lines, fmt.Sprintf("%s %s %s %v omit=%v update=%v files=%d", strings.TrimPrefix(s.Kind.String(), "STEP_KIND_"), s.Sobject, s.Role, s.Ids, s.OmitFields, s.UpdateFields, len(s.FileIds)))
	}
	got := strings.Join(lines, "\n")
	// Root Account 3; parents Account 2 and 1 (ParentId), Contact 1 (Account 2's primary contact);
	// children: Contact 2 (AccountId → 3), then Case 1 (ContactId → Contact 2) at depth 2; its file.
	want := strings.Join([]string{
		fmt.Sprintf("INSERT Account parent [%s %s] omit=[ParentId PrimaryContact__c] update=[] files=0", n18(id("001", 1)), n18(id("001", 2))),
		fmt.Sprintf("INSERT Account root [%s] omit=[ParentId PrimaryContact__c] update=[] files=0", n18(id("001", 3))),
		fmt.Sprintf("INSERT Contact parent [%s] omit=[] update=[] files=0", n18(id("003", 1))),
		fmt.Sprintf("INSERT Contact child [%s] omit=[] update=[] files=0", n18(id("003", 2))),
		fmt.Sprintf("INSERT Case child [%s] omit=[] update=[] files=0", n18(id("500", 1))),
		fmt.Sprintf("UPDATE Account  [%s %s %s] omit=[] update=[ParentId PrimaryContact__c] files=0", n18(id("001", 1)), n18(id("001", 2)), n18(id("001", 3))),
		"FILES   [] omit=[] update=[] files=1",
	}, "\n")
	if got != want {
		t.Fatalf("plan\n got:\n%s\nwant:\n%s", got, want)
	}
	if plan.RecordCount != 6 || plan.FileCount != 1 || len(plan.MissingIds) != 1 || plan.Steps[6].FileIds[0] != f.Result.FileId {
		t.Fatalf("counts %d %d missing %v", plan.RecordCount, plan.FileCount, plan.MissingIds)
	}
}

func TestRestoreStreamRespectsFlowControl(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := as(tokenA)
	b := e.newBackup(t, "")
	var gen bytes.Buffer
	csvgen.Generate(&gen, 150000, 3) // ~45 MB of CSV
	if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, gen.Bytes(), 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id}); err != nil {
		t.Fatal(err)
	}
	base := e.rst.Stats().Sent
	rctx, cancel := context.WithCancel(ctx)
	st, err := e.restore.ReadRecords(rctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	// The client stops reading: the server must stop too, not buffer the rest.
	time.Sleep(500 * time.Millisecond)
	sent := e.rst.Stats().Sent - base
	if sent > int64(gen.Len())/3 {
		t.Fatalf("server pushed %d of %d bytes to a client that stopped reading", sent, gen.Len())
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for e.budget.Used() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if e.budget.Used() != 0 {
		t.Fatalf("cancelled read still holds %d bytes of the budget", e.budget.Used())
	}
	t.Logf("sent %d of %d bytes before the client stopped reading", sent, gen.Len())
}
