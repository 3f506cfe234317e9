package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"backupstore/budget"
	"backupstore/csvscan"
	"backupstore/ingest"
	"backupstore/internal/bytesize"
	"backupstore/internal/wirecodec"
	"backupstore/maintenance"
	"backupstore/metadata"
	"backupstore/registry"
	"backupstore/restore"
	"backupstore/secrets"
	"backupstore/server"
	"backupstore/storage"
)

// Static gRPC flow-control windows (setting them turns off gRPC's BDP
// estimator), so that a connection never buffers more than ConnWindow bytes
// and the budget can count them.
const (
	StreamWindow = 1 << 20
	ConnWindow   = 2 << 20
	// MemOverhead is what the process needs beyond the budget: code, the
	// catalog driver, gRPC's per-connection structures, S3 clients.
	MemOverhead = 256 << 20
	// DefaultMemoryBudget, DefaultMaxConnections and
	// DefaultMaxStreamsPerConnection are backupd's defaults of
	// MemoryConfig.Total, Server.Conns.Max and GRPC.MaxStreamsPerConnection.
	DefaultMemoryBudget            = 1 << 30
	DefaultMaxConnections          = 64
	DefaultMaxStreamsPerConnection = 16
	// minUsableMemory is the least the windows must leave for upload buffers.
	minUsableMemory = 64 << 20
	// minTenantShare is the least a tenant's default share may be.
	minTenantShare = 128 << 20
)

// Config is everything New assembles. The dependency fields of the package
// Configs (Catalog, Registry, Budget, Logger, ServiceStore) are filled by
// New; every other field keeps its package's meaning and default. Errors
// name backupd's flags: Config is backupd's configuration, typed.
type Config struct {
	// Catalog is where the catalog lives ("sqlite" or "mysql" and a DSN).
	Catalog CatalogConfig
	// Keyring seals tenants' storage secrets. Required.
	Keyring *secrets.Keyring
	// ServiceStore is the operator's default storage for tenants without one
	// of their own. Required.
	ServiceStore storage.Store
	// Logger is every package's logger. Default slog.Default().
	Logger *slog.Logger

	Auth AuthConfig
	GRPC GRPCConfig
	// Memory sizes the budget every stream reserves its buffers from.
	Memory MemoryConfig
	// Streams caps each tenant's open streams and ends idle uploads; nil:
	// no cap (idle uploads end after server.DefaultStreamIdleTimeout).
	Streams *server.StreamLimits

	Registry    registry.Config
	Ingest      ingest.Config
	Restore     restore.Config
	Maintenance maintenance.Config
	// Server's Conns apply when set (Serve then guards the listener).
	Server server.Config

	// RevalidateEvery re-validates every registered storage this often
	// while serving; 0 disables it.
	RevalidateEvery time.Duration
	// CleanupEvery runs cleanup for every tenant this often while serving;
	// 0 disables it (RunCleanup still works).
	CleanupEvery time.Duration
	// ShutdownTimeout is how long Close lets in-flight calls finish before it
	// cancels them; 0 cancels them at once.
	ShutdownTimeout time.Duration

	Hooks Hooks
}

// CatalogConfig names the catalog database.
type CatalogConfig struct {
	Driver string // "sqlite" or "mysql"
	DSN    string
}

// AuthConfig says who a call's tenant is.
type AuthConfig struct {
	// Mode is "none" (every call is DevTenant), "token" (bearer tokens from
	// TokensFile, reloaded when the file changes and, with ReloadOnSIGHUP,
	// on SIGHUP) or "mtls" (client certificates mapped by ClientMap). An
	// Authenticator given instead takes precedence.
	Mode           string
	DevTenant      string
	TokensFile     string
	ReloadOnSIGHUP bool
	ClientMap      string
	// Authenticator, if set, is used as is (tests with in-memory tokens).
	Authenticator server.Authenticator
}

// GRPCConfig shapes the transport.
type GRPCConfig struct {
	// StaticWindows fixes the flow-control windows at StreamWindow and
	// ConnWindow and takes Server.Conns.Max connections' worth of them out
	// of Memory.Total; without it gRPC grows windows as it sees fit (tests).
	StaticWindows bool
	// MaxStreamsPerConnection caps concurrent calls per connection; 0: gRPC's default.
	MaxStreamsPerConnection int
	// TLS: with CertFile and KeyFile the server speaks TLS 1.3 only; with
	// ClientCAFile too, clients must present a certificate chaining to it.
	CertFile, KeyFile, ClientCAFile string
}

