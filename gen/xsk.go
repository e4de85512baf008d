package gen

import (
	"context"
	"fmt"
	"time"

	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/xsk"
)

// XSKOptions configures the AF_XDP engine. Only Ifindex is required.
type XSKOptions struct {
	// Ifindex is the sending device (in the namespace of the calling
	// thread), whose MTU XSKSocket checks the template against.
	Ifindex int
	// Bind mode (default auto: zero-copy where the driver can, else copy).
	Bind xsk.BindMode
	// Frames is the UMEM size in frames of 4096 bytes (default 4096).
	Frames uint32
	// TXSize is the TX and completion ring size (default 2048).
	TXSize uint32
	// Burst is how many frames are queued per pass (default 64).
	Burst int
}

// xskFrameSize is the engine's UMEM frame size.
const xskFrameSize = 4096

func (o *XSKOptions) defaults() {
	if o.Frames == 0 {
		o.Frames = 4096
	}
	if o.TXSize == 0 {
		o.TXSize = 2048
	}
	if o.Burst == 0 {
		o.Burst = 64
	}
}

// XSKSocket checks t against the device and says how to make the engine's
// UMEM and socket: open them with these options (package dataplane's
// OpenPort, without an XDP program: the engine only sends) and hand the
// socket to NewXSK.
func XSKSocket(t *Template, opts XSKOptions) (xsk.UmemOptions, xsk.SocketOptions, error) {
	opts.defaults()
	if err := checkDevice(opts.Ifindex, t.Len()); err != nil {
		return xsk.UmemOptions{}, xsk.SocketOptions{}, fmt.Errorf("xsk engine: %w", err)
	}
	uo := xsk.UmemOptions{NumFrames: opts.Frames, FrameSize: xskFrameSize, FillSize: 64, CompletionSize: opts.TXSize}
	segs := segments(t, uo)
	if segs > 17 {
		return uo, xsk.SocketOptions{}, fmt.Errorf("xsk engine: %w: %d-byte frames need %d segments, above the kernel's 17", ErrBadConfig, t.Len(), segs)
	}
	return uo, xsk.SocketOptions{RXSize: 64, TXSize: opts.TXSize, Bind: opts.Bind, MultiBuffer: segs > 1}, nil
}

// segments is how many UMEM frames one packet of t takes.
func segments(t *Template, uo xsk.UmemOptions) int {
	room := int(xsk.FrameData(uo.FrameSize))
	return (t.Len() + room - 1) / room
}

// inFlightBytes bounds the bytes of the packets the xsk engine keeps in
// flight. Slots come back through the completion ring and are reused
// last in, first out, so a small window keeps their frames in the CPU's
// caches for the kernel's copy (copy mode) or the NIC's DMA. With the whole
// TX ring in flight, 682 9000-byte packets (6 MB) cycled through memory:
// on a veth pair (MTU 9000, XDP_DROP behind it) that cost 1.3 to 1.5 times
// the CPU per frame of a window of 10 or 32 packets, in every one of four
// interleaved rounds.
const inFlightBytes = 256 << 10

// inFlightWindow is the most packets of length bytes in flight: those of
// inFlightBytes, at least 32 (the descriptors copy mode sends per sendto),
// at most ring (what the TX ring holds).
func inFlightWindow(length, ring int) int {
	return min(max(inFlightBytes/max(length, 1), 32), ring)
}

// XSK is the AF_XDP engine: frames are written once into UMEM slots (a
// slot is the frames of one packet: one, or several chained with
// XDP_PKT_CONTD for a packet larger than a frame's 3840 data bytes), and
// each send stamps the slot's first segment (Template.Stamp: flow word,
// sequence number, CLOCK_MONOTONIC timestamp, checksums) and queues it on the TX
// ring. Slots come back through the completion ring. One goroutine only.
type XSK struct {
	t      *Template
	opts   XSKOptions
	umem   *xsk.Umem
	sock   *xsk.Socket
	segs   int          // segments per packet
	window int          // most packets in flight: inFlightWindow
	slots  [][]xsk.Desc // descriptors of each slot's packet
	owner  []int32      // frame index (addr / frame size) -> slot
	left   []int8       // per slot: segments not yet completed
	free   []int32      // stack of free slots
	addrs  []uint64     // all UMEM frames, held for the engine's life
	comp   []uint64
	batch  []xsk.Desc
}

var _ Engine = (*XSK)(nil)

