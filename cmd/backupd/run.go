package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"backupstore/csvscan"
	"backupstore/ingest"
	"backupstore/internal/app"
	"backupstore/internal/bytesize"
	"backupstore/maintenance"
	"backupstore/registry"
	"backupstore/restore"
	"backupstore/secrets"
	"backupstore/server"
	"backupstore/storage"
)

// config is every backupd setting; defaults live in newFlags.
type config struct {
	listen          string
	dataDir         string
	mysqlDSN        string
	masterKeyFile   string
	auth            string
	tokensFile      string
	devTenant       string
	tlsCert, tlsKey string
	tlsClientCA     string
	tlsClientMap    string
	insecureListen  bool
	logFormat       string
	logLevel        string
	shutdownTimeout time.Duration
	revalidateEvery time.Duration
	failThreshold   int
	probeTimeout    time.Duration
	maxRecvMsgSize  int

	memoryBudget    bytesize.Flag
	tenantShare     bytesize.Flag
	budgetWait      time.Duration
	tenantStreams   int
	catalogShare    int
	filesInFlight   int
	streamIdle      time.Duration
	quotas          ingest.Quotas
	partSize        bytesize.Flag
	packThreshold   bytesize.Flag
	packLinger      time.Duration
	maxConns        int
	maxStreams      int
	spoolDir        string
	maxFieldBytes   bytesize.Flag
	maxRowBytes     bytesize.Flag
	conns           server.ConnLimits
	maxConnIdle     time.Duration
	compressWorkers int
	benchNoIndex    bool
	indexCache      bytesize.Flag
	cleanupEvery    time.Duration
	gcGrace         time.Duration
	uploadTTL       time.Duration
	repackBelow     float64
	repackGrace     time.Duration

	allowEndpoints string

	defaultStorage string // local | s3
	localDir       string
	s3             storage.S3Config
	s3SecretFile   string
}

