package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// GW is a running versitygw (S3 gateway, posix backend on a private temporary directory) on
// loopback. One instance per region is started lazily per test process and shared by all tests
// in it; use NewBucket for isolation.
type GW struct {
	Endpoint   string // e.g. "http://127.0.0.1:41234" (path-style addressing required)
	Region     string // the region versitygw was started with
	RootKey    string // root access key id
	RootSecret string // root secret access key

	bin string
	dir string
	cmd *exec.Cmd
}

// DefaultRegion is the region of the instance VersityGW starts.
const DefaultRegion = "us-east-1"

type gwEntry struct {
	once sync.Once
	gw   *GW
	err  error
}

var (
	gwMu       sync.Mutex
	gwByRegion = map[string]*gwEntry{}
)

// VersityGW returns the process-wide versitygw instance for DefaultRegion, starting it on first
// use. It calls Unavailable (skip locally, fail in CI) when no versitygw binary can be found, and
// fails the test if the binary is there but does not start.
//
// The binary is looked up as $VERSITYGW_BIN, then RepoRoot()/.bin/versitygw, then versitygw on
// PATH. The gateway process is started with Pdeathsig=SIGKILL, so it dies with the test binary;
// a TestMain may call StopAll to stop it and remove its data early. Data directories left by
// earlier, killed test processes are removed on the next start.
func VersityGW(t testing.TB) *GW {
	t.Helper()
	return VersityGWRegion(t, DefaultRegion)
}

// VersityGWRegion is VersityGW for a gateway started with --region region (a separate instance
// per region; DefaultRegion and "" share VersityGW's instance). A request signed for another
// region is answered 400 AuthorizationHeaderMalformed.
func VersityGWRegion(t testing.TB, region string) *GW {
	t.Helper()
	if region == "" {
		region = DefaultRegion
	}
	bin, err := VersityBinary(RepoRoot())
	if err != nil {
		Unavailable(t, "%v", err)
		return nil
	}
	gwMu.Lock()
	e := gwByRegion[region]
	if e == nil {
		e = &gwEntry{}
		gwByRegion[region] = e
	}
	gwMu.Unlock()
	e.once.Do(func() { e.gw, e.err = startVersityGW(bin, region) })
	if e.err != nil {
		t.Fatalf("start versitygw: %v", e.err)
	}
	return e.gw
}

// StopAll kills every gateway this process started and removes their data directories. Tests
// need not call it (the gateways die with the process); a TestMain may, after m.Run.
func StopAll() {
	gwMu.Lock()
	defer gwMu.Unlock()
	for region, e := range gwByRegion {
		if e.gw != nil {
			e.gw.stop()
		}
		delete(gwByRegion, region)
	}
}

const gwDirPattern = "backupstore-versitygw-"

func startVersityGW(bin, region string) (*GW, error) {
	removeStaleGWDirs()
	var g *GW
	err := OnFreePort(func(port string) (err error) {
		g, err = tryStartVersityGW(bin, region, port)
		return err
	})
	return g, err
}

func tryStartVersityGW(bin, region, port string) (*GW, error) {
	dir, err := os.MkdirTemp("", gwDirPattern+"*")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	dataDir, iamDir := filepath.Join(dir, "data"), filepath.Join(dir, "iam")
	for _, d := range []string{dataDir, iamDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	logFile, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor

	g := &GW{
		Endpoint:   "http://127.0.0.1:" + port,
		Region:     region,
		RootKey:    "root" + RandomHex(8),
		RootSecret: RandomHex(20),
		bin:        bin,
		dir:        dir,
	}
	args := []string{
		"--port", "127.0.0.1:" + port,
		"--access", g.RootKey, "--secret", g.RootSecret,
		"--iam-dir", iamDir,
		"--region", region,
		"--quiet",
		"posix", dataDir,
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = MinimalEnv() // versitygw reads many VGW_*/ROOT_* variables; keep the caller's out
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	exited := make(chan error, 1)
	if err := StartLocked(cmd, exited); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	g.cmd = cmd
	if err := waitListening(g.Endpoint, exited, 15*time.Second); err != nil {
		_ = cmd.Process.Kill()
		logTail, _ := os.ReadFile(logFile.Name())
		if len(logTail) > 2000 {
			logTail = logTail[len(logTail)-2000:]
		}
		return nil, fmt.Errorf("versitygw on port %s: %w; log: %s", port, err, bytes.TrimSpace(logTail))
	}
	ok = true
	return g, nil
}

func waitListening(endpoint string, exited <-chan error, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited during startup: %v", err)
		default:
		}
		resp, err := client.Get(endpoint + "/") // any HTTP answer (403 for anonymous) means ready
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after %v: %w", timeout, err)
		}
		time.Sleep(delay)
	}
}

