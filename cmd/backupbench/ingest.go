package main

import (
	"backupstore/internal/bytesize"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	pb "backupstore/proto/backupstore/v1"
	"backupstore/storage"
)

var errUsage = errors.New("usage error")

// memOverhead is what backupd states it needs beyond --memory-budget (cmd/backupd/run.go).
const memOverhead = 256 << 20

// ingestConfig is every setting of the ingest benchmark; defaults live in ingestFlags.
type ingestConfig struct {
	commonConfig
	size       bytesize.Flag
	budget     bytesize.Flag
	partSize   bytesize.Flag
	rssSmall   bytesize.Flag
	rssBig     bytesize.Flag
	files      int
	fileSize   bytesize.Flag
	streams    int
	runs       int
	skipRclone bool
	cpuprofile string
	only       string
}

func ingestFlags(fs *flag.FlagSet, c *ingestConfig) {
	c.size, c.budget, c.partSize, c.rssSmall, c.rssBig, c.fileSize = 512<<20, 512<<20, storage.DefaultPartSize, 64<<20, 2<<30, 8<<10
	commonFlags(fs, &c.commonConfig, 25*time.Minute)
	fs.Var(&c.size, "size", "size of the generated CSV of the throughput stages (at least this)")
	fs.Var(&c.budget, "memory-budget", "backupd --memory-budget")
	fs.Var(&c.partSize, "part-size", "backupd --part-size")
	fs.Var(&c.rssSmall, "rss-small", "the small record set of the RSS stage (one chunk)")
	fs.Var(&c.rssBig, "rss-big", "the large record set of the RSS stage (two chunks of half of it, sequence 0 and 1)")
	fs.IntVar(&c.files, "files", 5000, "small files per run of the file stages")
	fs.Var(&c.fileSize, "file-size", "size of each small file")
	fs.IntVar(&c.streams, "streams", 16, "concurrent UploadFile streams (and PutObject goroutines)")
	fs.IntVar(&c.runs, "runs", 5, "interleaved runs of each throughput measurement; the median is reported")
	fs.BoolVar(&c.skipRclone, "skip-rclone", false, "do not build or run rclone")
	fs.StringVar(&c.only, "only", "", "run only these stages (comma-separated: throughput, files, rss), to iterate on one goal; the report then lacks the others")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "with -tags benchprofile: also run the main ingest and the file stage once in-process (backupd's packages and settings) under a CPU profile written here (plus FILE-files, FILE-allocs); FILE.top.txt gets `go tool pprof -top`")
}

func (c *ingestConfig) validate() error {
	errs := []error{c.commonConfig.validate()}
	if c.size < 1<<20 || c.rssSmall < 1<<20 || c.rssBig < 2<<20 {
		errs = append(errs, errors.New("--size, --rss-small and --rss-big must be at least 1MiB (--rss-big 2MiB)"))
	}
	if c.files < 1 || c.streams < 1 || c.runs < 1 || c.fileSize < 1 || c.fileSize > 4<<20 {
		errs = append(errs, errors.New("--files, --streams and --runs must be ≥ 1, --file-size in [1, 4MiB] (one data message)"))
	}
	for _, s := range strings.Split(c.only, ",") {
		if s != "" && s != "throughput" && s != "files" && s != "rss" {
			errs = append(errs, fmt.Errorf("--only: unknown stage %q (throughput, files, rss)", s))
		}
	}
	if c.cpuprofile != "" && !profileBuilt {
		errs = append(errs, errors.New("--cpuprofile needs the in-process pipeline: go run -tags benchprofile ./cmd/backupbench ingest --cpuprofile FILE"))
	}
	return errors.Join(errs...)
}

// stage reports whether --only lets stage run.
func (c *ingestConfig) stage(stage string) bool {
	return c.only == "" || slices.Contains(strings.Split(c.only, ","), stage)
}

// bench is one run of the ingest benchmark: its environment and what it measured.
type bench struct {
	*harness
	c     ingestConfig
	csv   struct{ main, small, big0, big1 string }
	sizes struct{ main, small, big int64 }
}

