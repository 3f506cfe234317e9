package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// row is one line of the report. Value and Ratio are nil when not measured.
type row struct {
	Stage  string   `json:"stage"`
	What   string   `json:"what"`
	Value  *float64 `json:"value"`
	Unit   string   `json:"unit"`
	Ratio  *float64 `json:"ratio,omitempty"`
	Target string   `json:"target,omitempty"` // e.g. "≥ 1.0" (on the ratio, or the value when there is no ratio)
	Met    *bool    `json:"met,omitempty"`    // nil: no target
	Note   string   `json:"note,omitempty"`
}

type machine struct {
	NProc      int    `json:"nproc"`
	CPU        string `json:"cpu"`
	Go         string `json:"go"`
	Kernel     string `json:"kernel"`
	MemTotal   string `json:"mem_total"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
	VersityGW  string `json:"versitygw"`
	Rclone     string `json:"rclone"`
	MariaDB    string `json:"mariadb"`
	Proxy      string `json:"proxy,omitempty"` // the counting S3 proxy, when one was used
}

type report struct {
	Benchmark string               `json:"benchmark"` // ingest, restore or maintenance
	Started   time.Time            `json:"started"`
	Duration  string               `json:"duration"`
	Command   string               `json:"command"`
	Machine   machine              `json:"machine"`
	Config    map[string]any       `json:"config"`
	Rows      []row                `json:"rows"`
	Runs      map[string][]float64 `json:"runs"` // every measured run, in order
	// CPU is the median CPU seconds per run of each measurement, by process ("others": the
	// rest of the machine's busy time, other users of the shared cores included).
	CPU   map[string]cpuUse `json:"cpu_seconds"`
	Notes []string          `json:"notes,omitempty"`
	Error string            `json:"error,omitempty"`
}

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// check compares v with a target "≥ x", "≤ x" or "= x".
func check(v *float64, target string) *bool {
	if v == nil || target == "" {
		return nil
	}
	op, num, ok := strings.Cut(target, " ")
	if !ok {
		return nil
	}
	x, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return nil
	}
	var met bool
	switch op {
	case "≥":
		met = *v >= x
	case "≤":
		met = *v <= x
	case "=":
		met = *v == x
	default:
		return nil
	}
	return &met
}

// addValue appends a row whose target, if any, applies to the value.
func (r *report) addValue(stage, what string, value float64, unit, target, note string) {
	v := ptr(value)
	r.Rows = append(r.Rows, row{Stage: stage, What: what, Value: v, Unit: unit, Target: target, Met: check(v, target), Note: note})
}

// addRatio appends a row whose target, if any, applies to the ratio.
func (r *report) addRatio(stage, what string, value float64, unit string, ratio *float64, target, note string) {
	r.Rows = append(r.Rows, row{Stage: stage, What: what, Value: ptr(value), Unit: unit, Ratio: ratio, Target: target,
		Met: check(ratio, target), Note: note})
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func div(a, b float64) *float64 { return ptr(a / b) }

func fmtNum(v *float64) string {
	if v == nil {
		return "n/a"
	}
	x := *v
	switch {
	case x == math.Trunc(x) && math.Abs(x) < 1e15:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case math.Abs(x) >= 100:
		return strconv.FormatFloat(x, 'f', 1, 64)
	default:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
}

func fmtRatio(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', 3, 64)
}

func fmtMet(m *bool) string {
	switch {
	case m == nil:
		return ""
	case *m:
		return "yes"
	default:
		return "**NO**"
	}
}

// writeTable writes the report as Markdown (readable as is, and pasteable into docs).
func (r *report) writeTable(w io.Writer) {
	r.sortRows()
	m := r.Machine
	fmt.Fprintf(w, "backupbench %s — %s (took %s)\n\n", r.Benchmark, r.Started.Format(time.RFC3339), r.Duration)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s, %s, kernel %s, RAM %s; load average before %s, after %s\n",
		m.NProc, m.CPU, m.Go, runtime.GOARCH, m.Kernel, m.MemTotal, m.LoadBefore, m.LoadAfter)
	rclone := m.Rclone
	if rclone == "" {
		rclone = "(not run)"
	}
	if m.Proxy != "" {
		rclone += "; " + m.Proxy
	}
	fmt.Fprintf(w, "servers: versitygw %s (posix), MariaDB %s, rclone %s — all on 127.0.0.1, sharing the CPUs\n", m.VersityGW, m.MariaDB, rclone)
	fmt.Fprintf(w, "command: %s\n\n", r.Command)
	fmt.Fprintln(w, "| stage | what | figure | unit | ratio | target | met? |")
	fmt.Fprintln(w, "| --- | --- | ---: | --- | ---: | --- | --- |")
	for _, rw := range r.Rows {
		what := rw.What
		if rw.Note != "" {
			what += " (" + rw.Note + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", rw.Stage, what, fmtNum(rw.Value), rw.Unit,
			fmtRatio(rw.Ratio), rw.Target, fmtMet(rw.Met))
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
	if r.Error != "" {
		fmt.Fprintf(w, "\nERROR: %s\n", r.Error)
	}
}

func (r *report) writeJSON(w io.Writer) error {
	r.sortRows()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// sortRows orders the rows by stage, keeping the order within a stage.
func (r *report) sortRows() {
	slices.SortStableFunc(r.Rows, func(a, b row) int { return strings.Compare(a.Stage, b.Stage) })
}

// machineInfo reads what /proc says about this machine.
func machineInfo() machine {
	m := machine{NProc: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// percentile returns the p-th percentile (0–100) of xs by the nearest-rank method.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}
