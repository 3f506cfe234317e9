package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"backupstore/csvframes"
	pb "backupstore/proto/backupstore/v1"
)

// client is one goroutine of the torture run doing random operations.
type client struct {
	t   *tortureRun
	id  int
	rng *rand.Rand
}

var errInterrupted = errors.New("interrupted by the client")

// retryable reports the codes storage.proto lets a client retry.
func retryableCode(c codes.Code) bool {
	return c == codes.Unavailable || c == codes.Aborted || c == codes.ResourceExhausted
}

// transient reports an error the client retries: a documented retryable code, or its own
// deadline on one attempt (a stalled connection), while the run goes on.
func (c *client) transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	code := status.Code(err)
	c.t.countCode(code)
	if retryableCode(code) {
		return true
	}
	if code == codes.DeadlineExceeded || code == codes.Canceled || errors.Is(err, context.DeadlineExceeded) {
		c.t.count("client_timeouts")
		return true
	}
	return false
}

func (c *client) backoff(ctx context.Context, n int) {
	d := min(50*time.Millisecond<<min(n, 6), 2*time.Second)
	d = d/2 + time.Duration(c.rng.Int64N(int64(d)))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (c *client) replica() *replica { return c.t.reps[c.rng.IntN(len(c.t.reps))] }

func (c *client) logf(format string, args ...any) {
	c.t.log.add("c%d "+format, append([]any{c.id}, args...)...)
}

// unary runs fn against random replicas until it succeeds, fails with a code that must not be
// retried, or the run ends. Each attempt has its own deadline.
func (c *client) unary(ctx context.Context, what string, fn func(ctx context.Context, r *replica) error) error {
	var err error
	for n := 0; n < 40; n++ {
		r := c.replica()
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = fn(actx, r)
		cancel()
		if err == nil {
			return nil
		}
		c.logf("%s on %s: attempt %d: %v", what, r.name, n+1, err)
		if !c.transient(ctx, err) {
			return err
		}
		c.backoff(ctx, n)
	}
	c.t.v.add("every operation completes within 40 attempts", "liveness", "c%d %s: 40 attempts failed with retryable codes, the last: %v", c.id, what, err)
	return errGaveUp
}

var errGaveUp = errors.New("gave up after 40 attempts (reported)")

// unexpected records a violation for an error the model did not expect, unless the run is
// ending (errors caused by the run's own cancellation are not the service's).
func (c *client) unexpected(ctx context.Context, what, item string, err error) {
	if ctx.Err() != nil || err == nil || errors.Is(err, errGaveUp) {
		return
	}
	c.t.v.add("no server error but the retryable codes: "+status.Code(err).String(), item, "c%d %s: %v", c.id, what, err)
}

// backupOp creates a backup, uploads record chunks and files into it (with interruptions,
// resumes on other replicas and racing resumes) and commits, aborts or abandons it.
func (c *client) backupOp(ctx context.Context) {
	t := c.t
	org := t.orgs[c.rng.IntN(len(t.orgs))]
	b := &mBackup{id: "", org: org, retention: t.retentionOrgs[org], sets: map[string]*mSet{}}
	key := fmt.Sprintf("torture-%d-%d-%d", t.cfg.seed, c.id, c.rng.Int64())
	var created *pb.Backup
	err := c.unary(ctx, "CreateBackup", func(actx context.Context, r *replica) error {
		resp, err := r.backups.CreateBackup(actx, &pb.CreateBackupRequest{OrgId: org, StorageId: t.storageID,
			IdempotencyKey: key, Labels: map[string]string{"torture": fmt.Sprint(c.id)}})
		if err == nil {
			created = resp.GetBackup()
		}
		return err
	})
	if err != nil {
		c.unexpected(ctx, "CreateBackup", "new", err)
		return
	}
	b.id, b.started = created.GetId(), created.GetStartTime().AsTime()
	t.m.add(b)
	c.logf("CreateBackup org %s → %s", org, b.id)
	t.count("backups_created")

	// Record sets: Account, and often Contact with AccountId → Account.
	eol := "\n"
	if c.rng.IntN(2) == 0 {
		eol = "\r\n"
	}
	var accountIDs []string
	var jobs []func(context.Context) error
	sobjects := []string{"Account"}
	if c.rng.IntN(10) < 6 {
		sobjects = append(sobjects, "Contact")
	}
	for _, so := range sobjects {
		set := &mSet{sobject: so, header: []byte("Id,Name,Amount" + eol)}
		if so == "Contact" {
			set.header = []byte("Id,Name,AccountId,Amount" + eol)
			set.refs = []*pb.ReferenceField{{Field: "AccountId", Target: "Account"}}
		}
		b.sets[so] = set
		nChunks := 1 + c.rng.IntN(3)
		for seq := range nChunks {
			rows := 1 + c.rng.IntN(300)
			if c.rng.IntN(20) == 0 {
				rows = 3000 + c.rng.IntN(20000) // a few MiB of CSV
			}
			ch := t.m.genChunk(c.rng, set, seq, rows, accountIDs, eol, seq < nChunks-1)
			ch.uploadID = c.uuid()
			set.chunks = append(set.chunks, ch)
			if so == "Account" {
				accountIDs = append(accountIDs, ch.ids...)
			}
			mode := c.mode()
			jobs = append(jobs, func(ctx context.Context) error { return c.uploadChunk(ctx, b, set, ch, mode) })
		}
	}
	nFiles := c.rng.IntN(7)
	for i := range nFiles {
		body := t.m.bodies[c.rng.IntN(len(t.m.bodies))]
		if c.rng.IntN(3) > 0 { // favour the small ones
			body = t.m.bodies[c.rng.IntN(16)]
		}
		f := &mFile{uploadID: c.uuid(), parent: accountIDs[c.rng.IntN(len(accountIDs))],
			path: fmt.Sprintf("ContentVersion/%d/%s.bin", i, shortID(c.uuid())), name: fmt.Sprintf("file %d.bin", i), body: body}
		declareSHA, declareSize := c.rng.IntN(2) == 0, c.rng.IntN(2) == 0
		mode := c.mode()
		jobs = append(jobs, func(ctx context.Context) error {
			return c.uploadFile(ctx, b, f, declareSHA, declareSize, mode)
		})
	}
	c.rng.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })

	// Run the uploads, up to three at a time.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 3)
	errs := make(chan error, len(jobs))
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := j(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		c.logf("backup %s left OPEN: %v", b.id, err)
		return
	}

	switch fate := c.rng.IntN(100); {
	case fate < 8:
		c.abort(ctx, b)
		return
	case fate < 14:
		c.abandon(ctx, b)
		return
	}
	c.commit(ctx, b)
	if b.get() == mCommitted && c.rng.IntN(3) == 0 {
		c.checkBackup(ctx, b, "read-your-writes")
	}
}

