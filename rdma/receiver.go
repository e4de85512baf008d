//go:build rdma

package rdma

import (
	"context"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/undo"
)

// Receiver is the sink side of one connection. It belongs to one goroutine.
type Receiver struct {
	opts    ListenOptions
	ch      *channel
	id      cmID
	q       *queues
	bufs    []byte
	m       mr
	remote  string
	held    []uint32 // buffers handed out by the last Receive
	credits returns  // the credits owed to the sender
	wcs     [64]wc
	idle    int
	fin     bool // the sender closed cleanly (its FIN arrived)
	gone    bool // the connection went down
	err     error
	closed  bool
	stats   ReceiverStats
	undo    undo.Stack
}

func newReceiver(ctx context.Context, id cmID, remote string, opts ListenOptions) (_ *Receiver, err error) {
	r := &Receiver{opts: opts, id: id, remote: remote, credits: returns{threshold: max(1, opts.Buffers/16), depth: creditSQDepth}}
	deadline := time.Now().Add(opts.Timeout)
	defer func() {
		if err != nil {
			r.undo.Run()
		}
	}()
	if r.ch, err = newChannel(); err != nil {
		rejectWith(id, 0, "sink failed to set up the connection")
		return nil, err
	}
	// Undone in reverse: queues (QP before the id), then the id, then its
	// channel.
	r.undo.Push(r.ch.close)
	accepted := false
	r.undo.Push(func() {
		if accepted || r.err != nil {
			id.destroy()
		} else {
			rejectWith(id, 0, "sink failed to set up the connection")
		}
	})
	if err := id.migrate(r.ch); err != nil {
		return nil, err
	}
	if r.q, err = newQueues(id, creditSQDepth, opts.Buffers, 1); err != nil {
		return nil, err
	}
	r.undo.Push(r.q.close)
	size := opts.Buffers * opts.BufferSize
	if r.bufs, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap %d receive buffers: %w", opts.Buffers, err)
	}
	r.undo.Push(func() {
		r.q.close() // deregister before unmapping
		unix.Munmap(r.bufs)
	})
	if r.m, err = r.q.register(r.bufs, accessLocalWrite); err != nil {
		return nil, err
	}
	all := make([]uint32, opts.Buffers)
	for i := range all {
		all[i] = uint32(i)
	}
	if err := r.q.postRecvs(r.m, opts.BufferSize, all); err != nil {
		return nil, err
	}
	r.held = make([]uint32, 0, opts.Buffers)
	if err := id.connect(acceptData(uint32(opts.Buffers), uint32(opts.BufferSize)), true); err != nil {
		return nil, fmt.Errorf("rdma_accept: %w", err)
	}
	accepted = true
	if _, err := expect(ctx, r.ch, deadline, evEstablished, "establish"); err != nil {
		return nil, err
	}
	return r, nil
}

// Remote is the sender's address.
func (r *Receiver) Remote() string { return r.remote }

// Stats returns the receiver's counters.
func (r *Receiver) Stats() ReceiverStats { return r.stats }

func (r *Receiver) fail(err error) {
	if r.err == nil {
		r.err = err
		r.id.disconnect()
	}
}

// Receive returns up to len(pkts) received packets as slices of the receive
// buffers, valid until the next Receive or Close (which repost them). It
// returns 0 and nil when nothing has arrived; io.EOF once the sender has
// closed the connection cleanly (Drain, then Close) and everything before
// was returned; an error wrapping ErrDisconnected if the sender went away
// without closing (killed, crashed, closed with sends in flight).
func (r *Receiver) Receive(pkts [][]byte) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	if r.err != nil {
		return 0, r.err
	}
	size := r.opts.BufferSize
	live := !r.fin && !r.gone
	if len(r.held) > 0 && live {
		if err := r.q.postRecvs(r.m, size, r.held); err != nil {
			r.fail(fmt.Errorf("%w: repost receive: %v", ErrDisconnected, err))
			return 0, r.err
		}
		r.credits.reposted(len(r.held))
	}
	r.held = r.held[:0]
	// Completions of credit updates free their send queue slots.
	for k := pollCQ(r.q.scq, r.wcs[:]); k > 0; k = pollCQ(r.q.scq, r.wcs[:]) {
		r.credits.completed(k)
		for _, w := range r.wcs[:k] {
			if w.status != wcSuccess && w.status != wcFlushErr && live {
				r.fail(fmt.Errorf("%w: credit update: %s", ErrDisconnected, w.statusString()))
				return 0, r.err
			}
		}
	}
	if due := r.credits.due(); due > 0 && live {
		if err := r.q.postImm(uint32(due), 0); err != nil {
			r.fail(fmt.Errorf("%w: %v", ErrDisconnected, err))
			return 0, r.err
		}
		r.credits.sent()
		r.stats.CreditMessages++
		r.stats.CreditsReturned += uint64(due)
	}
	n := 0
	for n < len(pkts) {
		want := min(len(r.wcs), len(pkts)-n)
		k := pollCQ(r.q.rcq, r.wcs[:want])
		for _, w := range r.wcs[:k] {
			switch w.status {
			case wcSuccess:
				if w.imm == finImm { // data never carries an immediate
					r.fin = true
					r.held = append(r.held, uint32(w.wrID))
					continue
				}
				off := int(w.wrID) * size
				pkts[n] = r.bufs[off : off+int(w.byteLen) : off+size]
				r.held = append(r.held, uint32(w.wrID))
				r.stats.Bytes += uint64(w.byteLen)
				n++
			case wcFlushErr:
				r.gone = true // the connection is going down; the rest are flushed buffers
			default:
				r.fail(fmt.Errorf("%w: receive completion: %s", ErrDisconnected, w.statusString()))
			}
		}
		if k < want {
			break
		}
	}
	r.stats.Received += uint64(n)
	if n > 0 {
		r.idle = 0
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.fin {
		return 0, io.EOF
	}
	if r.gone {
		r.err = fmt.Errorf("%w: the sender went away without closing", ErrDisconnected)
		return 0, r.err
	}
	if r.idle++; r.idle%eventEvery == 0 {
		for {
			e, ok, err := r.ch.poll()
			if err != nil || !ok {
				break
			}
			if e.typ == evDisconnected || e.typ == evDeviceRemoval {
				// Everything the sender saw acknowledged, its FIN
				// included, is in the completion queue already: the
				// next Receive drains it, then reports EOF after a FIN
				// and ErrDisconnected without one.
				r.gone = true
			}
		}
	}
	return 0, nil
}

// Close disconnects and releases the queue pair, buffers and registration.
// Packets returned by Receive are invalid afterwards. Idempotent.
func (r *Receiver) Close() error {
	if r == nil || r.closed {
		return nil
	}
	r.closed = true
	// Also after the peer's disconnect request: this sends the reply.
	r.id.disconnect()
	r.undo.Run()
	return nil
}
