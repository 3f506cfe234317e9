package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"backupstore/csvscan"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/sfid"
)

// fakeRestore is an in-test RestoreService serving one canned committed
// backup from memory, the way the service documents it: record sets on
// every contents page and files paged, ReadRecords as the header row then
// the rows (all, or those of the requested ids in backup order) in data
// messages that ignore row boundaries, then the summary; ReadFile as each
// file's FileInfo, its data (from read_offset, at most read_limit bytes),
// then the summary. Hooks cut streams short or fail them.
type fakeRestore struct {
	pb.UnimplementedRestoreServiceServer

	backup   *pb.Backup
	sets     []*fakeRecordSet
	files    []*fakeFile
	pageSize int // files per contents page
	msgSize  int // data bytes per message
	plan     *pb.PlanRestoreResponse

	mu       sync.Mutex
	requests []proto.Message
	// cutRecords, when set, is asked before each ReadRecords data message
	// whether to end the stream there, without its summary.
	cutRecords func(sobject string, sent int64) bool
	// failFile, when set, is asked before each ReadFile data message; a
	// non-nil error fails the stream, errCut ends it without a summary.
	failFile func(req *pb.ReadFileRequest, f *fakeFile, sent int64) error
}

var errCut = fmt.Errorf("cut the stream short")

type fakeRecordSet struct {
	info   *pb.RecordSetInfo
	header []byte
	rows   []fakeRow
}

type fakeRow struct {
	id  string // 18 characters
	raw []byte
}

type fakeFile struct {
	info *pb.FileInfo
	body []byte
}

const fakeBackupID = "bk-restore-1"

// newCannedRestore serves ex as `backup run` would have stored it: record
// sets under their file names with references.csv's fields in the export's
// spelling, files with the name and content type backup run fills in, ids
// in 18-character form.
func newCannedRestore(t *testing.T, ex *testExport) *fakeRestore {
	t.Helper()
	f := &fakeRestore{
		backup: &pb.Backup{Id: fakeBackupID, OrgId: sfidNorm(t, testOrg), Status: pb.BackupStatus_BACKUP_STATUS_COMMITTED,
			StartTime: t0, CommitTime: t0},
		pageSize: 3,
		msgSize:  1000,
	}
	refs := map[string][]*pb.ReferenceField{
		"Account": {{Field: "ParentId", Target: "Account"}},
		"Contact": {{Field: "AccountId", Target: "Account"}},
	}
	for _, name := range []string{"Account", "Contact"} {
		data := ex.content[name+".csv"]
		rs := &fakeRecordSet{info: &pb.RecordSetInfo{Sobject: name, Chunks: 1, BytesIn: int64(len(data)), BytesStored: int64(len(data)) / 2,
			References: refs[name]}}
		sc := csvscan.New(nil, csvscan.Limits{})
		emit := func(r *csvscan.Row) error {
			rs.rows = append(rs.rows, fakeRow{id: r.ID.String(), raw: slices.Clone(r.Raw)})
			return nil
		}
		if err := sc.Feed(data, emit); err != nil {
			t.Fatal(err)
		}
		if err := sc.Close(emit); err != nil {
			t.Fatal(err)
		}
		rs.header = slices.Clone(sc.Header())
		rs.info.Records = int64(len(rs.rows))
		f.sets = append(f.sets, rs)
		f.backup.RecordCount += rs.info.Records
	}
	r := csv.NewReader(bytes.NewReader(ex.content["files.csv"]))
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for i, rec := range recs[1:] {
		p, parent, name, ctype := rec[0], rec[1], rec[2], rec[3]
		if name == "" {
			name = path.Base(p)
		}
		if ctype == "" {
			ctype = contentTypeOf(p)
		}
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		body := ex.content["files/"+p]
		sum := sha256.Sum256(body)
		f.files = append(f.files, &fakeFile{body: body, info: &pb.FileInfo{
			FileId: fmt.Sprintf("fl-%03d", i+1), ParentId: sfidNorm(t, parent), Path: p, Name: name, ContentType: ctype,
			Size: int64(len(body)), Sha256: hex.EncodeToString(sum[:]),
		}})
	}
	f.backup.FileCount = int64(len(f.files))
	return f
}

