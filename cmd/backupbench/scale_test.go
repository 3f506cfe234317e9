package main

import (
	"bytes"
	"encoding/binary"
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
