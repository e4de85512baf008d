// Package pipeline is xdpipe's burst pipeline: DPDK-style run-to-completion
// processing of frames received on AF_XDP sockets, without copying them out
// of the UMEM and without allocating per packet or per burst.
//
// # Bursts and stages
//
// A Burst is a fixed-capacity vector (DefaultBurstSize 64, up to the RX ring
// size) of Packet views into the UMEM, allocated once per worker. A Stage
// processes a burst in place and sets each packet's Verdict: VerdictKeep (no
// decision yet), VerdictDrop (final), VerdictTransmit (back out of the port it
// came in on) or VerdictForward (out of the named output Packet.Out).
//
// Built-in stages: Count, Drop, Filter (steering rules evaluated in Go through
// a Matcher), MacSwap (l2fwd), Forward (to another interface's socket sharing
// the UMEM), Rewrite (MAC, VLAN push/pop, IPv4 TTL/DSCP with RFC 1624
// incremental checksum), Pcap (gopacket's pcapgo, snap length, rotation by
// size) and Sample (1 in N to a slow-path channel, never blocking). Each is
// an entry of the stage registry (LookupStage): its kind, its options, its
// constructor; its counters are its Counters method (Metered, each
// described by a CounterDesc), exported by the Collector, the one part of
// the package that knows Prometheus.
//
// # Multi-buffer packets (jumbo frames)
//
// A packet larger than one UMEM chunk (an MTU 9000 interface, its socket
// bound with XDP_USE_SG: xsk.SocketOptions.MultiBuffer) arrives as a chain
// of descriptors, every one but the last flagged XDP_PKT_CONTD. A burst
// carries it as one Packet: Data is the first segment, which holds the
// headers (Ethernet, VLANs, IP, L4 all fit in the smallest chunk's data
// room), and Packet.More the descriptors of the rest, slices of the
// burst's receive scratch. The API for it, all a stage needs:
//
//	p.Len()               the whole length (count, pcap, sample, ipfix, metrics use it)
//	p.More                the further segments; stages must not change them
//	b.Segment(d)          one further segment's bytes, in the UMEM
//	b.CopyPacket(dst, p)  the whole packet copied out (pcap, sample)
//
// Stages that read or edit headers (parse, filter, rewrite, macswap) work on
// Data as before; a VLAN push or pop resizes the first segment only. The
// worker sends every segment (More follows the first on the TX ring, flags
// as received), frees every segment of a dropped packet, and counts
// packets in RxPackets and TxPackets, UMEM frames in TxSegments and TxDone.
// Ports take and give packets whole (xsk.Socket.Receive and Transmit never
// split one), so a burst of Cap descriptors holds at most Cap packets, and
// fewer when they are jumbo.
//
// # Header parsing
//
// Headers.Parse is xdpipe's one frame parser (internal/frame), which has
// the XDP steering program's limits, so the filter stage, the rules'
// reference matcher and the kernel agree on every frame. gopacket's
// DecodingLayerParser with
// preallocated layers was measured first (TestDecodingLayerParserAllocs):
// it allocates nothing on a well-formed Ethernet/IPv4/UDP frame but two
// objects per truncated or malformed frame (errors built with fmt.Errorf),
// which hostile traffic can trigger at line rate, and it takes about 92-136
// ns per frame against about 15 ns for Headers.Parse (BenchmarkParse*).
// gopacket is still used for pcap writing and, in tests, as the reference
// that builds frames and checks our parser and rewrites.
//
// # Fill before register
//
// Fill a socket's fill ring before binding it (xsk.SocketOptions.Prefill;
// a zero-copy driver posts its RX buffers from the fill ring at bind, and
// virtio-net, finding it empty, may never post them), at the latest before
// registering it in the XSKMAP, and size rings so the fill ring does not run dry under overload
// (RX ring no larger than the fill ring, UMEM frames for fill + RX + TX).
// Measured on Linux 6.18, veth, copy mode: when frames reach a socket whose
// fill ring is empty at that moment, the socket can stop receiving for good
// although the fill ring is then full (fill producer 2051, consumer 3, RX
// producer 3; every later frame counted in RxFillRingEmptyDescs). Refilling
// before registering avoided it in every run.
//
// # Frame ownership
//
// Packet.Data aliases UMEM memory owned by the worker for the duration of a
// pass; after the worker transmits or frees the frame the bytes belong to the
// kernel again. Stages that keep bytes (Sample) copy them.
package pipeline
