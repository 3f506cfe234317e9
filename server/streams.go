package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"backupstore/fault"
	"backupstore/internal/wirecodec"
)

// DefaultStreamIdleTimeout is how long an upload stream may send nothing.
const DefaultStreamIdleTimeout = 60 * time.Second

// StreamLimits bound what one tenant's streams may hold.
type StreamLimits struct {
	// MaxPerTenant caps a tenant's upload and restore streams open at once;
	// past it a new stream is answered ResourceExhausted at once. 0: no cap.
	MaxPerTenant int
	// IdleTimeout ends an upload stream that sends no message for this long
	// (Aborted STREAM_IDLE), releasing its memory; the upload stays PENDING
	// and resumable. 0: DefaultStreamIdleTimeout.
	IdleTimeout time.Duration
}

// StreamGuard counts each tenant's open streams against StreamLimits. Safe
// for concurrent use. A nil *StreamGuard caps nothing and times out idle
// uploads after DefaultStreamIdleTimeout.
type StreamGuard struct {
	lim  StreamLimits
	mu   sync.Mutex
	open map[string]int
}

// NewStreamGuard returns a guard enforcing lim.
func NewStreamGuard(lim StreamLimits) (*StreamGuard, error) {
	if lim.MaxPerTenant < 0 {
		return nil, fmt.Errorf("server: MaxPerTenant must be ≥ 0, not %d", lim.MaxPerTenant)
	}
	if lim.IdleTimeout < 0 {
		return nil, fmt.Errorf("server: IdleTimeout must be ≥ 0, not %v", lim.IdleTimeout)
	}
	if lim.IdleTimeout == 0 {
		lim.IdleTimeout = DefaultStreamIdleTimeout
	}
	return &StreamGuard{lim: lim, open: map[string]int{}}, nil
}

// Open returns how many streams the tenant has open now.
func (g *StreamGuard) Open(tenant string) int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open[tenant]
}

func (g *StreamGuard) idleTimeout() time.Duration {
	if g == nil {
		return DefaultStreamIdleTimeout
	}
	return g.lim.IdleTimeout
}

// enter counts a new stream of the tenant, or refuses it past the cap.
// The returned func ends it.
func (g *StreamGuard) enter(tenant string) (func(), error) {
	if g == nil || g.lim.MaxPerTenant == 0 {
		return func() {}, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.open[tenant]; n >= g.lim.MaxPerTenant {
		e := fault.New(fault.ResourceExhausted, "TOO_MANY_STREAMS",
			"the tenant has %d upload and restore streams open and its limit is %d: wait for some to finish, or retry in a few seconds",
			n, g.lim.MaxPerTenant)
		e.Detail = fault.RetryDelay(2 * time.Second)
		return nil, e
	}
	g.open[tenant]++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.open[tenant]--; g.open[tenant] <= 0 {
				delete(g.open, tenant)
			}
		})
	}, nil
}

// enterStream counts the calling stream to its tenant (see StreamGuard).
func (s *Server) enterStream(ctx context.Context) (func(), error) {
	return s.cfg.Streams.enter(TenantFrom(ctx))
}

// openUpload starts an upload stream: it counts the stream to its tenant,
// receives the first message through an idle-bounded receiver and checks
// that it is a header (header returns it, nil if the message is not one).
// On success the caller must call leave when the stream ends.
func openUpload[T, H any](s *Server, ctx context.Context, rpc string, recv func() (T, error), header func(T) *H) (in *idleRecv[T], first T, leave func(), err error) {
	leave, err = s.enterStream(ctx)
	if err != nil {
		return nil, first, nil, err
	}
	in = newIdleRecv(ctx, s.cfg.Streams.idleTimeout(), recv)
	if first, err = in.Recv(); err != nil {
		leave()
		return nil, first, nil, recvErr(err)
	}
	if header(first) == nil {
		in.releaseLast()
		leave()
		return nil, first, nil, fault.New(fault.InvalidArgument, "MISSING_HEADER", "the first message of %s must be a header", rpc)
	}
	counted := leave
	leave = func() {
		in.releaseLast()
		counted()
	}
	return in, first, leave, nil
}

// idleRecv receives an upload stream's messages with a bound on the wait
// for each: a client that sends nothing for the idle timeout has its stream
// ended, so what the stream holds (memory, a stream slot) is released. The
// wait happens on a goroutine that receives only when asked, so a message
// stays the caller's until its next call, as with Recv.
//
// That next call is also where a message's data ends: the server's codec
// (internal/wirecodec) aliases a data message's bytes into the received
// gRPC buffer, and Recv gives the previous message's buffer back to the pool
// before it asks for the next (ingest.Source's "valid until the next call").
// releaseLast does the same when the stream ends.
type idleRecv[T any] struct {
	ctx     context.Context // the stream's: done once the handler returns
	recv    func() (T, error)
	timeout time.Duration
	ask     chan struct{}
	got     chan idleResult[T]
	started bool
	dead    error
	last    T    // the message the caller holds
	holding bool // last is set
}

// releaseLast ends the caller's hold on the last message it received: its
// data must not be used after this.
func (r *idleRecv[T]) releaseLast() {
	if r.holding {
		wirecodec.Release(r.last)
		var zero T
		r.last, r.holding = zero, false
	}
}

// deliver hands a received message to the caller, who holds it until the
// next call.
func (r *idleRecv[T]) deliver(res idleResult[T]) (T, error) {
	if res.err == nil {
		r.last, r.holding = res.msg, true
	}
	return res.msg, res.err
}

type idleResult[T any] struct {
	msg T
	err error
}

func newIdleRecv[T any](ctx context.Context, timeout time.Duration, recv func() (T, error)) *idleRecv[T] {
	return &idleRecv[T]{ctx: ctx, recv: recv, timeout: timeout, ask: make(chan struct{}, 1), got: make(chan idleResult[T], 1)}
}

// errStreamIdle is what an idle stream's Recv answers.
var errStreamIdle = errors.New("stream idle")

func (r *idleRecv[T]) Recv() (T, error) {
	var zero T
	if r.dead != nil {
		return zero, r.dead
	}
	r.releaseLast()
	if !r.started {
		r.started = true
		go r.loop()
	}
	r.ask <- struct{}{}
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case res := <-r.got:
		return r.deliver(res)
	case <-t.C:
		r.dead = fault.Wrap(errStreamIdle, fault.Aborted, "STREAM_IDLE",
			"the stream sent nothing for %s and was ended, releasing what it held; an upload stays PENDING: resume it with the same upload id (files at QueryUploadStatus's committed_size)",
			r.timeout)
		return zero, r.dead
	case <-r.ctx.Done():
		// What Recv answered, if it did, says why the stream ended (a message
		// over the size limit ends the stream's context too).
		select {
		case res := <-r.got:
			return r.deliver(res)
		case <-time.After(100 * time.Millisecond):
		}
		r.dead = r.ctx.Err()
		return zero, r.dead
	}
}

func (r *idleRecv[T]) loop() {
	for {
		select {
		case <-r.ask:
		case <-r.ctx.Done():
			return
		}
		m, err := r.recv()
		r.got <- idleResult[T]{m, err} // room for one: never blocks
		if err != nil {
			return
		}
	}
}
