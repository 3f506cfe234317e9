package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"backupstore/csvscan/csvgen"
	pb "backupstore/proto/backupstore/v1"
)

// abuseConfig is every setting of the abuse run.
type abuseConfig struct {
	commonConfig
	phase   time.Duration
	workers int
	idle    int
	anon    int
	control bool
	rounds  int
	only    string
	pace    time.Duration
}

func abuseFlags(fs *flag.FlagSet, c *abuseConfig) {
	commonFlags(fs, &c.commonConfig, 20*time.Minute)
	fs.DurationVar(&c.phase, "phase", 15*time.Second, "length of each attacked phase (and of each alone phase between two of them; the first and last alone phases are half as long)")
	fs.StringVar(&c.only, "only", "", "run only these attacks (comma-separated: bomb, idle, anonymous, headers, ssrf, overlap, cleanup, open), to see what each costs")
	fs.IntVar(&c.rounds, "rounds", 4, "attacked phases, each between two alone phases")
	fs.IntVar(&c.workers, "workers", 2, "tenant A's concurrent backup-and-restore loops")
	fs.DurationVar(&c.pace, "pace", time.Second, "each A loop starts a cycle this often (a steady worker; about half of what this machine does flat out); 0: back to back, A takes all it can")
	fs.IntVar(&c.idle, "idle-streams", 24, "tenant B's idle upload streams")
	fs.IntVar(&c.anon, "anonymous", 200, "anonymous TCP connections held open (from 127.0.0.3-127.0.0.6)")
	fs.BoolVar(&c.control, "control", false, "a control run: B stays idle in the second phase too, so the ratio shows the benchmark's own drift")
}

// abuseCommand runs two tenants on one backupd: tenant A runs a steady backup +
// restore loop, first alone, then while tenant B runs every attack of issue 10
// at once. It reports A's throughput and p99 with B attacking ÷ without, A's
// errors, backupd's peak RSS and whether it ever restarted.
func abuseCommand(ctx context.Context, args []string, stderr io.Writer) (*report, string, error) {
	fs := flag.NewFlagSet("backupbench abuse", flag.ContinueOnError)
	var c abuseConfig
	abuseFlags(fs, &c)
	if err := parseFlags(fs, args, stderr, func() error {
		if c.phase <= 0 || c.workers < 1 || c.rounds < 1 {
			return errors.New("--phase, --rounds and --workers must be positive")
		}
		return nil
	}); err != nil {
		return nil, "", err
	}
	h := newHarness("abuse", "backupbench abuse "+strings.Join(args, " "), c.commonConfig, stderr,
		map[string]any{"phase": c.phase.String(), "rounds": c.rounds, "control": c.control, "only": c.only, "pace": c.pace.String(), "workers": c.workers, "idle_streams": c.idle, "anonymous": c.anon})
	err := h.execute(ctx, func(ctx context.Context) error { return runAbuse(ctx, h, &c) })
	return h.rep, c.output, err
}

const abuseBudget = 512 << 20

type tenantClient struct {
	d   *daemon
	tok string
}

func (t tenantClient) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+t.tok)
}