// mode picks how an upload is sent: 0 straight, 1 interrupted and resumed on another replica,
// 2 interrupted and resumed by two racing streams.
func (c *client) mode() int {
	switch n := c.rng.IntN(10); {
	case n < 6:
		return 0
	case n < 9:
		return 1
	}
	return 2
}

func (c *client) uuid() string {
	var u [16]byte
	for i := range u {
		u[i] = byte(c.rng.UintN(256))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// uploadState tracks what the service acknowledged of one upload: committed_size never goes
// down while the upload is pending.
type uploadState struct {
	mu        sync.Mutex
	committed int64
}

func (c *client) observe(us *uploadState, b *mBackup, uploadID string, u *pb.Upload, size int64) bool {
	us.mu.Lock()
	defer us.mu.Unlock()
	if u.GetState() == pb.UploadState_UPLOAD_STATE_PENDING {
		if u.GetCommittedSize() < us.committed {
			c.t.v.add("acknowledged committed_size is durable", "new", "backup %s upload %s: committed_size went from %d to %d",
				b.id, uploadID, us.committed, u.GetCommittedSize())
			return false
		}
		us.committed = u.GetCommittedSize()
		if size >= 0 && us.committed > size {
			c.t.v.add("acknowledged committed_size is durable", "2", "backup %s upload %s: committed_size %d beyond the body's %d bytes",
				b.id, uploadID, us.committed, size)
			return false
		}
	}
	return true
}

// statusElsewhere asks a replica other than last for an upload's status (attempt n of a retry
// loop), and returns the status (nil for an upload the replica does not know) and the replica
// asked. A transient failure answers no replica, after a backoff: the caller asks again. Any
// other failure is reported as unexpected.
func (c *client) statusElsewhere(ctx context.Context, last *replica, backupID, uploadID string, n int) (*pb.Upload, *replica, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	q := pickOther(c.rng, c.t.reps, last)
	u, err := c.query(ctx, q, backupID, uploadID)
	if err != nil {
		if !c.transient(ctx, err) {
			c.unexpected(ctx, "QueryUploadStatus "+uploadID, "new", err)
			return nil, nil, err
		}
		c.backoff(ctx, n)
		return nil, nil, nil
	}
	return u, q, nil
}

// query asks for an upload's state on r; nil when the service does not know it.
func (c *client) query(ctx context.Context, r *replica, backupID, uploadID string) (*pb.Upload, error) {
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := r.backups.QueryUploadStatus(actx, &pb.QueryUploadStatusRequest{BackupId: backupID, UploadId: uploadID})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	return resp.GetUpload(), err
}

// sendStream sends header, then body[from:] in messages of msg bytes, then finish, and returns
// the response. With stopAfter > 0 it cancels the stream once that many bytes went out (a client
// that goes away mid-upload).
func sendStream[Req, Resp any](ctx context.Context, open func(context.Context) (streamClient[Req, Resp], error),
	header, finish *Req, data func([]byte) *Req, body []byte, msg int, stopAfter int64, waitGo bool,
) (*Resp, error) {
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	st, err := open(sctx)
	if err != nil {
		return nil, err
	}
	open2 := true
	send := func(m *Req) error {
		if err := st.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				open2 = false
				return nil
			}
			return err
		}
		return nil
	}
	if err := send(header); err != nil {
		return nil, err
	}
	if open2 && waitGo {
		md, err := st.Header()
		if err != nil || len(md.Get(pb.UploadHeader)) == 0 {
			open2 = false
		}
	}
	var sent int64
	for off := 0; open2 && off < len(body); off += msg {
		end := min(off+msg, len(body))
		if err := send(data(body[off:end])); err != nil {
			return nil, err
		}
		sent += int64(end - off)
		if stopAfter > 0 && sent >= stopAfter {
			cancel()
			_, _ = st.CloseAndRecv()
			return nil, errInterrupted
		}
	}
	if open2 {
		if err := send(finish); err != nil {
			return nil, err
		}
	}
	return st.CloseAndRecv()
}