func newFlags(fs *flag.FlagSet, c *config) {
	fs.StringVar(&c.listen, "listen", "127.0.0.1:50051", "gRPC listen address")
	fs.StringVar(&c.dataDir, "data-dir", "./backupd-data", "directory for the embedded catalog, the dev master key and local storage")
	fs.StringVar(&c.mysqlDSN, "mysql-dsn", "", "MySQL/MariaDB catalog DSN, e.g. user:pass@tcp(db:3306)/backupstore (default: embedded SQLite in --data-dir)")
	fs.StringVar(&c.masterKeyFile, "master-key-file", "", "file of base64 AES-256 master keys, first is primary (env BACKUPD_MASTER_KEY may hold the key itself); default in dev: DATA_DIR/master.key, generated once with mode 0600")
	fs.StringVar(&c.auth, "auth", "none", "authentication: none (one dev tenant), token (bearer tokens from --tokens-file) or mtls (client certificates, --tls-client-ca and --tls-client-map)")
	fs.StringVar(&c.tokensFile, "tokens-file", "", "with --auth=token: lines of \"<sha256 hex of token> <tenant id>\"")
	fs.StringVar(&c.devTenant, "dev-tenant", "dev", "the tenant of every call with --auth=none")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key enables TLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "mutual TLS: CA certificates (PEM) client certificates must chain to; required with --auth=mtls")
	fs.StringVar(&c.tlsClientMap, "tls-client-map", "", "with --auth=mtls: lines \"<spiffe://… or CN=…> <tenant id>\" mapping client certificates to tenants")
	fs.BoolVar(&c.insecureListen, "insecure-listen", false, "allow --auth=token or none without TLS on a non-loopback address (a proxy or mesh terminates TLS in front)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long in-flight calls may take to finish")
	fs.DurationVar(&c.revalidateEvery, "revalidate-interval", time.Hour, "re-validate every registered storage this often (0 disables)")
	fs.IntVar(&c.failThreshold, "revalidate-failures", registry.DefaultFailureThreshold, "validations failed in a row before a storage is marked unavailable")
	fs.DurationVar(&c.probeTimeout, "probe-timeout", registry.DefaultStepTimeout, "timeout of each S3 API probe during validation")
	fs.IntVar(&c.maxRecvMsgSize, "max-recv-msg-size", server.DefaultMaxRecvMsgSize, "largest request message accepted, bytes")

	c.memoryBudget, c.partSize, c.maxFieldBytes, c.maxRowBytes = app.DefaultMemoryBudget, ingest.DefaultPartSize, csvscan.DefaultMaxFieldBytes, csvscan.DefaultMaxRowBytes
	fs.Var(&c.memoryBudget, "memory-budget", "service-wide budget for buffered bytes (upload parts, frames, gRPC flow-control windows), e.g. 1GiB; GOMEMLIMIT is set to it plus 256MiB unless given")
	fs.Var(&c.partSize, "part-size", "multipart part size for uploads (≥ 5MiB)")
	c.packThreshold = ingest.DefaultPackThreshold
	fs.Var(&c.packThreshold, "pack-threshold", "file bodies up to this size (with a declared size) are packed with others into pack objects, one PUT and one catalog transaction per pack; 0 disables packing (at most --part-size)")
	fs.DurationVar(&c.packLinger, "pack-linger", ingest.DefaultPackLinger, "an open pack with uploads waiting on it is written after this long without a new body")
	fs.Var(&c.tenantShare, "tenant-memory-share", "most of the memory budget one tenant's streams may hold at once; default a quarter of the budget (at least 128MiB), the whole budget with --auth=none")
	fs.DurationVar(&c.budgetWait, "memory-wait", 10*time.Second, "longest a stream waits for memory before it is answered RESOURCE_EXHAUSTED with a retry delay")
	fs.IntVar(&c.catalogShare, "catalog-share-per-tenant", ingest.DefaultCatalogShare, "catalog calls of the upload path (lookups, commits, parts) one tenant may have in flight; more wait for one of its own, so no tenant holds every catalog connection")
	fs.IntVar(&c.filesInFlight, "files-in-flight-per-tenant", ingest.DefaultFilesInFlight, "files one tenant's UploadFiles streams may have read and not yet answered, together; the streams stop reading beyond (each waiting file costs memory whatever its size)")
	fs.IntVar(&c.tenantStreams, "max-streams-per-tenant", 32, "upload and restore streams one tenant may have open; one more answers RESOURCE_EXHAUSTED (0: no cap)")
	fs.DurationVar(&c.streamIdle, "stream-idle-timeout", server.DefaultStreamIdleTimeout, "an upload stream that sends nothing this long is ended (ABORTED, the upload stays PENDING and resumable) and its memory released")
	fs.Int64Var(&c.quotas.MaxOpenBackups, "max-open-backups-per-tenant", 1000, "OPEN backups one tenant may have; CreateBackup past it answers RESOURCE_EXHAUSTED (0: no limit)")
	fs.Int64Var(&c.quotas.MaxPendingUploads, "max-pending-uploads-per-tenant", 10000, "PENDING uploads one tenant may have; a new upload id past it answers RESOURCE_EXHAUSTED (0: no limit)")
	fs.Int64Var(&c.quotas.MaxCatalogRows, "max-objects-per-tenant", 0, "object plus file rows one tenant may have in the catalog; a new upload past it answers RESOURCE_EXHAUSTED (0: no limit; counting costs a scan of the tenant's rows per new upload)")
	fs.IntVar(&c.maxConns, "max-connections", app.DefaultMaxConnections, "concurrent client connections accepted")
	fs.IntVar(&c.maxStreams, "max-streams-per-connection", app.DefaultMaxStreamsPerConnection, "concurrent calls per connection")
	fs.IntVar(&c.conns.PerAddress, "max-connections-per-address", 16, "connections open from one source IP address (0: no cap; behind a proxy or sidecar every connection has its address)")
	fs.IntVar(&c.conns.PerTenant, "max-connections-per-tenant", 16, "connections carrying one tenant's calls; a call on one more answers RESOURCE_EXHAUSTED (0: no cap)")
	fs.DurationVar(&c.conns.FirstCall, "first-call-timeout", server.DefaultFirstCallTimeout, "a connection without an authenticated call this long after it opened is closed (TLS handshake included)")
	fs.DurationVar(&c.maxConnIdle, "max-connection-idle", server.DefaultMaxConnectionIdle, "a connection with no call this long is closed")
	fs.StringVar(&c.spoolDir, "spool-dir", "", "temporary files (record indexes being built, very large parts); default DATA_DIR/spool")
	fs.Var(&c.maxFieldBytes, "max-field-bytes", "largest CSV field accepted")
	fs.Var(&c.maxRowBytes, "max-row-bytes", "largest CSV row accepted")
	fs.IntVar(&c.compressWorkers, "compress-workers", ingest.DefaultCompressWorkers, "zstd goroutines per record upload")
	fs.DurationVar(&c.cleanupEvery, "cleanup-interval", time.Hour, "run cleanup (retention, deletions, stale uploads, garbage) for every tenant this often; 0 disables (RunCleanup still works)")
	fs.DurationVar(&c.gcGrace, "gc-grace", maintenance.DefaultGrace, "garbage collection only deletes keys without a catalog row older than this")
	fs.DurationVar(&c.uploadTTL, "upload-ttl", maintenance.DefaultUploadTTL, "cleanup aborts PENDING uploads idle longer than this")
	fs.Float64Var(&c.repackBelow, "repack-below", maintenance.DefaultRepackBelow, "cleanup repacks a pack where a pack of its live bodies alone would be less than this fraction of it (0 < f ≤ 1; negative: never)")
	fs.DurationVar(&c.repackGrace, "repack-grace", maintenance.DefaultRepackGrace, "a repacked pack's object stays readable this long after its bodies moved, then cleanup deletes it")
	c.indexCache = restore.DefaultBlockCacheBytes
	fs.Var(&c.indexCache, "index-block-cache", "restore: bytes of record-index blocks kept in memory (LRU)")
	fs.BoolVar(&c.benchNoIndex, "benchmark-without-index", false, "benchmarks only: do not index record ids and references (duplicates go undetected)")
	fs.StringVar(&c.allowEndpoints, "allow-endpoints", "", "tenant storages may use these non-public endpoints besides public addresses: comma-separated CIDRs (10.0.0.0/8, 127.0.0.1/32) and host names (s3.corp.example and names under it); link-local and cloud metadata addresses only by a CIDR inside them")
	fs.StringVar(&c.defaultStorage, "default-storage", "local", "service-managed default storage for tenants without one: local or s3")
	fs.StringVar(&c.localDir, "default-local-dir", "", "with --default-storage=local: directory (default DATA_DIR/objects)")
	fs.StringVar(&c.s3.Endpoint, "default-s3-endpoint", "", "with --default-storage=s3: custom S3-compatible endpoint URL")
	fs.StringVar(&c.s3.Region, "default-s3-region", "us-east-1", "with --default-storage=s3: region code")
	fs.StringVar(&c.s3.Bucket, "default-s3-bucket", "", "with --default-storage=s3: bucket")
	fs.StringVar(&c.s3.Prefix, "default-s3-prefix", "", "with --default-storage=s3: key prefix")
	fs.StringVar(&c.s3.KMSKeyID, "default-s3-kms-key-id", "", "with --default-storage=s3: SSE-KMS key id or ARN")
	fs.BoolVar(&c.s3.PathStyle, "default-s3-path-style", false, "with --default-storage=s3: path-style addressing")
	fs.StringVar(&c.s3.AccessKeyID, "default-s3-access-key-id", "", "with --default-storage=s3: access key id")
	fs.StringVar(&c.s3SecretFile, "default-s3-secret-file", "", "with --default-storage=s3: file holding the secret access key (or env BACKUPD_DEFAULT_S3_SECRET_ACCESS_KEY; never a flag, flags show in ps)")
}

