package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

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
	err := parseTenantMap(text, "tokens file", "<sha256 hex> <tenant>", func(key, tenant string) error {
		raw, err := hex.DecodeString(key)
		if err != nil || len(raw) != 32 {
			return errors.New("first field must be 64 hex digits (the SHA-256 of the token, not the token)")
		}
		a.byHash[[32]byte(raw)] = tenant
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// parseTenantMap reads lines "<key> <tenant id>" (blank lines and # comments
// ignored), checks each tenant id, and hands each pair to add, which checks
// the key; what names the file in errors, form the line's expected shape.
func parseTenantMap(text []byte, what, form string, add func(key, tenant string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(text))
	n, pairs := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return fmt.Errorf("%s line %d: want %q", what, n, form)
		}
		if !tenantRE.MatchString(f[1]) {
			return fmt.Errorf("%s line %d: tenant id must match %s", what, n, tenantRE)
		}
		if err := add(f[0], f[1]); err != nil {
			return fmt.Errorf("%s line %d: %w", what, n, err)
		}
		pairs++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if pairs == 0 {
		return fmt.Errorf("%s has no entries", what)
	}
	return nil
}

// LoadTokens reads a tokens file from disk; see TokenFile.Load.
func LoadTokens(path string) (*TokenAuth, error) {
	return readTokenFile(path)
}

func readTokenFile(path string) (*TokenAuth, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// The file holds hashes, not tokens, but which tenants exist and how
	// many tokens each has is still the operator's business only.
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("tokens file %s has mode %v: group or others may read it; run chmod 600 on it", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokensFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTokensFile {
		return nil, fmt.Errorf("tokens file %s is larger than %d bytes", path, maxTokensFile)
	}
	return ParseTokens(b)
}

// maxTokensFile bounds the tokens file (about 100,000 lines).
const maxTokensFile = 10 << 20

// MinTokenLen is the shortest bearer token accepted: tokens are random
// 256-bit values (e.g. `openssl rand -base64 32`, 44 characters), which is
// also why their SHA-256, unsalted, is a safe thing to store: it cannot be
// searched back to a token. A shorter one is refused before any lookup.
const MinTokenLen = 32

// TokenFile is a TokenAuth read from a file and read again on Reload (SIGHUP,
// or Watch noticing the file changed): tokens are added and revoked without a
// restart. A file that fails to load (unreadable, bad line, group- or
// world-readable) leaves the tokens in force as they were, and says why.
type TokenFile struct {
	path string
	cur  atomic.Pointer[TokenAuth]
	seen atomic.Value // fileStamp of the file last loaded
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// OpenTokenFile loads path; a file that does not load is an error here.
func OpenTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the file again; on error the previous tokens stay in force.
func (t *TokenFile) Reload() error {
	st, _ := stampOf(t.path)
	a, err := readTokenFile(t.path)
	if err != nil {
		return err
	}
	t.cur.Store(a)
	t.seen.Store(st)
	return nil
}

// Watch reloads the file when its modification time, size or inode change
// (an editor's rename-into-place included), checking every interval until
// ctx ends. Reload errors are passed to report.
func (t *TokenFile) Watch(ctx context.Context, interval time.Duration, report func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := stampOf(t.path)
		if err != nil || st == t.seen.Load().(fileStamp) {
			continue
		}
		t.seen.Store(st) // a broken file is reported once, not every tick
		report(t.Reload())
	}
}

// Tokens is how many tokens are in force.
func (t *TokenFile) Tokens() int { return len(t.cur.Load().byHash) }

// Tenant implements Authenticator with the tokens in force.
func (t *TokenFile) Tenant(ctx context.Context) (string, error) { return t.cur.Load().Tenant(ctx) }

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
	if len(tok) < MinTokenLen {
		return "", fault.New(fault.Unauthenticated, "UNAUTHENTICATED", "token too short: tokens are random 256-bit values of at least %d characters", MinTokenLen)
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