func runAbuse(ctx context.Context, h *harness, c *abuseConfig) error {
	if err := h.setupEnv(ctx, envOptions{budget: "512MiB", partSize: "8MiB"}); err != nil {
		return err
	}
	s3c := h.s3
	bucketB := "abuse-b-" + randomHex(4)
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucketB)}); err != nil {
		return err
	}
	// B's second bucket sits behind a fault proxy, so B can stall it.
	bucketB2 := "abuse-b2-" + randomHex(4)
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucketB2)}); err != nil {
		return err
	}
	zerolog.SetGlobalLevel(zerolog.Disabled)
	fp := newFaultProxy()
	h.onCleanup(fp.close)
	proxyB, err := fp.add("b", strings.TrimPrefix(h.gw.endpoint, "http://"))
	if err != nil {
		return err
	}
	// An internal service B would like backupd to reach: it counts connections.
	ssrf, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.2 (loopback): %w", err)
	}
	h.onCleanup(func() { ssrf.Close() })
	var ssrfHits atomic.Int64
	go func() {
		for {
			cn, err := ssrf.Accept()
			if err != nil {
				return
			}
			ssrfHits.Add(1)
			cn.Close()
		}
	}()

	tokA, tokB := randomToken(), randomToken()
	tokens := filepath.Join(h.dir, "tokens")
	if err := os.WriteFile(tokens, []byte(hashLine(tokA, "acme")+hashLine(tokB, "globex")), 0o600); err != nil {
		return err
	}
	d, err := startDaemon(ctx, h.dcfg, "abuse", "--auth", "token", "--tokens-file", tokens,
		"--cleanup-interval", "0", "--log-level", "warn",
		"--max-connections", "64", "--first-call-timeout", "5s")
	if err != nil {
		return err
	}
	h.onCleanup(d.stop)
	h.cpu.set("backupd", d.proc.pid())
	// Each tenant has its own connection, as separate workers would.
	dA := &daemon{proc: d.proc, addr: d.addr}
	if err := dA.dial(ctx); err != nil {
		return err
	}
	h.onCleanup(func() { dA.conn.Close() })
	A, B := tenantClient{dA, tokA}, tenantClient{d, tokB}
	// B's idle streams fill their connection's 16 stream slots; B's other
	// attacks use a second connection so that they reach the server.
	dB2 := &daemon{proc: d.proc, addr: d.addr}
	if err := dB2.dial(ctx); err != nil {
		return err
	}
	h.onCleanup(func() { dB2.conn.Close() })
	B2 := tenantClient{dB2, tokB}
	// One call now, so that the connection carries B's calls before the
	// first-call deadline (an idle unauthenticated connection is closed).
	if _, err := B2.d.backups.ListBackups(B2.ctx(ctx), &pb.ListBackupsRequest{}); err != nil {
		return fmt.Errorf("B's second connection: %w", err)
	}
	for _, reg := range []struct {
		t        tenantClient
		name     string
		bucket   string
		endpoint string
	}{{A, "main", h.bucket, h.gw.endpoint}, {B, "main", bucketB, h.gw.endpoint}, {B, "stallable", bucketB2, "http://" + proxyB}} {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := reg.t.d.stores.RegisterStorage(reg.t.ctx(rctx), &pb.RegisterStorageRequest{Name: reg.name, Region: h.gw.region,
			Bucket: reg.bucket, AccessKeyId: h.gw.key, SecretAccessKey: h.gw.secret, Endpoint: reg.endpoint,
			PathStyle: true, MakeDefault: reg.name == "main"})
		cancel()
		if err != nil {
			return fmt.Errorf("RegisterStorage: %w", err)
		}
	}
	// B's bomb: a committed record set whose stored chunk B then replaces,
	// in its own bucket, by a same-length zstd frame that decodes to 1 GiB.
	bombBackup, err := abuseBomb(ctx, B, s3c, bucketB)
	if err != nil {
		return err
	}
	h.logf("setup done: tenants acme (A) and globex (B), B's bomb planted in backup %s", bombBackup)

	var rss atomic.Int64
	sampleCtx, stopSample := context.WithCancel(ctx)
	defer stopSample()
	go func() {
		for sampleCtx.Err() == nil {
			if v, err := vmHWM(d.proc.pid()); err == nil && v > rss.Load() {
				rss.Store(v)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	// A alone and A attacked alternate, starting and ending alone with half
	// phases (A/2 B A B … B A/2): A's catalog and bucket grow as it runs and
	// the shared cores drift, so a later phase is slower on its own (a control
	// run, --control, once measured 0.89 for "alone then alone" in one pair);
	// with every attacked phase between two alone ones a steady drift cancels,
	// and several rounds average the noise.
	half := c.phase / 2
	base, under := &tenantRun{}, &tenantRun{}
	useAlone, useUnder := cpuUse{}, cpuUse{}
	counts := &abuseCounts{}
	measure := func(run *tenantRun, use cpuUse, d time.Duration) int {
		s0 := h.cpu.snap()
		r := runTenantA(ctx, A, c.workers, c.pace, d)
		for k, v := range h.cpu.snap().since(s0, nil) {
			use[k] += v
		}
		run.add(r)
		return len(r.lat)
	}
	var rounds []string
	aloneBefore := measure(base, useAlone, half)
	for round := range c.rounds {
		actx, stopAttacks := context.WithCancel(ctx)
		if c.control {
			stopAttacks()
		}
		var attacks sync.WaitGroup
		for name, run := range map[string]func(){
			"bomb":      func() { bombReads(actx, B2, bombBackup, counts) },
			"idle":      func() { idleStreams(actx, B, c.idle, counts) },
			"anonymous": func() { anonymousConns(actx, d.addr, c.anon, counts) },
			"headers":   func() { hugeHeaders(actx, d.addr, counts) },
			"ssrf":      func() { ssrfRegistrations(actx, B2, ssrf.Addr().String(), counts) },
			"overlap":   func() { overlapRegistrations(actx, B2, h, counts) },
			"cleanup":   func() { stalledCleanup(actx, B2, fp, counts) },
			"open":      func() { openBackupsFlood(actx, B2, counts) },
		} {
			if c.only == "" || slices.Contains(strings.Split(c.only, ","), name) {
				attacks.Go(run)
			}
		}
		time.Sleep(2 * time.Second) // the attacks take hold before A is measured again
		attacked := measure(under, useUnder, c.phase)
		stopAttacks()
		attacks.Wait()
		time.Sleep(2 * time.Second) // the server lets go of B's connections and streams
		d := c.phase
		if round == c.rounds-1 {
			d = c.phase - half
		}
		aloneAfter := measure(base, useAlone, d)
		// This round's ratio: the attacked phase against the alone time around it.
		around := float64(aloneBefore)/half.Seconds()/2 + float64(aloneAfter)/d.Seconds()/2
		if round > 0 {
			around = float64(aloneBefore)/c.phase.Seconds()/2 + float64(aloneAfter)/d.Seconds()/2
		}
		rounds = append(rounds, fmt.Sprintf("%.2f", float64(attacked)/c.phase.Seconds()/max(around, 1e-9)))
		h.logf("round %d: %d cycles attacked, ratio %s", round+1, attacked, rounds[len(rounds)-1])
		aloneBefore = aloneAfter
	}
	total := time.Duration(c.rounds) * c.phase
	h.logf("A alone (%s in all): %d cycles, %d errors (%v), p99 %s; %s", total,
		len(base.lat), base.errors, base.firstErr, base.p99(), useAlone)
	h.logf("A while B attacks (%s in all): %d cycles, %d errors (%v), p99 %s; %s", total, len(under.lat), under.errors, under.firstErr, under.p99(), useUnder)
	h.logf("B's attacks: %s", counts)
	h.logf("B's outcomes: %s", counts.outcomeString())
	alive := d.alive()

	rep := h.rep
	thr := float64(len(under.lat)) / float64(max(len(base.lat), 1))
	rep.addRatio("abuse", fmt.Sprintf("tenant A backup+restore cycles/s (%s), B attacking ÷ B idle", paceText(c.workers, c.pace)), float64(len(under.lat))/(time.Duration(c.rounds)*c.phase).Seconds(), "cycles/s", ptr(thr), "≥ 0.8",
		fmt.Sprintf("%d cycles alone, %d while attacked, in %s each; %d rounds of %s attacked between alone phases, per-round ratios %s",
			len(base.lat), len(under.lat), time.Duration(c.rounds)*c.phase, c.rounds, c.phase, strings.Join(rounds, ", ")))
	p99r := under.p99().Seconds() / max(base.p99().Seconds(), 1e-9)
	rep.addRatio("abuse", "tenant A cycle p99, B attacking ÷ B idle", under.p99().Seconds()*1000, "ms", ptr(p99r), "",
		fmt.Sprintf("p99 alone %s", base.p99()))
	rep.addValue("abuse", "tenant A errors while B attacks", float64(under.errors), "errors", "≤ 0", errText(under.firstErr))
	rep.addValue("abuse", "backupd peak RSS", float64(rss.Load())/(1<<20), "MiB", fmt.Sprintf("≤ %d", (abuseBudget+256<<20)>>20),
		"--memory-budget 512MiB; GOMEMLIMIT is the budget + 256 MiB")
	restarted := 0.0
	if alive != nil {
		restarted = 1
	}
	rep.addValue("abuse", "backupd exits during the run", restarted, "exits", "≤ 0", errText(alive))
	rep.addValue("abuse", "connections that reached B's SSRF target (127.0.0.2)", float64(ssrfHits.Load()), "connections", "≤ 0", "")
	rep.Notes = append(rep.Notes, "B's attacks, all at once: "+counts.String(),
		"A alone: "+useAlone.String(), "A while B attacks: "+useUnder.String()+" (client is this process: A's loops and every attack)")
	if alive != nil {
		return alive
	}
	return nil
}

func paceText(workers int, pace time.Duration) string {
	if pace <= 0 {
		return fmt.Sprintf("%d loops back to back", workers)
	}
	return fmt.Sprintf("%d loops, a cycle each every %s", workers, pace)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashLine(tok, tenant string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:]) + " " + tenant + "\n"
}

// tenantRun is what tenant A's loops measured.
type tenantRun struct {
	lat      []time.Duration
	errors   int
	firstErr error
}

func (r *tenantRun) add(o *tenantRun) {
	r.lat = append(r.lat, o.lat...)
	r.errors += o.errors
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

func (r *tenantRun) p99() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*99/100)]
}

