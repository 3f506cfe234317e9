package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/secrets"
)

// No test here opens a connection to anything but loopback: refusals of
// private, link-local and metadata addresses are shown through a stub
// resolver, and the dial must fail before connecting.

func mustPolicy(t *testing.T, allow string) *EndpointPolicy {
	t.Helper()
	p, err := ParseEndpointPolicy(allow)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseEndpointPolicy(t *testing.T) {
	p := mustPolicy(t, " 127.0.0.1, 10.0.0.0/8 ,,S3.Corp.Example.,*.minio.lan, ::1, 10.1.2.3/8")
	if got, want := p.String(), "127.0.0.1/32,10.0.0.0/8,::1/128,10.0.0.0/8,s3.corp.example,minio.lan"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "http://s3.corp", "s3.corp:9000", "fe80::1%eth0", "bad name", "a..b"} {
		if _, err := ParseEndpointPolicy(bad); err == nil {
			t.Errorf("ParseEndpointPolicy(%q) accepted it", bad)
		}
	}
	if p := mustPolicy(t, ""); len(p.cidrs)+len(p.names) != 0 {
		t.Errorf("empty policy allows %s", p)
	}
}

func TestEndpointPolicyAllows(t *testing.T) {
	for _, tc := range []struct {
		allow, host, ip string
		want            bool
	}{
		{"", "", "8.8.8.8", true}, // public (a pure function: nothing is dialled)
		{"", "", "2600:1f18::1", true},
		{"", "", "127.0.0.1", false},
		{"", "", "::1", false},
		{"", "", "::ffff:127.0.0.1", false},
		{"", "", "10.1.2.3", false},
		{"", "", "172.16.0.1", false},
		{"", "", "192.168.1.1", false},
		{"", "", "100.64.0.1", false},
		{"", "", "169.254.169.254", false},
		{"", "", "169.254.1.1", false},
		{"", "", "fe80::1", false},
		{"", "", "fd00:ec2::254", false},
		{"", "", "fc00::1", false},
		{"", "", "0.0.0.0", false},
		{"", "", "::", false},
		{"", "", "224.0.0.1", false},
		{"", "", "255.255.255.255", false},
		{"", "", "168.63.129.16", false}, // Azure's wire server is a public address
		{"", "", "100.100.100.200", false},
		{"", "", "64:ff9b::a01:203", false},
		{"127.0.0.1/32", "", "127.0.0.1", true},
		{"127.0.0.1/32", "", "::ffff:127.0.0.1", true},
		{"127.0.0.1/32", "", "127.0.0.2", false},
		{"127.0.0.1/32", "", "::1", false},
		{"10.0.0.0/8", "", "10.1.2.3", true},
		{"10.1.2.3", "", "10.1.2.3", true},
		{"10.0.0.0/7", "", "10.1.2.3", false}, // broader than the reserved block
		{"0.0.0.0/0,::/0", "", "10.1.2.3", false},
		{"0.0.0.0/0", "", "169.254.169.254", false},
		{"169.254.0.0/16", "", "169.254.1.1", true},
		{"169.254.0.0/16", "", "169.254.169.254", false}, // metadata is its own block
		{"169.254.169.254/32", "", "169.254.169.254", true},
		{"100.64.0.0/10", "", "100.100.100.200", false},
		{"fc00::/7", "", "fd00:ec2::254", false},
		{"s3.corp", "s3.corp", "10.1.2.3", true},
		{"s3.corp", "bucket.s3.corp", "10.1.2.3", true}, // virtual-hosted bucket name
		{"s3.corp", "S3.CORP.", "127.0.0.1", true},
		{"s3.corp", "s3.corp", "fd12::1", true},
		{"s3.corp", "s3.corp", "169.254.169.254", false},
		{"s3.corp", "s3.corp", "fd00:ec2::254", false},
		{"s3.corp", "s3.corp", "169.254.1.1", false},
		{"s3.corp", "s3.corp", "0.0.0.0", false},
		{"s3.corp", "evil-s3.corp", "10.1.2.3", false},
		{"s3.corp", "s3.corp.evil.example", "10.1.2.3", false},
		{"s3.corp,169.254.169.254/32", "s3.corp", "169.254.169.254", true},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s", tc.allow, tc.host, tc.ip), func(t *testing.T) {
			p := mustPolicy(t, tc.allow)
			got, class := p.allows(netip.MustParseAddr(tc.ip), p.nameAllowed(tc.host))
			if got != tc.want {
				t.Errorf("allows = %v (%s), want %v", got, class, tc.want)
			}
		})
	}
}

// listener accepts on addr and counts connections.
type listener struct {
	net.Listener
	accepted atomic.Int32
}

func listen(t *testing.T, addr string) *listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	ln := &listener{Listener: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ln.accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return ln
}

