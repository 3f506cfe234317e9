package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on every Linux the benchmark targets).
const clockTicks = 100

// cpuMeter reads the CPU time of named processes and of the whole machine from /proc, so that a
// measurement can say where the CPU went: the client (this process), backupd, versitygw, MariaDB,
// and everything else on the machine (other users of the shared cores).
type cpuMeter struct {
	pids map[string][]int // name → processes summed under it
}

// cpuSnap is a reading of a cpuMeter.
type cpuSnap struct {
	procs map[string]float64 // seconds
	busy  float64            // seconds the machine's CPUs were not idle, summed over CPUs
}

func newCPUMeter() *cpuMeter { return &cpuMeter{pids: map[string][]int{"client": {os.Getpid()}}} }

func (m *cpuMeter) set(name string, pids ...int) { m.pids[name] = pids }

func (m *cpuMeter) snap() cpuSnap {
	s := cpuSnap{procs: map[string]float64{}, busy: machineBusy()}
	for name, pids := range m.pids {
		for _, pid := range pids {
			s.procs[name] += procCPU(pid)
		}
	}
	return s
}

// cpuUse is the CPU seconds each process (and "others") used between two snaps.
type cpuUse map[string]float64

// since returns the use from earlier to s; extra holds processes measured otherwise (a child's
// rusage), which are taken out of "others".
func (s cpuSnap) since(earlier cpuSnap, extra cpuUse) cpuUse {
	u := cpuUse{}
	var ours float64
	for name, v := range s.procs {
		d := v - earlier.procs[name]
		if d < 0 {
			d = 0 // a process restarted between the snaps
		}
		u[name] = d
		ours += d
	}
	for name, v := range extra {
		u[name] += v
		ours += v
	}
	u["others"] = max(0, s.busy-earlier.busy-ours)
	return u
}

// String lists the seconds, largest first.
func (u cpuUse) String() string {
	names := make([]string, 0, len(u))
	for n := range u {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return u[names[i]] > u[names[j]] })
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f", n, u[n]))
	}
	return "CPU-s: " + strings.Join(parts, ", ")
}

// medianUse is the per-process median of several uses.
func medianUse(us []cpuUse) cpuUse {
	out := cpuUse{}
	names := map[string]bool{}
	for _, u := range us {
		for n := range u {
			names[n] = true
		}
	}
	for n := range names {
		xs := make([]float64, 0, len(us))
		for _, u := range us {
			xs = append(xs, u[n])
		}
		out[n] = median(xs)
	}
	return out
}

// procCPU returns utime+stime of pid in seconds (0 if it cannot be read).
func procCPU(pid int) float64 { return statFileCPU(fmt.Sprintf("/proc/%d/stat", pid)) }

// statFileCPU is utime+stime of a /proc stat file (a process's or a thread's), in seconds; 0 if
// it cannot be read.
func statFileCPU(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after it start past the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14
	st, _ := strconv.ParseFloat(f[12], 64) // field 15
	return (ut + st) / clockTicks
}

// machineBusy returns the non-idle CPU seconds of the machine since boot, summed over CPUs.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are already in user
			continue
		}
		busy += x
	}
	return busy / clockTicks
}

// findProcs returns the pids whose command name is one of names.
func findProcs(names ...string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil {
			continue
		}
		comm := strings.TrimSpace(string(b))
		for _, n := range names {
			if comm == n {
				if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// own is the CPU seconds of the benchmark's processes (everything but "others").
func (u cpuUse) own() float64 {
	var t float64
	for n, v := range u {
		if n != "others" {
			t += v
		}
	}
	return t
}
