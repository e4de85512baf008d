// Package gen generates test traffic and accounts for it at the receiver.
//
// A Template is a prebuilt Ethernet frame (UDP over IPv4 or IPv6, or a TCP
// SYN; 64 to 9000 bytes; N flows told apart by source port or address)
// whose payload carries Magic, a sequence number and a CLOCK_MONOTONIC send
// timestamp (see the payload layout on Magic). Template.Stamp writes those
// into a copy and fixes the checksums incrementally.
//
// Engines send a Template's frames:
//
//   - Live runs an XDP program, built here with cilium/ebpf's asm package,
//     through BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: the kernel
//     sends the frame Repeat times with XDP_TX, the program stamping each
//     copy with a sequence number from a counter in global data and a
//     send time from bpf_ktime_get_ns(), read once a batch (the kernel
//     flushes a batch's frames together). LiveOptions.Bare sends the
//     template unstamped: the reference the engine is measured against
//     (BenchmarkLiveVsBare, the bench's xdp-drop-bare cell). Frames up to
//     one page (MaxLiveFrameSize). A
//     frame counts as sent once the driver took it, as the kernel's
//     xdp:xdp_devmap_xmit tracepoint reports; a device that cannot send
//     XDP frames (no ndo-xmit in its xdp-features: a veth whose peer has
//     no XDP program, a virtio-net NIC without one) is refused with the
//     cause, read through package netdev.
//   - XSK sends from Go through an AF_XDP socket (package xsk), multi-buffer
//     for frames larger than a UMEM frame, in the bind mode asked for,
//     chosen with the driver's features (package netdev). Package
//     gen/xskport opens it on a socket of its own, the way the data plane
//     opens ports.
//
// A Tracker is the receiver's side: Observe each frame; it counts loss,
// duplicates, reordering and one-way latency percentiles without
// allocating. Latency needs the sender's and the receiver's clock to be the
// same CLOCK_MONOTONIC, that is the same host (a veth testbed).
package gen
