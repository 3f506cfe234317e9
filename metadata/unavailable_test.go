package metadata_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"

	"backupstore/internal/testenv"
	"backupstore/metadata"
)

// cutProxy forwards loopback TCP connections to target until cut, which closes every
// connection it carries and refuses new ones (a fault a real MariaDB cannot be asked for).
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(p.Cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.cut {
				c.Close()
				up.Close()
			} else {
				p.conns = append(p.conns, c, up)
			}
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// A catalog that cannot be reached answers ErrUnavailable (retryable), not an unclassified
// driver error, for reads and writes alike.
func TestMySQLUnreachableIsUnavailable(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newCutProxy(t, cfg.Addr)
	cfg.Addr = p.ln.Addr().String()
	s, err := metadata.Open(t.Context(), "mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsureTenant(t.Context(), "t1"); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if _, err := s.GetBackup(t.Context(), "t1", "b1"); !errors.Is(err, metadata.ErrUnavailable) {
		t.Fatalf("GetBackup with the catalog cut off: %v, want ErrUnavailable", err)
	}
	if _, _, err := s.CreateBackup(t.Context(), &metadata.Backup{TenantID: "t1", ID: "b1", OrgID: "00D000000000001AAA"}); !errors.Is(err, metadata.ErrUnavailable) {
		t.Fatalf("CreateBackup with the catalog cut off: %v, want ErrUnavailable", err)
	}
}
