package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"backupstore/server"
)

func bearer(tok string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
}

func tenantOf(a server.Authenticator, tok string) (string, codes.Code) {
	tenant, err := a.Tenant(bearer(tok))
	if err != nil {
		return "", codes.Unauthenticated
	}
	return tenant, codes.OK
}

// Tokens are added and revoked without a restart; a file that does not load
// leaves the tokens in force; a group- or world-readable file is refused; a
// short token is refused before any lookup.
func TestTokenFileReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	tok1, tok2 := strings.Repeat("1", 40), strings.Repeat("2", 40)
	write := func(text string, mode os.FileMode) {
		t.Helper()
		tmp := filepath.Join(dir, "tokens.tmp")
		if err := os.WriteFile(tmp, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tmp, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // as an editor or config management does
			t.Fatal(err)
		}
	}
	write(hashLine(tok1, "acme"), 0o644)
	if _, err := server.OpenTokenFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable tokens file: %v", err)
	}
	write(hashLine(tok1, "acme"), 0o600)
	tf, err := server.OpenTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if tenant, code := tenantOf(tf, tok1); tenant != "acme" {
		t.Fatalf("tok1: %q %v", tenant, code)
	}
	// Short tokens are refused even when their hash is listed.
	short := "short-token"
	write(hashLine(tok1, "acme")+hashLine(short, "acme"), 0o600)
	if err := tf.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, code := tenantOf(tf, short); code != codes.Unauthenticated {
		t.Fatal("a token shorter than 32 characters was accepted")
	}
	// Revoke tok1, add tok2, noticed by Watch.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(chan error, 10)
	go tf.Watch(ctx, 10*time.Millisecond, func(err error) { reports <- err })
	write(hashLine(tok2, "globex"), 0o600)
	select {
	case err := <-reports:
		if err != nil {
			t.Fatalf("reload after the change: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not notice the new file")
	}
	if _, code := tenantOf(tf, tok1); code != codes.Unauthenticated {
		t.Fatal("a revoked token still works")
	}
	if tenant, _ := tenantOf(tf, tok2); tenant != "globex" {
		t.Fatal("the added token does not work")
	}
	// A broken file is reported, and the tokens in force stay.
	write("not a tokens file\n", 0o600)
	select {
	case err := <-reports:
		if err == nil {
			t.Fatal("a broken tokens file loaded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not notice the broken file")
	}
	if tenant, _ := tenantOf(tf, tok2); tenant != "globex" {
		t.Fatal("a broken file revoked the tokens in force")
	}
}

// The tokens file and the client certificate map say which line is wrong and why.
func TestTenantMapFilesNameTheBadLine(t *testing.T) {
	good := hashLine(strings.Repeat("x", 40), "acme")
	for _, c := range []struct {
		name, text, want string
		parse            func([]byte) error
	}{
		{"token not hashed", good + "a-raw-token acme\n", "line 2: first field must be 64 hex digits", parseTokens},
		{"bad tenant", good + hashLine("y", "Acme!"), "line 2: tenant id must match", parseTokens},
		{"three fields", "# c\n" + strings.TrimSpace(good) + " extra\n", "line 2: want", parseTokens},
		{"no tokens", "# only a comment\n\n", "has no entries", parseTokens},
		{"identity form", "spiffe://x/y acme\nworker globex\n", "line 2: the identity must be a SPIFFE ID", parseCertMap},
		{"no identities", "", "has no entries", parseCertMap},
	} {
		err := c.parse([]byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := parseCertMap([]byte("spiffe://x/y acme\nCN=job globex\n")); err != nil {
		t.Errorf("a good map: %v", err)
	}
}

func parseTokens(b []byte) error  { _, err := server.ParseTokens(b); return err }
func parseCertMap(b []byte) error { _, err := server.ParseCertMap(b); return err }
