package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"

	"google.golang.org/grpc"

	"backupstore/budget"
	"backupstore/csvscan"
	"backupstore/ingest"
	"backupstore/metadata"
	"backupstore/registry"
	"backupstore/secrets"
	"backupstore/server"
	"backupstore/storage"
)

// profile runs the main ingest once more with the service in this process, wired as
// cmd/backupd/run.go wires it (same packages, budget, part size, windows), under a CPU profile.
// backupd has no pprof endpoint and the benchmark adds nothing to it; the profile therefore also
// holds the client side (file reads, gRPC sends), which shows under its own functions.
func (b *bench) profile(ctx context.Context) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	keys, err := secrets.ParseKeys([]byte(b.dcfg.masterKey))
	if err != nil {
		return err
	}
	kr, err := secrets.NewKeyring(keys...)
	if err != nil {
		return err
	}
	cat, err := metadata.Open(ctx, "mysql", b.dcfg.dsn)
	if err != nil {
		return err
	}
	defer cat.Close()
	reg, err := registry.New(registry.Config{Catalog: cat, Keyring: kr, Logger: log})
	if err != nil {
		return err
	}
	def, err := storage.NewLocal(storage.LocalConfig{Root: filepath.Join(b.dir, "inproc", "objects")})
	if err != nil {
		return err
	}
	const maxConns, streamWindow, connWindow = 64, 1 << 20, 2 << 20 // backupd's defaults
	ing, err := ingest.New(ingest.Config{Catalog: cat, Registry: reg, ServiceStore: def,
		Budget: budget.New(int64(b.c.budget) - maxConns*connWindow), Logger: log, PartSize: int64(b.c.partSize),
		SpoolDir: filepath.Join(b.dir, "inproc", "spool"), CompressWorkers: 2,
		Limits: csvscan.Limits{MaxFieldBytes: 4 << 20, MaxRowBytes: 8 << 20}})
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{Auth: server.NoAuth{TenantID: "dev"}, Registry: reg, Ingest: ing, Logger: log})
	if err != nil {
		return err
	}
	gs := srv.GRPCServer(grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow), grpc.MaxConcurrentStreams(16))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	d := &daemon{addr: lis.Addr().String(), proc: &proc{name: "in-process service", exited: make(chan struct{})}}
	if err := d.dial(ctx); err != nil {
		return err
	}
	defer d.conn.Close()
	id, err := createBackup(ctx, d, "profile")
	if err != nil {
		return err
	}

	f, err := os.Create(b.c.cpuprofile)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	res, dur, err := uploadRecords(ctx, d, id, 0, b.csv.main)
	pprof.StopCPUProfile()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	rate := float64(res.GetBytesIn()) / mb / dur.Seconds()
	b.logf("in-process ingest under the CPU profiler: %.1f MB/s; profile in %s", rate, b.c.cpuprofile)
	b.rep.addValue("1", "in-process ingest under the CPU profiler (information; client and service in one process)", rate, "MB/s", "", "")
	if err := abortBackup(ctx, d, id); err != nil {
		return err
	}

	top := b.c.cpuprofile + ".top.txt"
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(tctx, "go", "tool", "pprof", "-top", "-nodecount=40", b.c.cpuprofile)
	cmd.Dir = b.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v: %s", err, tail(string(out), 500))
	}
	if err := os.WriteFile(top, out, 0o644); err != nil {
		return err
	}
	b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("CPU profile of an in-process run of the same pipeline: %s (top functions in %s).", b.c.cpuprofile, top))
	return nil
}
