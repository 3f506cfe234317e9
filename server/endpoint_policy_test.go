package server_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/prototext"

	pb "backupstore/proto/backupstore/v1"
)

// Issue 10, item 5: a tenant's endpoint cannot make backupd a proxy into its
// own network. Every address here is loopback; newEnv allows 127.0.0.1/32
// only, as an operator allows an on-premises S3 with --allow-endpoints.

// countingListener accepts connections on addr and counts them.
func countingListener(t *testing.T, addr string) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), &n
}

func TestRegisterRefusesEndpointOutsideThePolicy(t *testing.T) {
	e := newEnv(t, "sqlite")
	for _, addr := range []string{"127.0.0.2:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			got, accepted := countingListener(t, addr)
			req := e.req("refused", "bucket-x", "AKIAEXAMPLE", "secret-for-refused-endpoint-1")
			req.Endpoint = "http://" + got
			_, err := e.client.RegisterStorage(as(tokenA), req)
			st := wantCode(t, err, codes.InvalidArgument, "ENDPOINT_NOT_ALLOWED")
			if !strings.Contains(st.Message(), "--allow-endpoints") || !strings.Contains(st.Message(), req.Endpoint) {
				t.Errorf("message does not say what to do: %s", st.Message())
			}
			list, err := e.client.ListStorages(as(tokenA), &pb.ListStoragesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.GetStorages()) != 0 {
				t.Errorf("a refused registration was stored: %v", list.GetStorages())
			}
			time.Sleep(20 * time.Millisecond)
			if n := accepted.Load(); n != 0 {
				t.Errorf("the refused endpoint accepted %d connections", n)
			}
		})
	}
}

func TestValidationCarriesNoRemoteText(t *testing.T) {
	e := newEnv(t, "sqlite")
	const secret = "hunter2-internal-db-password"
	var requests atomic.Int32
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>VaultSealedOops</Code><Message>%s at http://10.9.8.7/admin on vault.internal</Message></Error>`, secret)
	}))
	defer fake.Close()
	req := e.req("fake", "bucket-x", "AKIAEXAMPLE", "secret-for-fake-endpoint-1")
	req.Endpoint = fake.URL
	_, err := e.client.RegisterStorage(as(tokenA), req)
	st := wantCode(t, err, codes.FailedPrecondition, "STORAGE_VALIDATION_FAILED")
	if requests.Load() == 0 {
		t.Fatal("the fake endpoint was not asked")
	}
	var text strings.Builder
	text.WriteString(st.Message())
	for _, d := range st.Details() {
		fmt.Fprintf(&text, "%v\n", d)
	}
	if rep := reportOf(st); rep == nil {
		t.Error("no report in the error")
	} else {
		text.WriteString(prototext.Format(rep))
		if c := rep.GetProbes()[0].GetErrorCode(); c != "UnexpectedResponse" {
			t.Errorf("first probe code %q, want UnexpectedResponse", c)
		}
	}
	for _, s := range []string{secret, "VaultSealedOops", "10.9.8.7", "vault.internal"} {
		if strings.Contains(text.String(), s) {
			t.Errorf("the endpoint's text %q reached the tenant:\n%s", s, text.String())
		}
	}
}