// ingestCommand runs the ingest benchmark and returns its report (nil when there is nothing to
// report: -h, or a bad command line).
func ingestCommand(ctx context.Context, args []string, stderr io.Writer) (*report, string, error) {
	var c ingestConfig
	if err := parseCommand("ingest", args, stderr, &c, ingestFlags); err != nil {
		return nil, "", err
	}
	if c.cpuprofile != "" {
		abs, err := filepath.Abs(c.cpuprofile)
		if err != nil {
			return nil, "", err
		}
		c.cpuprofile = abs
	}
	h := newHarness("ingest", commandLine("ingest", args), c.commonConfig, stderr, map[string]any{
		"size": c.size.String(), "memory_budget": c.budget.String(), "part_size": c.partSize.String(),
		"rss_small": c.rssSmall.String(), "rss_big": c.rssBig.String(), "files": c.files, "file_size": c.fileSize.String(),
		"streams": c.streams, "runs": c.runs, "skip_rclone": c.skipRclone})
	b := &bench{harness: h, c: c}
	err := h.execute(ctx, b.run)
	return h.rep, c.output, err
}

func (b *bench) run(ctx context.Context) error {
	if err := b.setup(ctx); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	a, err := startDaemon(ctx, b.dcfg, "backupd-indexed")
	if err != nil {
		return err
	}
	b.onCleanup(a.stop)
	n, err := startDaemon(ctx, b.dcfg, "backupd-noindex", "--benchmark-without-index")
	if err != nil {
		return err
	}
	b.onCleanup(n.stop)
	b.cpu.set("backupd", a.proc.pid(), n.proc.pid())
	if err := b.register(ctx, a); err != nil {
		return err
	}
	if b.c.stage("throughput") {
		if err := b.throughput(ctx, a, n); err != nil {
			return errors.Join(err, a.alive(), n.alive())
		}
	}
	if b.c.stage("files") {
		if err := b.smallFiles(ctx, a); err != nil {
			return errors.Join(err, a.alive())
		}
	}
	a.stop()
	n.stop()
	if b.c.stage("rss") {
		if err := b.rss(ctx); err != nil {
			return err
		}
	}
	if b.c.cpuprofile != "" {
		if err := b.profile(ctx); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	return nil
}

// setup prepares the environment, builds backupd (and rclone if needed) and generates the CSVs.
func (b *bench) setup(ctx context.Context) error {
	return b.setupEnv(ctx, envOptions{rclone: true, skipRclone: b.c.skipRclone, budget: b.c.budget.String(),
		partSize: b.c.partSize.String(), overlap: b.generate})
}

// generate writes the CSVs (in parallel, two at a time) and warms the page cache with the main one.
func (b *bench) generate(ctx context.Context) error {
	b.csv.main = filepath.Join(b.dir, "main.csv")
	b.csv.small = filepath.Join(b.dir, "rss-small.csv")
	b.csv.big0 = filepath.Join(b.dir, "rss-big-0.csv")
	b.csv.big1 = filepath.Join(b.dir, "rss-big-1.csv")
	half := int64(b.c.rssBig) / 2
	jobs := []struct {
		path   string
		target int64
		seed   int64
		size   *int64
	}{ // seeds far apart: disjoint id ranges (csvgen starts seed's ids at seed × 1,000,000)
		{b.csv.big0, half, 1000, new(int64)},
		{b.csv.main, int64(b.c.size), 1, &b.sizes.main},
		{b.csv.big1, half, 2000, new(int64)},
		{b.csv.small, int64(b.c.rssSmall), 500, &b.sizes.small},
	}
	t0 := time.Now()
	sem := make(chan struct{}, 2)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				return
			}
			size, rows, err := genCSV(j.path, j.target, j.seed)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			*j.size = size
			b.logf("generated %s: %d bytes, %d rows", filepath.Base(j.path), size, rows)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.sizes.big = *jobs[0].size + *jobs[2].size
	var total int64
	for _, j := range jobs {
		total += *j.size
	}
	b.logf("generated %.0f MB of CSV in %s", float64(total)/1e6, time.Since(t0).Round(100*time.Millisecond))
	b.rep.Config["main_csv_bytes"], b.rep.Config["rss_small_csv_bytes"], b.rep.Config["rss_big_csv_bytes"] = b.sizes.main, b.sizes.small, b.sizes.big
	return errors.Join(ctx.Err(), warm(b.csv.main))
}