// NewXSK sends t through sock, a socket opened with XSKSocket's options,
// and writes the template into every frame of its UMEM. The engine takes
// all of the UMEM's frames; the socket and UMEM stay the caller's, to close
// after the engine.
func NewXSK(t *Template, sock *xsk.Socket, opts XSKOptions) (*XSK, error) {
	opts.defaults()
	umem := sock.Umem()
	if uo := umem.Options(); uo.FrameSize != xskFrameSize || uo.NumFrames != opts.Frames {
		return nil, fmt.Errorf("xsk engine: UMEM of %d frames of %d bytes, want XSKSocket's %d of %d", uo.NumFrames, uo.FrameSize, opts.Frames, xskFrameSize)
	}
	e := &XSK{t: t, opts: opts, umem: umem, sock: sock, segs: segments(t, umem.Options())}
	e.addrs = make([]uint64, opts.Frames)
	if n := umem.Alloc(e.addrs); n != len(e.addrs) {
		umem.Free(e.addrs[:n])
		return nil, fmt.Errorf("xsk engine: got %d of %d UMEM frames", n, len(e.addrs))
	}
	nslots := len(e.addrs) / e.segs
	e.slots = make([][]xsk.Desc, nslots)
	e.owner = make([]int32, opts.Frames)
	e.left = make([]int8, nslots)
	e.free = make([]int32, 0, nslots)
	for s := range nslots {
		fr := e.addrs[s*e.segs : (s+1)*e.segs]
		d := make([]xsk.Desc, e.segs)
		if umem.WritePacket(d, fr, t.Bytes()) != e.segs {
			umem.Free(e.addrs)
			return nil, fmt.Errorf("xsk engine: write template into slot %d", s)
		}
		for _, a := range fr {
			e.owner[a/xskFrameSize] = int32(s)
		}
		e.slots[s] = d
		e.free = append(e.free, int32(s))
	}
	e.comp = make([]uint64, opts.TXSize)
	e.batch = make([]xsk.Desc, opts.Burst*e.segs)
	e.window = inFlightWindow(t.Len(), int(opts.TXSize)/e.segs)
	return e, nil
}

// Mode reports the bind mode the socket got.
func (e *XSK) Mode() xsk.BindMode { return e.sock.Mode() }

// Fallback says why a BindAuto socket is in copy mode (xsk.Socket.Fallback).
func (e *XSK) Fallback() string { return e.sock.Fallback() }

// complete takes finished frames off the completion ring and frees the
// slots whose every segment is done. It returns the packets completed.
func (e *XSK) complete() uint64 {
	var done uint64
	for {
		n := e.sock.CompleteInto(e.comp)
		if n == 0 {
			return done
		}
		for _, a := range e.comp[:n] {
			s := e.owner[a/xskFrameSize]
			e.left[s]--
			if e.left[s] == 0 {
				e.free = append(e.free, s)
				done++
			}
		}
	}
}

// Send implements Engine. Sent counts packets the kernel completed, so
// Send waits (up to a second) for the last ones before it returns.
func (e *XSK) Send(ctx context.Context, r Run) (Result, error) {
	if err := r.validate(); err != nil {
		return Result{}, err
	}
	p := newPacer(r)
	var queued, done, seq uint64
	for ctx.Err() == nil {
		done += e.complete()
		now := time.Now()
		p.report(now, done, false)
		n, wait, fin := p.budget(now, queued, uint64(e.opts.Burst))
		if fin {
			break
		}
		if n == 0 {
			sleepCtx(ctx, wait)
			continue
		}
		// Keep at most window packets in flight (on the TX ring or in the
		// kernel), and stamp no more than that leaves room for: a stamp
		// the ring does not take is wasted and done again next pass.
		room := uint64(e.window) - min(queued-done, uint64(e.window))
		n = min(n, uint64(len(e.free)), room)
		if n == 0 {
			e.sock.Transmit(nil) // kick the kernel if it waits for one
			continue
		}
		// One Transmit (one TX ring reservation, one producer store, at
		// most one kick) per batch of packets, whatever their segments:
		// the ring takes packets whole (xsk.Socket.Transmit).
		ts := monotime.Now()
		k := int(n)
		for i := range k {
			d := e.slots[e.free[len(e.free)-1-i]]
			e.t.Stamp(e.umem.Bytes(d[0]), seq+uint64(i), ts)
			copy(e.batch[i*e.segs:], d)
		}
		got := e.sock.Transmit(e.batch[:k*e.segs]) / e.segs
		for i := range got {
			e.left[e.free[len(e.free)-1-i]] = int8(e.segs)
		}
		e.free = e.free[:len(e.free)-got]
		seq += uint64(got)
		queued += uint64(got)
	}
	// Wait for the kernel to finish what is queued, as long as it makes
	// progress: a slow link (an emulated NIC) takes seconds to drain the
	// ring, a stuck one gets a second.
	for deadline := time.Now().Add(time.Second); done < queued && time.Now().Before(deadline); {
		if n := e.complete(); n > 0 {
			done += n
			deadline = time.Now().Add(time.Second)
		}
		if done < queued {
			e.sock.Transmit(nil)
			time.Sleep(50 * time.Microsecond)
		}
	}
	now := time.Now()
	p.report(now, done, true)
	res := Result{Sent: done, Elapsed: now.Sub(p.start)}
	if done < queued {
		return res, fmt.Errorf("xsk engine: %d of %d queued frames not completed by the kernel in the last second", queued-done, queued)
	}
	return res, nil
}

// Close implements Engine. The socket and UMEM are the caller's: close
// them after the engine.
func (e *XSK) Close() error { return nil }