type streamClient[Req, Resp any] interface {
	Send(*Req) error
	Header() (metadataMD, error)
	CloseAndRecv() (*Resp, error)
}

// uploadFile uploads one file of b, resuming at committed_size on other replicas after every
// failure or deliberate interruption, and records the acknowledged result in the model.
func (c *client) uploadFile(ctx context.Context, b *mBackup, f *mFile, declareSHA, declareSize bool, mode int) error {
	body := f.body.data
	hdr := func(offset int64) *pb.FileHeader {
		h := &pb.FileHeader{BackupId: b.id, ParentId: f.parent, Path: f.path, Name: f.name,
			ContentType: "application/octet-stream", UploadId: f.uploadID, WriteOffset: offset}
		if declareSHA {
			h.DeclaredSha256 = f.body.sum
		}
		if declareSize {
			n := int64(len(body))
			h.DeclaredSize = &n
		}
		return h
	}
	once := func(ctx context.Context, r *replica, offset, stopAfter int64) (*pb.UploadResult, error) {
		c.t.count("upload_file_streams")
		resp, err := sendStream(ctx, func(ctx context.Context) (streamClient[pb.UploadFileRequest, pb.UploadFileResponse], error) {
			s, err := r.backups.UploadFile(ctx)
			if err != nil {
				return nil, err
			}
			return fileStream{s}, nil
		},
			&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: hdr(offset)}},
			&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}},
			func(p []byte) *pb.UploadFileRequest {
				return &pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: p}}
			},
			body[offset:], 1<<20, stopAfter, declareSHA && offset == 0)
		return resp.GetResult(), err
	}
	us := &uploadState{}
	first := c.replica()
	var res *pb.UploadResult
	var err error
	if mode > 0 && len(body) > int(c.t.cfg.partSize) {
		// Send a part and a bit, then go away: the part stays committed, the rest is resent.
		res, err = once(ctx, first, 0, c.t.cfg.partSize+int64(c.rng.IntN(1<<20)))
		c.logf("UploadFile %s/%s on %s interrupted after a part: %v", shortID(b.id), shortID(f.uploadID), first.name, err)
		c.t.count("uploads_interrupted")
	} else {
		res, err = once(ctx, first, 0, 0)
		c.logf("UploadFile %s/%s (%d B, sha %v size %v) on %s: %v", shortID(b.id), shortID(f.uploadID), len(body), declareSHA, declareSize, first.name, err)
	}
	if err == nil {
		return c.acceptFile(ctx, b, f, res)
	}
	if !errors.Is(err, errInterrupted) {
		if !c.transient(ctx, err) {
			item := "new"
			if status.Code(err) == codes.NotFound && declareSHA {
				item = "9"
			}
			c.unexpected(ctx, "UploadFile "+f.uploadID, item, err)
			return err
		}
	}
	resume := func(ctx context.Context, last *replica, racing bool) (*pb.UploadResult, error) {
		for n := 0; n < 40; n++ {
			u, q, err := c.statusElsewhere(ctx, last, b.id, f.uploadID, n)
			if err != nil {
				return nil, err
			}
			if q == nil {
				continue
			}
			var offset int64
			switch u.GetState() {
			case pb.UploadState_UPLOAD_STATE_COMMITTED:
				return u.GetResult(), nil
			case pb.UploadState_UPLOAD_STATE_PENDING:
				if !c.observe(us, b, f.uploadID, u, int64(len(body))) {
					return nil, errors.New("violation")
				}
				offset = u.GetCommittedSize()
			case pb.UploadState_UPLOAD_STATE_UNSPECIFIED: // unknown: the header never reached the catalog
			default:
				c.t.v.add("a client disconnect leaves the upload resumable", "3", "backup %s upload %s is %s (%s) although the client never aborted it",
					b.id, f.uploadID, u.GetState(), u.GetError())
				return nil, errors.New("violation")
			}
			r := pickOther(c.rng, c.t.reps, q)
			if !racing && offset+1 < int64(len(body)) && c.rng.IntN(6) == 0 {
				// A resume at any offset but committed_size must be refused, never stored.
				bad := offset + 1 + c.rng.Int64N(int64(len(body))-offset-1)
				_, err := once(ctx, r, bad, 0)
				c.t.count("wrong_offset_probes")
				c.logf("UploadFile %s/%s probe at wrong offset %d (committed %d) on %s: %v", shortID(b.id), shortID(f.uploadID), bad, offset, r.name, err)
				switch {
				case err == nil:
					c.t.v.add("a resume at a wrong offset is refused", "2", "backup %s upload %s: write_offset %d accepted with committed_size %d",
						b.id, f.uploadID, bad, offset)
					return nil, errors.New("violation")
				case status.Code(err) == codes.OutOfRange, c.transient(ctx, err):
				default:
					c.unexpected(ctx, fmt.Sprintf("UploadFile %s at wrong offset %d", f.uploadID, bad), "2", err)
				}
			}
			c.t.count("resumes")
			res, err := once(ctx, r, offset, 0)
			c.logf("UploadFile %s/%s resume at %d on %s (racing %v): %v", shortID(b.id), shortID(f.uploadID), offset, r.name, racing, err)
			if err == nil {
				return res, nil
			}
			last = r
			if c.transient(ctx, err) {
				c.backoff(ctx, n)
				continue
			}
			if racing && status.Code(err) == codes.OutOfRange {
				continue // the other stream moved committed_size meanwhile
			}
			c.unexpected(ctx, fmt.Sprintf("UploadFile %s resume at %d", f.uploadID, offset), "new", err)
			return nil, err
		}
		return nil, fmt.Errorf("upload %s: gave up resuming", f.uploadID)
	}
	res, err = c.resumeUpload(mode == 2 && errors.Is(err, errInterrupted),
		func(racing bool) (*pb.UploadResult, error) { return resume(ctx, first, racing) },
		func(x, y *pb.UploadResult) bool {
			return x.GetFileId() == y.GetFileId() && x.GetSha256() == y.GetSha256()
		},
		"1", fmt.Sprintf("backup %s upload %s: racing resumes", b.id, f.uploadID))
	if err != nil {
		return err
	}
	return c.acceptFile(ctx, b, f, res)
}

