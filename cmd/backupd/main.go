// Command backupd is the backupstore gRPC server.
//
// With no flags it runs on embedded defaults: a SQLite catalog and a
// local-directory default storage under ./backupd-data, no authentication
// (one dev tenant), gRPC on 127.0.0.1:50051 with health and reflection.
// Every flag can also be set by environment variable: --mysql-dsn is
// BACKUPD_MYSQL_DSN, and so on. Run `backupd -h` for the list.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "backupd:", err)
		os.Exit(1)
	}
}