func sfidNorm(t *testing.T, id string) string {
	t.Helper()
	n, err := sfid.Normalize(id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func startRestoreFake(t *testing.T, f *fakeRestore) string {
	return serveFake(t, func(srv *grpc.Server) { pb.RegisterRestoreServiceServer(srv, f) })
}

func (f *fakeRestore) record(req proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, proto.Clone(req))
}

// fileReads returns the ReadFile requests received, in order.
func (f *fakeRestore) fileReads() []*pb.ReadFileRequest { return requestsOf[*pb.ReadFileRequest](f) }

// recordReads returns the ReadRecords requests received, in order.
func (f *fakeRestore) recordReads() []*pb.ReadRecordsRequest {
	return requestsOf[*pb.ReadRecordsRequest](f)
}

// requestsOf returns the requests of type R that f received, in order.
func requestsOf[R proto.Message](f *fakeRestore) []R {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []R
	for _, r := range f.requests {
		if r, ok := r.(R); ok {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeRestore) check(id string) error {
	if id != f.backup.GetId() {
		return status.Errorf(codes.NotFound, "backup %s not found", id)
	}
	return nil
}

func (f *fakeRestore) ListBackupContents(ctx context.Context, req *pb.ListBackupContentsRequest) (*pb.ListBackupContentsResponse, error) {
	f.record(req)
	if err := f.check(req.GetBackupId()); err != nil {
		return nil, err
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "bad page token")
		}
		start = n
	}
	size := min(int(req.GetPageSize()), f.pageSize)
	end := min(start+size, len(f.files))
	resp := &pb.ListBackupContentsResponse{Backup: f.backup}
	for _, rs := range f.sets {
		resp.RecordSets = append(resp.RecordSets, rs.info)
	}
	for _, fl := range f.files[start:end] {
		resp.Files = append(resp.Files, fl.info)
	}
	if end < len(f.files) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (f *fakeRestore) FindBackup(ctx context.Context, req *pb.FindBackupRequest) (*pb.FindBackupResponse, error) {
	f.record(req)
	org, err := sfid.Normalize(req.GetOrgId())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "org_id: not a Salesforce id")
	}
	if org != f.backup.GetOrgId() || (req.At != nil && req.GetAt().AsTime().Before(f.backup.GetStartTime().AsTime())) {
		return nil, status.Errorf(codes.NotFound, "no committed backup of org %s at that time", req.GetOrgId())
	}
	return &pb.FindBackupResponse{Backup: f.backup}, nil
}

// send streams data in msgSize pieces; before each, stop says whether to
// end the stream there (nil error) or fail it.
func (f *fakeRestore) send(data []byte, sent *int64, stop func(sent int64) (bool, error), out func([]byte) error) (bool, error) {
	for len(data) > 0 {
		if stop != nil {
			if cut, err := stop(*sent); cut || err != nil {
				return true, err
			}
		}
		n := min(f.msgSize, len(data))
		if err := out(data[:n]); err != nil {
			return true, err
		}
		*sent += int64(n)
		data = data[n:]
	}
	return false, nil
}

func (f *fakeRestore) ReadRecords(req *pb.ReadRecordsRequest, stream grpc.ServerStreamingServer[pb.ReadRecordsResponse]) error {
	f.record(req)
	if err := f.check(req.GetBackupId()); err != nil {
		return err
	}
	var rs *fakeRecordSet
	for _, s := range f.sets {
		if s.info.GetSobject() == req.GetSobject() {
			rs = s
		}
	}
	if rs == nil {
		return status.Errorf(codes.NotFound, "no record set %s in backup %s", req.GetSobject(), req.GetBackupId())
	}
	want := map[string]bool{}
	var missing []string
	for _, id := range req.GetIds() {
		n, err := sfid.Normalize(id)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "ids: %v", err)
		}
		want[n] = true
	}
	var buf bytes.Buffer
	buf.Write(rs.header)
	records := int64(0)
	found := map[string]bool{}
	for _, r := range rs.rows {
		if len(want) == 0 || want[r.id] {
			buf.Write(r.raw)
			records++
			found[r.id] = true
		}
	}
	for _, id := range req.GetIds() {
		if n, _ := sfid.Normalize(id); !found[n] {
			missing = append(missing, n)
		}
	}
	f.mu.Lock()
	cut := f.cutRecords
	f.mu.Unlock()
	var stop func(int64) (bool, error)
	if cut != nil {
		stop = func(sent int64) (bool, error) { return cut(rs.info.GetSobject(), sent), nil }
	}
	var sent int64
	if ended, err := f.send(buf.Bytes(), &sent, stop, func(b []byte) error {
		return stream.Send(&pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Data{Data: b}})
	}); ended {
		return err
	}
	return stream.Send(&pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Summary{Summary: &pb.ReadRecordsSummary{
		Records: records, MissingIds: missing, Bytes: sent}}})
}