type fileStream struct {
	pb.BackupService_UploadFileClient
}

func (s fileStream) Header() (metadataMD, error) { return s.BackupService_UploadFileClient.Header() }

type recordsStream struct {
	pb.BackupService_UploadRecordsClient
}

func (s recordsStream) Header() (metadataMD, error) {
	return s.BackupService_UploadRecordsClient.Header()
}

func (c *client) acceptFile(ctx context.Context, b *mBackup, f *mFile, res *pb.UploadResult) error {
	if res.GetSha256() != f.body.sum || res.GetFileId() == "" {
		c.t.v.add("an acknowledged upload is what the client sent", "2", "backup %s file upload %s: result %v, want sha256 %s (%d bytes)",
			b.id, f.uploadID, res, f.body.sum, len(f.body.data))
		return errors.New("violation")
	}
	f.result = res
	b.mu.Lock()
	b.files = append(b.files, f)
	b.mu.Unlock()
	c.t.count("files_uploaded")
	if res.GetDeduplicated() {
		c.t.count("files_deduplicated")
	}
	return nil
}

// uploadChunk uploads one record chunk; a retry (or a deliberate interruption) first asks
// whether the upload committed, then sends the chunk again from 0 on another replica.
func (c *client) uploadChunk(ctx context.Context, b *mBackup, set *mSet, ch *mChunk, mode int) error {
	hdr := &pb.RecordsHeader{BackupId: b.id, Sobject: set.sobject, Sequence: int32(ch.seq), UploadId: ch.uploadID, References: set.refs}
	once := func(ctx context.Context, r *replica, stopAfter int64) (*pb.UploadResult, error) {
		c.t.count("upload_records_streams")
		resp, err := sendStream(ctx, func(ctx context.Context) (streamClient[pb.UploadRecordsRequest, pb.UploadRecordsResponse], error) {
			s, err := r.backups.UploadRecords(ctx)
			if err != nil {
				return nil, err
			}
			return recordsStream{s}, nil
		},
			&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: hdr}},
			&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}},
			func(p []byte) *pb.UploadRecordsRequest {
				return &pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: p}}
			},
			ch.body, 256<<10, stopAfter, false)
		return resp.GetResult(), err
	}
	first := c.replica()
	var res *pb.UploadResult
	var err error
	if mode > 0 && len(ch.body) > 1024 {
		res, err = once(ctx, first, int64(len(ch.body)/2))
		c.t.count("uploads_interrupted")
	} else {
		res, err = once(ctx, first, 0)
	}
	c.logf("UploadRecords %s/%s %s#%d (%d B) on %s mode %d: %v", shortID(b.id), shortID(ch.uploadID), set.sobject, ch.seq, len(ch.body), first.name, mode, err)
	if err == nil {
		return c.acceptChunk(b, set, ch, res)
	}
	if !errors.Is(err, errInterrupted) && !c.transient(ctx, err) {
		c.unexpected(ctx, "UploadRecords "+ch.uploadID, "new", err)
		return err
	}
	resume := func(ctx context.Context, last *replica, racing bool) (*pb.UploadResult, error) {
		for n := 0; n < 40; n++ {
			u, q, err := c.statusElsewhere(ctx, last, b.id, ch.uploadID, n)
			if err != nil {
				return nil, err
			}
			if q == nil {
				continue
			}
			switch u.GetState() {
			case pb.UploadState_UPLOAD_STATE_COMMITTED:
				return u.GetResult(), nil
			case pb.UploadState_UPLOAD_STATE_PENDING, pb.UploadState_UPLOAD_STATE_UNSPECIFIED:
			default:
				c.t.v.add("a client disconnect leaves the upload resumable", "3", "backup %s records upload %s is %s (%s) although the client never aborted it",
					b.id, ch.uploadID, u.GetState(), u.GetError())
				return nil, errors.New("violation")
			}
			r := pickOther(c.rng, c.t.reps, q)
			c.t.count("resumes")
			res, err := once(ctx, r, 0)
			c.logf("UploadRecords %s/%s restart on %s (racing %v): %v", shortID(b.id), shortID(ch.uploadID), r.name, racing, err)
			if err == nil {
				return res, nil
			}
			last = r
			if c.transient(ctx, err) {
				c.backoff(ctx, n)
				continue
			}
			c.unexpected(ctx, "UploadRecords restart "+ch.uploadID, "new", err)
			return nil, err
		}
		return nil, fmt.Errorf("upload %s: gave up", ch.uploadID)
	}
	res, err = c.resumeUpload(mode == 2,
		func(racing bool) (*pb.UploadResult, error) { return resume(ctx, first, racing) },
		func(x, y *pb.UploadResult) bool {
			return x.GetSha256() == y.GetSha256() && x.GetDataKey() == y.GetDataKey()
		},
		"new", fmt.Sprintf("backup %s records upload %s: racing restarts", b.id, ch.uploadID))
	if err != nil {
		return err
	}
	return c.acceptChunk(b, set, ch, res)
}

