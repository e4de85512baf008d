// Package rdma ships packets from an AF_XDP UMEM to a remote sink over RDMA
// reliable-connected (RC) queue pairs, with cgo over rdma-core's libibverbs
// and librdmacm. It is built only with the build tag `rdma` (and the
// libibverbs-dev, librdmacm-dev headers); without the tag every entry point
// returns an error that errors.Is(err, ErrNotSupported), and the package needs
// no C library.
//
// # Transport
//
// Connections are set up with rdma_cm on an IP address and port (Dial,
// Listen), which finds the RDMA device and the RoCE GID of the address by
// itself. Each side has one RC queue pair and two completion queues (send and
// receive), polled in bursts of up to 64 completions per cgo call.
//
// Data moves with two-sided SEND, one packet per message, one scatter-gather
// entry per segment pointing straight into the caller's registered region
// (the UMEM): no copy on the sender. A multi-buffer AF_XDP packet (a jumbo
// frame over several UMEM frames) is several Desc chained with More, as
// XDP_PKT_CONTD chains them on the AF_XDP rings, and goes as one message of
// as many SGEs (DialOptions.MaxSegments, checked against the device's
// max_sge at Dial); the sink receives it whole in one buffer. Several packets
// go to the device per ibv_post_send as a chain of work requests
// (DialOptions.Chain, default 64); only the last request of a chain (and one
// every DialOptions.SignalEvery segments) asks for a completion, and since an
// RC send queue completes in order, one completion retires every request
// before it. A request's wr_id is the sequence number of its packet's last
// Desc, so a completion hands back every segment of the packets it retires.
//
// SEND rather than RDMA WRITE-with-immediate: with WRITE the sender would
// have to manage the sink's memory (a remote ring, its addresses and rkey)
// and each message still consumes a posted receive for its immediate, so for
// packet-sized messages it saves nothing, while SEND keeps the sink in charge
// of where packets land, keeps message boundaries and gives the length in the
// receive completion. (SoftRoCE implements both in software at the same cost.)
//
// # Flow control
//
// Credit based, so the sender never overruns the sink's posted receive
// buffers (and never needs RNR retries): the sink posts ListenOptions.Buffers
// receives of ListenOptions.BufferSize bytes and announces the count and size
// in the rdma_cm accept private data. Each SEND uses one credit. The sink
// returns credits for the buffers it has reposted with a zero-length
// SEND-with-immediate whose immediate is the count, at most one per
// Buffers/16 buffers, into a small pool of receives the sender keeps posted
// (credits in flight never exceed Buffers, so at most 32 credit messages
// are, and the pool of 64 never runs dry). One credit stays in reserve for
// the FIN, a zero-length SEND-with-immediate by which Close (after Drain)
// tells the sink the stream ended cleanly: the sink's Receive returns io.EOF
// after a FIN and ErrDisconnected when the connection drops without one
// (sender killed, or closed with sends in flight).
//
// A packet longer than the sink's BufferSize is refused by Send with
// ErrTooLarge before anything is posted. A sender that knows its longest
// packet (DialOptions.MaxMessage: the MTU's frame) announces it in the
// connection request, and a sink with smaller buffers refuses the
// connection (ErrRefused and ErrBufferSize), so a jumbo MTU against a
// default sink fails at start, not packet by packet. RC segments messages at the path MTU
// (Sender.PathMTU; 1024 bytes on a 1500-byte RoCE link) by itself, so the
// message limit is the sink's buffer size, not the MTU.
//
// # Frame ownership (the pipeline stage `rdma`)
//
// The sender API follows the AF_XDP TX ring: Send takes a burst of Desc
// (offset and length inside the registered region; an xsk.Desc's Addr is that
// offset, so Desc{Addr: d.Addr, Len: d.Len}, with More where d.Options has
// XDP_PKT_CONTD) and returns how many it queued, whole packets only; those
// frames now belong to the device. Credits count packets, InFlight and
// Completed segments. Completed hands back the Desc of
// every send that has completed, in order; only then may the frame go back to
// the UMEM free stack. A pipeline stage therefore looks like:
//
//	s, err := rdma.Dial(ctx, "198.18.0.2:7471", umem.Region(), rdma.DialOptions{})
//	// per burst:
//	n, err := s.Send(descs)     // descs[n:] stay the caller's (no credit yet): drop or retry
//	// every pass, also when idle:
//	m, err := s.Completed(done) // done[:m] are free again: umem.Free(addrs of done[:m])
//	// at shutdown:
//	err = s.Drain(ctx, free)    // hands back the rest; or loop on Completed until s.InFlight() == 0
//	s.Close()                   // after Drain: the sink sees a clean end (io.EOF)
//
// After an error every in-flight descriptor is still handed back by
// Completed (or Drain), so frame accounting holds on failure too. A Sender
// belongs to one goroutine: give each pipeline worker its own Sender (its
// own queue pair; several may register the same UMEM). Frames Send did not
// take (no credit: the sink is slower than the wire) are the stage's to drop
// and count, or to hold for the next pass; Send never blocks.
//
// The receiver side is Listener.Accept and Receiver.Receive, which returns
// packets as slices into the receive buffers, valid until the next Receive;
// Sink counts them, feeds a sequence tracker (gen.Tracker satisfies
// SeqObserver) and an optional tap (pcap).
//
// # Concurrency and lifetimes
//
// A Sender or Receiver belongs to one goroutine. The registered region must
// stay mapped until Close returns and must not be Go heap memory (use the
// UMEM or unix.Mmap): the device keeps its address.
//
// # Failure
//
// Every wait is bounded: address and route resolution and connection set-up
// by DialOptions.Timeout; a peer that goes away mid-stream is seen as an
// rdma_cm DISCONNECTED event (a killed process's kernel sends the DREQ) or as
// a send completion error after the RC retry budget (ack timeout
// DialOptions.AckTimeout, 7 retries), and reported as ErrDisconnected.
package rdma