// register registers the gateway bucket as the tenant's default storage (the catalog is shared,
// so every backupd of the run sees it).
func (b *bench) register(ctx context.Context, d *daemon) error {
	_, err := b.registerStorage(ctx, d, "bench", b.gw.endpoint, "", true)
	return err
}

const mb = 1e6

// throughput runs stages 1–3: rclone rcat, manager upload and backupstore ingest with and
// without the record index, interleaved and rotated per run, so that drift in the machine's
// load spreads over all of them.
func (b *bench) throughput(ctx context.Context, a, n *daemon) error {
	type measure struct {
		name string
		fn   func(run int) (time.Duration, cpuUse, error) // wall time and child processes' CPU
	}
	var results []*pb.UploadResult
	var indexBytes []float64
	// timed runs fn between two CPU readings; uses collects them per measurement.
	uses := map[string][]cpuUse{}
	walls := map[string][]time.Duration{}
	var cur string
	timed := func(fn func() (time.Duration, cpuUse, error)) (time.Duration, cpuUse, error) {
		s0 := b.cpu.snap()
		dur, extra, err := fn()
		uses[cur] = append(uses[cur], b.cpu.snap().since(s0, extra))
		walls[cur] = append(walls[cur], dur)
		return dur, extra, err
	}
	ingest := func(d *daemon, label string, run int, keep bool) (time.Duration, cpuUse, error) {
		id, err := createBackup(ctx, d, fmt.Sprintf("%s-%d", label, run))
		if err != nil {
			return 0, nil, err
		}
		var res *pb.UploadResult
		dur, _, err := timed(func() (dur time.Duration, _ cpuUse, err error) {
			res, dur, err = uploadRecords(ctx, d, id, 0, b.csv.main)
			return dur, nil, err
		})
		if err != nil {
			return 0, nil, err
		}
		if res.GetBytesIn() != b.sizes.main {
			return 0, nil, fmt.Errorf("%s: the service counted %d input bytes, the file has %d", label, res.GetBytesIn(), b.sizes.main)
		}
		if keep {
			results = append(results, res)
			if res.GetIndexKey() != "" {
				h, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(res.GetIndexKey())})
				if err != nil {
					return 0, nil, fmt.Errorf("HEAD index object: %w", err)
				}
				indexBytes = append(indexBytes, float64(aws.ToInt64(h.ContentLength)))
			}
		}
		return dur, nil, abortBackup(ctx, d, id)
	}
	s3put := func(name string, run int, up func(key string) (time.Duration, cpuUse, error)) (time.Duration, cpuUse, error) {
		key := fmt.Sprintf("%s/%d.csv", name, run)
		dur, _, err := timed(func() (time.Duration, cpuUse, error) { return up(key) })
		if err != nil {
			return 0, nil, err
		}
		_, err = b.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
		return dur, nil, err
	}
	ms := []measure{
		{"backupstore_indexed", func(r int) (time.Duration, cpuUse, error) { return ingest(a, "indexed", r, true) }},
		{"manager", func(r int) (time.Duration, cpuUse, error) {
			return s3put("manager", r, func(k string) (time.Duration, cpuUse, error) {
				d, err := managerUpload(ctx, b.s3, b.bucket, k, b.csv.main)
				return d, nil, err
			})
		}},
		{"backupstore_noindex", func(r int) (time.Duration, cpuUse, error) { return ingest(n, "noindex", r, false) }},
	}
	if b.rclone != "" {
		ms = append(ms, measure{"rclone", func(r int) (time.Duration, cpuUse, error) {
			return s3put("rclone", r, func(k string) (time.Duration, cpuUse, error) {
				return rcloneRcat(ctx, b.rclone, b.gw, b.dir, b.bucket, k, b.csv.main)
			})
		}})
	}
	for run := range b.c.runs {
		for i := range ms {
			m := ms[(i+run)%len(ms)]
			cur = m.name
			dur, _, err := m.fn(run)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", m.name, run+1, err)
			}
			rate := float64(b.sizes.main) / mb / dur.Seconds()
			b.rep.Runs[m.name+"_MBps"] = append(b.rep.Runs[m.name+"_MBps"], rate)
			u := uses[m.name][len(uses[m.name])-1]
			b.logf("run %d/%d %-20s %7.1f MB/s (%s; %s)", run+1, b.c.runs, m.name, rate, dur.Round(time.Millisecond), u)
		}
	}
	for name, us := range uses {
		b.rep.CPU[name] = medianUse(us)
	}
	b.noise("stages 1–3", uses, walls)
	cpuNote := func(name string) string {
		if u, ok := b.rep.CPU[name]; ok {
			return "median " + u.String()
		}
		return ""
	}

	med := func(name string) float64 { return median(b.rep.Runs[name+"_MBps"]) }
	bs, mgr, noidx, rc := med("backupstore_indexed"), med("manager"), med("backupstore_noindex"), med("rclone")
	rcNote := ""
	if b.rclone == "" {
		rcNote = "not measured: see notes"
	}
	if rcNote == "" {
		rcNote = cpuNote("rclone")
	}
	b.rep.addValue("1", "rclone rcat (defaults), stdin pipe", rc, "MB/s", "", rcNote)
	b.rep.addValue("1", "S3 manager upload, 16 MiB parts × 4, non-seekable, SDK checksums when required", mgr, "MB/s", "", cpuNote("manager"))
	b.rep.addValue("1", "backupstore ingest (gRPC 1 MiB msgs, zstd, indexed)", bs, "MB/s", "", cpuNote("backupstore_indexed"))
	b.rep.addRatio("1", "backupstore ingest ÷ rclone rcat", bs, "MB/s", div(bs, rc), "≥ 1.0", "")
	b.rep.addRatio("1", "backupstore ingest ÷ manager upload (uncompressed ceiling)", bs, "MB/s", div(bs, mgr), "", "")
	res := results[len(results)-1]
	b.rep.addRatio("2", "stored ÷ input (zstd data object, UploadResult)", float64(res.GetBytesStored())/mb, "MB stored",
		div(float64(res.GetBytesStored()), float64(res.GetBytesIn())), "≤ 0.30",
		fmt.Sprintf("%d rows, %.1f MB in", res.GetRecords(), float64(res.GetBytesIn())/mb))
	if len(indexBytes) > 0 {
		ib := indexBytes[len(indexBytes)-1]
		b.rep.addRatio("2", "record index object ÷ input (information)", ib/mb, "MB", div(ib, float64(res.GetBytesIn())), "", "")
	}
	b.rep.addValue("3", "backupstore ingest without index (--benchmark-without-index)", noidx, "MB/s", "", cpuNote("backupstore_noindex"))
	b.rep.addRatio("3", "ingest with index ÷ without", bs, "MB/s", div(bs, noidx), "≥ 0.9", "")

	// The same comparisons per CPU-second of the benchmark's own processes: on shared cores the
	// wall-time figures move with other users' load, these much less.
	perCPU := func(name string) float64 { return float64(b.sizes.main) / mb / b.rep.CPU[name].own() }
	if b.rclone != "" {
		b.rep.addRatio("1", "information: MB per CPU-second of own processes, backupstore ÷ rclone", perCPU("backupstore_indexed"), "MB/CPU-s",
			div(perCPU("backupstore_indexed"), perCPU("rclone")), "", fmt.Sprintf("rclone %.1f MB/CPU-s", perCPU("rclone")))
	}
	b.rep.addRatio("1", "information: MB per CPU-second of own processes, backupstore ÷ manager upload", perCPU("backupstore_indexed"), "MB/CPU-s",
		div(perCPU("backupstore_indexed"), perCPU("manager")), "", fmt.Sprintf("manager %.1f MB/CPU-s", perCPU("manager")))
	b.rep.addRatio("3", "information: MB per CPU-second of own processes, with index ÷ without", perCPU("backupstore_indexed"), "MB/CPU-s",
		div(perCPU("backupstore_indexed"), perCPU("backupstore_noindex")), "", fmt.Sprintf("without %.1f MB/CPU-s", perCPU("backupstore_noindex")))
	return nil
}