// resumeUpload finishes an interrupted upload with resume. With race, it runs resume twice at
// once, as two workers that both took over the upload would, and returns the first result: a
// repeated finish must answer the first result, so when same says the two differ that is a
// violation (item names the invariant; what, the upload).
func (c *client) resumeUpload(race bool, resume func(racing bool) (*pb.UploadResult, error),
	same func(a, b *pb.UploadResult) bool, item, what string,
) (*pb.UploadResult, error) {
	if !race {
		return resume(false)
	}
	c.t.count("racing_resumes")
	var wg sync.WaitGroup
	var results [2]*pb.UploadResult
	var errs [2]error
	for i := range 2 {
		wg.Go(func() { results[i], errs[i] = resume(true) })
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			return nil, errs[i]
		}
	}
	if !same(results[0], results[1]) {
		c.t.v.add("a repeated finish returns the first result", item, "%s answered %v and %v", what, results[0], results[1])
	}
	return results[0], nil
}

func (c *client) acceptChunk(b *mBackup, set *mSet, ch *mChunk, res *pb.UploadResult) error {
	sum := sha256.Sum256(ch.body)
	if res.GetSha256() != hex.EncodeToString(sum[:]) || res.GetRecords() != int64(len(ch.rows)) {
		c.t.v.add("an acknowledged upload is what the client sent", "new", "backup %s %s chunk %d upload %s: result %v, want sha256 %x and %d records",
			b.id, set.sobject, ch.seq, ch.uploadID, res, sum, len(ch.rows))
		return errors.New("violation")
	}
	b.mu.Lock()
	ch.result = res
	b.mu.Unlock()
	c.t.count("chunks_uploaded")
	return nil
}

func (c *client) commit(ctx context.Context, b *mBackup) {
	var got *pb.CommitBackupResponse
	err := c.unary(ctx, "CommitBackup", func(actx context.Context, r *replica) error {
		resp, err := r.backups.CommitBackup(actx, &pb.CommitBackupRequest{BackupId: b.id})
		if err == nil {
			got = resp
		}
		return err
	})
	c.logf("CommitBackup %s: %v", b.id, err)
	if err != nil {
		c.unexpected(ctx, "CommitBackup "+b.id, "5", err)
		b.set(mUnknown) // the outcome is unknown: no longer checked
		return
	}
	b.set(mCommitted)
	c.t.count("backups_committed")
	var records, chunks int64
	for _, s := range b.sets {
		chunks += int64(len(s.chunks))
		for _, ch := range s.chunks {
			records += int64(len(ch.rows))
		}
	}
	bk := got.GetBackup()
	if bk.GetStatus() != pb.BackupStatus_BACKUP_STATUS_COMMITTED || bk.GetFileCount() != int64(len(b.files)) ||
		bk.GetRecordCount() != records || bk.GetRecordChunkCount() != chunks {
		c.t.v.add("every committed backup holds what its client sent", "5", "CommitBackup %s answered status %s, %d files, %d records, %d chunks; the client sent %d files, %d records, %d chunks",
			b.id, bk.GetStatus(), bk.GetFileCount(), bk.GetRecordCount(), bk.GetRecordChunkCount(), len(b.files), records, chunks)
	}
}

func (c *client) abort(ctx context.Context, b *mBackup) {
	tries := 0
	err := c.unary(ctx, "AbortBackup", func(actx context.Context, r *replica) error {
		tries++
		_, err := r.backups.AbortBackup(actx, &pb.AbortBackupRequest{BackupId: b.id})
		if err != nil && tries > 1 && status.Code(err) == codes.FailedPrecondition {
			// a lost answer: the first attempt may have aborted it
			if g, gerr := r.backups.GetBackup(actx, &pb.GetBackupRequest{Id: b.id}); gerr == nil && g.GetBackup().GetStatus() == pb.BackupStatus_BACKUP_STATUS_ABORTED {
				return nil
			}
		}
		return err
	})
	c.logf("AbortBackup %s: %v", b.id, err)
	if err != nil {
		c.unexpected(ctx, "AbortBackup "+b.id, "8", err)
		b.set(mUnknown) // the outcome is unknown: no longer checked
		return
	}
	b.set(mAborted)
	c.t.count("backups_aborted")
}

