package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "backupstore/proto/backupstore/v1"
)

// ErrPlaintextToken is returned by Dial when a token would go in plaintext to
// an address that is not on loopback and WithInsecure was not given.
var ErrPlaintextToken = errors.New("refusing to send the token in plaintext")

// Client is a connection to backupstore and the worker protocol on top of
// it. It is safe for concurrent use; Close it when done.
type Client struct {
	conn        *grpc.ClientConn
	backup      pb.BackupServiceClient
	restore     pb.RestoreServiceClient
	storage     pb.StorageServiceClient
	maintenance pb.MaintenanceServiceClient
	timeout     time.Duration
	retry       RetryPolicy
	maxFrame    int
}

// settings are what the Options set.
type settings struct {
	token     string
	tls       *tls.Config
	insecure  bool
	timeout   time.Duration
	retry     RetryPolicy
	userAgent string
	dial      []grpc.DialOption
	maxFrame  int
}

// Option is an optional setting of Dial.
type Option func(*settings) error

// WithToken sends "authorization: Bearer <token>" with every call.
func WithToken(token string) Option {
	return func(s *settings) error {
		s.token = strings.TrimSpace(token)
		return nil
	}
}

// WithTLS connects with TLS, verifying the server with cfg (nil: the system
// roots). A client certificate in cfg.Certificates makes it mutual TLS. A
// cfg without MinVersion gets TLS 1.2.
func WithTLS(cfg *tls.Config) Option {
	return func(s *settings) error {
		if cfg == nil {
			cfg = &tls.Config{}
		} else {
			cfg = cfg.Clone()
		}
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
		s.tls = cfg
		return nil
	}
}

// WithInsecure allows sending the token in plaintext to an address that is
// not on loopback: for a proxy on the way that terminates TLS.
func WithInsecure() Option {
	return func(s *settings) error {
		s.insecure = true
		return nil
	}
}

// WithCallTimeout bounds each unary call the library makes, and each stream
// while no message goes out or comes back (a whole upload or read cannot be
// bounded by one timeout); 0, the default, bounds nothing but the context.
func WithCallTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d < 0 {
			return fmt.Errorf("client: negative call timeout %s", d)
		}
		s.timeout = d
		return nil
	}
}

// WithRetry replaces DefaultRetry for uploads and reads.
func WithRetry(p RetryPolicy) Option {
	return func(s *settings) error {
		if p.Attempts < 1 || p.Base < 0 || p.Max < p.Base {
			return fmt.Errorf("client: retry policy %+v: want Attempts >= 1 and 0 <= Base <= Max", p)
		}
		s.retry = p
		return nil
	}
}

// WithUserAgent sets the user agent the calls carry.
func WithUserAgent(ua string) Option {
	return func(s *settings) error {
		s.userAgent = ua
		return nil
	}
}

// WithDialOptions adds gRPC dial options, e.g. a context dialer for bufconn.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) error {
		s.dial = append(s.dial, opts...)
		return nil
	}
}

// WithMaxFrameBytes bounds what one stored frame of a zstd-encoded record
// read may decode to (DefaultMaxFrameBytes if unset): a frame that claims
// more fails the read before anything is allocated for it.
func WithMaxFrameBytes(n int) Option {
	return func(s *settings) error {
		if n < 1<<20 {
			return fmt.Errorf("client: max frame bytes %d: want at least 1 MiB", n)
		}
		s.maxFrame = n
		return nil
	}
}

// Dial returns a Client of the service at target (host:port, or any gRPC
// target). It connects lazily: the first call dials.
func Dial(target string, opts ...Option) (*Client, error) {
	s := settings{retry: DefaultRetry, userAgent: "backupstore-client"}
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, err
		}
	}
	var tc credentials.TransportCredentials
	if s.tls != nil {
		tc = credentials.NewTLS(s.tls)
	} else {
		tc = insecure.NewCredentials()
		if s.token != "" && !IsLoopback(target) && !s.insecure {
			return nil, fmt.Errorf("%w to %s", ErrPlaintextToken, target)
		}
	}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(tc), grpc.WithUserAgent(s.userAgent)}
	if s.token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer{token: s.token, secure: s.tls != nil}))
	}
	conn, err := grpc.NewClient(target, append(dopts, s.dial...)...)
	if err != nil {
		return nil, err
	}
	return &Client{
		conn:        conn,
		backup:      pb.NewBackupServiceClient(conn),
		restore:     pb.NewRestoreServiceClient(conn),
		storage:     pb.NewStorageServiceClient(conn),
		maintenance: pb.NewMaintenanceServiceClient(conn),
		timeout:     s.timeout,
		retry:       s.retry,
		maxFrame:    s.maxFrame,
	}, nil
}

func (c *Client) maxFrameBytes() int {
	if c.maxFrame > 0 {
		return c.maxFrame
	}
	return DefaultMaxFrameBytes
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the connection, for other services on it (health).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Backup returns the generated BackupService stub.
func (c *Client) Backup() pb.BackupServiceClient { return c.backup }

// Restore returns the generated RestoreService stub.
func (c *Client) Restore() pb.RestoreServiceClient { return c.restore }

// Storage returns the generated StorageService stub.
func (c *Client) Storage() pb.StorageServiceClient { return c.storage }

// Maintenance returns the generated MaintenanceService stub.
func (c *Client) Maintenance() pb.MaintenanceServiceClient { return c.maintenance }

// callCtx bounds one unary call by the call timeout.
func (c *Client) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
}

// bearer sends "authorization: Bearer <token>" with every call, unary and
// streaming alike.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false only when the caller chose plaintext.
func (b bearer) RequireTransportSecurity() bool { return b.secure }

// IsLoopback reports whether a gRPC target is on this machine: a unix
// socket, localhost or a loopback address.
func IsLoopback(target string) bool {
	if strings.HasPrefix(target, "unix:") {
		return true
	}
	if i := strings.Index(target, ":///"); i >= 0 {
		target = target[i+4:]
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
