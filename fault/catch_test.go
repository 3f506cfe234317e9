package fault_test

import (
	"errors"
	"strings"
	"testing"

	"backupstore/fault"
)

func TestCatch(t *testing.T) {
	want := errors.New("plain failure")
	if err := fault.Catch(func() error { return want }); err != want {
		t.Fatalf("Catch of an error: %v, want it unchanged", err)
	}
	if err := fault.Catch(func() error { return nil }); err != nil {
		t.Fatalf("Catch of success: %v", err)
	}
	err := fault.Catch(func() error {
		var m map[string]int
		m["x"]++ // a nil map write panics
		return nil
	})
	fe, ok := fault.As(err)
	if !ok || fe.Kind != fault.Internal || fe.Reason != "PANIC" || fe.Msg != "internal error" {
		t.Fatalf("Catch of a panic: %#v", err)
	}
	// The stack is for the log (Err), never the caller's message (Msg).
	if !strings.Contains(err.Error(), "assignment to entry in nil map") || !strings.Contains(err.Error(), "catch_test.go") {
		t.Fatalf("Catch of a panic does not carry the value and stack: %v", err)
	}
}
