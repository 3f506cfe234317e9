package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"backupstore/ingest"
	"backupstore/maintenance"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/registry"
	"backupstore/restore"
)

// Config wires the server to its domain packages.
type Config struct {
	Auth     Authenticator
	Registry *registry.Registry
	Ingest   *ingest.Service
	Restore  *restore.Service
	// Maintenance is optional: without it MaintenanceService is not served.
	Maintenance *maintenance.Service
	Logger      *slog.Logger
	// MaxRecvMsgSize caps one request message. Default 4 MiB + 64 KiB.
	MaxRecvMsgSize int
	// MaxConnectionIdle closes a connection that has had no call for this
	// long. Default 5 minutes.
	MaxConnectionIdle time.Duration
	// Conns limits connections per address and per tenant, and how long an
	// anonymous one stays open; they apply on the listener Listener returns.
	Conns ConnLimits
	// Streams caps each tenant's open streams and ends idle uploads; nil:
	// no cap, idle uploads end after DefaultStreamIdleTimeout.
	Streams *StreamGuard
}

// Defaults of Config.
const (
	// DefaultMaxRecvMsgSize is a 4 MiB data message and its envelope.
	DefaultMaxRecvMsgSize = 4<<20 + 64<<10
	// DefaultMaxConnectionIdle closes idle connections: each holds a slot
	// of Conns.Max.
	DefaultMaxConnectionIdle = 5 * time.Minute
)

// MaxHeaderListSize caps the request headers (metadata) of one call, in bytes.
const MaxHeaderListSize = 8 << 10

// Server implements the backupstore gRPC services.
type Server struct {
	pb.UnimplementedStorageServiceServer
	pb.UnimplementedBackupServiceServer
	pb.UnimplementedRestoreServiceServer
	pb.UnimplementedMaintenanceServiceServer

	auth   Authenticator
	reg    *registry.Registry
	ing    *ingest.Service
	rst    *restore.Service
	mnt    *maintenance.Service
	log    *slog.Logger
	health *health.Server
	cfg    Config
	conns  *connGuard // nil until Listener
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Auth == nil {
		return nil, errors.New("server: Auth is required")
	}
	if cfg.Registry == nil {
		return nil, errors.New("server: Registry is required")
	}
	if cfg.Ingest == nil {
		return nil, errors.New("server: Ingest is required")
	}
	if cfg.Restore == nil {
		return nil, errors.New("server: Restore is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRecvMsgSize <= 0 {
		cfg.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if cfg.MaxConnectionIdle <= 0 {
		cfg.MaxConnectionIdle = DefaultMaxConnectionIdle
	}
	return &Server{auth: cfg.Auth, reg: cfg.Registry, ing: cfg.Ingest, rst: cfg.Restore, mnt: cfg.Maintenance, log: cfg.Logger, health: health.NewServer(), cfg: cfg}, nil
}

// GRPCServer builds a *grpc.Server with every service, health and reflection
// registered, the auth and logging interceptors installed, and keepalive
// settings that keep long streams alive through service-mesh proxies (which
// commonly drop connections idle for 60 s or more).
func (s *Server) GRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	opts := []grpc.ServerOption{
		// A panic in auth or a handler is answered Internal (and logged
		// with its stack) like any other error, instead of taking the
		// process, and every tenant's calls, down. (A goroutine a handler
		// starts must recover on its own.)
		grpc.ChainUnaryInterceptor(s.unaryLog, recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)), s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamLog, recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)), s.streamAuth),
		grpc.MaxRecvMsgSize(s.cfg.MaxRecvMsgSize),
		// Request headers are read before any call is authenticated: a few
		// KiB is plenty for a token and tracing headers (gRPC's default is 16
		// MiB per connection, which lets anonymous clients hold memory).
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    30 * time.Second, // ping an idle connection every 30 s
			Timeout: 20 * time.Second,
			// A connection with no call for this long is closed (GOAWAY): an
			// idle connection holds a slot of --max-connections.
			MaxConnectionIdle: s.cfg.MaxConnectionIdle,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second, // clients may ping every 10 s
			PermitWithoutStream: true,
		}),
	}
	gs := grpc.NewServer(append(opts, extra...)...)
	pb.RegisterStorageServiceServer(gs, s)
	pb.RegisterBackupServiceServer(gs, s)
	pb.RegisterRestoreServiceServer(gs, s)
	if s.mnt != nil {
		pb.RegisterMaintenanceServiceServer(gs, s)
		s.health.SetServingStatus(pb.MaintenanceService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(pb.StorageService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(pb.BackupService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(pb.RestoreService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return gs
}

// recovered answers a handler's panic: Internal to the caller, the value
// and stack to the log.
func (s *Server) recovered(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error; the server log has the details")
}

// Shutdown marks the server NOT_SERVING so load balancers drain it.
func (s *Server) Shutdown() { s.health.Shutdown() }

func (s *Server) unaryLog(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	s.logCall(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) streamLog(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	s.logCall(ss.Context(), info.FullMethod, start, err)
	return err
}

func (s *Server) logCall(ctx context.Context, method string, start time.Time, err error) {
	if method == "/grpc.health.v1.Health/Check" && err == nil {
		return
	}
	st, _ := status.FromError(err)
	s.log.LogAttrs(ctx, slog.LevelInfo, "rpc", slog.String("method", method), slog.String("code", st.Code().String()),
		slog.Duration("duration", time.Since(start)), slog.String("error", st.Message()))
}
