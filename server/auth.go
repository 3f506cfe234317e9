package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"backupstore/fault"
)

// Authenticator resolves the tenant of a call from its metadata.
type Authenticator interface {
	// Tenant returns the caller's tenant id, or a fault.Unauthenticated error.
	Tenant(ctx context.Context) (string, error)
}

// tenantRE: tenant ids become object key elements, so they are strict.
var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// NoAuth puts every call in one tenant (dev mode).
type NoAuth struct{ TenantID string }

// Tenant implements Authenticator.
func (a NoAuth) Tenant(context.Context) (string, error) { return a.TenantID, nil }

// TokenAuth maps the SHA-256 of a bearer token to a tenant. The server never
// holds the tokens themselves.
type TokenAuth struct {
	byHash map[[32]byte]string
}

// ParseTokens reads a tokens file: one "<hex sha256 of token> <tenant id>"
// per line; blank lines and # comments ignored. Produce a line with
//
//	printf %s "$TOKEN" | sha256sum | cut -d' ' -f1
func ParseTokens(text []byte) (*TokenAuth, error) {
	a := &TokenAuth{byHash: map[[32]byte]string{}}
	sc := bufio.NewScanner(bytes.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("tokens file line %d: want \"<sha256 hex> <tenant>\"", n)
		}
		raw, err := hex.DecodeString(f[0])
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("tokens file line %d: first field must be 64 hex digits (the SHA-256 of the token, not the token)", n)
		}
		if !tenantRE.MatchString(f[1]) {
			return nil, fmt.Errorf("tokens file line %d: tenant id must match %s", n, tenantRE)
		}
		var h [32]byte
		copy(h[:], raw)
		a.byHash[h] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(a.byHash) == 0 {
		return nil, fmt.Errorf("tokens file has no tokens")
	}
	return a, nil
}

// LoadTokens reads a tokens file from disk.
func LoadTokens(path string) (*TokenAuth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTokens(b)
}

// Tenant implements Authenticator.
func (a *TokenAuth) Tenant(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", fault.New(fault.Unauthenticated, "UNAUTHENTICATED", "missing credentials: send metadata \"authorization: Bearer <token>\"")
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || tok == "" {
		return "", fault.New(fault.Unauthenticated, "UNAUTHENTICATED", "authorization metadata must be \"Bearer <token>\"")
	}
	// The lookup is keyed by the token's SHA-256, so lookup timing reveals
	// nothing usable about the token itself.
	tenant, found := a.byHash[sha256.Sum256([]byte(tok))]
	if !found {
		return "", fault.New(fault.Unauthenticated, "UNAUTHENTICATED", "unknown or revoked token")
	}
	return tenant, nil
}

type tenantKey struct{}

// TenantFrom returns the tenant the auth interceptor resolved.
func TenantFrom(ctx context.Context) string {
	t, _ := ctx.Value(tenantKey{}).(string)
	return t
}

// skipAuth lists services that answer without credentials: health probes.
func skipAuth(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/")
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if skipAuth(info.FullMethod) {
		return handler(ctx, req)
	}
	tenant, err := s.auth.Tenant(ctx)
	if err == nil {
		err = s.conns.admit(ctx, tenant)
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return handler(context.WithValue(ctx, tenantKey{}, tenant), req)
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (t tenantStream) Context() context.Context { return t.ctx }

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if skipAuth(info.FullMethod) {
		return handler(srv, ss)
	}
	tenant, err := s.auth.Tenant(ss.Context())
	if err == nil {
		err = s.conns.admit(ss.Context(), tenant)
	}
	if err != nil {
		return toStatus(ss.Context(), s.log, err)
	}
	return handler(srv, tenantStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), tenantKey{}, tenant)})
}
