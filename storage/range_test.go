package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"backupstore/internal/testenv"
	"backupstore/storage"
)

// endless is a body that never ends.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func (e *endless) Close() error { return nil }

// ignoresRange is a Store whose Get ignores the range and answers with an endless body, as a
// misbehaving server or proxy could.
type ignoresRange struct {
	storage.Store
	body *endless
}

func (s *ignoresRange) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	return s.body, nil
}

func wantBadResponse(t *testing.T, what string, err error, key string) {
	t.Helper()
	if !errors.Is(err, storage.ErrBadResponse) || !strings.Contains(err.Error(), key) {
		t.Fatalf("%s: error %v, want ErrBadResponse naming %q", what, err, key)
	}
}

// ReaderAt reads at most len(p)+1 bytes of a ranged body and refuses one that goes on.
func TestReaderAtRefusesLongerBody(t *testing.T) {
	local, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := local.Put(t.Context(), "k/obj", strings.NewReader("0123456789")); err != nil {
		t.Fatal(err)
	}
	st := &ignoresRange{Store: local, body: &endless{}}
	p := make([]byte, 4)
	n, err := storage.NewReaderAt(t.Context(), st, "k/obj").ReadAt(p, 2)
	wantBadResponse(t, "ReadAt of an endless body", err, "k/obj")
	if n != 0 || st.body.n > 4096 {
		t.Fatalf("ReadAt returned %d bytes and read %d of the endless body", n, st.body.n)
	}
	// The honest store: exact ranges, and the object's end.
	ra := storage.NewReaderAt(t.Context(), local, "k/obj")
	if n, err := ra.ReadAt(p, 2); err != nil || string(p[:n]) != "2345" {
		t.Fatalf("ReadAt(4 at 2) = %q, %v", p[:n], err)
	}
	if n, err := ra.ReadAt(p, 8); err != io.EOF || string(p[:n]) != "89" {
		t.Fatalf("ReadAt(4 at 8) = %q, %v, want 89, EOF", p[:n], err)
	}
	if n, err := ra.ReadAt(p, 6); err != nil || string(p[:n]) != "6789" {
		t.Fatalf("ReadAt(4 at 6) = %q, %v", p[:n], err)
	}
}

// A detached ReaderAt outlives the context of whoever opened it and counts its GETs and bytes.
func TestDetachedReaderAtCounts(t *testing.T) {
	local, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := local.Put(t.Context(), "k/obj", strings.NewReader("0123456789")); err != nil {
		t.Fatal(err)
	}
	var reads, bytes atomic.Int64
	ra := storage.NewDetachedReaderAt(local, "k/obj", time.Minute)
	ra.Reads, ra.Bytes = &reads, &bytes
	p := make([]byte, 4)
	if n, err := ra.ReadAt(p, 1); err != nil || string(p[:n]) != "1234" {
		t.Fatalf("ReadAt(4 at 1) = %q, %v", p[:n], err)
	}
	if n, err := ra.ReadAt(p, 7); err != io.EOF || string(p[:n]) != "789" {
		t.Fatalf("ReadAt(4 at 7) = %q, %v, want 789, EOF", p[:n], err)
	}
	if reads.Load() != 2 || bytes.Load() != 7 {
		t.Fatalf("counted %d GETs and %d bytes, want 2 and 7", reads.Load(), bytes.Load())
	}
}

// brokenBody fails after its bytes, as a network cut would.
type brokenBody struct{ left int }

var errCut = errors.New("connection reset")

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, errCut
	}
	n := min(len(p), b.left)
	b.left -= n
	return n, nil
}