func (g *GW) stop() {
	if g.cmd != nil && g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
	}
	_ = os.RemoveAll(g.dir)
}

// removeStaleGWDirs removes data directories of gateways whose test process is gone.
func removeStaleGWDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), gwDirPattern+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// S3Client returns an SDK client for the gateway signed with the given credentials (path-style,
// region g.Region, no shared config or environment, SDK body checksums only when required).
func (g *GW) S3Client(key, secret string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     g.Region,
		BaseEndpoint:               aws.String(g.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(key, secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           1,
	})
}

// RootClient is S3Client with the root credentials.
func (g *GW) RootClient() *s3.Client { return g.S3Client(g.RootKey, g.RootSecret) }

// NewBucket creates a fresh, uniquely named, empty bucket owned by root and returns its name.
// It refuses (fails the test) to hand out an existing bucket that holds objects.
func (g *GW) NewBucket(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := "test-" + RandomHex(8)
	c := g.RootClient()
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	var owned *types.BucketAlreadyOwnedByYou
	switch {
	case err == nil:
	case errors.As(err, &owned):
		out, lerr := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(name), MaxKeys: aws.Int32(1)})
		if lerr != nil {
			t.Fatalf("list existing bucket %s: %v", name, lerr)
		}
		if len(out.Contents) > 0 {
			t.Fatalf("refusing to use non-empty existing bucket %s", name)
		}
	default:
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// CreateUser creates a gateway user with role "user" (no access to root's buckets unless a
// bucket policy grants it).
func (g *GW) CreateUser(t testing.TB, key, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, "admin",
		"--access", g.RootKey, "--secret", g.RootSecret, "--region", g.Region,
		"--endpoint-url", g.Endpoint,
		"create-user", "--access", key, "--secret", secret, "--role", "user")
	cmd.Env = MinimalEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("versitygw admin create-user %s: %v: %s", key, err, bytes.TrimSpace(out))
	}
}

// PutBucketPolicy sets the bucket's policy (as root).
func (g *GW) PutBucketPolicy(t testing.TB, bucket, policyJSON string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := g.RootClient().PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{
		Bucket: aws.String(bucket),
		Policy: aws.String(policyJSON),
	})
	if err != nil {
		t.Fatalf("put bucket policy on %s: %v", bucket, err)
	}
}

// SeedActions returns (a fresh copy of) the actions of the "seed" policy: what the product's
// recommended least-privilege policy grants. s3:AbortMultipartUpload is deliberately absent.
func SeedActions() []string {
	return []string{
		"s3:GetBucketLocation",
		"s3:ListBucket",
		"s3:PutObject",
		"s3:GetObject",
		"s3:DeleteObject",
	}
}

// SeedPolicy is BucketPolicy(bucket, user, SeedActions()).
func SeedPolicy(bucket, user string) string {
	return BucketPolicy(bucket, user, SeedActions())
}

// BucketPolicy returns a bucket policy JSON allowing user (an access key id) the given actions
// on the bucket and every object in it.
func BucketPolicy(bucket, user string, actions []string) string {
	type principal struct {
		AWS []string `json:"AWS"`
	}
	type statement struct {
		Effect    string    `json:"Effect"`
		Principal principal `json:"Principal"`
		Action    []string  `json:"Action"`
		Resource  []string  `json:"Resource"`
	}
	doc := struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}{
		Version: "2012-10-17",
		Statement: []statement{{
			Effect:    "Allow",
			Principal: principal{AWS: []string{user}},
			Action:    actions,
			Resource:  []string{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"},
		}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err) // static shape: cannot fail
	}
	return string(b)
}
