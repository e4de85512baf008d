// Package xsk is xdpipe's AF_XDP socket layer, written on golang.org/x/sys/unix.
//
// A Umem is packet memory: frames in one anonymous mapping, never the Go
// heap, with a free-frame stack (Alloc, Free: O(1) per frame, one lock per
// batch, safe from several goroutines). A Socket is bound to one queue of
// one interface and has four rings, one type each, each for one goroutine
// only, allocating nothing:
//
//	FillRing        app -> kernel   frame addresses to receive into
//	RXRing          kernel -> app   received descriptors
//	TXRing          app -> kernel   descriptors to send
//	CompletionRing  kernel -> app   addresses of sent frames
//
// Consumers use Peek(n) (got, idx), Get(idx), Release(n); producers use
// Reserve(n) (got, idx), Set(idx, v), Submit(n) (and Cancel). Indices are
// free-running uint32s masked at access; the other side's index is cached
// and reloaded only when the cache says empty (consumers) or short of room
// (producers), as libxdp does; the shared words are read and written with
// sync/atomic, the producer index stored only after the entries it
// publishes. The rings work over any byte region (NewFillRing and friends),
// and a Socket reaches the kernel through the small Kernel interface
// (wake, poll, statistics, release), so package xsktest's fake kernel
// drives a Socket in plain memory, without privileges (NewSocketFrom).
//
// Burst helpers on Socket cover the usual loop: Receive, Recycle (RX frames
// straight back to the fill ring), Refill (free stack to fill ring: the
// whole ring, or with SocketOptions.FillLow a depth that follows what the
// kernel takes, shallow while traffic is light), Transmit, Complete (completion ring to free stack), Wait (poll), and for
// multi-buffer packets ReceivePacket and TransmitPacket; Desc.Continues,
// PacketEnd, WholePackets and Packets say where such a packet ends, for
// any code that walks descriptors. Idler is how a
// loop in wakeup mode waits: it naps on a timer while frames come fast
// enough for a nap to gather a batch, and otherwise sleeps in poll until
// the kernel wakes it; it never spins. With need_wakeup
// (the default) the kernel is kicked only when a ring's flag asks; EAGAIN,
// EBUSY and ENOBUFS from a kick are not errors.
//
// Binding: the first socket on a Umem registers it (XDP_UMEM_REG, raising
// RLIMIT_MEMLOCK where needed); later sockets on other queues or interfaces
// share it (XDP_SHARED_UMEM) with fill and completion rings of their own and
// inherit its mode, need_wakeup and multi-buffer settings. BindAuto asks
// for zero-copy and, refused, binds copy mode on a fresh socket; Mode reads
// back what it got (XDP_OPTIONS) and Fallback why it is copy mode. With
// SocketOptions.Driver (what package netdev reads from the kernel) the
// choice is made before any bind: no xsk-zerocopy, or an MTU needing more
// segments than the driver's zero-copy takes, means copy mode (or, asked
// for zero-copy, a refusal naming the cause), and a queue beyond the active
// count fails naming it. A receiver sets SocketOptions.Prefill: its fill
// ring gets free frames before bind, because a zero-copy driver posts its
// RX buffers from the fill ring when the socket binds (virtio-net finding
// it empty leaves the queue without buffers, and no frame comes to make it
// look again).
//
// Frame ownership: every frame is in exactly one place (free stack, fill
// ring, kernel, RX ring, application, TX ring, completion ring).
// Umem.Accounting counts each place and Accounting.Check verifies the sum;
// UmemOptions.Debug adds a per-frame bitmap that panics on a double free.
// A frame returned by Receive or Alloc is the caller's until it is passed
// to Recycle, Transmit, Free or a ring's Submit; calls that take a batch
// return how many they took, and the rest stay the caller's. Slices from
// Umem.Bytes, Frame and Region are valid until Umem.Close. Socket.Close
// returns what the RX and completion rings hold to the free stack; frames
// the kernel may still touch (fill and TX rings, in flight) are counted as
// Lost.
//
// Errors carry short lowercase context and wrap the errno; ErrNotSupported
// (zero-copy or multi-buffer unavailable, AF_XDP missing) and
// ErrInvalidOption (validation, before any syscall) work with errors.Is.
//
// A zero NumFrames means the default (4096): the zero-value options must
// work, so "zero frames" cannot be asked for.
package xsk