// runTenantA runs workers loops of one backup cycle each (create, a 1 MiB
// record set, two files, commit, a whole restore and a read by id, its own
// cleanup) for d.
func runTenantA(ctx context.Context, A tenantClient, workers int, pace, d time.Duration) *tenantRun {
	out := &tenantRun{}
	var mu sync.Mutex
	begin := time.Now()
	end := begin.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// A paced worker starts a cycle every pace (staggered between
			// workers); one that falls behind starts the next at once.
			next := begin.Add(pace * time.Duration(w) / time.Duration(workers))
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				if pace > 0 {
					if wait := time.Until(next); wait > 0 {
						if time.Now().Add(wait).After(end) {
							return
						}
						sleepCtx(ctx, wait)
					}
					next = next.Add(pace)
				}
				start := time.Now()
				err := tenantACycle(ctx, A, w, i)
				mu.Lock()
				if err != nil {
					out.errors++
					if out.firstErr == nil {
						out.firstErr = err
					}
				} else {
					out.lat = append(out.lat, time.Since(start))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

func abuseCSV(rows int, salt string) ([]byte, []string) {
	var b strings.Builder
	b.WriteString("Id,Name,Note\n")
	var ids []string
	for i := 1; i <= rows; i++ {
		id := csvgen.ID("001", int64(i))
		ids = append(ids, id)
		fmt.Fprintf(&b, "%s,%s-%d,%s\n", id, salt, i, randomHex(20))
	}
	return []byte(b.String()), ids
}

func tenantACycle(ctx context.Context, A tenantClient, w, i int) error {
	cctx, cancel := context.WithTimeout(A.ctx(ctx), 60*time.Second)
	defer cancel()
	d := A.d
	org := orgID(1)
	b, err := d.backups.CreateBackup(cctx, &pb.CreateBackupRequest{OrgId: org, IdempotencyKey: fmt.Sprintf("a-%d-%d-%s", w, i, randomHex(4))})
	if err != nil {
		return fmt.Errorf("CreateBackup: %w", err)
	}
	id := b.GetBackup().GetId()
	csv, ids := abuseCSV(8000, "a")
	if err := sendRecordsAll(cctx, d, id, "Account", csv); err != nil {
		return fmt.Errorf("UploadRecords: %w", err)
	}
	for f := range 2 {
		body := make([]byte, 128<<10)
		_, _ = rand.Read(body)
		if err := sendFileAll(cctx, d, id, ids[f], fmt.Sprintf("f%d.bin", f), body); err != nil {
			return fmt.Errorf("UploadFile: %w", err)
		}
	}
	if _, err := d.backups.CommitBackup(cctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
		return fmt.Errorf("CommitBackup: %w", err)
	}
	got, err := readAll(cctx, d, id, "Account", nil)
	if err != nil {
		return fmt.Errorf("ReadRecords: %w", err)
	}
	if !bytes.Equal(got, csv) {
		return fmt.Errorf("ReadRecords: %d bytes back, %d sent", len(got), len(csv))
	}
	if _, err := readAll(cctx, d, id, "Account", ids[100:103]); err != nil {
		return fmt.Errorf("ReadRecords by id: %w", err)
	}
	if _, err := d.maint.RunCleanup(cctx, &pb.RunCleanupRequest{}); err != nil && status.Code(err) != codes.Aborted {
		return fmt.Errorf("RunCleanup: %w", err)
	}
	return nil
}

func sendRecordsAll(ctx context.Context, d *daemon, backup, sobject string, csv []byte) error {
	st, err := d.backups.UploadRecords(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{
		BackupId: backup, Sobject: sobject, UploadId: uuid.NewString()}}}); err != nil {
		return err
	}
	for off := 0; off < len(csv); off += 1 << 20 {
		if err := st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: csv[off:min(off+1<<20, len(csv))]}}); err != nil {
			return err
		}
	}
	if err := st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}}); err != nil {
		return err
	}
	_, err = st.CloseAndRecv()
	return err
}

