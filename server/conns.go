package server

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/peer"

	"backupstore/fault"
)

// ConnLimits keep connections from holding the server: anonymous ones are
// closed unless a call authenticates on them soon, one source address and
// one tenant may hold only a share of the connections.
type ConnLimits struct {
	// Max caps the connections open at once (0: no cap). At the cap, a new
	// connection takes the place of the oldest one on which no call has
	// authenticated yet, or is closed at once if every connection carries a
	// tenant's calls: anonymous connections can never keep a tenant out.
	Max int
	// PerAddress caps the connections open from one source IP address (0:
	// no cap). Behind a proxy or sidecar every connection comes from its
	// address: raise it or set 0 there.
	PerAddress int
	// PerTenant caps the connections on which a tenant's calls run; a call
	// on one more connection answers ResourceExhausted (0: no cap).
	PerTenant int
	// FirstCall is how long a new connection may stay open without an
	// authenticated call (default DefaultFirstCallTimeout).
	FirstCall time.Duration
}

// DefaultFirstCallTimeout is ConnLimits.FirstCall's default.
const DefaultFirstCallTimeout = 10 * time.Second

// connGuard tracks the listener's connections by their remote address, the
// key grpc's peer.Peer carries into every call.
type connGuard struct {
	lim ConnLimits

	mu       sync.Mutex
	byIP     map[string]int
	byTenant map[string]int
	conns    map[string]*guardedConn // remote address → connection
	total    int
	seq      uint64
}

type guardedConn struct {
	net.Conn
	g      *connGuard
	ip     string
	seq    uint64 // accept order
	once   sync.Once
	timer  *time.Timer
	tenant string // set by the first authenticated call
}

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		c.timer.Stop()
		g := c.g
		g.mu.Lock()
		g.total--
		if g.byIP[c.ip]--; g.byIP[c.ip] <= 0 {
			delete(g.byIP, c.ip)
		}
		if c.tenant != "" {
			if g.byTenant[c.tenant]--; g.byTenant[c.tenant] <= 0 {
				delete(g.byTenant, c.tenant)
			}
		}
		delete(g.conns, c.RemoteAddr().String())
		g.mu.Unlock()
	})
	return c.Conn.Close()
}

type guardedListener struct {
	net.Listener
	g *connGuard
}

// Accept refuses (closes at once) a connection from an address that holds
// its share, and gives every other one FirstCall to authenticate a call.
func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := c.RemoteAddr().String()
		if h, _, err := net.SplitHostPort(ip); err == nil {
			ip = h
		}
		g := l.g
		g.mu.Lock()
		if g.lim.PerAddress > 0 && g.byIP[ip] >= g.lim.PerAddress {
			g.mu.Unlock()
			c.Close()
			continue
		}
		var evict *guardedConn
		if g.lim.Max > 0 && g.total >= g.lim.Max {
			evict = g.oldestAnonymous()
			if evict == nil {
				g.mu.Unlock()
				c.Close() // every slot carries a tenant's calls
				continue
			}
		}
		g.byIP[ip]++
		g.total++
		g.seq++
		gc := &guardedConn{Conn: c, g: g, ip: ip, seq: g.seq}
		g.conns[c.RemoteAddr().String()] = gc
		gc.timer = time.AfterFunc(g.lim.FirstCall, func() {
			g.mu.Lock()
			anonymous := gc.tenant == ""
			g.mu.Unlock()
			if anonymous {
				gc.Close()
			}
		})
		g.mu.Unlock()
		if evict != nil {
			evict.Close() // counted out by its Close, outside the lock
		}
		return gc, nil
	}
}

// oldestAnonymous is the connection accepted first among those on which no
// call has authenticated, or nil. Called with g.mu held.
func (g *connGuard) oldestAnonymous() *guardedConn {
	var old *guardedConn
	for _, c := range g.conns {
		if c.tenant == "" && (old == nil || c.seq < old.seq) {
			old = c
		}
	}
	return old
}

// admit counts the call's connection to tenant on its first authenticated
// call, and refuses a call on a connection beyond the tenant's share.
func (g *connGuard) admit(ctx context.Context, tenant string) error {
	if g == nil {
		return nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.conns[p.Addr.String()]
	switch {
	case c == nil || c.tenant != "":
		// Not from the guarded listener, or counted already (to the first
		// tenant whose call it carried: a gateway may multiplex tenants).
		return nil
	case g.lim.PerTenant > 0 && g.byTenant[tenant] >= g.lim.PerTenant:
		return fault.New(fault.ResourceExhausted, "TOO_MANY_CONNECTIONS",
			"%d connections already carry this tenant's calls (the limit per tenant); send calls over the connections you have", g.byTenant[tenant])
	}
	c.tenant = tenant
	g.byTenant[tenant]++
	return nil
}

// Listener wraps l with the server's connection limits; the gRPC server
// must Serve the listener it returns.
func (s *Server) Listener(l net.Listener) net.Listener {
	lim := s.cfg.Conns
	if lim.FirstCall <= 0 {
		lim.FirstCall = DefaultFirstCallTimeout
	}
	s.conns = &connGuard{lim: lim, byIP: map[string]int{}, byTenant: map[string]int{}, conns: map[string]*guardedConn{}}
	return &guardedListener{Listener: l, g: s.conns}
}

// String describes the limits, for the startup log.
func (l ConnLimits) String() string {
	return fmt.Sprintf("at most %d, per address %d, per tenant %d, first call within %s", l.Max, l.PerAddress, l.PerTenant, l.FirstCall)
}
