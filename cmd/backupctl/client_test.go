package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "backupstore/proto/backupstore/v1"
)

// startTLSFake serves f over TLS with a fresh self-signed certificate for
// 127.0.0.1 and returns the address and the certificate's PEM file.
func startTLSFake(t *testing.T, f *fakeStorage) (addr, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "backupd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	pb.RegisterStorageServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), caFile
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