func (f *fakeRestore) ReadFile(req *pb.ReadFileRequest, stream grpc.ServerStreamingServer[pb.ReadFileResponse]) error {
	f.record(req)
	if err := f.check(req.GetBackupId()); err != nil {
		return err
	}
	var sel []*fakeFile
	switch s := req.GetSelector().(type) {
	case *pb.ReadFileRequest_FileId:
		for _, fl := range f.files {
			if fl.info.GetFileId() == s.FileId {
				sel = append(sel, fl)
			}
		}
		if len(sel) == 0 {
			return status.Errorf(codes.NotFound, "file %s not found", s.FileId)
		}
		if req.GetReadOffset() > sel[0].info.GetSize() {
			return status.Errorf(codes.OutOfRange, "read_offset %d is past the end (%d bytes)", req.GetReadOffset(), sel[0].info.GetSize())
		}
	case *pb.ReadFileRequest_ParentId:
		parent, err := sfid.Normalize(s.ParentId)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "parent_id: %v", err)
		}
		for _, fl := range f.files {
			if fl.info.GetParentId() == parent {
				sel = append(sel, fl)
			}
		}
	default:
		return status.Error(codes.InvalidArgument, "file_id or parent_id is required")
	}
	f.mu.Lock()
	fail := f.failFile
	f.mu.Unlock()
	var total int64
	for _, fl := range sel {
		if err := stream.Send(&pb.ReadFileResponse{Message: &pb.ReadFileResponse_Info{Info: fl.info}}); err != nil {
			return err
		}
		data := fl.body[req.GetReadOffset():]
		if l := req.GetReadLimit(); l > 0 && l < int64(len(data)) {
			data = data[:l]
		}
		var stop func(int64) (bool, error)
		if fail != nil {
			stop = func(sent int64) (bool, error) {
				err := fail(req, fl, sent)
				if err == errCut {
					return true, nil
				}
				return false, err
			}
		}
		var sent int64
		ended, err := f.send(data, &sent, stop, func(b []byte) error {
			return stream.Send(&pb.ReadFileResponse{Message: &pb.ReadFileResponse_Data{Data: b}})
		})
		if ended {
			return err
		}
		total += sent
	}
	return stream.Send(&pb.ReadFileResponse{Message: &pb.ReadFileResponse_Summary{Summary: &pb.ReadFileSummary{
		Files: int32(len(sel)), Bytes: total}}})
}

func (f *fakeRestore) PlanRestore(ctx context.Context, req *pb.PlanRestoreRequest) (*pb.PlanRestoreResponse, error) {
	f.record(req)
	if err := f.check(req.GetBackupId()); err != nil {
		return nil, err
	}
	if f.plan == nil {
		return nil, status.Error(codes.Unimplemented, "no canned plan")
	}
	return f.plan, nil
}

// expectedIndexRows returns the rows restore run must write to
// references.csv and files.csv for the canned backup, header first.
func (f *fakeRestore) expectedIndexRows() (refs, files []string) {
	refs = []string{"sobject,field,target"}
	for _, rs := range f.sets {
		for _, r := range rs.info.GetReferences() {
			refs = append(refs, rs.info.GetSobject()+","+r.GetField()+","+r.GetTarget())
		}
	}
	files = []string{"path,parent_id,name,content_type"}
	for _, fl := range f.files {
		i := fl.info
		files = append(files, strings.Join([]string{i.GetPath(), i.GetParentId(), i.GetName(), i.GetContentType()}, ","))
	}
	return refs, files
}
