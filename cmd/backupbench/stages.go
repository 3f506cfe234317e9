package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"

	"backupstore/csvscan/csvgen"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/storage"
)

// dataMessageSize is the payload of one data message: the API calls 1 MiB the sweet spot.
const dataMessageSize = 1 << 20

// nonSeekable hides every method but Read (an *os.File given to exec.Cmd as Stdin would be
// handed to the child as is, and the SDK would seek a seekable body).
type nonSeekable struct{ r io.Reader }

func (n nonSeekable) Read(p []byte) (int, error) { return n.r.Read(p) }

// rcloneRcat pipes the file at path to `rclone rcat bench:bucket/key` and returns the wall time,
// process start included. rclone is configured by environment only (defaults otherwise).
func rcloneRcat(ctx context.Context, bin string, g *gateway, cfgDir, bucket, key, path string) (time.Duration, cpuUse, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, bin, "rcat", "bench:"+bucket+"/"+key)
	cmd.Env = rcloneEnv(g, cfgDir)
	cmd.Stdin = nonSeekable{f} // exec copies it into a pipe
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, nil, fmt.Errorf("rclone rcat: %v: %s", err, tail(out.String(), 1500))
	}
	ps := cmd.ProcessState
	return d, cpuUse{"rclone": (ps.UserTime() + ps.SystemTime()).Seconds()}, nil
}

// rcloneEnv configures rclone's remote "bench:" (the gateway) by environment only; defaults
// otherwise.
func rcloneEnv(g *gateway, cfgDir string) []string {
	return minimalEnv(
		"RCLONE_CONFIG="+filepath.Join(cfgDir, "rclone.conf"), // empty: remotes come from the environment
		"RCLONE_CONFIG_BENCH_TYPE=s3",
		"RCLONE_CONFIG_BENCH_PROVIDER=Other",
		"RCLONE_CONFIG_BENCH_ENDPOINT="+g.endpoint,
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+g.key,
		"RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+g.secret,
		"RCLONE_CONFIG_BENCH_REGION="+g.region,
		"RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true",
	)
}

// rcloneCat runs `rclone cat bench:bucket/key`, counting and discarding its output, and returns
// the wall time (process start included), the bytes and rclone's CPU.
func rcloneCat(ctx context.Context, bin string, g *gateway, cfgDir, bucket, key string) (time.Duration, int64, cpuUse, error) {
	cmd := exec.CommandContext(ctx, bin, "cat", "bench:"+bucket+"/"+key)
	cmd.Env = rcloneEnv(g, cfgDir)
	var out countWriter
	var errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errBuf
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("rclone cat: %v: %s", err, tail(errBuf.String(), 1500))
	}
	ps := cmd.ProcessState
	return d, out.n, cpuUse{"rclone": (ps.UserTime() + ps.SystemTime()).Seconds()}, nil
}

// managerUpload uploads the file at path through feature/s3/manager from a non-seekable reader
// (16 MiB parts, concurrency 4, SDK checksums only when required) and returns the wall time.
func managerUpload(ctx context.Context, client *s3.Client, bucket, key, path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	up := manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = 16 << 20
		u.Concurrency = 4
		u.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	start := time.Now()
	_, err = up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: nonSeekable{f}})
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("manager upload: %w", err)
	}
	return d, nil
}

// createBackup opens a backup of the benchmark's org on the tenant's default storage.
func createBackup(ctx context.Context, d *daemon, label string) (string, error) {
	resp, err := d.backups.CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: benchOrg, Labels: map[string]string{"bench": label}})
	if err != nil {
		return "", fmt.Errorf("CreateBackup: %w", err)
	}
	return resp.GetBackup().GetId(), nil
}

// abortBackup deletes what a benchmark backup stored (outside any measurement).
func abortBackup(ctx context.Context, d *daemon, id string) error {
	if _, err := d.backups.AbortBackup(ctx, &pb.AbortBackupRequest{BackupId: id}); err != nil {
		return fmt.Errorf("AbortBackup %s: %w", id, err)
	}
	return nil
}

var benchOrg = csvgen.ID("00D", 4242)

