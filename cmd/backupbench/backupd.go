package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"backupstore/internal/testenv"
	pb "backupstore/proto/backupstore/v1"
)

// daemon is a backupd process and a client connection to it.
type daemon struct {
	proc     *proc
	addr     string
	conn     *grpc.ClientConn
	backups  pb.BackupServiceClient
	stores   pb.StorageServiceClient
	restores pb.RestoreServiceClient
	maint    pb.MaintenanceServiceClient
}

// daemonConfig is what every backupd of one benchmark run shares.
type daemonConfig struct {
	bin       string
	dir       string // parent of each daemon's data directory and log
	dsn       string
	masterKey string // base64, for BACKUPD_MASTER_KEY
	budget    string // --memory-budget
	partSize  string // --part-size
}

// startDaemon starts a fresh backupd (name labels its data directory and log) and waits until it
// answers health checks.
func startDaemon(ctx context.Context, c daemonConfig, name string, extraArgs ...string) (*daemon, error) {
	dataDir := filepath.Join(c.dir, name)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	var d *daemon
	err := testenv.OnFreePort(func(port string) error {
		addr := "127.0.0.1:" + port
		args := append([]string{
			"--listen", addr,
			"--data-dir", dataDir,
			"--mysql-dsn", c.dsn,
			"--memory-budget", c.budget,
			"--part-size", c.partSize,
			"--revalidate-interval", "0", // no background S3 probes during measurements
			"--allow-endpoints", "127.0.0.1/32", // versitygw and its proxies
		}, extraArgs...)
		cmd := exec.Command(c.bin, args...)
		cmd.Env = minimalEnv("BACKUPD_MASTER_KEY=" + c.masterKey)
		p, err := startProc("backupd "+name, cmd, filepath.Join(c.dir, name+".log"))
		if err != nil {
			return err
		}
		if err := waitTCP(ctx, p, addr, 60*time.Second); err != nil {
			p.stop(2 * time.Second)
			return err
		}
		d = &daemon{proc: p, addr: addr}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := d.dial(ctx); err != nil {
		d.proc.stop(2 * time.Second)
		return nil, err
	}
	return d, nil
}

func (d *daemon) dial(ctx context.Context) error {
	conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial backupd: %w", err)
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		conn.Close()
		return fmt.Errorf("backupd health check: %w; log: %s", err, d.proc.logTail(2000))
	}
	d.conn = conn
	d.backups = pb.NewBackupServiceClient(conn)
	d.stores = pb.NewStorageServiceClient(conn)
	d.restores = pb.NewRestoreServiceClient(conn)
	d.maint = pb.NewMaintenanceServiceClient(conn)
	return nil
}

// stop closes the connection and ends the process.
func (d *daemon) stop() {
	if d.conn != nil {
		d.conn.Close()
	}
	d.proc.stop(10 * time.Second)
}

// alive reports an error if the process has exited.
func (d *daemon) alive() error {
	select {
	case <-d.proc.exited:
		return fmt.Errorf("%s exited (%v); log: %s", d.proc.name, d.proc.err, d.proc.logTail(3000))
	default:
		return nil
	}
}
