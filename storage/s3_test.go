package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backupstore/internal/testenv"
	"backupstore/storage"
	"backupstore/storage/storagetest"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// s3Config returns a config for a fresh bucket on g as root, with a key prefix.
func s3Config(t *testing.T, g *testenv.GW) storage.S3Config {
	t.Helper()
	return storage.S3Config{
		Region:          g.Region,
		Bucket:          g.NewBucket(t),
		AccessKeyID:     g.RootKey,
		SecretAccessKey: g.RootSecret,
		Endpoint:        g.Endpoint,
		PathStyle:       true,
		Prefix:          "tenant-1/",
		MaxAttempts:     1, // surface errors at once in tests
	}
}

func newS3(t *testing.T, cfg storage.S3Config) *storage.S3 {
	t.Helper()
	s, err := storage.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3Conformance(t *testing.T) {
	g := testenv.VersityGW(t)
	storagetest.Run(t, func(t *testing.T) storage.Store { return newS3(t, s3Config(t, g)) })
}

// recorder is an http.RoundTripper that records requests and can stand in for answers.
type recorder struct {
	mu       sync.Mutex
	reqs     []recorded
	override func(op string, r *http.Request) *http.Response // nil: send to the server
}

type recorded struct {
	op     string
	header http.Header
	part   int // UploadPart's part number
}

// operation names the S3 API a request calls (for the ones these tests look at).
func operation(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	}
	return r.Method
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	op := operation(r)
	rec.mu.Lock()
	part, _ := strconv.Atoi(r.URL.Query().Get("partNumber"))
	rec.reqs = append(rec.reqs, recorded{op: op, header: r.Header.Clone(), part: part})
	override := rec.override
	rec.mu.Unlock()
	if override != nil {
		if resp := override(op, r); resp != nil {
			return resp, nil
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// take returns and forgets the recorded requests.
func (rec *recorder) take() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := rec.reqs
	rec.reqs = nil
	return r
}

func count(reqs []recorded, op string) int {
	n := 0
	for _, r := range reqs {
		if r.op == op {
			n++
		}
	}
	return n
}

func checksumHeaders(h http.Header) []string {
	var found []string
	for k := range h {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-amz-checksum-") || lk == "x-amz-sdk-checksum-algorithm" {
			found = append(found, lk+"="+h.Get(k))
		}
	}
	slices.Sort(found)
	return found
}

func crcHeader(b []byte) string {
	var x [4]byte
	binary.BigEndian.PutUint32(x[:], crc32c(b))
	return base64.StdEncoding.EncodeToString(x[:])
}

// TestS3Headers checks what versitygw cannot: SSE-KMS is requested (versitygw ignores it), the
// SDK adds no body checksums of its own, and parts carry the service's CRC32C.
func TestS3Headers(t *testing.T) {
	g := testenv.VersityGW(t)
	rec := &recorder{}
	cfg := s3Config(t, g)
	cfg.KMSKeyID = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	cfg.HTTPClient = &http.Client{Transport: rec}
	cfg.SinglePutMax = storage.DefaultPartSize // sections beyond one part go multipart here
	s := newS3(t, cfg)
	ctx := t.Context()

	wantSSE := func(t *testing.T, r recorded) {
		t.Helper()
		if got := r.header.Get("X-Amz-Server-Side-Encryption"); got != "aws:kms" {
			t.Errorf("%s: x-amz-server-side-encryption = %q, want aws:kms", r.op, got)
		}
		if got := r.header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); got != cfg.KMSKeyID {
			t.Errorf("%s: x-amz-server-side-encryption-aws-kms-key-id = %q, want %q", r.op, got, cfg.KMSKeyID)
		}
	}

	t.Run("PutSingle", func(t *testing.T) {
		rec.take()
		if _, err := s.Put(ctx, "small", strings.NewReader("small body")); err != nil {
			t.Fatal(err)
		}
		reqs := rec.take()
		if len(reqs) != 1 || reqs[0].op != "PutObject" {
			t.Fatalf("requests %v, want one PutObject", reqs)
		}
		wantSSE(t, reqs[0])
		if h := checksumHeaders(reqs[0].header); len(h) != 0 {
			t.Errorf("PutObject carries SDK checksum headers %v", h)
		}
	})
	t.Run("PutMultipart", func(t *testing.T) {
		rec.take()
		body := bytes.Repeat([]byte("m"), 9<<20)
		if _, err := s.Put(ctx, "multi", struct{ io.Reader }{bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
		reqs := rec.take()
		if count(reqs, "CreateMultipartUpload") != 1 || count(reqs, "UploadPart") != 2 {
			t.Fatalf("requests %v, want one CreateMultipartUpload and two UploadPart", reqs)
		}
		for _, r := range reqs {
			switch r.op {
			case "CreateMultipartUpload":
				wantSSE(t, r)
				fallthrough
			case "UploadPart", "CompleteMultipartUpload":
				if h := checksumHeaders(r.header); len(h) != 0 {
					t.Errorf("%s (Put) carries SDK checksum headers %v", r.op, h)
				}
			}
		}
	})
	// A body that can be read twice is checksummed by the service, as its own multipart
	// uploads are: CRC32C in a signed header, UNSIGNED-PAYLOAD, on the PutObject or on every
	// part; nothing hashes it with SHA-256.
	t.Run("PutSection", func(t *testing.T) {
		for _, size := range []int{10, 2*storage.DefaultPartSize + 3} {
			rec.take()
			body := make([]byte, size)
			for i := range body {
				body[i] = byte(i * 7)
			}
			var r io.Reader = io.NewSectionReader(bytes.NewReader(body), 0, int64(size))
			if size < 100 {
				r = bytes.NewReader(body) // a pack, a file, a small chunk
			}
			info, err := s.Put(ctx, "section", r)
			if err != nil {
				t.Fatal(err)
			}
			reqs := rec.take()
			for _, r := range reqs {
				switch r.op {
				case "CreateMultipartUpload", "PutObject":
					wantSSE(t, r)
				}
				switch r.op {
				case "PutObject", "UploadPart":
					off := max(r.part-1, 0) * storage.DefaultPartSize
					part := body[off:min(off+storage.DefaultPartSize, size)]
					want := []string{"x-amz-checksum-crc32c=" + crcHeader(part)}
					if got := checksumHeaders(r.header); !slices.Equal(got, want) {
						t.Errorf("%d bytes: %s %d checksum headers %v, want %v", size, r.op, r.part, got, want)
					}
					if got := r.header.Get("X-Amz-Content-Sha256"); got != "UNSIGNED-PAYLOAD" {
						t.Errorf("%d bytes: %s: x-amz-content-sha256 = %q, want UNSIGNED-PAYLOAD", size, r.op, got)
					}
				}
			}
			wantOps := map[int][]int{10: {1, 0, 0}, 2*storage.DefaultPartSize + 3: {0, 1, 3}}[size]
			if count(reqs, "PutObject") != wantOps[0] || count(reqs, "CreateMultipartUpload") != wantOps[1] || count(reqs, "UploadPart") != wantOps[2] {
				t.Errorf("%d bytes: requests %v, want PutObject/Create/UploadPart %v", size, reqs, wantOps)
			}
			if info.Size != int64(size) {
				t.Errorf("%d bytes: Put = %+v", size, info)
			}
			if got := get(t, s, "section"); !bytes.Equal(got, body) {
				t.Fatalf("%d bytes: stored %d bytes that differ", size, len(got))
			}
		}
	})
	t.Run("ExplicitMultipart", func(t *testing.T) {
		rec.take()
		id, err := s.CreateMultipart(ctx, "explicit")
		if err != nil {
			t.Fatal(err)
		}
		body := []byte("the only part")
		etag, err := s.UploadPart(ctx, "explicit", id, 1, bytes.NewReader(body), int64(len(body)), crc32c(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompleteMultipart(ctx, "explicit", id, []storage.CompletedPart{{Number: 1, ETag: etag, CRC32C: crc32c(body)}}); err != nil {
			t.Fatal(err)
		}
		reqs := rec.take()
		for _, r := range reqs {
			switch r.op {
			case "CreateMultipartUpload":
				wantSSE(t, r)
				if got := r.header.Get("X-Amz-Checksum-Algorithm"); got != "CRC32C" {
					t.Errorf("CreateMultipartUpload: x-amz-checksum-algorithm = %q, want CRC32C", got)
				}
			case "UploadPart":
				want := []string{"x-amz-checksum-crc32c=" + crcHeader(body)}
				if got := checksumHeaders(r.header); !slices.Equal(got, want) {
					t.Errorf("UploadPart checksum headers %v, want %v", got, want)
				}
				if got := r.header.Get("X-Amz-Content-Sha256"); got != "UNSIGNED-PAYLOAD" {
					t.Errorf("UploadPart: x-amz-content-sha256 = %q, want UNSIGNED-PAYLOAD", got)
				}
			}
		}
		if count(reqs, "UploadPart") != 1 || count(reqs, "CreateMultipartUpload") != 1 {
			t.Fatalf("requests %v", reqs)
		}
	})
	t.Run("UnseekablePart", func(t *testing.T) {
		id, err := s.CreateMultipart(ctx, "unseekable")
		if err != nil {
			t.Fatal(err)
		}
		body := []byte("streamed part")
		r := struct{ io.Reader }{bytes.NewReader(body)}
		if _, err := s.UploadPart(ctx, "unseekable", id, 1, r, int64(len(body)), crc32c(body)); err != nil {
			t.Fatalf("UploadPart from a non-seekable reader over http: %v", err)
		}
		if err := s.AbortMultipart(ctx, "unseekable", id); err != nil {
			t.Fatal(err)
		}
	})
}

// TestS3PutLargeIsMultipart: a 64 MiB Put really goes multipart, in 8 MiB parts.
func TestS3PutLargeIsMultipart(t *testing.T) {
	g := testenv.VersityGW(t)
	rec := &recorder{}
	cfg := s3Config(t, g)
	cfg.HTTPClient = &http.Client{Transport: rec}
	s := newS3(t, cfg)
	const size = 64<<20 + 1
	info, err := s.Put(t.Context(), "large", struct{ io.Reader }{io.LimitReader(zeros{}, size)})
	if err != nil {
		t.Fatal(err)
	}
	reqs := rec.take()
	if n := count(reqs, "UploadPart"); n != 9 || count(reqs, "PutObject") != 0 {
		t.Errorf("Put of %d bytes sent %d UploadPart and %d PutObject, want 9 and 0", size, n, count(reqs, "PutObject"))
	}
	if !strings.HasSuffix(info.ETag, `-9"`) || info.Size != size {
		t.Errorf("Put = %+v, want size %d and a multipart ETag ending in -9", info, size)
	}
}

// TestS3PutSection: a body that is an *io.SectionReader (an index in its spool file) is sent
// in sections of itself (not copied into part buffers), multipart beyond the part size, and
// stored byte for byte; one read part way is sent from where it stands. No other test runs
// in parallel in this package, so the allocation count is this Put's.
func TestS3PutSection(t *testing.T) {
	g := testenv.VersityGW(t)
	rec := &recorder{}
	cfg := s3Config(t, g)
	cfg.HTTPClient = &http.Client{Transport: rec}
	cfg.SinglePutMax = storage.DefaultPartSize
	s := newS3(t, cfg)
	body := make([]byte, 2*storage.DefaultPartSize+12345)
	for i := range body {
		body[i] = byte(i*31 + i>>9)
	}
	src := bytes.NewReader(body)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	info, err := s.Put(t.Context(), "section", io.NewSectionReader(src, 0, int64(len(body))))
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > storage.DefaultPartSize {
		t.Errorf("Put of a %d-byte section allocated %d bytes: it was copied into part buffers", len(body), alloc)
	}
	if n := count(rec.take(), "UploadPart"); n != 3 || info.Size != int64(len(body)) {
		t.Errorf("Put = %+v with %d UploadPart, want size %d in 3 parts", info, n, len(body))
	}
	if got := get(t, s, "section"); !bytes.Equal(got, body) {
		t.Fatalf("stored %d bytes that differ from the %d sent", len(got), len(body))
	}
	// At the default SinglePutMax the same section is one PutObject.
	cfg.SinglePutMax = 0
	one := newS3(t, cfg)
	rec.take()
	if info, err := one.Put(t.Context(), "one", io.NewSectionReader(src, 0, int64(len(body)))); err != nil || info.Size != int64(len(body)) {
		t.Fatalf("Put = %+v, %v", info, err)
	}
	if reqs := rec.take(); len(reqs) != 1 || reqs[0].op != "PutObject" {
		t.Errorf("Put of a %d-byte section at the default SinglePutMax sent %v, want one PutObject", len(body), reqs)
	}
	if got := get(t, s, "one"); !bytes.Equal(got, body) {
		t.Fatalf("stored %d bytes that differ from the %d sent", len(got), len(body))
	}
	part := io.NewSectionReader(src, 0, 1000)
	if _, err := part.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if info, err = s.Put(t.Context(), "rest", part); err != nil || info.Size != 990 {
		t.Fatalf("Put of a section read part way = %+v, %v; want its last 990 bytes", info, err)
	}
	if got := get(t, s, "rest"); !bytes.Equal(got, body[10:1000]) {
		t.Fatalf("stored %d bytes, want the section's unread 990", len(got))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestS3SeedPolicy: under the seed policy (no s3:AbortMultipartUpload) everything the service
// needs works, and Abort fails with ErrAbortDenied.
func TestS3SeedPolicy(t *testing.T) {
	g := testenv.VersityGW(t)
	cfg := s3Config(t, g)
	user, secret := "seed"+randomHex(6), randomHex(20)
	g.CreateUser(t, user, secret)
	g.PutBucketPolicy(t, cfg.Bucket, testenv.SeedPolicy(cfg.Bucket, user))
	cfg.AccessKeyID, cfg.SecretAccessKey = user, secret
	s := newS3(t, cfg)
	ctx := t.Context()

	if loc, err := s.BucketLocation(ctx); err != nil || loc != "us-east-1" {
		t.Fatalf("BucketLocation = %q, %v; want us-east-1", loc, err)
	}
	if _, err := s.Put(ctx, "probe", strings.NewReader("probe")); err != nil {
		t.Fatal(err)
	}
	if err := s.List(ctx, "", func(storage.ObjectInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Head(ctx, "probe"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteObject(ctx, "probe"); err != nil {
		t.Fatal(err)
	}

	body := []byte("part")
	id, err := s.CreateMultipart(ctx, "mp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "mp", id, 1, bytes.NewReader(body), int64(len(body)), crc32c(body)); err != nil {
		t.Fatal(err)
	}
	err = s.AbortMultipart(ctx, "mp", id)
	if !errors.Is(err, storage.ErrAbortDenied) {
		t.Fatalf("Abort under the seed policy: %v, want ErrAbortDenied", err)
	}
	var denied *storage.AbortDeniedError
	if !errors.As(err, &denied) || denied.UploadID != id || denied.Key != "mp" || storage.ErrorCode(err) != "AccessDenied" {
		t.Fatalf("Abort error %#v (code %q), want an AbortDeniedError for mp/%s with code AccessDenied", err, storage.ErrorCode(err), id)
	}
}

// TestS3DeleteDenied: without s3:DeleteObject, DeleteObjects answers 200 with per-key
// AccessDenied, which Delete must surface.
func TestS3DeleteDenied(t *testing.T) {
	g := testenv.VersityGW(t)
	cfg := s3Config(t, g)
	user, secret := "nodel"+randomHex(6), randomHex(20)
	g.CreateUser(t, user, secret)
	actions := slices.DeleteFunc(testenv.SeedActions(), func(a string) bool { return a == "s3:DeleteObject" })
	g.PutBucketPolicy(t, cfg.Bucket, testenv.BucketPolicy(cfg.Bucket, user, actions))
	cfg.AccessKeyID, cfg.SecretAccessKey = user, secret
	s := newS3(t, cfg)
	ctx := t.Context()

	if _, err := s.Put(ctx, "kept", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	err := s.Delete(ctx, "kept", "missing")
	var de *storage.DeleteError
	if !errors.As(err, &de) || storage.ErrorCode(err) != "AccessDenied" {
		t.Fatalf("Delete without s3:DeleteObject: %v (code %q), want a DeleteError with AccessDenied", err, storage.ErrorCode(err))
	}
	if !slices.ContainsFunc(de.Keys, func(k *storage.DeleteObjectError) bool { return k.Key == "kept" }) {
		t.Errorf("DeleteError does not name key kept (relative to the prefix): %v", de)
	}
	if !errors.Is(err, storage.ErrAccessDenied) {
		t.Errorf("Delete without s3:DeleteObject: %v is not ErrAccessDenied", err)
	}
	if err := s.DeleteObject(ctx, "kept"); storage.ErrorCode(err) != "AccessDenied" || !errors.Is(err, storage.ErrAccessDenied) {
		t.Errorf("DeleteObject without s3:DeleteObject: %v, want AccessDenied (ErrAccessDenied)", err)
	}
	if _, err := s.Head(ctx, "kept"); err != nil {
		t.Errorf("object gone after denied deletes: %v", err)
	}
}

func TestS3ErrorCodes(t *testing.T) {
	g := testenv.VersityGW(t)
	eu := testenv.VersityGWRegion(t, "eu-west-1")
	base := s3Config(t, g)
	euBucket := eu.NewBucket(t)
	const secretMarker = "Secret-Never-Shown-0123456789"
	for _, tc := range []struct {
		name string
		edit func(c *storage.S3Config)
		want string
	}{
		{"WrongSecret", func(c *storage.S3Config) { c.SecretAccessKey = secretMarker }, "SignatureDoesNotMatch"},
		{"UnknownKey", func(c *storage.S3Config) { c.AccessKeyID, c.SecretAccessKey = "AKIDUNKNOWN", secretMarker }, "InvalidAccessKeyId"},
		{"MissingBucket", func(c *storage.S3Config) { c.Bucket = "no-such-bucket-" + randomHex(4) }, "NoSuchBucket"},
		{"WrongRegion", func(c *storage.S3Config) {
			c.Endpoint, c.Bucket, c.AccessKeyID, c.SecretAccessKey = eu.Endpoint, euBucket, eu.RootKey, eu.RootSecret
		}, "AuthorizationHeaderMalformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			s := newS3(t, cfg)
			_, err := s.BucketLocation(t.Context())
			if got := storage.ErrorCode(err); got != tc.want {
				t.Fatalf("BucketLocation: code %q (%v), want %s", got, err, tc.want)
			}
			if storage.IsUnavailable(err) {
				t.Errorf("%s classified as unavailable", tc.want)
			}
			if !errors.Is(err, storage.ErrAccessDenied) {
				t.Errorf("BucketLocation: %v is not ErrAccessDenied", err)
			}
			_, err = s.Put(t.Context(), "k", strings.NewReader("x"))
			if got := storage.ErrorCode(err); got != tc.want {
				t.Errorf("Put: code %q (%v), want %s", got, err, tc.want)
			}
			if !errors.Is(err, storage.ErrAccessDenied) {
				t.Errorf("Put: %v is not ErrAccessDenied", err)
			}
			if strings.Contains(err.Error(), secretMarker) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
	t.Run("MissingKeyIsNotRefused", func(t *testing.T) {
		_, err := newS3(t, base).Get(t.Context(), "missing", 0, -1)
		if !errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrAccessDenied) {
			t.Fatalf("Get of a missing key: %v, want ErrNotFound and not ErrAccessDenied", err)
		}
	})
	t.Run("EURegion", func(t *testing.T) {
		s := newS3(t, storage.S3Config{Region: "eu-west-1", Bucket: euBucket, AccessKeyID: eu.RootKey,
			SecretAccessKey: eu.RootSecret, Endpoint: eu.Endpoint, PathStyle: true})
		if loc, err := s.BucketLocation(t.Context()); err != nil || loc != "eu-west-1" {
			t.Fatalf("BucketLocation = %q, %v; want eu-west-1", loc, err)
		}
	})
}

// TestS3Unreachable: an endpoint that accepts and never answers, or refuses, fails within the
// configured bounds (not the caller's context) and is classified as unavailable.
func TestS3Unreachable(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var conns []net.Conn // held open, never answered
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for name, addr := range map[string]string{"Silent": silent.Addr().String(), "Refused": closedAddr} {
		t.Run(name, func(t *testing.T) {
			s := newS3(t, storage.S3Config{
				Region: "us-east-1", Bucket: "b", AccessKeyID: "k", SecretAccessKey: "s",
				Endpoint: "http://" + addr, PathStyle: true,
				DialTimeout: time.Second, ResponseTimeout: 500 * time.Millisecond, MaxAttempts: 2,
			})
			start := time.Now()
			_, err := s.Head(context.Background(), "key")
			elapsed := time.Since(start)
			if err == nil || !storage.IsUnavailable(err) {
				t.Fatalf("Head: %v, want an unavailable error", err)
			}
			if elapsed > 5*time.Second {
				t.Fatalf("Head took %v", elapsed)
			}
			t.Logf("failed after %v: %v", elapsed.Round(time.Millisecond), err)
		})
	}
}

// TestS3Prefix: the key prefix is applied on the wire and hidden from callers.
func TestS3Prefix(t *testing.T) {
	g := testenv.VersityGW(t)
	cfg := s3Config(t, g)
	cfg.Prefix = "/tenant/a/"
	s := newS3(t, cfg)
	ctx := t.Context()
	root := g.RootClient()
	for _, k := range []string{"outside", "tenant/ab", "tenant/b/x"} {
		if _, err := root.PutObject(ctx, &s3.PutObjectInput{Bucket: &cfg.Bucket, Key: aws.String(k), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, "x/y", strings.NewReader("inside")); err != nil {
		t.Fatal(err)
	}
	if _, err := root.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: aws.String("tenant/a/x/y")}); err != nil {
		t.Fatalf("object not under the prefix: %v", err)
	}
	var got []string
	if err := s.List(ctx, "", func(o storage.ObjectInfo) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"x/y"}) {
		t.Fatalf("List = %q, want [x/y]", got)
	}
}

// TestS3CompleteAfterNoSuchUpload: where the server answers a repeated Complete with
// NoSuchUpload (AWS may; versitygw does not), the object is accepted only if its ETag is the
// one these parts produce.
func TestS3CompleteAfterNoSuchUpload(t *testing.T) {
	g := testenv.VersityGW(t)
	rec := &recorder{}
	cfg := s3Config(t, g)
	cfg.HTTPClient = &http.Client{Transport: rec}
	s := newS3(t, cfg)
	ctx := t.Context()
	p1, p2 := bytes.Repeat([]byte("1"), storage.MinPartSize), []byte("2")
	id, err := s.CreateMultipart(ctx, "obj")
	if err != nil {
		t.Fatal(err)
	}
	var parts []storage.CompletedPart
	for i, b := range [][]byte{p1, p2} {
		etag, err := s.UploadPart(ctx, "obj", id, int32(i+1), bytes.NewReader(b), int64(len(b)), crc32c(b))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, storage.CompletedPart{Number: int32(i + 1), ETag: etag, CRC32C: crc32c(b)})
	}
	first, err := s.CompleteMultipart(ctx, "obj", id, parts)
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.override = func(op string, r *http.Request) *http.Response {
		if op != "CompleteMultipartUpload" {
			return nil
		}
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>`
		return &http.Response{StatusCode: 404, Status: "404 Not Found", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: r}
	}
	rec.mu.Unlock()

	again, err := s.CompleteMultipart(ctx, "obj", id, parts)
	if err != nil || again.ETag != first.ETag || again.Size != first.Size {
		t.Fatalf("repeated Complete answered NoSuchUpload: got %+v, %v; want %+v", again, err, first)
	}
	other := slices.Clone(parts)
	other[1].ETag = `"00000000000000000000000000000000"`
	if _, err := s.CompleteMultipart(ctx, "obj", id, other); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Complete with other parts after NoSuchUpload: %v, want ErrNotFound", err)
	}
}

func TestNewS3RejectsBadConfig(t *testing.T) {
	const secret = "Secret-Never-Shown-0123456789"
	good := storage.S3Config{Region: "us-east-1", Bucket: "b", AccessKeyID: "AKID", SecretAccessKey: secret}
	if _, err := storage.NewS3(good); err != nil {
		t.Fatalf("NewS3(good): %v", err)
	}
	for name, edit := range map[string]func(*storage.S3Config){
		"NoRegion":         func(c *storage.S3Config) { c.Region = "" },
		"NoBucket":         func(c *storage.S3Config) { c.Bucket = "" },
		"NoAccessKey":      func(c *storage.S3Config) { c.AccessKeyID = "" },
		"NoSecret":         func(c *storage.S3Config) { c.SecretAccessKey = "" },
		"EndpointScheme":   func(c *storage.S3Config) { c.Endpoint = "ftp://host" },
		"EndpointUserinfo": func(c *storage.S3Config) { c.Endpoint = "http://u:" + secret + "@host" },
		"EndpointNoHost":   func(c *storage.S3Config) { c.Endpoint = "http://" },
		"PartSize":         func(c *storage.S3Config) { c.PartSize = 1 << 20 },
		"SinglePutMax":     func(c *storage.S3Config) { c.SinglePutMax = 6 << 30 },
		"Prefix":           func(c *storage.S3Config) { c.Prefix = "a/../b" },
		"Negative":         func(c *storage.S3Config) { c.DialTimeout = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			edit(&cfg)
			_, err := storage.NewS3(cfg)
			if err == nil {
				t.Fatal("NewS3 accepted it")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error shows the secret: %v", err)
			}
		})
	}
}

// TestS3FailedPutLeavesNoUpload: a multipart Put cancelled midway aborts its upload although
// its context is dead.
func TestS3FailedPutLeavesNoUpload(t *testing.T) {
	g := testenv.VersityGW(t)
	cfg := s3Config(t, g)
	s := newS3(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	r := io.MultiReader(io.LimitReader(zeros{}, 20<<20), readerFunc(func([]byte) (int, error) {
		cancel()
		return 0, context.Canceled
	}))
	if _, err := s.Put(ctx, "cancelled", r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put: %v, want context.Canceled", err)
	}
	noUploadsLeft(t, g, cfg.Bucket)
}

// A section whose reads fail in its second part: the multipart Put fails naming the cause and
// aborts its upload.
func TestS3FailedSectionPutLeavesNoUpload(t *testing.T) {
	g := testenv.VersityGW(t)
	cfg := s3Config(t, g)
	cfg.SinglePutMax = storage.DefaultPartSize
	s := newS3(t, cfg)
	size := int64(3*storage.DefaultPartSize + 5)
	broken := errors.New("spool read failed")
	r := readerAtFunc(func(p []byte, off int64) (int, error) {
		if off+int64(len(p)) > storage.DefaultPartSize+100 {
			return 0, broken
		}
		clear(p)
		return len(p), nil
	})
	if _, err := s.Put(t.Context(), "broken", io.NewSectionReader(r, 0, size)); !errors.Is(err, broken) {
		t.Fatalf("Put: %v, want the read's error", err)
	}
	noUploadsLeft(t, g, cfg.Bucket)
	if _, err := s.Head(t.Context(), "broken"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Head after the failed Put: %v, want ErrNotFound", err)
	}
}

// noUploadsLeft fails t if the bucket has a multipart upload in progress.
func noUploadsLeft(t *testing.T, g *testenv.GW, bucket string) {
	t.Helper()
	out, err := g.RootClient().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left, first %s", len(out.Uploads), aws.ToString(out.Uploads[0].Key))
	}
}

type readerAtFunc func([]byte, int64) (int, error)

func (f readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// ListMultipart follows ListMultipartUploads' markers (one upload a page here) and sees nothing
// under another store's prefix. versitygw refuses an upload id marker amid one key's uploads;
// the listing then goes on after that key, so uploads of a key may be missed but every key is
// seen and nothing is listed twice (on AWS every upload is listed).
func TestS3ListMultipartPaging(t *testing.T) {
	g := testenv.VersityGW(t)
	cfg := s3Config(t, g)
	cfg.ListPageSize = 1
	s := newS3(t, cfg)
	cfg.Prefix = "tenant-2/"
	other := newS3(t, cfg)
	ctx := t.Context()
	if _, err := other.CreateMultipart(ctx, "a/x"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // id -> key
	for _, key := range []string{"c", "a/x", "a/y", "b", "a/x"} {
		id, err := s.CreateMultipart(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = key
	}
	seen := map[string]bool{}
	var keys []string
	err := s.ListMultipart(ctx, "", func(u storage.MultipartUpload) error {
		if seen[u.UploadID] || want[u.UploadID] != u.Key {
			t.Errorf("upload %s of %q listed twice or not ours", u.UploadID, u.Key)
		}
		seen[u.UploadID] = true
		if len(keys) == 0 || keys[len(keys)-1] != u.Key {
			keys = append(keys, u.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"a/x", "a/y", "b", "c"}) {
		t.Fatalf("listed keys %v, want every key in order", keys)
	}
}

func get(t *testing.T, s *storage.S3, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return b
}