// uploadRecords streams the CSV at path as one Account record chunk (header, 1 MiB data
// messages, finish), with ParentId → Account declared, and returns the result and the wall time
// from opening the stream to the response.
func uploadRecords(ctx context.Context, d *daemon, backupID string, seq int32, path string) (*pb.UploadResult, time.Duration, error) {
	return uploadRecordSet(ctx, d, backupID, "Account", seq, []*pb.ReferenceField{{Field: "ParentId", Target: "Account"}}, path)
}

// uploadRecordSet is uploadRecords for any sObject and reference fields.
func uploadRecordSet(ctx context.Context, d *daemon, backupID, sobject string, seq int32, refs []*pb.ReferenceField, path string) (*pb.UploadResult, time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	buf := make([]byte, dataMessageSize)
	hdr := &pb.RecordsHeader{BackupId: backupID, Sobject: sobject, Sequence: seq, UploadId: uuid.NewString(), References: refs}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	stream, err := d.backups.UploadRecords(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("UploadRecords: %w", err)
	}
	// send reports false once the service has answered (io.EOF): CloseAndRecv says how.
	send := func(m *pb.UploadRecordsRequest) (bool, error) {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	open, err := send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: hdr}})
	for open && err == nil {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 {
			open, err = send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: buf[:n]}})
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			if open && err == nil {
				_, err = send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}})
			}
			break
		}
		if rerr != nil {
			return nil, 0, rerr
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("UploadRecords send: %w", err)
	}
	resp, err := stream.CloseAndRecv()
	dur := time.Since(start)
	if err != nil {
		return nil, 0, fmt.Errorf("UploadRecords: %w", err)
	}
	return resp.GetResult(), dur, nil
}

// fileSet is the bodies of one small-file run.
type fileSet struct {
	bodies [][]byte
	sums   []string // lowercase hex SHA-256
}

func newFileSet(n, size int) fileSet {
	fs := fileSet{bodies: make([][]byte, n), sums: make([]string, n)}
	all := make([]byte, n*size)
	_, _ = rand.Read(all)
	for i := range n {
		fs.bodies[i] = all[i*size : (i+1)*size : (i+1)*size]
		s := sha256.Sum256(fs.bodies[i])
		fs.sums[i] = hex.EncodeToString(s[:])
	}
	return fs
}

// parallel runs fn(i) for i in [0, n) on workers goroutines; the first error stops the rest.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// putFiles PUTs every body through the storage package (one PutObject each) from workers
// goroutines and returns the wall time.
func putFiles(ctx context.Context, st *storage.S3, prefix string, fs fileSet, workers int) (time.Duration, error) {
	start := time.Now()
	err := parallel(ctx, len(fs.bodies), workers, func(ctx context.Context, i int) error {
		_, err := st.Put(ctx, fmt.Sprintf("%s/%05d.bin", prefix, i), bytes.NewReader(fs.bodies[i]))
		return err
	})
	return time.Since(start), err
}

// filesOutcome is what one UploadFile run measured.
type filesOutcome struct {
	dur          time.Duration
	dataSent     int64 // data bytes handed to the stream and accepted by Send
	deduplicated int64 // files the service answered as deduplicated
	bytesStored  int64
}