// abandon leaves b OPEN with a multipart upload half sent, as a worker that died would: cleanup
// must abort it after the upload TTL.
func (c *client) abandon(ctx context.Context, b *mBackup) {
	body := c.t.m.bodies[len(c.t.m.bodies)-1]
	uploadID := c.uuid()
	r := c.replica()
	_, err := sendStream(ctx, func(ctx context.Context) (streamClient[pb.UploadFileRequest, pb.UploadFileResponse], error) {
		s, err := r.backups.UploadFile(ctx)
		if err != nil {
			return nil, err
		}
		return fileStream{s}, nil
	},
		&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{BackupId: b.id, ParentId: c.t.m.newID("001"),
			Path: "abandoned.bin", UploadId: uploadID}}},
		nil, func(p []byte) *pb.UploadFileRequest {
			return &pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: p}}
		},
		body.data, 1<<20, c.t.cfg.partSize+1<<20, false)
	c.logf("abandon backup %s with upload %s on %s: %v", b.id, uploadID, r.name, err)
	b.mu.Lock()
	b.abandoned = append(b.abandoned, uploadID)
	b.mu.Unlock()
	c.t.count("backups_abandoned")
}

// gone reports whether a backup whose org has a retention policy has been expired (so that a
// failed read of it is expected), and marks it in the model.
func (c *client) gone(ctx context.Context, b *mBackup) bool {
	if !b.retention {
		return false
	}
	var st pb.BackupStatus
	var nf bool
	// Asked until answered: a wrong code here is reported by the operation that led here.
	for n := 0; n < 10 && ctx.Err() == nil; n++ {
		err := c.unary(ctx, "GetBackup", func(actx context.Context, r *replica) error {
			g, err := r.backups.GetBackup(actx, &pb.GetBackupRequest{Id: b.id})
			if status.Code(err) == codes.NotFound {
				nf = true
				return nil
			}
			st = g.GetBackup().GetStatus()
			return err
		})
		if err == nil {
			break
		}
		c.backoff(ctx, n)
	}
	if nf || st == pb.BackupStatus_BACKUP_STATUS_DELETING {
		b.set(mGone)
		c.t.count("backups_expired_seen")
		return true
	}
	return false
}