func sendFileAll(ctx context.Context, d *daemon, backup, parent, path string, body []byte) error {
	st, err := d.backups.UploadFile(ctx)
	if err != nil {
		return err
	}
	size := int64(len(body))
	if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{
		BackupId: backup, ParentId: parent, Path: path, UploadId: uuid.NewString(), DeclaredSize: &size}}}); err != nil {
		return err
	}
	if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: body}}); err != nil {
		return err
	}
	if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}}); err != nil {
		return err
	}
	_, err = st.CloseAndRecv()
	return err
}

func readAll(ctx context.Context, d *daemon, backup, sobject string, ids []string) ([]byte, error) {
	st, err := d.restores.ReadRecords(ctx, &pb.ReadRecordsRequest{BackupId: backup, Sobject: sobject, Ids: ids})
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return out, errors.New("stream ended without a summary")
		}
		if err != nil {
			return out, err
		}
		if m.GetSummary() != nil {
			return out, nil
		}
		out = append(out, m.GetData()...)
	}
}

// abuseCounts counts what each attack did.
type abuseCounts struct {
	bombReads, bombDataLoss, bombOther           atomic.Int64
	idleOpened, idleRefused                      atomic.Int64
	anonOpened, anonClosedByServer, anonRefused  atomic.Int64
	headerCalls, headersTaken                    atomic.Int64
	ssrfTries, ssrfRefused                       atomic.Int64
	overlapTries, overlapRefused                 atomic.Int64
	stalledCleanups, openBackups, openBackupsOut atomic.Int64

	mu       sync.Mutex
	outcomes map[string]int           // "attack: code" → calls
	slowest  map[string]time.Duration // attack → longest call
}

