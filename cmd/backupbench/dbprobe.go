package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// dbProbe says where MariaDB's work went between two points of a measurement: its CPU split
// into the threads that serve connections (the statements) and the rest (purge, page cleaner,
// I/O, checkpoints), and the change of a few global status counters. A statement whose cost
// grows with the catalog shows in the handler and pool counters per call; background work
// shows in the second CPU figure. Local servers only: the CPU split reads /proc.
type dbProbe struct {
	d    *database
	pids []int
}

type dbProbeSnap struct {
	at     time.Time
	tasks  map[int]float64 // thread id → CPU seconds
	conns  map[int]bool    // thread ids serving a connection
	status map[string]float64
}

// dbCounters are the global status counters a probe reports as differences, with their short
// names; dbGauges are reported as they were at the start and at the end.
var (
	dbCounters = []struct{ name, short string }{
		{"Handler_read_key", "read_key"},
		{"Handler_read_next", "read_next"},
		{"Handler_read_rnd_next", "rnd_next"},
		{"Handler_write", "write"},
		{"Handler_delete", "delete"},
		{"Innodb_buffer_pool_read_requests", "page_gets"},
		{"Innodb_buffer_pool_reads", "page_reads"},
		{"Innodb_buffer_pool_pages_flushed", "flushed"},
		{"Innodb_buffer_pool_wait_free", "wait_free"},
		{"Innodb_row_lock_waits", "lock_waits"},
		{"Innodb_row_lock_time", "lock_ms"},
		{"Innodb_log_waits", "log_waits"},
		{"Innodb_data_fsyncs", "fsyncs"},
		{"Created_tmp_tables", "tmp_tables"},
		{"Questions", "statements"},
	}
	dbGauges = []struct{ name, short string }{
		{"Innodb_history_list_length", "history"},
		{"Innodb_buffer_pool_pages_dirty", "dirty"},
		{"Innodb_buffer_pool_pages_free", "free"},
		{"Innodb_checkpoint_age", "checkpoint_age"},
	}
)

func newDBProbe(d *database) *dbProbe {
	return &dbProbe{d: d, pids: findProcs("mariadbd", "mysqld")}
}

func (p *dbProbe) snap(ctx context.Context) dbProbeSnap {
	s := dbProbeSnap{at: time.Now(), tasks: map[int]float64{}, conns: map[int]bool{}, status: map[string]float64{}}
	for _, pid := range p.pids {
		dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*", pid))
		for _, dir := range dirs {
			tid, err := strconv.Atoi(filepath.Base(dir))
			if err != nil {
				continue
			}
			s.tasks[tid] = statFileCPU(filepath.Join(dir, "stat"))
		}
	}
	if rows, err := p.d.admin.QueryContext(ctx, "SELECT TID FROM information_schema.PROCESSLIST"); err == nil {
		for rows.Next() {
			var tid int
			if rows.Scan(&tid) == nil {
				s.conns[tid] = true
			}
		}
		rows.Close()
	}
	if rows, err := p.d.admin.QueryContext(ctx, "SHOW GLOBAL STATUS"); err == nil {
		for rows.Next() {
			var name, value string
			if rows.Scan(&name, &value) == nil {
				if v, err := strconv.ParseFloat(value, 64); err == nil {
					s.status[name] = v
				}
			}
		}
		rows.Close()
	}
	return s
}

// since describes the work from earlier to s; calls > 0 also gives the counters per call.
func (s dbProbeSnap) since(earlier dbProbeSnap, calls int) string {
	var conn, other float64
	for tid, v := range s.tasks {
		d := v - earlier.tasks[tid]
		if d <= 0 {
			continue
		}
		if s.conns[tid] || earlier.conns[tid] {
			conn += d
		} else {
			other += d
		}
	}
	parts := []string{fmt.Sprintf("MariaDB in %s: connections %.2f CPU-s, background %.2f", s.at.Sub(earlier.at).Round(time.Millisecond), conn, other)}
	var cs []string
	for _, c := range dbCounters {
		d := s.status[c.name] - earlier.status[c.name]
		if calls > 0 {
			cs = append(cs, fmt.Sprintf("%s %.4g", c.short, d/float64(calls)))
		} else {
			cs = append(cs, fmt.Sprintf("%s %.0f", c.short, d))
		}
	}
	per := "counters"
	if calls > 0 {
		per = "per call"
	}
	parts = append(parts, per+": "+strings.Join(cs, ", "))
	var gs []string
	for _, g := range dbGauges {
		gs = append(gs, fmt.Sprintf("%s %.0f→%.0f", g.short, earlier.status[g.name], s.status[g.name]))
	}
	parts = append(parts, strings.Join(gs, ", "))
	return strings.Join(parts, "; ")
}