// loopbackListen reports whether addr listens on loopback only.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// applyEnv sets every flag not given on the command line from BACKUPD_<NAME>.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "BACKUPD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
		}
	})
	return err
}

// run starts backupd and blocks until ctx ends, then shuts down gracefully.
// If ready is non-nil, the bound listen address is sent on it once serving.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("backupd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	newFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	log, err := newLogger(stderr, c.logFormat, c.logLevel)
	if err != nil {
		return err
	}

	if c.repackBelow == 0 || c.repackBelow > 1 {
		return fmt.Errorf("--repack-below %g: want a fraction in (0, 1], or a negative value never to repack", c.repackBelow)
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	keyring, err := loadKeyring(&c, log)
	if err != nil {
		return err
	}
	driver, dsn := "sqlite", filepath.Join(c.dataDir, "catalog.db")
	if c.mysqlDSN != "" {
		driver, dsn = "mysql", c.mysqlDSN
	}
	defStore, err := defaultStorage(ctx, &c, log)
	if err != nil {
		return err
	}
	if c.tlsCert == "" && !c.insecureListen && !loopbackListen(c.listen) {
		return fmt.Errorf("refusing to serve --auth=%s in plaintext on %s: tokens and backups would cross the network in the clear; give --tls-cert and --tls-key, or --insecure-listen when a proxy or mesh terminates TLS in front of backupd", c.auth, c.listen)
	}
	spool := c.spoolDir
	if spool == "" {
		spool = filepath.Join(c.dataDir, "spool")
	}
	c.conns.Max = c.maxConns
	a, err := app.New(ctx, app.Config{
		Catalog: app.CatalogConfig{Driver: driver, DSN: dsn}, Keyring: keyring, ServiceStore: defStore, Logger: log,
		Auth: app.AuthConfig{Mode: c.auth, DevTenant: c.devTenant, TokensFile: c.tokensFile, ReloadOnSIGHUP: true, ClientMap: c.tlsClientMap},
		GRPC: app.GRPCConfig{StaticWindows: true, MaxStreamsPerConnection: c.maxStreams,
			CertFile: c.tlsCert, KeyFile: c.tlsKey, ClientCAFile: c.tlsClientCA},
		Memory:   app.MemoryConfig{Total: int64(c.memoryBudget), TenantShare: int64(c.tenantShare), MaxWait: c.budgetWait, SetMemoryLimit: true},
		Streams:  &server.StreamLimits{MaxPerTenant: c.tenantStreams, IdleTimeout: c.streamIdle},
		Registry: registry.Config{FailureThreshold: c.failThreshold, StepTimeout: c.probeTimeout, AllowEndpoints: c.allowEndpoints},
		Ingest: ingest.Config{PartSize: int64(c.partSize), PackThreshold: int64(c.packThreshold), PackLinger: c.packLinger, SpoolDir: spool, CompressWorkers: c.compressWorkers,
			BenchmarkWithoutIndex: c.benchNoIndex, Quotas: c.quotas, CatalogShare: c.catalogShare, FilesInFlight: c.filesInFlight,
			Limits: csvscan.Limits{MaxFieldBytes: int(c.maxFieldBytes), MaxRowBytes: int(c.maxRowBytes)}},
		Restore:         restore.Config{BlockCacheBytes: int64(c.indexCache)},
		Maintenance:     maintenance.Config{Grace: c.gcGrace, UploadTTL: c.uploadTTL, RepackBelow: c.repackBelow, RepackGrace: c.repackGrace},
		Server:          server.Config{MaxRecvMsgSize: c.maxRecvMsgSize, MaxConnectionIdle: c.maxConnIdle, Conns: c.conns},
		RevalidateEvery: c.revalidateEvery,
		CleanupEvery:    c.cleanupEvery,
		ShutdownTimeout: c.shutdownTimeout,
		Hooks:           app.Hooks{Crash: crashAt(log, os.Getenv("BACKUPD_TEST_CRASH_AT"))},
	})
	if err != nil {
		return err
	}

	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		a.Close()
		return err
	}
	log.Info("backupd serving", "addr", lis.Addr().String(), "catalog", driver, "auth", c.auth,
		"default_storage", c.defaultStorage, "tls", c.tlsCert != "", "connections", fmt.Sprintf("%d (%s)", c.maxConns, c.conns))
	if ready != nil {
		ready <- lis.Addr().String()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.Serve(lis) }()
	select {
	case err := <-serveErr:
		a.Close()
		return err
	case <-ctx.Done():
	}
	if err := a.Close(); err != nil {
		log.Warn("closing the catalog", "err", err)
	}
	log.Info("stopped")
	return nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// loadKeyring: BACKUPD_MASTER_KEY (the key itself), else --master-key-file,
