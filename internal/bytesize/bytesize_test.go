package bytesize

import "testing"

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "64KiB": 64 << 10, "8MiB": 8 << 20, "1GiB": 1 << 30, "2M": 2 << 20, "10B": 10, " 3K ": 3 << 10} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-5", "1.5GiB", "GiB", "12XB", "99999999999GiB"} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q): no error", in)
		}
	}
	for n, want := range map[int64]string{0: "0", 1 << 30: "1GiB", 8 << 20: "8MiB", 1536: "1536", 3 << 10: "3KiB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
	var f Flag
	if err := f.Set("512MiB"); err != nil || f.String() != "512MiB" {
		t.Errorf("Flag: %v %s", err, f.String())
	}
}
