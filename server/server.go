package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
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
}

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
		cfg.MaxRecvMsgSize = 4<<20 + 64<<10
	}
	return &Server{auth: cfg.Auth, reg: cfg.Registry, ing: cfg.Ingest, rst: cfg.Restore, mnt: cfg.Maintenance, log: cfg.Logger, health: health.NewServer(), cfg: cfg}, nil
}

// GRPCServer builds a *grpc.Server with every service, health and reflection
// registered, the auth and logging interceptors installed, and keepalive
// settings that keep long streams alive through service-mesh proxies (which
// commonly drop connections idle for 60 s or more).
func (s *Server) GRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryLog, s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamLog, s.streamAuth),
		grpc.MaxRecvMsgSize(s.cfg.MaxRecvMsgSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    30 * time.Second, // ping an idle connection every 30 s
			Timeout: 20 * time.Second,
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
