// Package xsk is xdpipe's AF_XDP socket layer, written on golang.org/x/sys/unix.
//
// A Umem is packet memory: frames in one anonymous mapping, never the Go
// heap, with a free-frame stack (Alloc, Free: O(1) per frame, one lock per
// batch). A Socket is bound to one queue of one interface and has four
// rings, one type each, each for one goroutine only, allocating nothing:
//
//	FillRing        app -> kernel   frame addresses to receive into
//	RXRing          kernel -> app   received descriptors
//	TXRing          app -> kernel   descriptors to send
//	CompletionRing  kernel -> app   addresses of sent frames
//
// Consumers use Peek(n) (got, idx), Get(idx), Release(n); producers use
// Reserve(n) (got, idx), Set(idx, v), Submit(n). Indices are free-running
// uint32s masked at access; the other side's index is cached and reloaded
// only when the cache says empty (consumers) or short of room (producers);
// the shared words are read and written with sync/atomic. The rings work
// over any byte region, so FakeKernel can drive a Socket without privileges.
//
// Burst helpers on Socket cover the usual loop: Receive, Recycle (RX frames
// straight back to the fill ring), Refill (free stack to fill ring),
// Transmit, Complete (completion ring to free stack), Wait (poll), and for
// multi-buffer packets ReceivePacket and TransmitPacket. With need_wakeup
// (the default) the kernel is kicked only when a ring's flag asks.
//
// Frame ownership: every frame is in exactly one place (free stack, fill
// ring, kernel, RX ring, application, TX ring, completion ring).
// Umem.Accounting counts each place and Accounting.Check verifies the sum.
// A frame returned by Receive or Alloc is the caller's until it is passed
// to Recycle, Transmit, Free or a ring's Submit.
//
// Additions to the contract's API: Umem.FreeDescs, DataOffset, FreeCount,
// CopyPacket, WritePacket, Options, HugePages; Socket.Recycle,
// CompleteInto, Kick, Shared, Ifindex, Queue, Umem; ring constructors over
// byte regions (NewFillRing, ...) with RingOffsets and FakeRingLayout; the
// FakeKernel; ErrInvalidOption, ErrClosed, ErrShortBuffer. A zero
// NumFrames means the default (4096): the zero-value options must work, so
// "zero frames" cannot be asked for.
package xsk