// CountingReader counts, keeps its source's failure (not io.EOF), and stops once its context is done.
func TestCountingReader(t *testing.T) {
	c := &storage.CountingReader{R: strings.NewReader("abcdef")}
	if b, err := io.ReadAll(c); err != nil || string(b) != "abcdef" || c.N != 6 || c.Err != nil {
		t.Fatalf("clean read: %q, %v, N=%d, Err=%v", b, err, c.N, c.Err)
	}
	c = &storage.CountingReader{R: &brokenBody{left: 5}}
	if _, err := io.ReadAll(c); !errors.Is(err, errCut) || c.N != 5 || !errors.Is(c.Err, errCut) {
		t.Fatalf("cut read: %v, N=%d, Err=%v", err, c.N, c.Err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c = &storage.CountingReader{R: strings.NewReader("abc"), Ctx: ctx}
	if n, err := c.Read(make([]byte, 3)); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %d, %v", n, err)
	}
}

func TestExactBody(t *testing.T) {
	read := func(body string, n int64) (string, error) {
		b, err := io.ReadAll(storage.ExactBody("get \"k\"", io.NopCloser(strings.NewReader(body)), n))
		return string(b), err
	}
	if got, err := read("abcd", 4); err != nil || got != "abcd" {
		t.Errorf("exact: %q, %v", got, err)
	}
	_, err := read("abcde", 4)
	wantBadResponse(t, "longer", err, `"k"`)
	_, err = read("abc", 4)
	wantBadResponse(t, "shorter", err, `"k"`)
	e := &endless{}
	_, err = io.ReadAll(storage.ExactBody("get \"k\"", e, 10))
	wantBadResponse(t, "endless", err, `"k"`)
	if e.n > 64<<10 {
		t.Errorf("read %d bytes of an endless body for 10 asked", e.n)
	}
}

// S3.Get accepts only the range it asked for: a server that ignores Range (200 with the whole
// object, or without end), or answers another range, is ErrBadResponse naming the key.
func TestS3GetChecksRange(t *testing.T) {
	g := testenv.VersityGW(t)
	rec := &recorder{}
	cfg := s3Config(t, g)
	cfg.HTTPClient = &http.Client{Transport: rec}
	s := newS3(t, cfg)
	ctx := t.Context()
	body := bytes.Repeat([]byte("0123456789"), 1000)
	if _, err := s.Put(ctx, "obj", bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	get := func(offset, length int64) ([]byte, error) {
		rc, err := s.Get(ctx, "obj", offset, length)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	// Honest server.
	for _, tc := range []struct{ off, n int64 }{{0, 10}, {5, 20}, {9990, 100}, {100, -1}, {0, -1}} {
		got, err := get(tc.off, tc.n)
		end := int64(len(body))
		if tc.n >= 0 && tc.off+tc.n < end {
			end = tc.off + tc.n
		}
		if err != nil || !bytes.Equal(got, body[tc.off:end]) {
			t.Fatalf("Get(%d, %d): %d bytes, %v", tc.off, tc.n, len(got), err)
		}
	}
	for _, tc := range []struct {
		name string
		fake func(r *http.Request) *http.Response
	}{
		{"range ignored", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)),
				ContentLength: int64(len(body)), Request: r}
		}},
		{"endless 200", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: &endless{}, ContentLength: -1, Request: r}
		}},
		{"other range", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 206, Header: http.Header{"Content-Range": {"bytes 0-9/10000"}},
				Body: io.NopCloser(bytes.NewReader(body[:10])), ContentLength: 10, Request: r}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.mu.Lock()
			rec.override = func(op string, r *http.Request) *http.Response {
				if op == http.MethodGet && r.Header.Get("Range") != "" {
					return tc.fake(r)
				}
				return nil
			}
			rec.mu.Unlock()
			_, err := get(5, 10)
			wantBadResponse(t, "Get(5, 10)", err, `"obj"`)
		})
	}
	// The right Content-Range, but a body without end (chunked): cut at the range, then refused.
	e := &endless{}
	rec.mu.Lock()
	rec.override = func(op string, r *http.Request) *http.Response {
		if op == http.MethodGet && r.Header.Get("Range") != "" {
			return &http.Response{StatusCode: 206, Header: http.Header{"Content-Range": {"bytes 5-14/10000"}}, Body: e, ContentLength: -1, Request: r}
		}
		return nil
	}
	rec.mu.Unlock()
	got, err := get(5, 10)
	wantBadResponse(t, "Get(5, 10) of an endless 206", err, `"obj"`)
	if len(got) != 10 || e.n > 64<<10 {
		t.Fatalf("got %d bytes, read %d of the endless body", len(got), e.n)
	}
}
