package main

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 20000: "20,000", 150000: "150,000", 1000000: "1,000,000", 12345678: "12,345,678"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

// The scale benchmark checks ReadFile's bytes against scaleBody regenerated from the file
// number, and relies on distinct numbers giving distinct bodies (nothing deduplicates).
func TestScaleBody(t *testing.T) {
	a := scaleBody(42, 512, nil)
	if len(a) != 512 || binary.LittleEndian.Uint64(a) != 42 {
		t.Fatalf("scaleBody(42) = %d bytes starting %x", len(a), a[:8])
	}
	again := scaleBody(42, 512, make([]byte, 3, 1024))
	if !bytes.Equal(a, again) {
		t.Error("scaleBody(42) differs between calls (or depends on the buffer passed)")
	}
	seen := map[string]int{}
	for i := range 1000 {
		b := string(scaleBody(i, 64, nil)[8:]) // beyond the number itself
		if j, ok := seen[b]; ok {
			t.Fatalf("bodies %d and %d share their random bytes", j, i)
		}
		seen[b] = i
	}
	if got := scaleBody(7, 16, nil); len(got) != 16 {
		t.Errorf("scaleBody(7, 16) has %d bytes", len(got))
	}
}

// The catalog copies drop files_blob and its foreign key and add back what SHOW CREATE TABLE
// showed (MariaDB's form, below); the table must then compare equal although the key moved.
func TestBlobIndexDefs(t *testing.T) {
	before := "CREATE TABLE `files` (\n  `tenant_id` varbinary(128) NOT NULL,\n  `blob_id` varbinary(64) DEFAULT NULL,\n" +
		"  PRIMARY KEY (`tenant_id`,`backup_id`,`id`),\n  KEY `files_object` (`tenant_id`,`object_id`),\n" +
		"  KEY `files_blob` (`tenant_id`,`blob_id`),\n  UNIQUE KEY `files_upload` (`tenant_id`,`backup_id`,`upload_id`),\n" +
		"  CONSTRAINT `files_backup_fk` FOREIGN KEY (`tenant_id`, `backup_id`) REFERENCES `backups` (`tenant_id`, `id`),\n" +
		"  CONSTRAINT `files_blob_fk` FOREIGN KEY (`tenant_id`, `blob_id`) REFERENCES `blobs` (`tenant_id`, `id`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
	key, fk := blobKeyDef.FindStringSubmatch(before), blobFKDef.FindStringSubmatch(before)
	if key == nil || key[1] != "KEY `files_blob` (`tenant_id`,`blob_id`)" {
		t.Fatalf("key = %q", key)
	}
	if fk == nil || fk[1] != "CONSTRAINT `files_blob_fk` FOREIGN KEY (`tenant_id`, `blob_id`) REFERENCES `blobs` (`tenant_id`, `id`)" {
		t.Fatalf("foreign key = %q", fk)
	}
	// added back: the key after files_upload, the last constraint now followed by nothing
	after := strings.Replace(before, "  KEY `files_blob` (`tenant_id`,`blob_id`),\n", "", 1)
	after = strings.Replace(after, "  UNIQUE KEY `files_upload` (`tenant_id`,`backup_id`,`upload_id`),\n",
		"  UNIQUE KEY `files_upload` (`tenant_id`,`backup_id`,`upload_id`),\n  KEY `files_blob` (`tenant_id`,`blob_id`),\n", 1)
	if after == before || !slices.Equal(ddlLines(after), ddlLines(before)) {
		t.Fatalf("a moved key should compare equal:\n%s\n%s", after, before)
	}
	if slices.Equal(ddlLines(strings.Replace(before, "`files_blob` (`tenant_id`,`blob_id`)", "`files_blob` (`blob_id`)", 1)), ddlLines(before)) {
		t.Fatal("a changed key compared equal")
	}
}