// else — only with the embedded catalog — DATA_DIR/master.key, generated once.
func loadKeyring(c *config, log *slog.Logger) (*secrets.Keyring, error) {
	var keys [][]byte
	var err error
	switch {
	case os.Getenv("BACKUPD_MASTER_KEY") != "":
		keys, err = secrets.ParseKeys([]byte(strings.ReplaceAll(os.Getenv("BACKUPD_MASTER_KEY"), ",", "\n")))
	case c.masterKeyFile != "":
		keys, err = secrets.LoadKeyFile(c.masterKeyFile)
	case c.mysqlDSN != "":
		return nil, errors.New("with --mysql-dsn a master key is required (--master-key-file or BACKUPD_MASTER_KEY; create one with: head -c 32 /dev/urandom | base64), so every replica seals secrets with the same key")
	default:
		path := filepath.Join(c.dataDir, "master.key")
		var created bool
		keys, created, err = secrets.LoadOrCreateKeyFile(path)
		if created {
			log.Warn("generated a dev master key; back it up, stored secrets cannot be read without it", "path", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return secrets.NewKeyring(keys...)
}

func defaultStorage(ctx context.Context, c *config, log *slog.Logger) (storage.Store, error) {
	switch c.defaultStorage {
	case "local":
		dir := c.localDir
		if dir == "" {
			dir = filepath.Join(c.dataDir, "objects")
		}
		return storage.NewLocal(storage.LocalConfig{Root: dir})
	case "s3":
		secret := os.Getenv("BACKUPD_DEFAULT_S3_SECRET_ACCESS_KEY")
		if c.s3SecretFile != "" {
			b, err := os.ReadFile(c.s3SecretFile)
			if err != nil {
				return nil, fmt.Errorf("--default-s3-secret-file: %w", err)
			}
			secret = strings.TrimSpace(string(b))
		}
		if c.s3.Bucket == "" || c.s3.AccessKeyID == "" || secret == "" {
			return nil, errors.New("--default-storage=s3 needs --default-s3-bucket, --default-s3-access-key-id and a secret (--default-s3-secret-file or BACKUPD_DEFAULT_S3_SECRET_ACCESS_KEY)")
		}
		cfg := c.s3
		cfg.SecretAccessKey = secret
		s3, err := storage.NewS3(cfg)
		if err != nil {
			return nil, fmt.Errorf("default S3 storage: %w", err)
		}
		ctx, cancel := context.WithTimeout(ctx, c.probeTimeout)
		defer cancel()
		if _, err := s3.BucketLocation(ctx); err != nil {
			return nil, fmt.Errorf("default S3 storage: bucket %s not reachable with the given credentials: %s", cfg.Bucket, storage.ErrorCode(err))
		}
		log.Info("service default storage", "kind", "s3", "bucket", cfg.Bucket, "endpoint", cfg.Endpoint)
		return s3, nil
	}
	return nil, fmt.Errorf("--default-storage must be local or s3, not %q", c.defaultStorage)
}

// crashAt, for fault-injection tests only (BACKUPD_TEST_CRASH_AT), kills
// the process at the named point of a deletion, as a power cut would.
func crashAt(log *slog.Logger, at string) func(point string) {
	if at == "" {
		return nil
	}
	return func(point string) {
		if point == at {
			log.Error("fault injection: crashing", "point", point)
			os.Exit(137)
		}
	}
}