// countedSmallFiles is stage 5's counted run: the same upload once more, on a storage registered
// through the counting proxy, to count the S3 write requests per 1,000 files; then the backup is
// committed and 100 of its files are read one at a time (ReadFile by id, whole body checked by
// the client against what it sent) for the single small-file read latency.
func (b *bench) countedSmallFiles(ctx context.Context, a *daemon, n, size int) error {
	proxy, err := b.countingProxy()
	if err != nil {
		return err
	}
	sid, err := b.registerStorage(ctx, a, "counted", proxy.endpoint, "counted", false)
	if err != nil {
		return err
	}
	id, err := createBackupOn(ctx, a, "files-counted", sid)
	if err != nil {
		return err
	}
	fs := newFileSet(n, size)
	mark := proxy.mark()
	out, err := uploadFilesBatched(ctx, a, id, fs, b.c.streams, "counted")
	if err != nil {
		return fmt.Errorf("counted UploadFiles run: %w", err)
	}
	reqs := proxy.since(mark)
	writes := sum(reqs, func(r proxyReq) bool { return r.Op == "put" || r.Op == "other" })
	per1000 := float64(writes.Requests) * 1000 / float64(n)
	b.logf("counted run: %d files in %s, %d S3 write requests (%s)", n, out.dur.Round(time.Millisecond), writes.Requests, byOp(reqs))
	b.rep.addValue("5", "S3 PUT requests per 1,000 small files", per1000, "requests", "≤ 10",
		fmt.Sprintf("UploadFiles, %d streams, %d files of %s; PUT and POST (multipart) requests at the counting proxy: %s", b.c.streams, n, b.c.fileSize.String(), byOp(reqs)))
	// The same through UploadFile, one file per stream, for comparison.
	id1, err := createBackupOn(ctx, a, "files-counted-single", sid)
	if err != nil {
		return err
	}
	mark = proxy.mark()
	if _, err := uploadFiles(ctx, a, id1, newFileSet(n, size), b.c.streams, false, "counted1"); err != nil {
		return fmt.Errorf("counted UploadFile run: %w", err)
	}
	reqs1 := proxy.since(mark)
	writes1 := sum(reqs1, func(r proxyReq) bool { return r.Op == "put" || r.Op == "other" })
	b.rep.addValue("5", "information: S3 PUT requests per 1,000 small files through UploadFile (one file per stream)", float64(writes1.Requests)*1000/float64(n), "requests", "",
		fmt.Sprintf("%d streams: a pack holds what arrives within the linger", b.c.streams))
	if err := commitBackup(ctx, a, id); err != nil {
		return err
	}
	var files []*pb.FileInfo
	token := ""
	for {
		resp, err := a.restores.ListBackupContents(ctx, &pb.ListBackupContentsRequest{BackupId: id, PageSize: 1000, PageToken: token})
		if err != nil {
			return fmt.Errorf("ListBackupContents: %w", err)
		}
		files = append(files, resp.GetFiles()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(files) != n {
		return fmt.Errorf("counted backup lists %d files, want %d", len(files), n)
	}
	bodyOf := map[string][]byte{}
	for i, p := range fs.bodies {
		bodyOf[fmt.Sprintf("counted/ContentVersion/%05d.bin", i)] = p
	}
	var lat []float64
	for i := 0; i < 100; i++ {
		f := files[(i*7919)%len(files)]
		t0 := time.Now()
		stream, err := a.restores.ReadFile(ctx, &pb.ReadFileRequest{BackupId: id, Selector: &pb.ReadFileRequest_FileId{FileId: f.GetFileId()}})
		if err != nil {
			return fmt.Errorf("ReadFile: %w", err)
		}
		var got []byte
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("ReadFile %s: %w", f.GetFileId(), err)
			}
			got = append(got, m.GetData()...)
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
		if want, ok := bodyOf[f.GetPath()]; !ok || !bytes.Equal(got, want) {
			return fmt.Errorf("ReadFile %s (%s): %d bytes, not the body sent", f.GetFileId(), f.GetPath(), len(got))
		}
	}
	b.rep.Runs["small_file_read_ms"] = lat
	b.rep.addValue("5", "single small-file read p50 (ms)", percentile(lat, 50), "ms", "≤ 15",
		fmt.Sprintf("100 ReadFile calls by file id, one at a time, of the counted backup; p99 %.1f ms", percentile(lat, 99)))
	return nil
}

// smallFiles runs stages 5 and 6 on daemon a.
func (b *bench) smallFiles(ctx context.Context, a *daemon) error {
	st, err := storage.NewS3(storage.S3Config{Region: b.gw.region, Bucket: b.bucket, AccessKeyID: b.gw.key,
		SecretAccessKey: b.gw.secret, Endpoint: b.gw.endpoint, PathStyle: true})
	if err != nil {
		return err
	}
	n, size := b.c.files, int(b.c.fileSize)
	var last fileSet
	uses := map[string][]cpuUse{}
	walls := map[string][]time.Duration{}
	for run := range b.c.runs {
		fs := newFileSet(n, size) // new bodies per run: nothing deduplicates by accident
		last = fs
		put := func() error {
			prefix := fmt.Sprintf("put/%d", run)
			s0 := b.cpu.snap()
			dur, err := putFiles(ctx, st, prefix, fs, b.c.streams)
			uses["putobject"] = append(uses["putobject"], b.cpu.snap().since(s0, nil))
			walls["putobject"] = append(walls["putobject"], dur)
			if err != nil {
				return fmt.Errorf("PutObject run %d: %w", run+1, err)
			}
			rate := float64(n) / dur.Seconds()
			b.rep.Runs["putobject_files_per_s"] = append(b.rep.Runs["putobject_files_per_s"], rate)
			b.logf("run %d/%d %-20s %7.0f files/s (%s)", run+1, b.c.runs, "PutObject", rate, dur.Round(time.Millisecond))
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("%s/%05d.bin", prefix, i)
			}
			return st.Delete(ctx, keys...)
		}
		upload := func() error {
			id, err := createBackup(ctx, a, fmt.Sprintf("files-%d", run))
			if err != nil {
				return err
			}
			s0 := b.cpu.snap()
			out, err := uploadFiles(ctx, a, id, fs, b.c.streams, false, fmt.Sprintf("run%d", run))
			uses["uploadfile"] = append(uses["uploadfile"], b.cpu.snap().since(s0, nil))
			walls["uploadfile"] = append(walls["uploadfile"], out.dur)
			if err != nil {
				return fmt.Errorf("UploadFile run %d: %w", run+1, err)
			}
			if out.deduplicated != 0 || out.bytesStored != int64(n*size) {
				return fmt.Errorf("UploadFile run %d: %d deduplicated, %d bytes stored; want 0 and %d", run+1, out.deduplicated, out.bytesStored, n*size)
			}
			rate := float64(n) / out.dur.Seconds()
			b.rep.Runs["uploadfile_files_per_s"] = append(b.rep.Runs["uploadfile_files_per_s"], rate)
			b.logf("run %d/%d %-20s %7.0f files/s (%s)", run+1, b.c.runs, "UploadFile", rate, out.dur.Round(time.Millisecond))
			return nil
		}
		batched := func() error {
			id, err := createBackup(ctx, a, fmt.Sprintf("files-batched-%d", run))
			if err != nil {
				return err
			}
			fs := newFileSet(n, size) // bodies of its own: nothing deduplicates
			s0 := b.cpu.snap()
			out, err := uploadFilesBatched(ctx, a, id, fs, b.c.streams, fmt.Sprintf("batched%d", run))
			uses["uploadfiles"] = append(uses["uploadfiles"], b.cpu.snap().since(s0, nil))
			walls["uploadfiles"] = append(walls["uploadfiles"], out.dur)
			if err != nil {
				return fmt.Errorf("UploadFiles run %d: %w", run+1, err)
			}
			if out.deduplicated != 0 || out.bytesStored != int64(n*size) {
				return fmt.Errorf("UploadFiles run %d: %d deduplicated, %d bytes stored; want 0 and %d", run+1, out.deduplicated, out.bytesStored, n*size)
			}
			rate := float64(n) / out.dur.Seconds()
			b.rep.Runs["uploadfiles_files_per_s"] = append(b.rep.Runs["uploadfiles_files_per_s"], rate)
			b.logf("run %d/%d %-20s %7.0f files/s (%s, %d deduplicated)", run+1, b.c.runs, "UploadFiles", rate, out.dur.Round(time.Millisecond), out.deduplicated)
			return nil
		}
		steps := []func() error{put, upload, batched}
		for range run % 3 {
			steps = append(steps[1:], steps[0])
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return err
			}
		}
	}
	for name, us := range uses {
		b.rep.CPU[name] = medianUse(us)
	}
	b.noise("stage 5", uses, walls)
	put, up, batched := median(b.rep.Runs["putobject_files_per_s"]), median(b.rep.Runs["uploadfile_files_per_s"]), median(b.rep.Runs["uploadfiles_files_per_s"])
	what := fmt.Sprintf("%d files of %s", n, b.c.fileSize.String())
	b.rep.addValue("5", fmt.Sprintf("PutObject, %d goroutines (storage package), %s", b.c.streams, what), put, "files/s", "", "median "+b.rep.CPU["putobject"].String())
	b.rep.addValue("5", fmt.Sprintf("UploadFile, %d concurrent streams, declared size", b.c.streams), up, "files/s", "", "median "+b.rep.CPU["uploadfile"].String())
	b.rep.addValue("5", fmt.Sprintf("UploadFiles, %d concurrent streams, declared size and SHA-256, the service's window in flight", b.c.streams), batched, "files/s", "", "median "+b.rep.CPU["uploadfiles"].String())
	b.rep.addRatio("5", "UploadFile (one file per stream) ÷ PutObject", up, "files/s", div(up, put), "≥ 0.7", "")
	b.rep.addRatio("5", fmt.Sprintf("%d × %s files through the file upload API ÷ %d × PutObject", n, b.c.fileSize.String(), b.c.streams),
		batched, "files/s", div(batched, put), "≥ 1.0", fmt.Sprintf("UploadFiles, %d streams", b.c.streams))
	if err := b.countedSmallFiles(ctx, a, n, size); err != nil {
		return err
	}

	// Stage 6: the same bodies again, in a new backup, declaring their SHA-256.
	id, err := createBackup(ctx, a, "files-second")
	if err != nil {
		return err
	}
	s0 := b.cpu.snap()
	out, err := uploadFiles(ctx, a, id, last, b.c.streams, true, "second")
	if err != nil {
		return fmt.Errorf("second backup: %w", err)
	}
	b.rep.CPU["second_backup"] = b.cpu.snap().since(s0, nil)
	rate := float64(n) / out.dur.Seconds()
	b.rep.Runs["second_backup_files_per_s"] = []float64{rate}
	b.logf("second backup: %d of %d deduplicated, %d data bytes sent, %.0f files/s", out.deduplicated, n, out.dataSent, rate)
	b.rep.addValue("6", "second backup of the same files (declared SHA-256): file bytes sent by the client", float64(out.dataSent), "bytes", "= 0",
		fmt.Sprintf("of %d", n*size))
	b.rep.addRatio("6", "second backup: files answered deduplicated", float64(out.deduplicated), "files", div(float64(out.deduplicated), float64(n)), "= 1", "")
	b.rep.addValue("6", "second backup: throughput (information)", rate, "files/s", "", b.rep.CPU["second_backup"].String())
	return nil
}

