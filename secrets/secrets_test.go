package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTripAndRotation(t *testing.T) {
	oldKey, newKeyB := newKey(t), newKey(t)
	oldRing, err := NewKeyring(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	const plain = Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	aad := []byte("tenant\x00storage")
	ct, id, err := oldRing.Seal(plain, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte(plain)) {
		t.Fatal("ciphertext contains the plaintext")
	}
	if id != KeyID(oldKey) {
		t.Fatalf("key id %q, want %q", id, KeyID(oldKey))
	}
	// Rotation: new key primary, old key still opens old rows.
	rotated, err := NewKeyring(newKeyB, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rotated.Open(ct, id, aad)
	if err != nil || got != plain {
		t.Fatalf("Open after rotation = %q, %v", got.Reveal(), err)
	}
	ct2, id2, _ := rotated.Seal(plain, aad)
	if id2 == id {
		t.Fatal("rotation did not change the sealing key")
	}
	if _, err := oldRing.Open(ct2, id2, aad); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old ring opening new ciphertext: %v, want ErrUnknownKey", err)
	}
	// Wrong aad (ciphertext moved to another row) and tampering fail.
	if _, err := rotated.Open(ct, id, []byte("other")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong aad: %v", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := rotated.Open(ct, id, aad); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered: %v", err)
	}
	// Two seals of the same secret differ (random nonce).
	a, _, _ := rotated.Seal(plain, aad)
	b, _, _ := rotated.Seal(plain, aad)
	if bytes.Equal(a, b) {
		t.Fatal("nonce reuse")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2-very-secret")
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "secret", s)
	out := fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s) + buf.String() +
		fmt.Sprintf("%v %+v", struct{ S Secret }{s}, &struct{ S Secret }{s})
	if strings.Contains(out, "hunter2") {
		t.Fatalf("secret leaked: %s", out)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "master.key")
	keys, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created || len(keys) != 1 {
		t.Fatalf("create: %v %v %d", err, created, len(keys))
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	again, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || !bytes.Equal(again[0], keys[0]) {
		t.Fatalf("reload: %v %v", err, created)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}

	k1, k2 := newKey(t), newKey(t)
	text := "# comment\n\n" + base64.StdEncoding.EncodeToString(k1) + "\n" + base64.RawURLEncoding.EncodeToString(k2) + "\n"
	got, err := ParseKeys([]byte(text))
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], k1) || !bytes.Equal(got[1], k2) {
		t.Fatalf("ParseKeys: %v", err)
	}
	short := base64.StdEncoding.EncodeToString([]byte("tooshort-secret-material"))
	_, err = ParseKeys([]byte(short))
	if err == nil || strings.Contains(err.Error(), short) || strings.Contains(err.Error(), "tooshort") {
		t.Fatalf("bad key error must not echo the key: %v", err)
	}
	if _, err := ParseKeys([]byte("# only comments\n")); err == nil {
		t.Fatal("empty key file accepted")
	}
	if _, err := NewKeyring([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestDeriveKeyFixedVector(t *testing.T) {
	master := make([]byte, KeySize)
	for i := range master {
		master[i] = byte(i)
	}
	other := newKey(t)
	ring, err := NewKeyring(master, other)
	if err != nil {
		t.Fatal(err)
	}
	// Computed independently (Python's hmac, RFC 5869 by hand):
	// HKDF-SHA256(ikm = 00..1f, salt = "backupstore/v1", info = "pack-index\x00tenant-a", 32).
	const want = "3d708e9e7b56749351ed4023c8c2a6b3062e47197cc0311c7397c518301eed06"
	id, key := ring.DeriveKey("pack-index", "tenant-a")
	if id != "mk-32eff2982600" || id != KeyID(master) {
		t.Fatalf("key id %q, want mk-32eff2982600", id)
	}
	if got := fmt.Sprintf("%x", key); got != want {
		t.Fatalf("derived key %s, want %s", got, want)
	}
	again, err := ring.DeriveKeyWith(id, "pack-index", "tenant-a")
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("DeriveKeyWith(primary) = %x, %v; want %x", again, err, key)
	}
	// Purpose, tenant and master key each change the key.
	for _, c := range []struct{ purpose, tenant string }{{"manifest", "tenant-a"}, {"pack-index", "tenant-b"}, {"pack-index", ""}} {
		k, err := ring.DeriveKeyWith(id, c.purpose, c.tenant)
		if err != nil || bytes.Equal(k, key) {
			t.Fatalf("DeriveKeyWith(%q, %q) = %x, %v: must differ from the pack-index key of tenant-a", c.purpose, c.tenant, k, err)
		}
	}
	k2, err := ring.DeriveKeyWith(KeyID(other), "pack-index", "tenant-a")
	if err != nil || bytes.Equal(k2, key) {
		t.Fatalf("second master key derived %x, %v: must differ", k2, err)
	}
	if _, err := ring.DeriveKeyWith("mk-000000000000", "pack-index", "tenant-a"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key id: %v, want ErrUnknownKey", err)
	}
}