func TestDialRefusesLoopbackOutsideTheAllowList(t *testing.T) {
	dial := mustPolicy(t, "127.0.0.1/32").dialContext(time.Second)
	for _, addr := range []string{"127.0.0.2:0", "[::1]:0"} {
		ln := listen(t, addr)
		_, err := dial(context.Background(), "tcp", ln.Addr().String())
		var refused *EndpointRefusedError
		if !errors.As(err, &refused) || refused.Class != "loopback" {
			t.Errorf("dial %s: err = %v, want a refusal of a loopback address", ln.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
		if n := ln.accepted.Load(); n != 0 {
			t.Errorf("%s accepted %d connections", ln.Addr(), n)
		}
	}
	ln := listen(t, "127.0.0.1:0")
	c, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial the allowed %s: %v", ln.Addr(), err)
	}
	c.Close()
}

// stubDNS answers names from a table and records lookups.
type stubDNS struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr // successive answers; the last repeats
	asked   []string
}

func (s *stubDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, host)
	a, ok := s.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := a[0]
	if len(a) > 1 {
		s.answers[host] = a[1:]
	}
	return out, nil
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestDialRefusesNamesResolvingToNonPublicAddresses(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dns := &stubDNS{answers: map[string][][]netip.Addr{
		"metadata.test":  {addrs("169.254.169.254")},
		"private.test":   {addrs("10.0.0.5", "192.168.1.5")},
		"ula.test":       {addrs("fd00:ec2::254")},
		"linklocal.test": {addrs("fe80::1")},
		"s3.corp":        {addrs("169.254.169.254")},
		"cgnat.test":     {addrs("100.64.1.1")},
	}}
	p := mustPolicy(t, "127.0.0.1/32,s3.corp").withLookup(dns.lookup)
	dial := p.dialContext(time.Second)
	for _, host := range []string{"metadata.test", "private.test", "ula.test", "linklocal.test", "s3.corp", "cgnat.test"} {
		_, err := dial(context.Background(), "tcp", net.JoinHostPort(host, port))
		var refused *EndpointRefusedError
		if !errors.As(err, &refused) {
			t.Errorf("dial %s: err = %v, want a refusal", host, err)
			continue
		}
		if refused.RetryableError() {
			t.Errorf("a refusal is retryable")
		}
		if m := refused.message(); strings.Contains(m, refused.Addr.String()) {
			t.Errorf("the tenant's message names the address %s a name resolved to: %s", refused.Addr, m)
		}
		if rep := p.checkEndpoint(context.Background(), "http://"+net.JoinHostPort(host, port)); rep == nil {
			t.Errorf("registration check of %s passed", host)
		}
	}
	if n := ln.accepted.Load(); n != 0 {
		t.Errorf("loopback listener accepted %d connections", n)
	}
}

func TestDialChecksEveryConnectionAgainstDNSRebinding(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dns := &stubDNS{answers: map[string][][]netip.Addr{
		// First loopback (allowed by CIDR), then the metadata address.
		"rebind.test": {addrs("127.0.0.1"), addrs("169.254.169.254")},
		// A mixed answer: only the allowed address is dialled.
		"mixed.test": {addrs("169.254.169.254", "127.0.0.1")},
		// An allowed name may resolve to loopback.
		"s3.corp": {addrs("127.0.0.1")},
	}}
	p := mustPolicy(t, "127.0.0.1/32,s3.corp").withLookup(dns.lookup)
	if r := p.checkEndpoint(context.Background(), "http://rebind.test:"+port); r != nil {
		t.Fatalf("registration check refused %v", r)
	}
	dial := p.dialContext(time.Second)
	_, err := dial(context.Background(), "tcp", "rebind.test:"+port)
	var refused *EndpointRefusedError
	if !errors.As(err, &refused) || refused.Class != classMetadata {
		t.Errorf("dial after the name moved: err = %v, want a refusal of a metadata address", err)
	}
	for _, host := range []string{"mixed.test", "bucket.s3.corp"} {
		if host == "bucket.s3.corp" {
			dns.answers[host] = [][]netip.Addr{addrs("127.0.0.2")} // names open loopback, not just the CIDR
			ln2 := listen(t, "127.0.0.2:"+port)
			defer func() {
				if ln2.accepted.Load() == 0 {
					t.Errorf("allowed name bucket.s3.corp did not reach 127.0.0.2")
				}
			}()
		}
		c, err := dial(context.Background(), "tcp", net.JoinHostPort(host, port))
		if err != nil {
			t.Errorf("dial %s: %v", host, err)
			continue
		}
		c.Close()
	}
	time.Sleep(20 * time.Millisecond)
}