// MemoryConfig sizes the service-wide budget of buffered bytes.
type MemoryConfig struct {
	// Total is every buffered byte: upload parts, frames and, with
	// GRPC.StaticWindows, the flow-control windows. Required.
	Total int64
	// TenantShare is the most one tenant's streams may hold; 0: all of it
	// with Auth.Mode "none" (one tenant), else a quarter of what the windows
	// leave, at least 128 MiB.
	TenantShare int64
	// MaxWait bounds how long a stream waits for memory; 0: as long as its
	// context lets it.
	MaxWait time.Duration
	// SetMemoryLimit sets the Go runtime's memory limit to Total +
	// MemOverhead unless GOMEMLIMIT is set: for a process that is the service.
	SetMemoryLimit bool
}

// Hooks are testing knobs; their zero value is production.
type Hooks struct {
	// WrapServiceStore wraps the service-managed default store, for fault
	// injection and for counting what reaches it.
	WrapServiceStore func(storage.Store) storage.Store
	// Crash is maintenance.Hooks.Crash (and "before-pack-commit": a pack is
	// in the bucket, its rows not yet committed): a crash test's backupd ends its
	// process at the named point of a deletion.
	Crash func(point string)
}

// App is the assembled service. Its exported fields are for tests; they
// must not be replaced.
type App struct {
	Catalog     *metadata.Store
	Registry    *registry.Registry
	Budget      *budget.Budget
	Ingest      *ingest.Service
	Restore     *restore.Service
	Maintenance *maintenance.Service
	Streams     *server.StreamGuard // nil without Config.Streams
	Server      *server.Server
	GRPC        *grpc.Server

	cfg       Config
	log       *slog.Logger
	bg        context.Context // ends at Close: revalidation, cleanup, token reloads
	cancelBG  context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

// New opens the catalog and builds every part of the service. Background
// work (token reloads now; revalidation and cleanup once Serve runs) ends
// when ctx does or at Close. On error, whatever was opened is closed.
func New(ctx context.Context, cfg Config) (a *App, err error) {
	switch {
	case cfg.Keyring == nil:
		return nil, errors.New("app: Keyring is required")
	case cfg.ServiceStore == nil:
		return nil, errors.New("app: ServiceStore is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	a = &App{cfg: cfg, log: log}
	a.bg, a.cancelBG = context.WithCancel(ctx)
	a.Catalog, err = metadata.Open(ctx, cfg.Catalog.Driver, cfg.Catalog.DSN)
	if err != nil {
		a.cancelBG()
		return nil, fmt.Errorf("catalog (%s): %w", cfg.Catalog.Driver, err)
	}
	opened := a // the named result is nil once an error is returned
	defer func() {
		if err != nil {
			opened.cancelBG()
			opened.Catalog.Close()
		}
	}()
	auth, err := a.authenticator()
	if err != nil {
		return nil, err
	}
	store := cfg.ServiceStore
	if cfg.Hooks.WrapServiceStore != nil {
		store = cfg.Hooks.WrapServiceStore(store)
	}

	rc := cfg.Registry
	rc.Catalog, rc.Keyring, rc.Logger, rc.ServiceStore = a.Catalog, cfg.Keyring, log, store
	if a.Registry, err = registry.New(rc); err != nil {
		return nil, err
	}
	if a.Budget, err = newBudget(cfg); err != nil {
		return nil, err
	}

	ic := cfg.Ingest
	ic.Catalog, ic.Registry, ic.Budget, ic.Logger = a.Catalog, a.Registry, a.Budget, log
	if ic.PackKey == nil {
		ic.PackKey = func(tenant string) (string, []byte, error) {
			id, key := cfg.Keyring.DeriveKey("pack-index", tenant)
			return id, key, nil
		}
	}
	if cfg.Hooks.Crash != nil && (ic.Hooks == nil || ic.Hooks.BeforePackCommit == nil) {
		h := &ingest.Hooks{}
		if ic.Hooks != nil {
			*h = *ic.Hooks
		}
		h.BeforePackCommit = func(string) { cfg.Hooks.Crash("before-pack-commit") }
		ic.Hooks = h
	}
	// Restore and verify decode what ingest wrote: their bound on one
	// frame is the most input ingest puts in one.
	maxFrame := cmpOr(ic.FrameSize, ingest.DefaultFrameSize) + cmpOr(ic.Limits.MaxRowBytes, csvscan.DefaultMaxRowBytes)
	if a.Ingest, err = ingest.New(ic); err != nil {
		return nil, err
	}
	rsc := cfg.Restore
	rsc.Catalog, rsc.Registry, rsc.Budget, rsc.Logger = a.Catalog, a.Registry, a.Budget, log
	rsc.MaxFrameBytes = cmpOr(rsc.MaxFrameBytes, maxFrame)
	if a.Restore, err = restore.New(rsc); err != nil {
		return nil, err
	}
	mc := cfg.Maintenance
	mc.Catalog, mc.Registry, mc.Logger = a.Catalog, a.Registry, log
	if mc.PackKeyWith == nil {
		mc.PackKeyWith = func(keyID, tenant string) ([]byte, error) {
			return cfg.Keyring.DeriveKeyWith(keyID, "pack-index", tenant)
		}
	}
	if mc.PackKey == nil {
		mc.PackKey = ic.PackKey // a repack's packs are written as ingest's are
	}
	if mc.Budget == nil {
		mc.Budget = a.Budget
	}
	mc.MaxFrameBytes = cmpOr(mc.MaxFrameBytes, maxFrame)
	if cfg.Hooks.Crash != nil {
		mc.Hooks = &maintenance.Hooks{Crash: cfg.Hooks.Crash}
	}
	if a.Maintenance, err = maintenance.New(mc); err != nil {
		return nil, err
	}
	if cfg.Streams != nil {
		if a.Streams, err = server.NewStreamGuard(*cfg.Streams); err != nil {
			return nil, err
		}
	}

	sc := cfg.Server
	sc.Auth, sc.Registry, sc.Ingest, sc.Restore, sc.Maintenance, sc.Logger, sc.Streams = auth, a.Registry, a.Ingest, a.Restore, a.Maintenance, log, a.Streams
	if a.Server, err = server.New(sc); err != nil {
		return nil, err
	}
	opts, err := grpcOptions(cfg)
	if err != nil {
		return nil, err
	}
	a.GRPC = a.Server.GRPCServer(opts...)
	return a, nil
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// newBudget takes the connections' static flow-control windows out of the
// memory budget first; the rest is for upload buffers.
func newBudget(cfg Config) (*budget.Budget, error) {
	m := cfg.Memory
	var windows int64
	if cfg.GRPC.StaticWindows {
		windows = int64(cfg.Server.Conns.Max) * ConnWindow
	}
	if m.Total < windows+minUsableMemory {
		return nil, fmt.Errorf("--memory-budget %s is too small: %d connections' flow-control windows alone take %d MiB; raise it or lower --max-connections",
			bytesize.Format(m.Total), cfg.Server.Conns.Max, windows>>20)
	}
	if m.SetMemoryLimit && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(m.Total + MemOverhead)
	}
	usable := m.Total - windows
	share := m.TenantShare
	switch {
	case share == 0 && cfg.Auth.Mode == "none":
		share = usable // one tenant
	case share == 0:
		share = min(usable, max(usable/4, minTenantShare))
	case share > usable:
		return nil, fmt.Errorf("--tenant-memory-share %s is more than the memory budget left after flow-control windows (%d MiB)", bytesize.Format(m.TenantShare), usable>>20)
	}
	return budget.NewShared(budget.Config{Size: usable, TenantShare: share, MaxWait: m.MaxWait})
}

// authenticator builds Auth and starts its reloads on a.bg.
func (a *App) authenticator() (server.Authenticator, error) {
	c := a.cfg.Auth
	if c.Authenticator != nil {
		return c.Authenticator, nil
	}
	switch c.Mode {
	case "none":
		a.log.Warn("authentication disabled (--auth=none): every caller is tenant " + c.DevTenant)
		return server.NoAuth{TenantID: c.DevTenant}, nil
	case "token":
		if c.TokensFile == "" {
			return nil, errors.New("--auth=token needs --tokens-file")
		}
		tf, err := server.OpenTokenFile(c.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("tokens file: %w", err)
		}
		a.reloadTokens(tf, c.ReloadOnSIGHUP)
		return tf, nil
	case "mtls":
		if c.ClientMap == "" || a.cfg.GRPC.ClientCAFile == "" || a.cfg.GRPC.CertFile == "" {
			return nil, errors.New("--auth=mtls needs --tls-cert, --tls-key, --tls-client-ca and --tls-client-map")
		}
		m, err := server.LoadCertMap(c.ClientMap)
		if err != nil {
			return nil, fmt.Errorf("client certificate map: %w", err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("--auth must be none, token or mtls, not %q", c.Mode)
}

// reloadTokens adds and revokes tokens without a restart: when the file
// changes and, with onHUP, on SIGHUP. A file that does not load leaves the
// tokens in force as they were.
func (a *App) reloadTokens(tf *server.TokenFile, onHUP bool) {
	reloaded := func(how string) func(error) {
		return func(err error) {
			if err != nil {
				a.log.Error("tokens file not reloaded; the previous tokens stay in force", "how", how, "err", err)
				return
			}
			a.log.Info("tokens file reloaded", "how", how, "tokens", tf.Tokens())
		}
	}
	if onHUP {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		go func() {
			defer signal.Stop(hup)
			for {
				select {
				case <-a.bg.Done():
					return
				case <-hup:
					reloaded("SIGHUP")(tf.Reload())
				}
			}
		}()
	}
	go tf.Watch(a.bg, 5*time.Second, reloaded("file changed"))
}

func grpcOptions(cfg Config) ([]grpc.ServerOption, error) {
	g := cfg.GRPC
	// Upload data messages are unmarshalled without a copy (their bytes stay
	// in the received buffer until the stream's next Recv): the garbage of an
	// upload no longer grows with its size (docs/FORMAT.md §4.2).
	opts := []grpc.ServerOption{grpc.ForceServerCodecV2(wirecodec.Codec{})}
	if g.StaticWindows {
		opts = append(opts, grpc.InitialWindowSize(StreamWindow), grpc.InitialConnWindowSize(ConnWindow))
	}
	if g.MaxStreamsPerConnection > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(g.MaxStreamsPerConnection)))
	}
	if cfg.Server.Conns.FirstCall > 0 {
		opts = append(opts, grpc.ConnectionTimeout(cfg.Server.Conns.FirstCall)) // the TLS and HTTP/2 handshakes
	}
	if g.CertFile == "" && g.KeyFile == "" {
		return opts, nil
	}
	cert, err := tls.LoadX509KeyPair(g.CertFile, g.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if g.ClientCAFile != "" {
		pem, err := os.ReadFile(g.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificates found", g.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return append(opts, grpc.Creds(credentials.NewTLS(tc))), nil
}

// Serve serves gRPC on lis (guarded by Server.Conns when they are set) and
// runs the periodic revalidation and cleanup, until Close. It returns nil
// after Close, else what ended serving.
func (a *App) Serve(lis net.Listener) error {
	if a.cfg.Server.Conns != (server.ConnLimits{}) {
		lis = a.Server.Listener(lis)
	}
	if a.cfg.RevalidateEvery > 0 {
		go every(a.bg, a.cfg.RevalidateEvery, func(ctx context.Context) {
			if err := a.Registry.RevalidateAll(ctx); err != nil && ctx.Err() == nil {
				a.log.ErrorContext(ctx, "storage revalidation pass failed", "err", err)
			}
		})
	}
	if a.cfg.CleanupEvery > 0 {
		go every(a.bg, a.cfg.CleanupEvery, a.Maintenance.CleanupAll)
	}
	return a.GRPC.Serve(lis)
}

// every runs fn each interval until ctx ends: the service's periodic work
// (revalidation of storages, scheduled cleanup).
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// Close stops the service: health turns NOT_SERVING, background work ends,
// in-flight calls get ShutdownTimeout to finish before they are cancelled,
// and the catalog is closed. Calling it again returns the first result.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		graceful := a.cfg.ShutdownTimeout > 0
		if graceful {
			a.log.Info("shutting down: letting in-flight calls finish", "timeout", a.cfg.ShutdownTimeout)
		}
		a.Server.Shutdown()
		a.cancelBG()
		if graceful {
			done := make(chan struct{})
			go func() { a.GRPC.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(a.cfg.ShutdownTimeout):
				a.log.Warn("shutdown timeout: cancelling remaining calls")
				a.GRPC.Stop()
			}
		} else {
			a.GRPC.Stop()
		}
		a.closeErr = a.Catalog.Close()
	})
	return a.closeErr
}