// rss runs stage 4: the peak RSS of a fresh backupd per record set, read after the upload.
func (b *bench) rss(ctx context.Context) error {
	measure := func(name string, chunks ...string) (float64, float64, error) {
		d, err := startDaemon(ctx, b.dcfg, "backupd-"+name)
		if err != nil {
			return 0, 0, err
		}
		defer d.stop()
		b.cpu.set("backupd", d.proc.pid())
		id, err := createBackup(ctx, d, name)
		if err != nil {
			return 0, 0, err
		}
		var in int64
		t0, s0 := time.Now(), b.cpu.snap()
		for seq, path := range chunks {
			res, _, err := uploadRecords(ctx, d, id, int32(seq), path)
			if err != nil {
				return 0, 0, errors.Join(fmt.Errorf("%s chunk %d: %w", name, seq, err), d.alive())
			}
			in += res.GetBytesIn()
			if h, err := vmHWM(d.proc.pid()); err == nil {
				b.rep.Runs[name+"_hwm_after_chunk_MiB"] = append(b.rep.Runs[name+"_hwm_after_chunk_MiB"], float64(h)/(1<<20))
				b.logf("%s: chunk %d done (%d records), backupd VmHWM %.1f MiB", name, seq, res.GetRecords(), float64(h)/(1<<20))
			}
		}
		rate := float64(in) / mb / time.Since(t0).Seconds()
		b.rep.CPU[name] = b.cpu.snap().since(s0, nil)
		hwm, err := vmHWM(d.proc.pid())
		if err != nil {
			return 0, 0, err
		}
		b.logf("%s: %d bytes in %d chunk(s), %.1f MB/s, backupd VmHWM %.1f MiB", name, in, len(chunks), rate, float64(hwm)/(1<<20))
		if err := abortBackup(ctx, d, id); err != nil {
			return 0, 0, err
		}
		return float64(hwm) / (1 << 20), rate, nil
	}
	small, _, err := measure("rss-small", b.csv.small)
	if err != nil {
		return err
	}
	big, bigRate, err := measure("rss-big", b.csv.big0, b.csv.big1)
	if err != nil {
		return err
	}
	b.rep.Runs["rss_small_MiB"], b.rep.Runs["rss_big_MiB"] = []float64{small}, []float64{big}
	b.rep.Runs["rss_big_ingest_MBps"] = []float64{bigRate}
	limit := float64(int64(b.c.budget)+memOverhead) / (1 << 20)
	b.rep.addValue("4", fmt.Sprintf("backupd peak RSS (VmHWM), %s record set, 1 chunk, fresh process", b.c.rssSmall.String()), small, "MiB", "", "")
	b.rep.addRatio("4", fmt.Sprintf("backupd peak RSS, %s record set (2 chunks, one after the other), fresh process ÷ %s set",
		b.c.rssBig.String(), b.c.rssSmall.String()), big, "MiB", div(big, small), "≤ 1.2", "")
	b.rep.addRatio("4", fmt.Sprintf("same ÷ (--memory-budget %s + %d MiB overhead = %.0f MiB)", b.c.budget.String(), memOverhead>>20, limit),
		big, "MiB", div(big, limit), "≤ 1.0", "")
	b.rep.addValue("4", fmt.Sprintf("ingest of the %s set (information)", b.c.rssBig.String()), bigRate, "MB/s", "", b.rep.CPU["rss-big"].String())
	return nil
}