// uploadFiles uploads every body over its own UploadFile stream (header with declared size, and
// SHA-256 when declareSHA; one data message; finish) from workers goroutines sharing one
// connection. It behaves as the API asks of a client: a Send that reports io.EOF means the
// service has answered (a deduplicated body), so the client stops sending and reads the answer.
func uploadFiles(ctx context.Context, d *daemon, backupID string, fs fileSet, workers int, declareSHA bool, tag string) (filesOutcome, error) {
	var sent, dedup, stored atomic.Int64
	start := time.Now()
	err := parallel(ctx, len(fs.bodies), workers, func(ctx context.Context, i int) error {
		body := fs.bodies[i]
		size := int64(len(body))
		hdr := &pb.FileHeader{BackupId: backupID, ParentId: csvgen.ID(csvgen.AccountPrefix, int64(i)),
			Path: fmt.Sprintf("%s/ContentVersion/%05d.bin", tag, i), ContentType: "application/octet-stream",
			UploadId: uuid.NewString(), DeclaredSize: &size}
		if declareSHA {
			hdr.DeclaredSha256 = fs.sums[i]
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := d.backups.UploadFile(sctx)
		if err != nil {
			return fmt.Errorf("UploadFile: %w", err)
		}
		if err := stream.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: hdr}}); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("UploadFile send: %w", err)
		}
		msgs := []*pb.UploadFileRequest{
			{Message: &pb.UploadFileRequest_Data{Data: body}},
			{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}},
		}
		if declareSHA {
			// As backup.proto asks: with a declared SHA-256, wait for the
			// service to ask for the body; a deduplicated upload just answers.
			if md, err := stream.Header(); err != nil || len(md.Get(pb.UploadHeader)) == 0 {
				msgs = nil
			}
		}
		for _, m := range msgs {
			if err := stream.Send(m); err != nil {
				if errors.Is(err, io.EOF) {
					break // answered: CloseAndRecv has it
				}
				return fmt.Errorf("UploadFile send: %w", err)
			}
			if m.GetData() != nil {
				sent.Add(int64(len(m.GetData())))
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			return fmt.Errorf("UploadFile %s: %w", hdr.Path, err)
		}
		if resp.GetResult().GetDeduplicated() {
			dedup.Add(1)
		}
		stored.Add(resp.GetResult().GetBytesStored())
		return nil
	})
	return filesOutcome{dur: time.Since(start), dataSent: sent.Load(), deduplicated: dedup.Load(), bytesStored: stored.Load()}, err
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// uploadFilesBatched uploads fs through UploadFiles: streams streams, each sending its share of
// the files (header, then the whole body) as fast as the service's window takes them while a
// second goroutine reads the answers, as client.UploadFiles does.
func uploadFilesBatched(ctx context.Context, d *daemon, backupID string, fs fileSet, streams int, tag string) (filesOutcome, error) {
	var sent, dedup, stored atomic.Int64
	start := time.Now()
	per := (len(fs.bodies) + streams - 1) / streams
	err := parallel(ctx, streams, streams, func(ctx context.Context, s int) error {
		lo, hi := s*per, min((s+1)*per, len(fs.bodies))
		if lo >= hi {
			return nil
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := d.backups.UploadFiles(sctx)
		if err != nil {
			return fmt.Errorf("UploadFiles: %w", err)
		}
		sendErr := make(chan error, 1)
		go func() {
			for i := lo; i < hi; i++ {
				body := fs.bodies[i]
				size := int64(len(body))
				id := uuid.NewString()
				hdr := &pb.FileHeader{BackupId: backupID, ParentId: csvgen.ID(csvgen.AccountPrefix, int64(i)),
					Path: fmt.Sprintf("%s/ContentVersion/%05d.bin", tag, i), ContentType: "application/octet-stream",
					UploadId: id, DeclaredSize: &size, DeclaredSha256: fs.sums[i]}
				if err := stream.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Header{Header: hdr}}); err != nil {
					sendErr <- err
					return
				}
				if err := stream.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Data{Data: &pb.FileData{UploadId: id, Data: body}}}); err != nil {
					sendErr <- err
					return
				}
				sent.Add(size)
			}
			sendErr <- stream.CloseSend()
		}()
		answered := 0
		for {
			a, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("UploadFiles: %w", err)
			}
			if e := a.GetError(); e != nil {
				return fmt.Errorf("UploadFiles %s: code %d %s", a.GetUploadId(), e.GetCode(), e.GetMessage())
			}
			answered++
			if a.GetResult().GetDeduplicated() {
				dedup.Add(1)
			}
			stored.Add(a.GetResult().GetBytesStored())
		}
		if err := <-sendErr; err != nil {
			return fmt.Errorf("UploadFiles send: %w", err)
		}
		if answered != hi-lo {
			return fmt.Errorf("UploadFiles: %d answers for %d files", answered, hi-lo)
		}
		return nil
	})
	return filesOutcome{dur: time.Since(start), dataSent: sent.Load(), deduplicated: dedup.Load(), bytesStored: stored.Load()}, err
}
