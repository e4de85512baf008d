//go:build rdma

package rdma

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpipe/xdpipe/internal/undo"
)

// Listener accepts connections from Senders. Close may be called while
// another goroutine waits in Accept (which then returns ErrClosed).
type Listener struct {
	opts    ListenOptions
	ch      *channel
	id      cmID
	addr    string
	mu      sync.Mutex
	closed  bool
	closing atomic.Bool
	active  sync.WaitGroup // Accept calls in progress
}

// Listen binds addr (host:port; an empty host is every address, port 0
// picks one) and listens for connections. A port in use is an error
// wrapping syscall.EADDRINUSE.
func Listen(addr string, opts ListenOptions) (_ *Listener, err error) {
	opts = opts.withDefaults()
	ip, port, err := splitAddr(context.Background(), addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := requireDevice(); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	l := &Listener{opts: opts}
	var undo undo.Stack
	defer func() {
		if err != nil {
			undo.Run()
		}
	}()
	if l.ch, err = newChannel(); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	undo.Push(l.ch.close)
	if l.id, err = createID(l.ch); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	undo.Push(l.id.destroy)
	if err := l.id.bind(ip, port); err != nil {
		return nil, fmt.Errorf("listen %s: rdma_bind_addr: %w", addr, err)
	}
	if err := l.id.listen(opts.Backlog); err != nil {
		return nil, fmt.Errorf("listen %s: rdma_listen: %w", addr, err)
	}
	host := ""
	if ip != nil {
		host = ip.String()
	}
	l.addr = net.JoinHostPort(host, strconv.Itoa(l.id.localPort()))
	return l, nil
}

// Addr is the bound address (with the port picked, if port 0 was asked).
func (l *Listener) Addr() string { return l.addr }

// Accept waits for the next connection request, sets up its queue pair and
// receive buffers and accepts it. Requests that ListenOptions.Accept refuses
// (or with bad private data, or from a sender announcing packets longer than
// BufferSize) are rejected, with the reason, and Accept keeps waiting. It
// returns ctx's error when ctx ends.
func (l *Listener) Accept(ctx context.Context) (*Receiver, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	l.active.Add(1)
	l.mu.Unlock()
	defer l.active.Done()
	for {
		if l.closing.Load() {
			return nil, ErrClosed
		}
		e, err := l.ch.wait(ctx, time.Now().Add(200*time.Millisecond))
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("accept: %w", err)
		}
		if e.typ != evConnectRequest {
			continue
		}
		child := cmID{e.id}
		ask, err := parseConnect(e.priv)
		if err != nil {
			rejectWith(child, 0, err.Error())
			continue
		}
		remote := child.peerAddr()
		if ask > uint32(l.opts.BufferSize) {
			rejectWith(child, rejectBufferSize, fmt.Sprintf("receive buffers hold %d bytes, sender sends up to %d", l.opts.BufferSize, ask))
			continue
		}
		if l.opts.Accept != nil {
			if err := l.opts.Accept(remote); err != nil {
				rejectWith(child, 0, err.Error())
				continue
			}
		}
		r, err := newReceiver(ctx, child, remote, l.opts)
		if err != nil { // newReceiver rejected and destroyed child
			return nil, fmt.Errorf("accept %s: %w", remote, err)
		}
		return r, nil
	}
}

// rejectWith refuses the connection request of id, saying why, and
// destroys id.
func rejectWith(id cmID, flags uint16, reason string) {
	id.reject(rejectData(flags, reason))
	id.destroy()
}

// Close stops listening, after any Accept in progress has returned (within
// 200ms). Accepted Receivers stay open. Idempotent.
func (l *Listener) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.closing.Store(true)
	l.mu.Unlock()
	l.active.Wait()
	l.id.destroy()
	l.ch.close()
	return nil
}

func (o ListenOptions) withDefaults() ListenOptions {
	if o.Buffers <= 0 {
		o.Buffers = 512
	}
	o.Buffers = max(o.Buffers, 2) // one credit is the sender's reserve for its FIN
	if o.BufferSize <= 0 {
		o.BufferSize = 2048
	}
	if o.Backlog <= 0 {
		o.Backlog = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return o
}