// checkBackup restores every record set (whole and by id) and file of a committed backup and
// compares them with what the client sent.
func (c *client) checkBackup(ctx context.Context, b *mBackup, why string) bool {
	b.rw.RLock()
	defer b.rw.RUnlock()
	if b.get() != mCommitted {
		return true
	}
	c.t.count("restores")
	fail := func(what, item string, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		// The run may end while gone still asks (its replica killed): then nobody knows.
		if c.gone(ctx, b) || ctx.Err() != nil {
			return false
		}
		if status.Code(err) == codes.DataLoss {
			item = "1"
		}
		check := "every committed backup restores byte-identical"
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			check += ": " + st.Code().String()
		}
		c.t.v.add(check, item, "%s (%s) backup %s: %s: %v", why, b.org, b.id, what, err)
		return false
	}
	for _, set := range b.sets {
		want := set.wholeRecords()
		got, sum, err := c.readRecords(ctx, &pb.ReadRecordsRequest{BackupId: b.id, Sobject: set.sobject})
		if err != nil {
			return fail("ReadRecords "+set.sobject, "new", err)
		}
		if !bytes.Equal(got, want) {
			return fail("ReadRecords "+set.sobject+" whole", "4", errors.New(firstDiff(want, got)))
		}
		nrows := 0
		for _, ch := range set.chunks {
			nrows += len(ch.rows)
		}
		if sum.GetRecords() != int64(nrows) {
			return fail("ReadRecords "+set.sobject+" whole", "4", fmt.Errorf("summary says %d records, the client sent %d", sum.GetRecords(), nrows))
		}
		// by id: a few ids of the set, one that is not in it
		var ids []string
		for range 1 + c.rng.IntN(5) {
			ch := set.chunks[c.rng.IntN(len(set.chunks))]
			ids = append(ids, ch.ids[c.rng.IntN(len(ch.ids))])
		}
		ids = append(ids, c.t.m.newID(prefixOf(set.sobject)))
		want, wantMissing := set.byID(ids)
		got, sum, err = c.readRecords(ctx, &pb.ReadRecordsRequest{BackupId: b.id, Sobject: set.sobject, Ids: ids})
		if err != nil {
			return fail("ReadRecords by id "+set.sobject, "new", err)
		}
		gotMissing := append([]string(nil), sum.GetMissingIds()...)
		if !bytes.Equal(got, want) || fmt.Sprint(sortedCopy(gotMissing)) != fmt.Sprint(wantMissing) {
			item := "12"
			if len(got) < len(want) && bytes.HasPrefix(want, got) && bytes.HasSuffix(want, []byte("\n")) && len(want)-len(got) <= 2 {
				item = "4" // the row that ended its chunk without a line ending comes back without one
			}
			return fail(fmt.Sprintf("ReadRecords by id %s %v", set.sobject, ids), item,
				fmt.Errorf("%s; missing ids %v, want %v", firstDiff(want, got), gotMissing, wantMissing))
		}
	}
	b.mu.Lock()
	files := append([]*mFile(nil), b.files...)
	b.mu.Unlock()
	for _, f := range files {
		var off, limit int64
		want := f.body.data
		if len(want) > 10 && c.rng.IntN(4) == 0 {
			off = c.rng.Int64N(int64(len(want)))
			limit = c.rng.Int64N(int64(len(want)) - off)
			if limit == 0 {
				limit = 1
			}
			want = want[off : off+limit]
		}
		got, err := c.readFile(ctx, &pb.ReadFileRequest{Selector: &pb.ReadFileRequest_FileId{FileId: f.result.GetFileId()},
			BackupId: b.id, ReadOffset: off, ReadLimit: limit})
		if err != nil {
			return fail("ReadFile "+f.result.GetFileId(), "1", err)
		}
		if !bytes.Equal(got, want) {
			return fail(fmt.Sprintf("ReadFile %s [%d,+%d]", f.result.GetFileId(), off, limit), "2", errors.New(firstDiff(want, got)))
		}
	}
	c.logf("restore check %s of %s: ok", why, b.id)
	return true
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// readRecords reads a record set until its summary (retrying transient failures from the
// start).
func (c *client) readRecords(ctx context.Context, req *pb.ReadRecordsRequest) ([]byte, *pb.ReadRecordsSummary, error) {
	var out []byte
	var sum *pb.ReadRecordsSummary
	// Whole reads are passthrough half of the time: the stored frames, decoded and checked
	// here as the client library does (csvframes), so that kills and faults meet that path too.
	if len(req.GetIds()) == 0 && c.rng.IntN(2) == 0 {
		req = &pb.ReadRecordsRequest{BackupId: req.GetBackupId(), Sobject: req.GetSobject(),
			AcceptEncoding: []pb.ContentEncoding{pb.ContentEncoding_CONTENT_ENCODING_ZSTD}}
	}
	err := c.unary(ctx, "ReadRecords", func(actx context.Context, r *replica) error {
		out, sum = nil, nil
		st, err := r.restores.ReadRecords(actx, req)
		if err != nil {
			return err
		}
		var frames *frameSink
		defer func() {
			if frames != nil {
				frames.dec.Close()
			}
		}()
		for {
			m, err := st.Recv()
			if err == io.EOF {
				if sum == nil {
					return status.Error(codes.Unavailable, "stream ended without a summary")
				}
				return nil
			}
			if err != nil {
				return err
			}
			switch {
			case m.GetStart() != nil:
				if frames, err = newFrameSink(m.GetStart()); err != nil {
					return err
				}
			case m.GetChunk() != nil && frames != nil:
				ch := m.GetChunk()
				err = frames.dec.Chunk(csvframes.Chunk{Sequence: ch.GetSequence(), BytesIn: ch.GetBytesIn(), StoredSize: ch.GetStoredSize(),
					SHA256: ch.GetSha256(), Frames: int(ch.GetFrameCount()), SkipHeader: ch.GetSkipHeader()})
			case m.GetFrames() != nil && frames != nil:
				f := m.GetFrames()
				err = frames.dec.Frames(f.GetStoredLen(), f.GetInputLen(), f.GetData(), nil)
			case m.GetSummary() != nil:
				sum = m.GetSummary()
				if frames != nil {
					if _, err = frames.dec.Finish(); err == nil {
						out = frames.buf.Bytes()
					}
				}
			default:
				out = append(out, m.GetData()...)
			}
			if err != nil {
				return status.Errorf(codes.DataLoss, "passthrough read: %v", err)
			}
		}
	})
	return out, sum, err
}

// frameSink decodes a passthrough ReadRecords stream into a buffer.
type frameSink struct {
	buf bytes.Buffer
	dec *csvframes.Decoder
}

func newFrameSink(start *pb.ReadRecordsStart) (*frameSink, error) {
	s := &frameSink{}
	var err error
	s.dec, err = csvframes.NewDecoder(&s.buf, start.GetLineEnding(), csvframes.Options{MaxFrameBytes: 16 << 20, Workers: 2})
	if err != nil {
		return nil, status.Errorf(codes.DataLoss, "passthrough read: %v", err)
	}
	return s, nil
}

func (c *client) readFile(ctx context.Context, req *pb.ReadFileRequest) ([]byte, error) {
	var out []byte
	err := c.unary(ctx, "ReadFile", func(actx context.Context, r *replica) error {
		out = nil
		st, err := r.restores.ReadFile(actx, req)
		if err != nil {
			return err
		}
		done := false
		for {
			m, err := st.Recv()
			if err == io.EOF {
				if !done {
					return status.Error(codes.Unavailable, "stream ended without a summary")
				}
				return nil
			}
			if err != nil {
				return err
			}
			out = append(out, m.GetData()...)
			if m.GetSummary() != nil {
				done = true
			}
		}
	})
	return out, err
}