// testRegistry is a Registry enough to build clients and probe (no catalog).
func testRegistry(t *testing.T, allow string) *Registry {
	return &Registry{cfg: Config{DialTimeout: time.Second, StepTimeout: 3 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		endpoints: mustPolicy(t, allow)}
}

func probeEndpoint(t *testing.T, r *Registry, endpoint string) (*Report, error) {
	t.Helper()
	st := &metadata.Storage{ID: "stg-1", TenantID: "t", Region: "us-east-1", Bucket: "bkt", AccessKeyID: "AKIAEXAMPLE",
		Endpoint: endpoint, PathStyle: true}
	rep, _, err := r.probe(context.Background(), st, secrets.Secret("secret-example-123"))
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	return rep, err
}

func TestS3ClientDoesNotFollowRedirects(t *testing.T) {
	var second atomic.Int32
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		second.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer b.Close()
	var first atomic.Int32
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		first.Add(1)
		io.Copy(io.Discard, req.Body)
		http.Redirect(w, req, b.URL+req.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer a.Close()
	r := testRegistry(t, "127.0.0.1/32")
	rep, err := probeEndpoint(t, r, a.URL)
	if err == nil || rep.OK {
		t.Fatalf("probe of a redirecting endpoint passed: %+v", rep)
	}
	s3, err := r.newClient(&metadata.Storage{Region: "us-east-1", Bucket: "bkt", AccessKeyID: "AKIAEXAMPLE", Endpoint: a.URL, PathStyle: true},
		secrets.Secret("secret-example-123"))
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		a.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			first.Add(1)
			io.Copy(io.Discard, req.Body)
			http.Redirect(w, req, b.URL+req.URL.RequestURI(), code)
		})
		if _, err := s3.Put(context.Background(), "k", strings.NewReader("body")); err == nil {
			t.Errorf("Put through a %d passed", code)
		}
	}
	if first.Load() == 0 {
		t.Fatal("the first server saw no request")
	}
	if n := second.Load(); n != 0 {
		t.Errorf("the redirect target received %d requests", n)
	}
	t.Logf("report: %s", rep.Lines())
}

func TestReportCarriesNoRemoteText(t *testing.T) {
	const secret = "hunter2-db-password"
	remote := []string{secret, "10.9.8.7", "InternalProxyOops", "vault.internal"}
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		wantCode string
	}{
		{"odd code", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalProxyOops</Code><Message>%s at http://10.9.8.7/vault.internal</Message><RequestId>1</RequestId></Error>`, secret)
		}, codeUnexpected},
		{"known code, secret message", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<Error><Code>AccessDenied</Code><Message>%s http://10.9.8.7 vault.internal InternalProxyOops</Message></Error>`, secret)
		}, "AccessDenied"},
		{"html page", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, `<html><body><h1>InternalProxyOops</h1>%s 10.9.8.7 vault.internal</body></html>`, secret)
		}, ""},
		{"location is not a region", func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Query().Has("location") {
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><LocationConstraint>%s-10.9.8.7-vault.internal-InternalProxyOops</LocationConstraint>`, secret)
				return
			}
			w.WriteHeader(http.StatusForbidden)
		}, codeUnexpected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			rep, err := probeEndpoint(t, testRegistry(t, "127.0.0.1/32"), srv.URL)
			if err == nil || rep.OK {
				t.Fatalf("probe passed: %+v", rep)
			}
			js, _ := json.Marshal(rep)
			out := string(js) + rep.Lines() + rep.Summary() + err.Error()
			for _, s := range remote {
				if strings.Contains(out, s) {
					t.Errorf("report or error carries the endpoint's text %q:\n%s", s, out)
				}
			}
			if tc.wantCode != "" && rep.Probes[0].Code != tc.wantCode {
				t.Errorf("first probe code = %q, want %q", rep.Probes[0].Code, tc.wantCode)
			}
			for _, p := range rep.Probes {
				if p.Code != "" && p.Code != codeUnexpected && p.Code != codeEndpointNotAllowed && p.Code != "Unreachable" && !knownS3Codes[p.Code] {
					t.Errorf("probe %s names code %q, neither known nor ours", p.API, p.Code)
				}
			}
		})
	}
}

func TestRefusedEndpointIsNotContacted(t *testing.T) {
	ln := listen(t, "127.0.0.2:0")
	r := testRegistry(t, "127.0.0.1/32")
	rep, err := probeEndpoint(t, r, "http://"+ln.Addr().String())
	fe, ok := fault.As(err)
	if !ok || fe.Kind != fault.InvalidArgument || fe.Reason != "ENDPOINT_NOT_ALLOWED" || !strings.Contains(fe.Msg, "--allow-endpoints") ||
		!strings.Contains(fe.Msg, "loopback") {
		t.Fatalf("err = %#v, want InvalidArgument ENDPOINT_NOT_ALLOWED naming the class and --allow-endpoints", err)
	}
	t.Logf("message: %s", fe.Msg)
	if rep.OK || rep.Probes[0].Code != codeEndpointNotAllowed {
		t.Errorf("report: %s", rep.Lines())
	}
	time.Sleep(20 * time.Millisecond)
	if n := ln.accepted.Load(); n != 0 {
		t.Errorf("the refused endpoint accepted %d connections", n)
	}
}
