package server

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"backupstore/fault"
)

// CertAuth takes a call's tenant from its verified client certificate (mutual
// TLS, as service meshes do): the certificate's SPIFFE ID (a spiffe:// URI
// SAN) or, without one, its subject's common name ("CN=name"), looked up in
// a mapping. The TLS configuration must require and verify client
// certificates; CertAuth only reads what the handshake verified.
type CertAuth struct {
	byIdentity map[string]string
}

// ParseCertMap reads a mapping file: one "<identity> <tenant id>" per line,
// where identity is a SPIFFE ID ("spiffe://example.org/ns/acme/sa/worker")
// or "CN=<common name>"; blank lines and # comments ignored.
func ParseCertMap(text []byte) (*CertAuth, error) {
	a := &CertAuth{byIdentity: map[string]string{}}
	err := parseTenantMap(text, "client certificate map", "<spiffe://… or CN=…> <tenant>", func(id, tenant string) error {
		if !strings.HasPrefix(id, "spiffe://") && !strings.HasPrefix(id, "CN=") {
			return errors.New("the identity must be a SPIFFE ID (spiffe://…) or CN=<common name>")
		}
		a.byIdentity[id] = tenant
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// LoadCertMap reads a mapping file from disk.
func LoadCertMap(path string) (*CertAuth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCertMap(b)
}

// Identity is what CertAuth looks up for a certificate: its SPIFFE ID, or
// "CN=" and its subject's common name.
func Identity(cert *x509.Certificate) string {
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return "CN=" + cert.Subject.CommonName
}

// Tenant implements Authenticator.
func (a *CertAuth) Tenant(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", fault.New(fault.Unauthenticated, "UNAUTHENTICATED", "no client certificate: connect with mutual TLS")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", fault.New(fault.Unauthenticated, "UNAUTHENTICATED", "no verified client certificate: connect with mutual TLS")
	}
	id := Identity(ti.State.VerifiedChains[0][0])
	tenant, found := a.byIdentity[id]
	if !found {
		return "", fault.New(fault.PermissionDenied, "UNKNOWN_CLIENT_IDENTITY", "client certificate %s is not mapped to a tenant", id)
	}
	return tenant, nil
}