// outcome records how one call of an attack ended and how long it took.
func (c *abuseCounts) outcome(attack string, err error, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outcomes == nil {
		c.outcomes, c.slowest = map[string]int{}, map[string]time.Duration{}
	}
	c.outcomes[attack+": "+status.Code(err).String()]++
	c.slowest[attack] = max(c.slowest[attack], took)
}

// outcomeString lists the recorded outcomes and the slowest call of each attack.
func (c *abuseCounts) outcomeString() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for k, v := range c.outcomes {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	for k, v := range c.slowest {
		parts = append(parts, fmt.Sprintf("%s slowest %s", k, v.Round(time.Millisecond)))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

func (c *abuseCounts) String() string {
	return fmt.Sprintf("bomb reads %d (DataLoss %d, other %d); idle streams opened %d, refused %d; anonymous connections %d (closed by the server %d, refused at once %d); "+
		"1 MiB-header calls %d (taken %d); SSRF registrations %d (refused %d); overlapping registrations %d (refused %d); "+
		"cleanups on a stalled bucket %d; open backups created %d (refused by quota %d)",
		c.bombReads.Load(), c.bombDataLoss.Load(), c.bombOther.Load(), c.idleOpened.Load(), c.idleRefused.Load(),
		c.anonOpened.Load(), c.anonClosedByServer.Load(), c.anonRefused.Load(), c.headerCalls.Load(), c.headersTaken.Load(),
		c.ssrfTries.Load(), c.ssrfRefused.Load(), c.overlapTries.Load(), c.overlapRefused.Load(), c.stalledCleanups.Load(),
		c.openBackups.Load(), c.openBackupsOut.Load())
}

// abuseBomb commits a backup of B and replaces its stored chunk in B's own
// bucket by an RLE zstd frame decoding to 1 GiB, padded to the same length.
func abuseBomb(ctx context.Context, B tenantClient, s3c *s3.Client, bucket string) (string, error) {
	cctx := B.ctx(ctx)
	d := B.d
	b, err := d.backups.CreateBackup(cctx, &pb.CreateBackupRequest{OrgId: orgID(2)})
	if err != nil {
		return "", err
	}
	id := b.GetBackup().GetId()
	csv, _ := abuseCSV(4000, "b")
	if err := sendRecordsAll(cctx, d, id, "Account", csv); err != nil {
		return "", err
	}
	if _, err := d.backups.CommitBackup(cctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
		return "", err
	}
	list, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		return "", err
	}
	for _, o := range list.Contents {
		if !strings.HasSuffix(aws.ToString(o.Key), ".csv.zst") {
			continue
		}
		bomb := rleZstd(1 << 30)
		if int64(len(bomb)) > aws.ToInt64(o.Size) {
			return "", fmt.Errorf("chunk of %d bytes too small for a %d-byte bomb", aws.ToInt64(o.Size), len(bomb))
		}
		bomb = append(bomb, make([]byte, aws.ToInt64(o.Size)-int64(len(bomb)))...)
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: o.Key, Body: bytes.NewReader(bomb)}); err != nil {
			return "", err
		}
		return id, nil
	}
	return "", errors.New("no stored chunk found in B's bucket")
}

