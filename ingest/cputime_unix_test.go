//go:build unix

package ingest

import (
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time the process has used (user + system, every thread).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per op since start as "cpu-ns/op": on shared
// cores it moves far less with others' load than ns/op does.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
}