func (c *client) verifyOp(ctx context.Context) {
	b := c.t.m.pick(c.rng, mCommitted, nil)
	if b == nil {
		return
	}
	b.rw.RLock()
	defer b.rw.RUnlock()
	if b.get() != mCommitted {
		return
	}
	var resp *pb.VerifyBackupResponse
	pct := []int32{0, 10, 50, 100}[c.rng.IntN(4)]
	err := c.unary(ctx, "VerifyBackup", func(actx context.Context, r *replica) error {
		var err error
		resp, err = r.maint.VerifyBackup(actx, &pb.VerifyBackupRequest{BackupId: b.id, ReadPercent: pct})
		return err
	})
	c.t.count("verifies")
	c.logf("VerifyBackup %s (read %d%%): %d problems, err %v", b.id, pct, len(resp.GetProblems()), err)
	if err != nil {
		if !c.gone(ctx, b) {
			c.unexpected(ctx, "VerifyBackup "+b.id, "new", err)
		}
		return
	}
	if len(resp.GetProblems()) > 0 || resp.GetBackup().GetDamaged() {
		item := "6" // only the manifest is at fault: a stale manifest row
		if len(resp.GetProblems()) == 0 {
			item = "new: damaged flag without a problem (set by an earlier verify)"
		}
		for _, p := range resp.GetProblems() {
			if !bytes.HasSuffix([]byte(p.GetKey()), []byte("manifest.json")) {
				item = "1"
				if strings.Contains(p.GetDetail(), "s3.") || strings.Contains(p.GetDetail(), "request send failed") {
					item = "new: a transient S3 failure reported as damage"
				}
			}
		}
		if c.gone(ctx, b) || ctx.Err() != nil {
			return
		}
		c.t.v.add("verify finds every committed backup intact", item, "VerifyBackup %s: damaged %v, problems %v", b.id, resp.GetBackup().GetDamaged(), resp.GetProblems())
	}
}

func (c *client) deleteOp(ctx context.Context) {
	b := c.t.m.pick(c.rng, mCommitted, func(b *mBackup) bool { return !b.retention })
	if b == nil {
		return
	}
	b.rw.Lock()
	defer b.rw.Unlock()
	if b.get() != mCommitted {
		return
	}
	tries := 0
	err := c.unary(ctx, "DeleteBackup", func(actx context.Context, r *replica) error {
		tries++
		_, err := r.maint.DeleteBackup(actx, &pb.DeleteBackupRequest{BackupId: b.id})
		if tries > 1 && status.Code(err) == codes.NotFound {
			return nil // an earlier attempt finished it
		}
		return err
	})
	c.logf("DeleteBackup %s: %v", b.id, err)
	if err != nil {
		c.unexpected(ctx, "DeleteBackup "+b.id, "8", err)
		// the model no longer knows whether it exists
		b.set(mUnknown)
		return
	}
	b.set(mDeleted)
	c.t.count("backups_deleted")
}

func (c *client) retentionOp(ctx context.Context) {
	var orgs []string
	for o := range c.t.retentionOrgs {
		orgs = append(orgs, o)
	}
	org := sortedCopy(orgs)[c.rng.IntN(len(orgs))]
	keep := int32(2 + c.rng.IntN(3))
	err := c.unary(ctx, "SetRetentionPolicy", func(actx context.Context, r *replica) error {
		_, err := r.maint.SetRetentionPolicy(actx, &pb.SetRetentionPolicyRequest{Policy: &pb.RetentionPolicy{OrgId: org, KeepLast: keep,
			KeepWithin: durationpb.New(0)}})
		return err
	})
	c.logf("SetRetentionPolicy %s keep_last %d: %v", org, keep, err)
	if err != nil {
		c.unexpected(ctx, "SetRetentionPolicy", "new", err)
		return
	}
	c.t.m.mu.Lock()
	if k, ok := c.t.m.keepLast[org]; !ok || keep < k {
		c.t.m.keepLast[org] = keep
	}
	c.t.m.mu.Unlock()
	c.t.count("retention_changes")
}

// cleanupOp runs RunCleanup on one to three replicas at once.
func (c *client) cleanupOp(ctx context.Context) {
	n := 1 + c.rng.IntN(len(c.t.reps))
	var wg sync.WaitGroup
	for i := range n {
		r := c.t.reps[i]
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			resp, err := r.maint.RunCleanup(actx, &pb.RunCleanupRequest{})
			c.logf("RunCleanup on %s: expired %d deleted %d garbage %d aborted %d: %v", r.name, resp.GetBackupsExpired(),
				resp.GetObjectsDeleted(), resp.GetGarbageDeleted(), resp.GetUploadsAborted(), err)
			c.t.count("cleanups")
			for _, it := range resp.GetItems() {
				if it.GetAction() == "repack" {
					c.t.count("repacks")
				}
			}
			if err != nil && !c.transient(ctx, err) {
				c.unexpected(ctx, "RunCleanup on "+r.name, "new", err)
			}
		})
	}
	wg.Wait()
}

// run does random operations until ctx ends.
func (c *client) run(ctx context.Context) {
	for ctx.Err() == nil {
		switch n := c.rng.IntN(100); {
		case n < 55:
			c.backupOp(ctx)
		case n < 75:
			if b := c.t.m.pick(c.rng, mCommitted, nil); b != nil {
				c.checkBackup(ctx, b, "restore")
			}
		case n < 82:
			c.verifyOp(ctx)
		case n < 88:
			c.deleteOp(ctx)
		case n < 92:
			c.retentionOp(ctx)
		default:
			c.cleanupOp(ctx)
		}
	}
}
