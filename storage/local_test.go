package storage_test

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"backupstore/storage"
	"backupstore/storage/storagetest"
)

func newLocal(t *testing.T) *storage.Local {
	t.Helper()
	s, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocalConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newLocal(t) })
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// TestLocalLayout checks what the conformance suite cannot see: staging is removed by Abort and
// Complete, no temporary files remain, and the reserved names are refused.
func TestLocalLayout(t *testing.T) {
	root := t.TempDir()
	s, err := storage.NewLocal(storage.LocalConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := []byte("part")
	staged := func(id string) []string {
		entries, _ := os.ReadDir(filepath.Join(root, ".multipart", id))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	id, err := s.CreateMultipart(ctx, "k/aborted")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "k/aborted", id, 1, bytes.NewReader(body), 4, crc32c(body)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "k/aborted", id, 2, bytes.NewReader(body), 4, crc32c(body)+1); !errors.Is(err, storage.ErrChecksumMismatch) {
		t.Fatalf("UploadPart with bad CRC: %v", err)
	}
	if got := strings.Join(staged(id), ","); got != "1,key" {
		t.Fatalf("staged after parts: %s, want 1,key (no leftover temporary file)", got)
	}
	if err := s.AbortMultipart(ctx, "k/aborted", id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".multipart", id)); !os.IsNotExist(err) {
		t.Fatalf("staging dir after Abort: %v", err)
	}

	id, err = s.CreateMultipart(ctx, "k/done")
	if err != nil {
		t.Fatal(err)
	}
	etag, err := s.UploadPart(ctx, "k/done", id, 1, bytes.NewReader(body), 4, crc32c(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompleteMultipart(ctx, "k/done", id, []storage.CompletedPart{{Number: 1, ETag: etag, CRC32C: crc32c(body)}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(staged(id), ","); got != "complete,key" {
		t.Fatalf("staged after Complete: %s, want complete,key", got)
	}
	// Another key's upload id is not this key's.
	if _, err := s.UploadPart(ctx, "k/other", id, 1, bytes.NewReader(body), 4, crc32c(body)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("UploadPart with another key's upload id: %v", err)
	}

	for _, key := range []string{".multipart", ".multipart/x", "a/.tmp-1", ".tmp-x"} {
		if _, err := s.Put(ctx, key, bytes.NewReader(body)); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	// Leftover temporary files (a crash) are not listed.
	if err := os.WriteFile(filepath.Join(root, "k", ".tmp-123"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	var listed []string
	if err := s.List(ctx, "", func(o storage.ObjectInfo) error { listed = append(listed, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(listed, ","); got != "k/done" {
		t.Fatalf("List = %s, want k/done", got)
	}
	// Delete removes the directories it empties, never the root.
	if err := s.Delete(ctx, "k/done"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "k", ".tmp-123"))
	if err := s.Delete(ctx, "k/done"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatal(err)
	}
}
