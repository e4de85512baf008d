// Package dataplane is xdpipe's data plane as a library: what `xdpipe run`,
// `xdpipe rxdrop`, `xdpipe gen --engine xsk` and the benchmark harness share.
//
//   - Config is the daemon's configuration (LoadConfig reads the YAML file);
//     the daemon resolves and checks it before it attaches anything. Each
//     setting has one check shared by every command (ParseCoalesce,
//     pipeline.ParsePollMode, the stage constructors in pipeline's registry).
//   - OpenPort is the one way to open AF_XDP sockets: check the interface,
//     make the sockets, fill each before it is registered, load the XDP
//     program (redirect, or steer with rules, their maps pinned where asked),
//     attach, register. Package gen/xskport opens gen's AF_XDP engine through it.
//   - Daemon is a running pipeline: Open, Run, Reload(Config), Account,
//     Counts, Collector, Close. It reaches the kernel through a small
//     unexported interface, so its tests run in-process on fake ports
//     without root.
//   - The RDMA output port ships frames of the rdma stage straight from
//     the UMEM (package rdma).
//
// Nothing imports dataplane but the commands (cmd/xdpipe) and the
// benchmark harness (bench).
package dataplane