// rleZstd is a zstd frame (no content size, 1 MiB window) of RLE blocks that
// decodes to n bytes.
func rleZstd(n int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte((20 - 10) << 3)}
	for n > 0 {
		size := min(n, 128<<10)
		n -= size
		last := 0
		if n == 0 {
			last = 1
		}
		h := uint32(size)<<3 | 1<<1 | uint32(last)
		f = append(f, byte(h), byte(h>>8), byte(h>>16), 'x')
	}
	return f
}

func bombReads(ctx context.Context, B tenantClient, backup string, c *abuseCounts) {
	for i := 0; ctx.Err() == nil; i++ {
		var ids []string
		if i%2 == 0 {
			ids = []string{"001000000000001"}
		}
		rctx, cancel := context.WithTimeout(B.ctx(ctx), 30*time.Second)
		_, err := readAll(rctx, B.d, backup, "Account", ids)
		cancel()
		c.bombReads.Add(1)
		if status.Code(err) == codes.DataLoss {
			c.bombDataLoss.Add(1)
		} else if ctx.Err() == nil {
			c.bombOther.Add(1)
		}
	}
}

// idleStreams keeps n upload streams of B open, each having sent a header and
// one line, reopening any the server ends.
func idleStreams(ctx context.Context, B tenantClient, n int, c *abuseCounts) {
	b, err := B.d.backups.CreateBackup(B.ctx(ctx), &pb.CreateBackupRequest{OrgId: orgID(3)})
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				sctx, cancel := context.WithCancel(B.ctx(ctx))
				st, err := B.d.backups.UploadRecords(sctx)
				if err == nil {
					err = st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{
						BackupId: b.GetBackup().GetId(), Sobject: "Idle", UploadId: uuid.NewString()}}})
				}
				if err == nil {
					err = st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: []byte("Id,Name\n")}})
				}
				if err == nil {
					c.idleOpened.Add(1)
					// Hold the stream open without closing the send side: it
					// ends when the server ends it (idle timeout) or the run ends.
					var resp pb.UploadRecordsResponse
					_ = st.RecvMsg(&resp)
				} else {
					c.idleRefused.Add(1)
				}
				cancel()
				sleepCtx(ctx, 500*time.Millisecond)
			}
		})
	}
	wg.Wait()
}

