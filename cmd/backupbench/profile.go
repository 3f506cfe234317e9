//go:build benchprofile

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
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"backupstore/ingest"
	"backupstore/internal/app"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/registry"
	"backupstore/secrets"
	"backupstore/server"
	"backupstore/storage"
)

// profileBuilt: this build can profile (see profile_stub.go).
const profileBuilt = true

// profile runs the main ingest once more with the service in this process, assembled by
// internal/app as backupd assembles it (same budget, part size, windows), under a CPU profile.
// backupd has no pprof endpoint and the benchmark adds nothing to it; the profile therefore also
// holds the client side (file reads, gRPC sends), which shows under its own functions.
//
// It is built only with -tags benchprofile, so that the benchmark itself depends on the API and
// the storage package alone.
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
	def, err := storage.NewLocal(storage.LocalConfig{Root: filepath.Join(b.dir, "inproc", "objects")})
	if err != nil {
		return err
	}
	a, err := app.New(ctx, app.Config{
		Catalog: app.CatalogConfig{Driver: "mysql", DSN: b.dcfg.dsn}, Keyring: kr, ServiceStore: def, Logger: log,
		Auth:     app.AuthConfig{Mode: "none", DevTenant: "dev"},
		GRPC:     app.GRPCConfig{StaticWindows: true, MaxStreamsPerConnection: app.DefaultMaxStreamsPerConnection},
		Memory:   app.MemoryConfig{Total: int64(b.c.budget)},
		Server:   server.Config{Conns: server.ConnLimits{Max: app.DefaultMaxConnections}},
		Registry: registry.Config{AllowEndpoints: "127.0.0.1/32"},
		Ingest:   ingest.Config{PartSize: int64(b.c.partSize), SpoolDir: filepath.Join(b.dir, "inproc", "spool")},
	})
	if err != nil {
		return err
	}
	defer a.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = a.Serve(lis) }()
	d := &daemon{addr: lis.Addr().String(), proc: &proc{name: "in-process service", exited: make(chan struct{})}}
	if err := d.dial(ctx); err != nil {
		return err
	}
	defer d.conn.Close()
	id, err := createBackup(ctx, d, "profile")
	if err != nil {
		return err
	}

	// Allocations of the run: heap profiles before and after, compared with -diff_base.
	base := strings.TrimSuffix(b.c.cpuprofile, filepath.Ext(b.c.cpuprofile))
	allocBase, allocAfter := base+"-allocs-base.pprof", base+"-allocs.pprof"
	if err := heapProfile(allocBase); err != nil {
		return err
	}
	var res *pb.UploadResult
	var dur time.Duration
	if err := cpuProfile(b.c.cpuprofile, func() (err error) {
		res, dur, err = uploadRecords(ctx, d, id, 0, b.csv.main)
		return err
	}); err != nil {
		return err
	}
	if err := heapProfile(allocAfter); err != nil {
		return err
	}
	rate := float64(res.GetBytesIn()) / mb / dur.Seconds()
	b.logf("in-process ingest under the CPU profiler: %.1f MB/s; profile in %s", rate, b.c.cpuprofile)
	b.rep.addValue("1", "in-process ingest under the CPU profiler (information; client and service in one process)", rate, "MB/s", "", "")
	if err := abortBackup(ctx, d, id); err != nil {
		return err
	}

	// The small-file stage, likewise.
	filesProfile := base + "-files" + filepath.Ext(b.c.cpuprofile)
	if id, err = createBackup(ctx, d, "profile-files"); err != nil {
		return err
	}
	fs := newFileSet(b.c.files, int(b.c.fileSize))
	var out filesOutcome
	if err := cpuProfile(filesProfile, func() (err error) {
		out, err = uploadFiles(ctx, d, id, fs, b.c.streams, false, "profile")
		return err
	}); err != nil {
		return err
	}
	frate := float64(b.c.files) / out.dur.Seconds()
	b.logf("in-process UploadFile under the CPU profiler: %.0f files/s; profile in %s", frate, filesProfile)
	b.rep.addValue("5", "in-process UploadFile under the CPU profiler (information; client and service in one process)", frate, "files/s", "", "")

	for _, p := range []string{b.c.cpuprofile, filesProfile} {
		if err := pprofTop(ctx, b.root, p, p); err != nil {
			return err
		}
	}
	if err := pprofTop(ctx, b.root, allocAfter, "-sample_index=alloc_space", "-diff_base="+allocBase, allocAfter); err != nil {
		return err
	}
	b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("CPU profiles of in-process runs of the same pipeline: %s (records) and %s (files); "+
		"allocations of the records run: %s (-diff_base %s); top functions in *.top.txt beside them.",
		b.c.cpuprofile, filesProfile, allocAfter, allocBase))
	return nil
}

// heapProfile writes the heap profile (allocations since the start included) after a GC, so
// that it is up to date.
func heapProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// pprofTop writes `go tool pprof -top args...` to out.top.txt.
func pprofTop(ctx context.Context, root, out string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof", "-top", "-nodecount=40"}, args...)...)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	top, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v: %s", err, tail(stderr.String(), 500))
	}
	return os.WriteFile(out+".top.txt", top, 0o644)
}
