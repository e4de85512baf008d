// Package bpf holds xdpipe's XDP programs and their Go loader.
//
// The programs are C (redirect.c, xdptx.c, dropcount.c, steer.c) compiled by
// bpf2go; the generated *_bpfel.go and *_bpfel.o are committed, so building
// xdpipe needs no clang (see gen.go).
//
//   - Redirect (LoadRedirect): every frame goes to the AF_XDP socket
//     registered for its RX queue, or to the kernel stack when none is.
//   - TX (LoadTX): returns XDP_TX; driven with BPF_PROG_RUN in live-frames
//     mode on the sending end of a veth pair, it is the traffic generator.
//   - DropCount (LoadDropCount): drops and counts, the benchmark ceiling.
//
// # Attaching
//
// Programs attach through a bpf_link (link.AttachXDP, Linux 5.9 or later),
// so the kernel detaches them when the last reference goes away: Close, or
// the process exiting or crashing. AttachAuto tries driver (native) mode,
// then generic (SKB) mode, and Attach reports which one it got.
//
// Fallback: on kernels without XDP bpf_link (before 5.9) Attach fails with
// an error wrapping ebpf.ErrNotSupported. The older netlink attachment
// (IFLA_XDP, what `ip link set dev IF xdp obj ...` does) is deliberately not
// implemented: a program attached that way stays attached after a crash, which
// is the failure mode the bpf_link design exists to avoid. Every kernel
// xdpipe targets has bpf_link.
//
// # Namespaces
//
// Interface indexes, attachments and BPF_PROG_RUN's ingress_ifindex are
// resolved in the network namespace of the calling thread: call Attach and
// TX.Send from a thread inside the interface's namespace.
package bpf
