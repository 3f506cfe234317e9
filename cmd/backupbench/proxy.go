package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// s3Proxy is a reverse proxy on 127.0.0.1 in front of the gateway that records every request
// (operation, key, range, response body bytes, time to the end of the response): backupd is a
// child process, so this is how the benchmark sees the S3 traffic a call causes. A storage
// registered with the proxy's endpoint sends its requests here; the Host header is passed on
// unchanged, so the SigV4 signatures made for the proxy's address still verify at the gateway.
type s3Proxy struct {
	endpoint string
	bucket   string
	srv      *http.Server

	mu  sync.Mutex
	log []proxyReq
}

// proxyReq is one proxied request.
type proxyReq struct {
	Op       string // get, get-range, head, put, list, delete-objects, delete-object, other
	Key      string // path-style key, bucket stripped
	Off, Len int64  // the Range asked for; Len -1 without one
	Status   int
	BytesOut int64 // response body bytes
	BytesIn  int64 // request body bytes
	Dur      time.Duration
}

func startProxy(target, bucket string) (*s3Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &s3Proxy{endpoint: "http://" + ln.Addr().String(), bucket: bucket}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // signed by the client
		},
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
			DisableCompression: true, ResponseHeaderTimeout: 5 * time.Minute},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		in := &countingBody{ReadCloser: r.Body}
		r.Body = in
		cw := &countingResponse{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(cw, r)
		rec := proxyReq{Op: s3Op(r), Key: p.key(r.URL.Path), Len: -1, Status: cw.status, BytesOut: cw.n, BytesIn: in.n, Dur: time.Since(t0)}
		rec.Off, rec.Len = parseRange(r.Header.Get("Range"))
		p.mu.Lock()
		p.log = append(p.log, rec)
		p.mu.Unlock()
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *s3Proxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}

// mark returns a position in the log; since(mark) returns the requests after it.
func (p *s3Proxy) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.log)
}

func (p *s3Proxy) since(mark int) []proxyReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxyReq(nil), p.log[mark:]...)
}

func (p *s3Proxy) key(path string) string {
	path = strings.TrimPrefix(path, "/")
	k, _ := strings.CutPrefix(path, p.bucket)
	return strings.TrimPrefix(k, "/")
}

func s3Op(r *http.Request) string {
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet:
		switch {
		case q.Has("list-type") || (r.URL.Path == "/" || strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0) && !q.Has("location"):
			return "list"
		case r.Header.Get("Range") != "":
			return "get-range"
		}
		return "get"
	case http.MethodHead:
		return "head"
	case http.MethodPut:
		return "put"
	case http.MethodPost:
		if q.Has("delete") {
			return "delete-objects"
		}
	case http.MethodDelete:
		return "delete-object"
	}
	return "other"
}

// parseRange reads "bytes=a-b" (off a, length b-a+1); anything else is (0, -1).
func parseRange(h string) (int64, int64) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, -1
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, -1
	}
	off, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || end < off {
		return 0, -1
	}
	return off, end - off + 1
}

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	if c.ReadCloser == nil {
		return 0, io.EOF
	}
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingBody) Close() error {
	if c.ReadCloser == nil {
		return nil
	}
	return c.ReadCloser.Close()
}

type countingResponse struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingResponse) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingResponse) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingResponse) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// traffic sums proxied requests.
type traffic struct {
	Requests int64
	Bytes    int64 // response body bytes
	Dur      time.Duration
}

func (t traffic) String() string {
	return fmt.Sprintf("%d requests, %d bytes, %s", t.Requests, t.Bytes, t.Dur.Round(time.Millisecond))
}

// sum adds up the requests for which keep is true (all with a nil keep).
func sum(reqs []proxyReq, keep func(proxyReq) bool) traffic {
	var t traffic
	for _, r := range reqs {
		if keep != nil && !keep(r) {
			continue
		}
		t.Requests++
		t.Bytes += r.BytesOut
		t.Dur += r.Dur
	}
	return t
}

// byOp groups requests by operation, for notes ("get-range 200 (1.2 MB, 0.3 s); list 1 …").
func byOp(reqs []proxyReq) string {
	ops := map[string]*traffic{}
	var names []string
	for _, r := range reqs {
		t := ops[r.Op]
		if t == nil {
			t = &traffic{}
			ops[r.Op] = t
			names = append(names, r.Op)
		}
		t.Requests++
		t.Bytes += r.BytesOut
		t.Dur += r.Dur
	}
	var parts []string
	for _, n := range names {
		t := ops[n]
		parts = append(parts, fmt.Sprintf("%s ×%d (%s out, %s)", n, t.Requests, fmtBytes(t.Bytes), t.Dur.Round(time.Millisecond)))
	}
	if len(parts) == 0 {
		return "no S3 requests"
	}
	return strings.Join(parts, "; ")
}

// failed returns an error naming the first request the gateway answered with an error status.
func failed(reqs []proxyReq) error {
	for _, r := range reqs {
		if r.Status >= 300 && !(r.Op == "head" && r.Status == http.StatusNotFound) {
			return fmt.Errorf("S3 %s %s answered %d", r.Op, r.Key, r.Status)
		}
	}
	return nil
}

func fmtBytes(n int64) string {
	switch {
	case n >= 10e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 10e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

var errNoSummary = errors.New("the stream ended without its summary message (cut short)")
