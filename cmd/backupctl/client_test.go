package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"backupstore/internal/testenv"
	pb "backupstore/proto/backupstore/v1"
)

// startTLSFake serves f over TLS with a server certificate for 127.0.0.1 from a fresh test CA
// and returns the address and the CA's PEM file.
func startTLSFake(t *testing.T, f *fakeStorage) (addr, caFile string) {
	t.Helper()
	ca := testenv.NewCA(t)
	leaf := ca.Server(t)
	addr = serveFake(t, func(srv *grpc.Server) { pb.RegisterStorageServiceServer(srv, f) },
		grpc.Creds(credentials.NewServerTLSFromCert(&leaf.Pair)))
	return addr, ca.File
}

func TestTLS(t *testing.T) {
	f := &fakeStorage{storages: sampleStorages(1)}
	addr, caFile := startTLSFake(t, f)

	r := runCLI(t, "", "--server", addr, "--tls-ca", caFile, "--token", "tok", "storage", "get", "id-0")
	if r.code != 0 {
		t.Fatalf("with --tls-ca: %v", r)
	}
	_, md, _ := f.snapshot()
	if got := md[0].Get("authorization"); len(got) != 1 || got[0] != "Bearer tok" {
		t.Errorf("authorization = %q", got)
	}

	// The system roots do not know the test CA; plaintext is not TLS.
	for _, args := range [][]string{{"--tls"}, {}} {
		r := runCLI(t, "", append([]string{"--server", addr, "--timeout", "5s", "storage", "get", "id-0"}, args...)...)
		if r.code != exitRetryable {
			t.Errorf("%v: want exit 5: %v", args, r)
		}
	}

	notPEM := filepath.Join(t.TempDir(), "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	r = runCLI(t, "", "--server", addr, "--tls-ca", notPEM, "storage", "get", "id-0")
	if r.code != exitUsage || !strings.Contains(r.stderr, "no PEM certificates") {
		t.Errorf("bad CA file: %v", r)
	}
}

// A token is never sent in plaintext to a server off loopback unless
// --insecure says a proxy terminates TLS: the refusal comes before any dial
// (nothing here leaves the machine).
func TestTokenNotSentInPlaintextOffLoopback(t *testing.T) {
	r := runCLI(t, "", "--server", "backupd.example:50051", "--token", "tok", "storage", "list")
	if r.code != exitUsage || !strings.Contains(r.stderr, "refusing to send the token in plaintext") || !strings.Contains(r.stderr, "--insecure") {
		t.Fatalf("token in plaintext off loopback: %v", r)
	}
}