// anonymousConns holds n TCP connections that never send a byte, from
// loopback addresses other than the clients', redialling those the server
// closes.
func anonymousConns(ctx context.Context, addr string, n int, c *abuseCounts) {
	var wg sync.WaitGroup
	for i := range n {
		src := fmt.Sprintf("127.0.0.%d", 3+i%4)
		wg.Go(func() {
			for ctx.Err() == nil {
				dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
				cn, err := dl.DialContext(ctx, "tcp", addr)
				if err != nil {
					sleepCtx(ctx, time.Second)
					continue
				}
				c.anonOpened.Add(1)
				opened := time.Now()
				done := make(chan struct{})
				go func() {
					select {
					case <-ctx.Done():
						cn.Close()
					case <-done:
					}
				}()
				_, _ = io.Copy(io.Discard, cn) // until the server closes it
				close(done)
				cn.Close()
				if ctx.Err() == nil {
					if time.Since(opened) < 100*time.Millisecond {
						c.anonRefused.Add(1)
					} else {
						c.anonClosedByServer.Add(1)
					}
				}
				// Redial after a second: the attacker's own CPU is on this
				// machine too, and a tighter loop would measure that.
				sleepCtx(ctx, time.Second)
			}
		})
	}
	wg.Wait()
}

// hugeHeaders sends calls whose headers hold 1 MiB, ignoring the server's
// SETTINGS, as an attacker's client would.
func hugeHeaders(ctx context.Context, addr string, c *abuseCounts) {
	for ctx.Err() == nil {
		c.headerCalls.Add(1)
		if rawHugeCall(addr, 1<<20) {
			c.headersTaken.Add(1)
		}
		// Five a second: encoding 1 MiB of headers costs the attacker's CPU,
		// which shares this machine's cores with backupd.
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// rawHugeCall reports whether the server took a call with padding bytes of
// headers (answered it with HEADERS rather than closing the stream or the
// connection).
func rawHugeCall(addr string, padding int) bool {
	cn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer cn.Close()
	cn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := cn.Write([]byte(http2.ClientPreface)); err != nil {
		return false
	}
	fr := http2.NewFramer(cn, cn)
	if fr.WriteSettings() != nil {
		return false
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/backupstore.v1.BackupService/ListBackups"}, {Name: ":authority", Value: "x"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "x-padding", Value: strings.Repeat("a", padding)}} {
		_ = enc.WriteField(f)
	}
	block := hb.Bytes()
	for first := true; len(block) > 0; first = false {
		k := min(len(block), 16<<10)
		frag := block[:k]
		block = block[k:]
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag, EndHeaders: len(block) == 0})
		} else {
			err = fr.WriteContinuation(1, len(block) == 0, frag)
		}
		if err != nil {
			return false
		}
	}
	if fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}) != nil {
		return false
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return false
		}
		switch f.(type) {
		case *http2.GoAwayFrame, *http2.RSTStreamFrame:
			return false
		case *http2.HeadersFrame:
			return true
		}
	}
}

