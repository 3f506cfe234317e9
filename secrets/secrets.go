// Package secrets seals credentials at rest with AES-256-GCM under an operator
// master key, and keeps plaintext secrets out of logs and error strings.
//
// A Keyring holds one or more 32-byte master keys. The first is primary: Seal
// always uses it and reports its id, which the catalog stores beside the
// ciphertext; Open picks the key by that id, so rotating the master key means
// putting the new key first and keeping the old ones until every row has been
// re-sealed.
//
// secrets imports nothing from backupstore.
package secrets

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of a master key: AES-256.
const KeySize = 32

var (
	// ErrUnknownKey means a ciphertext names a master key the keyring does not hold.
	ErrUnknownKey = errors.New("secrets: ciphertext sealed with a master key this server does not have")
	// ErrDecrypt means authentication of the ciphertext failed (wrong key or tampered data).
	ErrDecrypt = errors.New("secrets: ciphertext failed authentication")
)

// Secret is a string that never prints: fmt, %v, %+v, %#v and slog all show
// "[REDACTED]". Use Reveal at the one place the plaintext is needed.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "[REDACTED]" }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return "[REDACTED]" }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// Reveal returns the plaintext.
func (s Secret) Reveal() string { return string(s) }

// Keyring seals and opens secrets. It is safe for concurrent use.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
	keys    map[string][]byte // master keys by id, for DeriveKey; never leave the package
}

// KeyID is the stable, non-secret id of a master key: the first 12 hex digits
// of the SHA-256 of SHA-256("backupstore master key id" || key).
func KeyID(key []byte) string {
	h := sha256.Sum256(append([]byte("backupstore master key id\x00"), key...))
	h = sha256.Sum256(h[:])
	return "mk-" + hex.EncodeToString(h[:6])
}

// NewKeyring builds a keyring; keys[0] is primary. Each key must be KeySize bytes.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("secrets: no master key")
	}
	k := &Keyring{aeads: make(map[string]cipher.AEAD, len(keys)), keys: make(map[string][]byte, len(keys))}
	for i, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("secrets: master key %d is %d bytes, want %d", i+1, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("secrets: master key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secrets: master key %d: %w", i+1, err)
		}
		id := KeyID(key)
		if i == 0 {
			k.primary = id
		}
		k.aeads[id] = aead
		k.keys[id] = bytes.Clone(key)
	}
	return k, nil
}

// PrimaryID returns the id of the key Seal uses.
func (k *Keyring) PrimaryID() string { return k.primary }

// deriveSalt is HKDF's salt for every derived key (docs/FORMAT.md §2.3).
const deriveSalt = "backupstore/v1"

// DeriveKey derives a 32-byte key for purpose (e.g. "pack-index", "manifest")
// and tenant from the primary master key, and names that master key, so a
// reader can derive the same key later with DeriveKeyWith:
// HKDF-SHA256(secret = master key, salt = "backupstore/v1",
// info = purpose || 0x00 || tenant).
func (k *Keyring) DeriveKey(purpose, tenant string) (keyID string, key []byte) {
	key, err := k.DeriveKeyWith(k.primary, purpose, tenant)
	if err != nil { // the primary key is always held and HKDF cannot fail for 32 bytes
		panic(err)
	}
	return k.primary, key
}

// DeriveKeyWith derives the key DeriveKey derived under master key keyID;
// ErrUnknownKey if the keyring does not hold that key.
func (k *Keyring) DeriveKeyWith(keyID, purpose, tenant string) ([]byte, error) {
	master, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w (key id %q)", ErrUnknownKey, keyID)
	}
	key, err := hkdf.Key(sha256.New, master, []byte(deriveSalt), purpose+"\x00"+tenant, KeySize)
	if err != nil {
		return nil, fmt.Errorf("secrets: derive %s key: %w", purpose, err)
	}
	return key, nil
}

// Seal encrypts plaintext with the primary key. aad binds the ciphertext to
// its owner (e.g. tenant and storage id) so it cannot be moved to another row.
// The result is nonce || ciphertext || tag.
func (k *Keyring) Seal(plaintext Secret, aad []byte) (ciphertext []byte, keyID string, err error) {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", fmt.Errorf("secrets: nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, []byte(plaintext), aad), k.primary, nil
}

// Open decrypts a ciphertext sealed under keyID with the same aad.
func (k *Keyring) Open(ciphertext []byte, keyID string, aad []byte) (Secret, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return "", fmt.Errorf("%w (key id %q)", ErrUnknownKey, keyID)
	}
	if len(ciphertext) < aead.NonceSize()+aead.Overhead() {
		return "", ErrDecrypt
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, ciphertext[:n], ciphertext[n:], aad)
	if err != nil {
		return "", ErrDecrypt
	}
	return Secret(pt), nil
}

// ParseKeys reads master keys, one per line, each base64 (standard or URL,
// padded or not) of KeySize bytes; blank lines and lines starting with # are
// ignored. The first key is primary.
func ParseKeys(text []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(text))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		key, err := decodeKey(s)
		if err != nil {
			// The line itself is secret: name only its number.
			return nil, fmt.Errorf("secrets: master key line %d: %w", line, err)
		}
		keys = append(keys, key)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("secrets: reading master keys: %w", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("secrets: no master key found")
	}
	return keys, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d (generate one with: head -c 32 /dev/urandom | base64)", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("not base64 (generate one with: head -c 32 /dev/urandom | base64)")
}

// LoadOrCreateKeyFile reads the master key file at path; if it does not exist
// it creates one with a fresh random key and mode 0600 (dev mode). A file
// readable by group or others is refused.
func LoadOrCreateKeyFile(path string) (keys [][]byte, created bool, err error) {
	keys, err = LoadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return keys, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("secrets: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, fmt.Errorf("secrets: %w", err)
	}
	content := "# backupstore master key (AES-256), generated for dev mode. Keep it: without it\n" +
		"# the stored storage secrets cannot be decrypted.\n" + base64.StdEncoding.EncodeToString(key) + "\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) { // lost a race with another process: use its key
			keys, err = LoadKeyFile(path)
			return keys, false, err
		}
		return nil, false, fmt.Errorf("secrets: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, fmt.Errorf("secrets: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, fmt.Errorf("secrets: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("secrets: writing %s: %w", path, err)
	}
	return [][]byte{key}, true, nil
}

// LoadKeyFile reads master keys from a file (see ParseKeys), refusing a file
// that group or others may read.
func LoadKeyFile(path string) ([][]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: master key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets: master key file %s has mode %v; run chmod 600 on it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: master key file: %w", err)
	}
	return ParseKeys(b)
}