// ssrfRegistrations asks backupd to validate a storage on an internal
// address outside --allow-endpoints.
func ssrfRegistrations(ctx context.Context, B tenantClient, target string, c *abuseCounts) {
	registrations(ctx, B, "SSRF registration", 50*time.Millisecond, codes.InvalidArgument, &c.ssrfTries, &c.ssrfRefused, c,
		func(i int) *pb.RegisterStorageRequest {
			return &pb.RegisterStorageRequest{Name: fmt.Sprintf("ssrf-%d", i), Region: "us-east-1", Bucket: "internal",
				AccessKeyId: "AKIAEXAMPLE", SecretAccessKey: "not-a-secret-at-all", Endpoint: "http://" + target, PathStyle: true}
		})
}

// overlapRegistrations tries to claim a key space inside A's (A's bucket,
// prefix "acme", where A's objects live), spelling the endpoint otherwise.
func overlapRegistrations(ctx context.Context, B tenantClient, h *harness, c *abuseCounts) {
	registrations(ctx, B, "overlapping registration", 200*time.Millisecond, codes.AlreadyExists, &c.overlapTries, &c.overlapRefused, c,
		func(i int) *pb.RegisterStorageRequest {
			return &pb.RegisterStorageRequest{Name: fmt.Sprintf("overlap-%d", i), Region: h.gw.region, Bucket: h.bucket,
				AccessKeyId: h.gw.key, SecretAccessKey: h.gw.secret, Endpoint: strings.ToUpper(h.gw.endpoint) + "/",
				PathStyle: true, Prefix: "acme"}
		})
}

// registrations registers req(i) for i = 0, 1, … until ctx ends, pausing
// between calls, and counts the calls and those refused with code.
func registrations(ctx context.Context, B tenantClient, attack string, pause time.Duration, code codes.Code,
	tries, refused *atomic.Int64, c *abuseCounts, req func(i int) *pb.RegisterStorageRequest) {
	for i := 0; ctx.Err() == nil; i++ {
		rctx, cancel := context.WithTimeout(B.ctx(ctx), 20*time.Second)
		start := time.Now()
		_, err := B.d.stores.RegisterStorage(rctx, req(i))
		cancel()
		c.outcome(attack, err, time.Since(start))
		tries.Add(1)
		if status.Code(err) == code {
			refused.Add(1)
		}
		sleepCtx(ctx, pause)
	}
}

// stalledCleanup stalls B's second bucket (every connection through its
// proxy hangs) and runs B's cleanup, which lists it, over and over.
func stalledCleanup(ctx context.Context, B tenantClient, fp *faultProxy, c *abuseCounts) {
	go func() { _ = fp.toxic(ctx, "b", "timeout", "downstream", `{"timeout":0}`, 1, 24*time.Hour) }()
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(B.ctx(ctx), 15*time.Second)
		_, _ = B.d.maint.RunCleanup(rctx, &pb.RunCleanupRequest{})
		cancel()
		c.stalledCleanups.Add(1)
	}
}

// openBackupsFlood opens backups until the quota refuses more.
func openBackupsFlood(ctx context.Context, B tenantClient, c *abuseCounts) {
	for ctx.Err() == nil {
		_, err := B.d.backups.CreateBackup(B.ctx(ctx), &pb.CreateBackupRequest{OrgId: orgID(4)})
		if status.Code(err) == codes.ResourceExhausted {
			c.openBackupsOut.Add(1)
			sleepCtx(ctx, time.Second)
			continue
		}
		if err == nil {
			c.openBackups.Add(1)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
